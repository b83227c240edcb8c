"""Honest task states (taskhub/taskstatus.py): pending → queued → running → final, seen
through db_query while tasks wait and run, on every task-DB backend that runs here."""
import os
import time
import uuid

import pytest
from conftest import LoopbackCluster

from taskhub import taskstatus
from taskhub.error import QueryError


def wait_for_file(path, timeout=60):
    import os
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture(params=["memory", "sqlite", "mongodb"])
def backend(request):
    if request.param == "mongodb":
        url = request.getfixturevalue("mongod_url")
        return {"db": "mongodb", "db_options": {
            "url": url, "collection": f"tasks_{uuid.uuid4().hex[:8]}"}}
    return {"db": request.param}


def record(rc, msg_id):
    """The task's record; all None until the hub has it (a query may overtake the request,
    which goes on another socket)."""
    found = rc.db_query({"msg_id": msg_id}, keys=["status", "started", "completed"])
    assert len(found) <= 1
    return found[0] if found else {"status": None, "started": None, "completed": None}


@pytest.mark.parametrize("prefetch", ["eager", "adaptive"])
def test_db_query_shows_what_runs_what_waits_and_how_it_ended(tmp_path, backend, prefetch):
    c = LoopbackCluster(tmp_path / "p", n=1, prefetch=prefetch, **backend).start()
    gate = str(tmp_path / "gate")
    try:
        with c.client() as rc:
            view = rc.load_balanced_view()
            running = view.apply_async(wait_for_file, gate)
            behind = view.apply_async(wait_for_file, gate)
            rec = until(lambda: (r := record(rc, running.msg_ids[0]))["status"] == "running"
                        and r)
            assert rec["started"] is not None and rec["completed"] is None
            found = rc.db_query({"completed": None, "started": {"$ne": None}}, keys=["msg_id"])
            assert [r["msg_id"] for r in found] == running.msg_ids
            waiting = record(rc, behind.msg_ids[0])
            # eager sends it to the engine at once; adaptive keeps it at the hub while the
            # only engine is busy
            assert waiting["status"] == ("queued" if prefetch == "eager" else "pending")
            assert waiting["started"] is None and waiting["completed"] is None
            assert rc.db_query({"status": "running"}, keys=["msg_id"])[0]["msg_id"] == \
                running.msg_ids[0]
            open(gate, "w").close()
            assert running.get(30) is True and behind.get(30) is True
            failing = view.apply_async(lambda: 1 / 0)
            with pytest.raises(Exception):
                failing.get(30)
            statuses = {r["msg_id"]: r["status"] for r in rc.db_query(
                {"msg_id": {"$in": running.msg_ids + behind.msg_ids + failing.msg_ids}},
                keys=["status"])}
            assert statuses == {running.msg_ids[0]: "ok", behind.msg_ids[0]: "ok",
                                failing.msg_ids[0]: "error"}
            assert {r["msg_id"] for r in rc.db_query({"status": {"$in": ["ok", "error"]}},
                                                     keys=["msg_id"])} >= set(statuses)
    finally:
        c.stop()


def test_an_unknown_status_is_an_error_naming_the_valid_ones(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1).start()
    try:
        with c.client() as rc:
            for query in ({"status": "failed"}, {"status": {"$in": ["ok", "failed"]}},
                          {"$or": [{"status": "done"}]}):
                with pytest.raises(QueryError, match="pending, queued, running, ok, error, "
                                                     "aborted, lost"):
                    rc.db_query(query)
            assert rc.db_query({"status": {"$in": list(taskstatus.STATUSES)}}) == []
            assert rc.load_balanced_view().apply_sync(os.getpid) > 0  # still serving
    finally:
        c.stop()


def test_final_status_names_aborted_and_lost():
    assert taskstatus.final_status({"status": "ok"}) == "ok"
    assert taskstatus.final_status({"status": "error", "ename": "TaskAborted"}) == "aborted"
    assert taskstatus.final_status({"status": "error", "ename": "TaskLost"}) == "lost"
    assert taskstatus.final_status({"status": "error", "ename": "ValueError"}) == "error"
