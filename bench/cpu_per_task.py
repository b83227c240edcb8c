"""CPU per task of each taskhub process during load-balanced maps: the steadiest figure on a
shared machine, where wall times swing with other load.

    .venv/bin/python -m bench.cpu_per_task [--tasks 2000] [--repeat 8] [--db sqlite]

Starts a controller and 2 engines (as bench/lb_throughput.py does), runs `--repeat` maps of
`--tasks` no-op tasks after a warm-up, and prints the median and best wall time and the CPU
time (user + system, from /proc/<pid>/stat) per task of the controller, of the engines
together and of this client process. To compare two versions of the code, run it
alternately from each checkout (PYTHONPATH=<checkout>).
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.lb_throughput import noop, start


def cpu_seconds(pid):
    """User + system CPU seconds used so far by process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(tasks, repeat, db):
    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        procs, rc = start("leastload", 2, db, Path(tmp) / "profile")
        try:
            lview = rc.load_balanced_view()
            lview.map_sync(noop, range(200))  # warm-up: connections, function cache
            walls, before, client = [], [cpu_seconds(p.pid) for p in procs], time.process_time()
            for _ in range(repeat):
                t0 = time.perf_counter()
                assert lview.map_sync(noop, range(tasks)) == list(range(tasks))
                walls.append(time.perf_counter() - t0)
            after, client = [cpu_seconds(p.pid) for p in procs], time.process_time() - client
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)
    n = tasks * repeat
    used = [a - b for a, b in zip(after, before)]
    return {"wall_median": statistics.median(walls), "wall_best": min(walls),
            "controller": used[0] / n, "engines": sum(used[1:]) / n, "client": client / n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--db", default="sqlite")
    args = parser.parse_args(argv)
    r = measure(args.tasks, args.repeat, args.db)
    print(f"{args.tasks} no-op tasks x {args.repeat}, 2 engines, db={args.db}: wall median "
          f"{r['wall_median'] * 1e3:.0f} ms (best {r['wall_best'] * 1e3:.0f}); CPU per task: "
          f"controller {r['controller'] * 1e6:.0f} µs, engines {r['engines'] * 1e6:.0f} µs, "
          f"client {r['client'] * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
