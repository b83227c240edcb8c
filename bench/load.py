"""Load: 200,000 tasks from 4 clients at once on 4 engines. Everything completes, the task
DB holds exactly one record per task, and the controller's memory stays bounded.

    .venv/bin/python -m bench.load                        # 200,000 tasks, 4 clients, 4 engines
    .venv/bin/python -m bench.load --tasks 20000 --max-outstanding 0

A real cluster (`taskhub.Cluster`: a controller process, engine processes, the SQLite task
DB) in a profile of its own, removed afterwards. Each client is a process that maps a no-op
over its share, one task per item, with at most --max-outstanding tasks in flight (0: no
bound, the whole share submitted at once); they start submitting together.

    this process: Cluster ─ samples every 0.5 s: completed (a db_count), controller RSS
    client processes ×4 ─ map_async(noop, share, chunksize=1) ─▶ controller ─▶ engines ×4

Prints the controller's RSS at each tenth of the tasks completed, the throughput, and the
checks: every client got its results in order; the DB holds exactly --tasks records, all
"ok"; nothing is left in flight; and the controller keeps nothing of what finished. Its
memory holds what is in flight plus two windows of fixed size — the last 65,536 outcomes
(for dependencies) and message signatures (for replay detection) — which fill during the
first 65,536 tasks; after that its RSS must level off: the peak of the second half may
exceed the RSS at the halfway mark by at most --rss-growth MiB. Exits 1 if a check fails.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_EVERY = 0.5  # seconds


def noop(x):
    return x


# -- a client process -------------------------------------------------------------------
def client_main(args):
    """Wait for the go file, map a no-op over this client's share, check, print JSON."""
    from taskhub import Client
    rc = Client(profile_dir=args.profile_dir, timeout=30)
    if args.max_outstanding:
        rc.max_outstanding = args.max_outstanding
    first = args.client * args.tasks
    share = range(first, first + args.tasks)
    _wait_for(Path(args.go), 120)
    t0 = time.monotonic()
    results = rc.load_balanced_view().map_async(noop, share, chunksize=1).get(args.timeout)
    seconds = time.monotonic() - t0
    rc.close()
    sys.stdout.write(json.dumps({"client": args.client, "tasks": len(results),
                                 "seconds": seconds, "ok": results == list(share)}) + "\n")
    return 0


def _wait_for(path, timeout):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody created {path}")
        time.sleep(0.01)


# -- the run ------------------------------------------------------------------------------
def rss_mib(pid):
    """Resident set size of `pid` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_clients(args, profile, go):
    share = args.tasks // args.clients
    return [subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--client", str(i), "--profile-dir", str(profile),
         "--tasks", str(share), "--max-outstanding", str(args.max_outstanding),
         "--go", str(go), "--timeout", str(args.timeout)],
        cwd=REPO, stdout=subprocess.PIPE, text=True) for i in range(args.clients)]


def watch(clients, rc, pid, timeout):
    """[(seconds, tasks completed, controller RSS MiB)] until every client has exited."""
    samples, t0 = [], time.monotonic()
    while True:
        done = all(p.poll() is not None for p in clients)
        completed = rc.db_count({"completed": {"$ne": None}})
        samples.append((time.monotonic() - t0, completed, rss_mib(pid)))
        if done:
            return samples
        if time.monotonic() - t0 > timeout:
            for p in clients:
                p.kill()
            raise TimeoutError(f"the clients did not finish within {timeout}s")
        time.sleep(SAMPLE_EVERY)


def run(args):
    """Start a cluster, run the clients, and return the figures (a dict)."""
    from taskhub import Cluster
    profile = Path(tempfile.mkdtemp(prefix="taskhub-load-"))
    cluster = Cluster(n=args.engines, profile_dir=profile, timeout=60,
                      controller_args=["--log-level", "WARN", "--web-port", "-1"],
                      engine_args=["--log-level", "WARN"])
    try:
        rc = cluster.start().client
        pid = cluster.controller.pid
        idle = rss_mib(pid)
        go = profile / "go"
        clients = start_clients(args, profile, go)
        go.touch()
        samples = watch(clients, rc, pid, args.timeout)
        reports = [json.loads(p.communicate()[0] or "{}") for p in clients]
        counts = {"records": rc.db_count({}), "ok": rc.db_count({"status": "ok"}),
                  "unfinished": rc.db_count({"completed": None})}
        return {"idle": idle, "samples": samples, "clients": reports, "counts": counts,
                "stats": rc.stats()}
    finally:
        cluster.stop()
        shutil.rmtree(profile, ignore_errors=True)


# -- the report ---------------------------------------------------------------------------
def deciles(samples, total):
    """The first sample at or past each tenth of `total` tasks completed."""
    marks = []
    for tenth in range(1, 11):
        hit = next((s for s in samples if s[1] >= total * tenth / 10), None)
        if hit is not None:
            marks.append((tenth, *hit))
    return marks


def check(figures, args):
    """[(what, passed)] for the run's figures."""
    total = args.tasks // args.clients * args.clients
    counts, reports = figures["counts"], figures["clients"]
    halfway = total // 2
    second_half = [s[2] for s in figures["samples"] if s[1] >= halfway]
    growth = max(second_half) - second_half[0] if second_half else float("inf")
    return [
        (f"{args.clients} clients got all their results, in order",
         len(reports) == args.clients and all(r.get("ok") for r in reports)),
        (f"the DB holds exactly {total:,} records", counts["records"] == total),
        (f"all {total:,} are ok and finished", counts["ok"] == total
         and counts["unfinished"] == 0),
        ("the controller holds nothing in flight after",
         figures["stats"]["outstanding"] == 0 and figures["stats"]["queued"] == 0),
        (f"controller RSS peaked {growth:.1f} MiB above its halfway value in the second half "
         f"(limit {args.rss_growth:g})", growth <= args.rss_growth),
    ]


def report(figures, args):
    total = args.tasks // args.clients * args.clients
    samples = figures["samples"]
    seconds = max((r.get("seconds", 0) for r in figures["clients"]), default=0)
    lines = [f"{total:,} no-op tasks from {args.clients} clients on {args.engines} engines, "
             f"SQLite task DB, max_outstanding={args.max_outstanding or 'none'} per client",
             f"  wall time {seconds:.1f} s, {total / seconds:,.0f} tasks/s" if seconds else "",
             f"  controller RSS: idle {figures['idle']:.1f} MiB, "
             f"peak {max(s[2] for s in samples):.1f} MiB, after {samples[-1][2]:.1f} MiB",
             "  done    at s   RSS MiB"]
    lines += [f"  {tenth * 10:3d}% {t:7.1f} {rss:9.1f}"
              for tenth, t, _, rss in deciles(samples, total)]
    results = check(figures, args)
    lines += [f"  [{'ok' if passed else 'FAILED'}] {what}" for what, passed in results]
    return "\n".join(line for line in lines if line), all(p for _, p in results)


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.load",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000, help="in all")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--max-outstanding", type=int, default=2000,
                        help="per client (0: no bound)")
    parser.add_argument("--rss-growth", type=float, default=16.0,
                        help="MiB the controller's RSS may rise above its halfway value")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-dir", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.client is not None:
        return client_main(args)
    text, passed = report(run(args), args)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
