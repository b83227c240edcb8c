"""Uneven tasks: makespan against the ideal, per load-balancing setting, in one run.

    .venv/bin/python -m bench.uneven [--engines 4] [--repeat 3] [--noop 2000] [--only NAME]
                                     [--no-peers] [--peer NAME]

Workloads (durations in seconds, each task sleeps its duration):
  pattern   40 tasks, every 4th sleeps 1 s, the rest 10 ms (issue 16; ideal 3.0 s on 4)
  heavy     400 heavy-tailed random durations (Pareto, alpha 1.5, 5 ms scale, capped 0.25 s)
  heavy-late  200 heavier-tailed ones (alpha 1.2, capped 1 s) whose longest (0.72 s) is
            the 181st: it cannot start before ~0.8 s, so no scheduler that learns a
            duration only by running the task gets near the ideal (0.93 s) — a reference
            point, not a target
  sweep     32 tasks whose cost grows with the index (10 ms × i)
and a throughput check: the 2,000 no-op map, tasks/s (best of --repeat).

The ideal makespan is a lower bound: the larger of total work / engines, and, for every m,
(m+1) × the (mE+1)-th longest task (of the mE+1 longest, one engine runs m+1).

Settings (taskhub): default (adaptive prefetch + stealing), hwm=1 (ipyparallel's
default, one task per engine at a time), eager (hwm=0: every task sent at once, the old
default). Each runs a fresh controller (SQLite task DB) and engines on 127.0.0.1.

Peers (--peers, the default; --no-peers skips them), each in its own venv under
bench/.peers/ (created on first use) and driven by bench/systems/ drivers, with the same
durations (`tasks.sleep`, one task per item) and as many workers as engines:
  ipp        ipyparallel at its default (hwm=1, leastload)
  ipp-hwm0   ipyparallel with --TaskScheduler.hwm=0 (taskhub's eager, equal settings)
  dask       dask.distributed LocalCluster, one thread per worker process, work stealing
  ray        Ray 2.x, ray.init(num_cpus=N), tasks of one CPU
A peer whose venv cannot be installed or whose run fails gets "unavailable: <reason>" in
its column instead of figures.
"""
import argparse
import random
import tempfile
import time
from pathlib import Path

from bench.lb_throughput import noop, start

SETTINGS = {"default": [], "hwm=1": ["--hwm", "1"], "eager": ["--prefetch", "eager"]}
PEERS = {"ipp": "ipyparallel hwm=1", "ipp-hwm0": "ipyparallel hwm=0", "dask": "dask",
         "ray": "Ray"}
PEER_TIMEOUT = 600.0


def work(seconds):
    import time
    time.sleep(seconds)
    return seconds


def workloads():
    rng = random.Random(16)
    heavy = [min(0.25, 0.005 * rng.paretovariate(1.5)) for _ in range(400)]
    rng = random.Random(16)
    late = [min(1.0, 0.005 * rng.paretovariate(1.2)) for _ in range(200)]
    return {"pattern": [1.0 if i % 4 == 0 else 0.01 for i in range(40)],
            "heavy": heavy, "heavy-late": late,
            "sweep": [0.01 * i for i in range(32)]}


def ideal(durations, engines):
    d = sorted(durations, reverse=True)
    bound = sum(d) / engines
    m = 0
    while m * engines < len(d):
        bound = max(bound, (m + 1) * d[m * engines])
        m += 1
    return bound


def run_setting(name, extra, loads, engines, repeat, noop_tasks):
    with tempfile.TemporaryDirectory(prefix="taskhub-uneven-") as tmp:
        profile = Path(tmp) / "profile"
        procs, rc = start_with(extra, engines, profile)
        try:
            lview = rc.load_balanced_view()
            lview.map_sync(noop, range(200))  # warm-up
            out = {}
            for wname, durations in loads.items():
                best = float("inf")
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    assert lview.map_sync(work, durations) == durations
                    best = min(best, time.perf_counter() - t0)
                out[wname] = best
                print(f"  {name} {wname} {best:.2f}s", flush=True)
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                assert lview.map_sync(noop, range(noop_tasks)) == list(range(noop_tasks))
                best = min(best, time.perf_counter() - t0)
            out["noop"] = noop_tasks / best
            return out
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)


