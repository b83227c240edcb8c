"""Issue 7, load, scaled down: bench/load.py with 20,000 tasks from 4 clients at once on 4
engines (the full 200,000 run is `python -m bench.load`, too slow for the suite). Every
task completes, each client gets its results in order, and the task DB holds exactly one
finished record per task. The memory check needs the full run (the controller's bounded
windows only fill after 65,536 tasks); here the controller's RSS is only reported.
"""
import sys

import pytest

from bench import load

pytestmark = pytest.mark.timeout(120)


def test_20000_tasks_from_4_clients_on_4_engines_all_complete_and_are_recorded_once():
    args = load.parse(["--tasks", "20000", "--clients", "4", "--engines", "4",
                       "--max-outstanding", "2000", "--timeout", "100"])
    figures = load.run(args)
    reports = sorted(figures["clients"], key=lambda r: r["client"])
    assert [(r["client"], r["tasks"], r["ok"]) for r in reports] == \
        [(i, 5000, True) for i in range(4)]
    assert figures["counts"] == {"records": 20000, "ok": 20000, "unfinished": 0}
    assert figures["stats"]["outstanding"] == figures["stats"]["queued"] == 0
    assert figures["samples"][-1][1] == 20000
    sys.stdout.write(load.report(figures, args)[0] + "\n")
