"""`python -m bench`: parse the command line, run the plan, print and save the tables."""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import report
from .peers import PeerSetupError
from .runner import Runner
from .systems import VARIANTS
from .workloads import WORKLOAD_NAMES, plan

DEFAULTS = {"quick": {"repeats": 2, "budget": 4.0}, "full": {"repeats": 3, "budget": 30.0}}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m bench", description=(
        "Run taskhub and its peers side by side, alternating, and print medians and the "
        "ratios taskhub/peer (below 1: taskhub costs less)."))
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repeats: a smoke run of about 2 minutes")
    p.add_argument("--only", action="append", choices=WORKLOAD_NAMES, metavar="WORKLOAD",
                   help=f"run only this workload (repeatable): {', '.join(WORKLOAD_NAMES)}")
    p.add_argument("--systems", type=lambda s: s.split(","), metavar="A,B",
                   help=f"run only these systems: {', '.join(VARIANTS)}")
    p.add_argument("--repeats", type=int, help="samples per cell (quick: 2, full: 3)")
    p.add_argument("--budget", type=float, help=(
        "seconds a cell may spend before it gets no more repeats (quick: 4, full: 30); "
        "every cell gets at least one sample"))
    p.add_argument("--json", metavar="FILE", help="write every sample and ratio as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--from-json", metavar="FILE",
                   help="run nothing: print (and --markdown) the tables of a saved --json run")
    return p


def rerender(args):
    results, meta = report.from_json(Path(args.from_json).read_text())
    print(report.text_table(results))
    print(f"(run of {meta.get('started', '?')}: {meta.get('command', '?')})")
    if args.markdown:
        Path(args.markdown).write_text(report.markdown_table(results))
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.from_json:
        return rerender(args)
    mode = "quick" if args.quick else "full"
    repeats = args.repeats or DEFAULTS[mode]["repeats"]
    budget = args.budget if args.budget is not None else DEFAULTS[mode]["budget"]
    unknown = set(args.systems or ()) - set(VARIANTS)
    if unknown or (args.repeats is not None and args.repeats < 1):
        sys.stderr.write(f"bench: unknown systems {sorted(unknown)} or repeats < 1\n")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="taskhub-bench-"))
    workloads = plan(mode, workdir, args.only, args.systems)
    t0 = time.monotonic()

    def say(text):
        minutes, seconds = divmod(int(time.monotonic() - t0), 60)
        print(f"[{minutes:2d}:{seconds:02d}] {text}", file=sys.stderr, flush=True)

    say(f"bench: {mode} run, {repeats} repeats, {budget:g} s per cell; logs in {workdir}")
    started = datetime.now(timezone.utc)
    try:
        results = Runner(repeats, budget, workdir, say).run(workloads)
    except PeerSetupError as e:
        say(f"bench: {e}")
        return 1
    meta = {"command": " ".join(["python -m bench", *(argv or sys.argv[1:])]), "mode": mode,
            "repeats": repeats, "budget_s": budget, "started": started.isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - t0, 1), "machine": machine()}
    print(report.text_table(results))
    print(f"({meta['duration_s']:.0f} s; ratio = taskhub median / peer median; "
          "×N = samples)")
    if args.json:
        Path(args.json).write_text(report.to_json(results, meta))
    if args.markdown:
        Path(args.markdown).write_text(report.markdown_table(results))
    failed = any(c.error and c.error != "n/a" for cells in results.rows.values()
                 for c in cells.values())
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    say(f"bench: some cells failed; the drivers' logs are in {workdir}")
    return 1


def machine():
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1] \
        if Path("/proc/meminfo").exists() else "?"
    return {"cpus": os.cpu_count(), "mem_kb": mem, "platform": platform.platform(),
            "python": platform.python_version()}
