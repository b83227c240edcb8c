"""Where taskhub spends its time during a load-balanced map: py-spy on every process.

    python -m bench.profile [--workload map|latency|push] [--tasks 20000] [--engines 2]
                            [--db sqlite] [--out DIR]

Starts a taskhub cluster, attaches `py-spy record` (sampling, --nonblocking, so the
processes are never paused) to the controller, to engine 0 and to this process (the client),
runs one workload (default: a map of 20,000 no-op tasks), then prints each process's top functions by own time and by
inclusive time. The raw collapsed stacks are kept in DIR (load them in speedscope.app or
flamegraph.pl). py-spy must be installed in this venv: `.venv/bin/pip install py-spy`.
"""
import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def summarize(raw_path, top=12):
    """(samples, [(share, function) by own time], [(share, function) inclusive])."""
    own, inclusive, total = collections.Counter(), collections.Counter(), 0
    for line in Path(raw_path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    share = lambda counter: [(n / total, f) for f, n in counter.most_common(top)]  # noqa
    return total, share(own), share(inclusive) if total else []


def _short(frame):
    """"func (path/to/file.py:12)" → "func (file.py)"; site-packages and stdlib shortened."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['func']} ({path})"


def _map(rc, args):
    from .systems import tasks
    t0 = time.perf_counter()
    ar = rc.load_balanced_view().map_async(tasks.noop, range(args.tasks), chunksize=1)
    done = ar.wait(args.timeout)
    return (f"map of {args.tasks:,} no-op tasks on {args.engines} engines (--db {args.db}): "
            f"{time.perf_counter() - t0:.2f} s" + ("" if done else f" — NOT DONE: "
                                                    f"{ar.progress} answered"))


def _latency(rc, args):
    from .systems import base, tasks
    lview = rc.load_balanced_view()
    median = base.median_latency(lambda: lview.apply_async(tasks.noop, 1).get(args.timeout),
                                 args.tasks)
    return f"{args.tasks:,} load-balanced apply_sync calls: median {median * 1e6:.0f} µs"


def _push(rc, args):
    import numpy
    array, view = numpy.ones(args.mb * 1000 * 1000 // 8), rc[:]
    t0 = time.perf_counter()
    view.push({"bench_array": array}, block=True)
    t1 = time.perf_counter()
    view.pull("bench_array", block=True)
    return (f"{args.mb} MB pushed to {args.engines} engines in {t1 - t0:.2f} s, "
            f"pulled back in {time.perf_counter() - t1:.2f} s")


WORKLOADS = {"map": _map, "latency": _latency, "push": _push}


def record(pid, out, rate):
    cmd = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record",
           "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
           "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="map",
                   help="map: one map of --tasks no-op tasks; latency: --tasks sequential "
                        "load-balanced apply_sync calls; push: push and pull --mb MB to all")
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--db", default="sqlite", help="the controller's --db")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--out", default=None, help="where the raw stacks go (default: a temp dir)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="taskhub-profile-"))
    out.mkdir(parents=True, exist_ok=True)

    from taskhub.cluster.cluster import Cluster
    from .systems import tasks
    profile_dir = tempfile.mkdtemp(prefix="taskhub-profile-cluster-")
    cluster = Cluster(n=args.engines, profile_dir=profile_dir, controller_args=["--db", args.db])
    spies = {}
    try:
        rc = cluster.start().client
        lview = rc.load_balanced_view()
        lview.map_sync(tasks.noop, range(100))
        pids = {"controller": cluster.controller.pid, "engine 0": cluster.pids()[1],
                "client": os.getpid()}
        spies = {name: record(pid, out / f"{name.replace(' ', '')}.txt", args.rate)
                 for name, pid in pids.items()}
        time.sleep(1.0)  # py-spy attaches
        print(WORKLOADS[args.workload](rc, args))
    finally:
        for spy in spies.values():
            spy.send_signal(signal.SIGINT)
        for spy in spies.values():
            spy.wait(30)
        cluster.stop()
        shutil.rmtree(profile_dir, ignore_errors=True)
    for name in spies:
        _print_summary(name, out / f"{name.replace(' ', '')}.txt")
    print(f"\nraw stacks in {out}")
    return 0


def _print_summary(name, path):
    if not path.exists():
        print(f"\n{name}: no profile (did py-spy attach?)")
        return
    total, own, inclusive = summarize(path)
    print(f"\n{name}: {total} samples (busy time only; idle waits are not sampled)")
    print("  own time                                        inclusive")
    for (a, fa), (b, fb) in zip(own, inclusive):
        print(f"  {a:5.1%} {fa[:44]:<44} {b:5.1%} {fb[:60]}")


if __name__ == "__main__":
    sys.exit(main())
