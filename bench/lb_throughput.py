"""Load-balanced map throughput per scheduling scheme: N no-op tasks (one task each) on E
engines, with a real controller process and real engine processes on 127.0.0.1.

    .venv/bin/python bench/lb_throughput.py                    # every scheme, 2000 tasks, 2 engines
    .venv/bin/python bench/lb_throughput.py --tasks 5000 --repeat 5 leastload pure

Prints tasks/s per scheme (best of --repeat runs after a warm-up). The controller records
every task in its task DB (--db, default sqlite, as a user's cluster does).
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskhub.client import Client
from taskhub.controller.schemes import SCHEME_NAMES
from taskhub.error import ConnectionFileError


def noop(x):
    return x


def start(scheme, engines, db, profile):
    """The controller and engine processes of a fresh cluster, and a connected client."""
    base = [sys.executable, "-m"]
    procs = [subprocess.Popen([*base, "taskhub.controller", "--profile-dir", str(profile),
                               "--scheme", scheme, "--db", db, "--log-level", "WARN"])]
    procs += [subprocess.Popen([*base, "taskhub.engine", "--profile-dir", str(profile),
                                "--log-level", "WARN"]) for _ in range(engines)]
    deadline = time.monotonic() + 30
    while True:
        try:
            rc = Client(profile_dir=profile, timeout=10)
            break
        except ConnectionFileError:  # the controller has not written it yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    rc.wait_for_engines(engines, timeout=30)
    return procs, rc


def best_map_time(lview, tasks, repeat):
    """The best wall time of `repeat` maps of `tasks` no-op tasks (checked)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert lview.map_sync(noop, range(tasks)) == list(range(tasks))
        best = min(best, time.perf_counter() - t0)
    return best


def measure(scheme, tasks, engines, repeat, db):
    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        procs, rc = start(scheme, engines, db, Path(tmp) / "profile")
        try:
            lview = rc.load_balanced_view()
            lview.map_sync(noop, range(200))  # warm-up: connections, function cache
            best = best_map_time(lview, tasks, repeat)
            return tasks / best
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("schemes", nargs="*", default=list(SCHEME_NAMES))
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", default="sqlite")
    args = parser.parse_args(argv)
    print(f"{args.tasks} no-op tasks, {args.engines} engines, db={args.db}, "
          f"best of {args.repeat}")
    for scheme in args.schemes:
        rate = measure(scheme, args.tasks, args.engines, args.repeat, args.db)
        print(f"  {scheme:12s} {rate:8.0f} tasks/s")


if __name__ == "__main__":
    main()
