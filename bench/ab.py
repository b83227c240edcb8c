"""Before/after on the task path, in one run: the 2,000-task map and apply_sync latency of
this checkout against another revision, alternating, so both see the same machine.

    .venv/bin/python -m bench.ab --base d70ed39 [--rounds 5] [--tasks 2000] [--calls 300]

The base revision is checked out (once) into bench/.ab/<rev> as a git worktree; each round
runs the same driver (bench/ab_driver.py, by path) with PYTHONPATH set to one checkout, so
the controller, engines and client all come from it, with the same venv and settings
(2 engines, SQLite task DB, default scheduler). Prints each side's median of the rounds and
the ratio after/before (below 1: after costs less).
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DRIVER = HERE / "ab_driver.py"


def checkout(rev):
    """A worktree of `rev` under bench/.ab/ (made on first use)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], capture_output=True,
                         text=True, check=True).stdout.strip()
    path = HERE / ".ab" / sha[:12]
    if not path.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha],
                       check=True, capture_output=True)
    return path


def one_round(tree, tasks, calls):
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(DRIVER), str(tasks), str(calls)], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"the driver failed in {tree}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.ab")
    p.add_argument("--base", required=True, help="the revision to compare against")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args(argv)
    sides = {"before": checkout(args.base), "after": REPO}
    samples = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, tree in sides.items():
            samples[name].append(one_round(tree, args.tasks, args.calls))
    med = {name: {k: statistics.median(s[k] for s in rows) for k in rows[0]}
           for name, rows in samples.items()}
    print(f"{'':10} {'map ' + str(args.tasks) + ' (ms)':>16} {'apply_sync (ms)':>16}")
    for name in sides:
        print(f"{name:10} {med[name]['map'] * 1e3:16.1f} {med[name]['latency'] * 1e3:16.3f}")
    print(f"{'ratio':10} {med['after']['map'] / med['before']['map']:16.3f} "
          f"{med['after']['latency'] / med['before']['latency']:16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