def run_peer(name, loads, engines, repeat, noop_tasks, log_dir, timeout=PEER_TIMEOUT):
    """The peer's figures ({workload: s, "noop": tasks/s}), or "unavailable: <reason>"."""
    from bench.driver import Driver, DriverError
    from bench.peers import PeerSetupError
    from bench.systems import VARIANTS
    try:
        driver = Driver.spawn(VARIANTS[name], Path(log_dir))
    except PeerSetupError as e:
        return f"unavailable: {e}"
    try:
        version = driver.call("describe")
        print(f"  {name}: {version}", flush=True)
        driver.call("start", timeout=180, n=engines)
        return driver.call("uneven", timeout=timeout, loads=loads, repeat=repeat,
                           noop_tasks=noop_tasks)
    except DriverError as e:
        return f"unavailable: {_one_line(str(e))}"
    finally:
        driver.close()


def _one_line(text, limit=160):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def table(results, ideals, engines, repeat, noop_tasks):
    """The markdown table: a row per workload and one for the no-op map, a column per
    setting or peer; `results` maps a column to its figures or to "unavailable: …"."""
    columns = list(results)
    lines = [f"{engines} engines, best of {repeat}; makespan (x ideal)", "",
             "| workload (ideal) | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for w, best in ideals.items():
        cells = [_cell(results[c], lambda r: f"{r[w]:.2f}s ({r[w] / best:.2f}x)")
                 for c in columns]
        lines.append(f"| {w} ({best:.2f}s) | " + " | ".join(cells) + " |")
    eager = results.get("taskhub eager")
    eager = eager.get("noop") if isinstance(eager, dict) else None

    def noop_cell(r):
        return f"{r['noop']:.0f}" + (f" ({r['noop'] / eager:.2f}x eager)" if eager else "")
    lines.append(f"| {noop_tasks} no-op map, tasks/s | "
                 + " | ".join(_cell(results[c], noop_cell) for c in columns) + " |")
    return "\n".join(lines)


def _cell(figures, show):
    return figures.replace("|", "/") if isinstance(figures, str) else show(figures)


def start_with(extra, engines, profile):
    """bench.lb_throughput.start with extra controller arguments."""
    import subprocess
    original = subprocess.Popen

    def popen(args, *a, **kw):
        if "taskhub.controller" in args:
            args = [*args, *extra]
        return original(args, *a, **kw)
    subprocess.Popen = popen
    try:
        return start("leastload", engines, "sqlite", profile)
    finally:
        subprocess.Popen = original


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--noop", type=int, default=2000)
    parser.add_argument("--only", action="append", help="taskhub settings to run (default: all)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                        help="also run ipyparallel, dask and Ray (default: yes)")
    parser.add_argument("--peer", action="append", choices=list(PEERS),
                        help="peers to run (default: all)")
    parser.add_argument("--workload", action="append", help="workloads (default: all)")
    args = parser.parse_args(argv)
    loads = {w: d for w, d in workloads().items() if not args.workload or w in args.workload}
    ideals = {w: ideal(d, args.engines) for w, d in loads.items()}
    results = {}
    for name, extra in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        r = run_setting(name, extra, loads, args.engines, args.repeat, args.noop)
        results[f"taskhub {name}"] = r
        print(f"{name:8s} " + "  ".join(f"{w} {r[w]:.2f}s ({r[w] / ideals[w]:.2f}x)"
                                        for w in loads) + f"  noop {r['noop']:.0f}/s",
              flush=True)
    if args.peers:
        log_dir = tempfile.mkdtemp(prefix="taskhub-uneven-peers-")
        for name, column in PEERS.items():
            if args.peer and name not in args.peer:
                continue
            results[column] = run_peer(name, loads, args.engines, args.repeat, args.noop,
                                       log_dir)
            print(f"{column}: {results[column]}", flush=True)
        print(f"(peer driver logs in {log_dir})")
    print()
    print(table(results, ideals, args.engines, args.repeat, args.noop))


if __name__ == "__main__":
    main()
