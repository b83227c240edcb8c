"""Issue 13's flood and connection workloads: what other clients see, and the controller's
memory.

    .venv/bin/python -m bench.isolation_flood [--lines 500000] [--calls 200] [--cycles 2000]

Starts a Cluster of 2 engines in a temporary profile (the controller in its own process,
so its VmRSS is its own) and prints:
  - another client's apply_sync latency (median and max, ms) to the idle engine, quiet and
    while a task on the other engine prints `--lines` lines of 100 chars;
  - the controller's VmRSS before and after the flood, and its peak;
  - the controller's VmRSS before and after `--cycles` client connect/close cycles,
    with their goodbye and without it (as killed clients).
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

from bench.controller_rss import _status, controller_pid
from taskhub import Client, Cluster


def flood(gate, lines):
    """(Runs on an engine.) Print `lines` lines, then more until `gate` exists."""
    import os
    i = 0
    while i < lines or not os.path.exists(gate):
        print(f"line {i:07d} " + "x" * 86)
        i += 1
    return i


def _latencies(view, calls):
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        view.apply_sync(abs, -1)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def _flood_figures(d, rc, pid, args):
    other = Client(profile_dir=d)
    try:
        e0, e1 = rc.ids[:2]
        quiet = _latencies(other[e1], args.calls)
        rss0, gate = _status(pid, "VmRSS"), os.path.join(d, "gate")
        ar = rc[e0].apply_async(flood, gate, args.lines)
        while len(ar.stdout) < 2**20 and not ar.done():
            time.sleep(0.01)
        busy = _latencies(other[e1], args.calls)
        still_flooding = not ar.done()
        open(gate, "w").close()
        printed = ar.get(600)
        print(f"apply_sync from another client, ms: quiet median {quiet[0]:.2f} max "
              f"{quiet[1]:.2f}; during the flood median {busy[0]:.2f} max {busy[1]:.2f} "
              f"({args.calls} calls, all {'during' if still_flooding else 'NOT all during'} "
              f"the flood of {printed:,} lines)")
        print(f"controller RSS: {rss0:.1f} MiB before the flood, {_status(pid, 'VmRSS'):.1f} "
              f"after, peak {_status(pid, 'VmHWM'):.1f}")
    finally:
        other.close()


def _cycle_figures(d, pid, cycles, goodbye=True):
    """RSS over `cycles` clients that connect, ask once and close, saying goodbye or (as a
    killed client would) not."""
    say_goodbye = Client._say_goodbye
    if not goodbye:
        Client._say_goodbye = lambda self, query: None
    try:
        Client(profile_dir=d).close()
        before = _status(pid, "VmRSS")
        for _ in range(cycles):
            Client(profile_dir=d).close()
        time.sleep(1)  # a bench, not a test: let the last closes reach the controller
        after = _status(pid, "VmRSS")
    finally:
        Client._say_goodbye = say_goodbye
    how = "with" if goodbye else "without"
    print(f"controller RSS over {cycles:,} client connect/close cycles ({how} goodbye): "
          f"{before:.1f} -> {after:.1f} MiB ({(after - before) * 1024 / cycles:.1f} KiB per "
          "connection)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.isolation_flood")
    p.add_argument("--lines", type=int, default=500_000)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--cycles", type=int, default=2000)
    args = p.parse_args(argv)
    d = tempfile.mkdtemp(prefix="isolation-flood-")
    try:
        with Cluster(n=2, profile_dir=d) as rc:
            pid = controller_pid(d)
            _flood_figures(d, rc, pid, args)
            _cycle_figures(d, pid, args.cycles)
            _cycle_figures(d, pid, args.cycles, goodbye=False)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
