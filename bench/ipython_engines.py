"""What IPython on the engines costs: start-up, memory per engine, map throughput.

    .venv/bin/python -m bench.ipython_engines [--tasks 2000] [--repeat 5]

An engine makes its IPython shell on the first `execute` (taskhub.engine.ipyshell), so the
figures come in three rows from one cluster of 2 engines: "plain" (started, only functions
run), "shell made" (after one `execute`: IPython imported and a shell built) and the first
`execute` itself. Engine start is the time from starting the processes to both being
registered. Map throughput is the best of `--repeat` 2,000-task maps.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.lb_throughput import best_map_time, noop, start
from bench.systems.procs import rss_bytes


def _map_rate(lview, tasks, repeat):
    return tasks / best_map_time(lview, tasks, repeat)


def measure(tasks, repeat):
    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        t0 = time.perf_counter()
        procs, rc = start("leastload", 2, "sqlite", Path(tmp) / "profile")
        started = time.perf_counter() - t0
        try:
            lview = rc.load_balanced_view()
            for _ in range(2):  # warm-up: full-size maps, not counted (the first maps of a
                lview.map_sync(noop, range(tasks))  # cluster are slower, whatever runs them)
            engines = procs[1:]
            ipython_loaded = rc[:].apply_sync(_ipython_imported)
            plain = {"rss": statistics.mean(rss_bytes(p.pid) for p in engines),
                     "rate": _map_rate(lview, tasks, repeat)}
            t0 = time.perf_counter()
            rc[:].execute("1", block=True)
            first_execute = time.perf_counter() - t0
            shell = {"rss": statistics.mean(rss_bytes(p.pid) for p in engines),
                     "rate": _map_rate(lview, tasks, repeat)}
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)
    plain["ipython_loaded"] = ipython_loaded
    return started, first_execute, plain, shell


def _ipython_imported():
    import sys
    return "IPython" in sys.modules


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ipython_engines")
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    started, first, plain, shell = measure(args.tasks, args.repeat)
    print(f"2 engines registered in {started * 1000:.0f} ms (start-up is the same for both: "
          f"the shell is made on the first execute)")
    print(f"IPython imported by the engines before the first execute: "
          f"{plain['ipython_loaded']}")
    print(f"first execute (imports IPython, builds the shell): {first * 1000:.0f} ms")
    print(f"{'':12} {'RSS per engine':>16} {'map tasks/s':>12}")
    for name, row in (("plain", plain), ("shell made", shell)):
        print(f"{name:12} {row['rss'] / 2**20:13.1f} MB {row['rate']:12.0f}")
    print(f"ratio shell/plain: RSS {shell['rss'] / plain['rss']:.2f}, "
          f"map throughput {shell['rate'] / plain['rate']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
