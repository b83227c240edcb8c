"""pytest plugin for the conformance run: one JSON line per test phase as it ends.

Written as the run goes, so a run cut short still tells what it got through.
run_upstream.py turns the lines into per-file counts.
"""
import json
import os
import signal

import pytest

_RESULTS = os.environ.get("TASKHUB_CONFORMANCE_RESULTS", "conformance.jsonl")


def _write(nodeid, when, outcome, detail=""):
    line = {"nodeid": nodeid, "when": when, "outcome": outcome, "detail": detail[-3000:]}
    with open(_RESULTS, "a") as f:
        f.write(json.dumps(line) + "\n")


def pytest_collectreport(report):
    if report.failed:
        _write(report.nodeid, "collect", "failed", str(report.longrepr))


def pytest_collection_finish(session):
    for item in session.items:  # after -k / deselection
        _write(item.nodeid, "collect", "passed")


def pytest_runtest_logreport(report):
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "skipped" if report.skipped else "passed"
    _write(report.nodeid, report.when, outcome, str(report.longrepr) if report.failed else "")


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item):
    """Upstream's ClusterTestCase arms SIGALRM per test and disarms it in a teardown that
    may fail; an alarm left armed would fire inside pytest itself and end the run."""
    yield
    signal.alarm(0)
