"""The benchmark suite's own tests: pure pieces instantly, then one tiny real run.

Not part of `make test` (its testpaths is tests/); run `.venv/bin/python -m pytest bench/tests`.
Nothing here asserts a timing: machines are noisy, and benchmarks are not tests.
"""
import json
import sqlite3
import subprocess
import sys

import pytest

from bench import report
from bench.runner import Cell, Results
from bench.systems import base, serve
from bench.peers import REPO


def test_waves_cover_the_total_in_bounded_pieces():
    assert base.waves(2500, 1000) == [1000, 1000, 500]
    assert base.waves(0, 1000) == []


def test_ratio_is_subject_median_over_peer_median():
    subject, peer = Cell("s", [1.0, 3.0, 2.0]), Cell("s", [4.0, 8.0])
    assert report.ratio(subject, peer) == 2.0 / 6.0
    assert report.ratio(subject, Cell("s", error="boom")) is None


def test_table_shows_failures_once_per_system_and_not_applicable_quietly():
    results = Results()
    results.subjects["W"] = "taskhub"
    results.cell("W", "m", "taskhub", "s").samples.append(0.5)
    results.cell("W", "m", "pool", "s").error = "n/a"
    results.cell("W", "m", "ipp", "s").error = "start failed: Boom\nTraceback\nValueError: x"
    table = report.text_table(results)
    assert "n/a" in table and "FAILED" in table
    assert "start failed: Boom … ValueError: x" in table


def test_copy_sqlite_records_grows_the_table_with_fresh_msg_ids(tmp_path):
    db = tmp_path / "tasks.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tasks (msg_id TEXT PRIMARY KEY, engine_uuid TEXT)")
        conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(f"m{i}", "e") for i in range(7)])
    assert base.copy_sqlite_records(db, 30) == 30
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT msg_id FROM tasks")]
    assert len(set(ids)) == 30


def test_serve_answers_unknown_unsupported_and_failing_calls():
    class Failing(base.System):
        def map_noop(self, n_tasks, timeout):
            raise base.BenchError("lost replies")

    system = Failing()
    assert "error" in serve.answer(system, {"method": "__init__"})
    assert "unsupported" in serve.answer(system, {"method": "latency", "kwargs":
                                                  {"kind": "lb", "count": 1, "timeout": 1}})
    assert serve.answer(system, {"method": "map_noop", "kwargs": {"n_tasks": 1, "timeout": 1}}
                        ) == {"error": "lost replies"}


def test_a_tiny_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "latency", "--repeats", "1",
         "--systems", "taskhub,pool,zmq-floor", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "taskhub/peer" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["system"] for r in rows} == {"taskhub", "pool", "zmq-floor"}
    assert all(r["error"] in (None, "n/a") for r in rows), [r["error"] for r in rows]


def test_cpu_per_task_measures_every_process():
    from bench.cpu_per_task import measure
    r = measure(tasks=20, repeat=2, db="memory")
    assert 0 < r["wall_best"] <= r["wall_median"]
    # CPU comes in clock ticks (10 ms): a tiny run may round a process down to none
    assert set(r) == {"wall_median", "wall_best", "controller", "engines", "client"}
    assert min(r["controller"], r["engines"], r["client"]) >= 0


def test_ipython_engines_measures_both_rows():
    pytest.importorskip("IPython", reason="IPython is in the test extra")
    from bench.ipython_engines import measure
    started, first_execute, plain, shell = measure(tasks=20, repeat=1)
    assert started > 0 and first_execute > 0
    assert plain["rss"] > 0 and shell["rss"] > 0 and plain["rate"] > 0 and shell["rate"] > 0
