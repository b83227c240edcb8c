"""Retention (taskhub.controller.retention) on every backend: each bound culls the oldest
finished records beyond it — or only their buffers — and never a task that has not
finished."""
from datetime import datetime, timedelta, timezone

import pytest
from test_db import db  # noqa: F401  (the fixture: a fresh DB of each backend)

from taskhub.controller.retention import Retention

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def fill(db, finished=10, running=2, size=1000):
    """`finished` records, one minute apart (t0 oldest), each with `size` bytes of
    arguments and of results, then `running` unfinished ones."""
    records = [{"msg_id": f"t{i}", "submitted": NOW - timedelta(minutes=60 - i),
                "completed": NOW - timedelta(minutes=59 - i), "buffers": [b"a" * size],
                "result_buffers": [b"r" * size], "status": "ok"} for i in range(finished)]
    records += [{"msg_id": f"r{i}", "submitted": NOW - timedelta(minutes=30 - i),
                 "buffers": [b"a" * size]} for i in range(running)]
    db.add_records(records)
    db.commit()


def left(db):
    return [r["msg_id"] for r in db.find_records({}, ["msg_id"])]


def with_buffers(db):
    return [r["msg_id"] for r in db.find_records({}, ["msg_id", "buffers", "result_buffers"])
            if r["buffers"] or r["result_buffers"]]


def test_by_number_drops_the_oldest_finished(db):
    fill(db)
    assert Retention(max_records=4).cull(db, NOW) == 6
    assert left(db) == ["t6", "t7", "t8", "t9", "r0", "r1"]
    assert Retention(max_records=4).cull(db, NOW) == 0


def test_by_age_drops_what_finished_before_the_bound(db):
    fill(db)
    # t_i completed 59 - i minutes ago: older than 55 minutes are t0..t3
    assert Retention(max_age=55 * 60).cull(db, NOW) == 4
    assert left(db) == [f"t{i}" for i in range(4, 10)] + ["r0", "r1"]


def test_by_bytes_drops_the_oldest_until_the_rest_fit(db):
    fill(db, size=1000)
    sizes = dict(db.buffer_sizes({}))
    assert set(sizes) == {f"t{i}" for i in range(10)} | {"r0", "r1"}
    per_task = sizes["t0"]
    assert per_task >= 2000
    assert Retention(max_bytes=3 * per_task).cull(db, NOW) == 7  # unfinished ones not weighed
    assert left(db) == ["t7", "t8", "t9", "r0", "r1"]


def test_buffers_only_keeps_the_records(db):
    fill(db)
    assert Retention(max_records=3, what="buffers").cull(db, NOW) == 7
    assert len(left(db)) == 12  # every record is still there
    assert with_buffers(db) == ["t7", "t8", "t9", "r0", "r1"]
    [record] = db.find_records({"msg_id": "t0"}, ["status", "completed"])
    assert record["status"] == "ok" and record["completed"] is not None
    assert Retention(max_records=3, what="buffers").cull(db, NOW) == 0


def test_bounds_combine_and_a_cull_does_at_most_a_batch(db):
    fill(db, finished=10)
    retention = Retention(max_records=8, max_age=57 * 60, batch=1)
    assert retention.cull(db, NOW) == 1  # both bounds choose t0, the oldest
    assert retention.cull(db, NOW) == 1  # t1
    assert retention.cull(db, NOW) == 0  # 8 left; t2 completed 57 minutes ago, not more
    assert left(db)[:2] == ["t2", "t3"]


def test_nothing_unfinished_is_ever_culled(db):
    fill(db, finished=0, running=5)
    assert Retention(max_records=1, max_bytes=1, max_age=1).cull(db, NOW) == 0
    assert len(left(db)) == 5


def test_due_once_per_period():
    retention = Retention(max_records=1, period=10)
    assert [retention.due(t) for t in (0, 5, 10, 11, 20)] == [True, False, True, False, True]
    assert not Retention(period=10).due(0)  # no bound: never due


@pytest.mark.parametrize("options, message", [
    ({"what": "results"}, "'records' or 'buffers'"),
    ({"max_records": -1}, "max_records must be 0"),
])
def test_bad_settings_say_what_is_allowed(options, message):
    with pytest.raises(ValueError, match=message):
        Retention(**options)


def test_a_controller_culls_on_its_schedule_while_tasks_run(tmp_path):
    from conftest import LoopbackCluster, wait_until
    c = LoopbackCluster(tmp_path / "p", n=1,
                        retention=Retention(max_records=5, period=0.2)).start()
    try:
        with c.client() as rc:
            view = rc.load_balanced_view()
            assert view.map_sync(abs, range(-20, 0)) == list(range(20, 0, -1))
            wait_until(lambda: rc.db_count({}) == 5, timeout=30, what="the cull")
            kept = rc.db_query({}, keys=["msg_id"])
            assert [r["msg_id"] for r in kept] == rc.hub_history()[-5:]
            assert view.apply_sync(abs, -1) == 1  # still serving
            newest = rc.hub_history()[-1]
            assert rc.cull_results(max_records=1, what="buffers") == 5
            assert rc.get_result(newest).get(10) == 1  # the newest kept whole
            culled = kept[-1]["msg_id"]
            with pytest.raises(Exception, match="is no longer stored"):
                rc.get_result(culled).get(10)
            with pytest.raises(Exception, match="cannot resubmit .* no longer stored"):
                rc.resubmit(culled)
            [record] = rc.db_query({"msg_id": culled}, keys=["status", "completed"])
            assert record["status"] == "ok" and record["completed"] is not None
            with pytest.raises(Exception, match="give at least one bound"):
                rc.cull_results()
    finally:
        c.stop()


@pytest.mark.parametrize("where", ["task", "cluster"])
def test_unstored_tasks_keep_their_record_but_not_their_data(tmp_path, where):
    from conftest import LoopbackCluster
    options = {"store": False} if where == "cluster" else {}
    c = LoopbackCluster(tmp_path / "p", n=1, **options).start()
    try:
        with c.client() as rc:
            view = rc.load_balanced_view()
            if where == "task":
                view.store = False
            ar = view.apply_async(lambda: print("hello") or 42)
            assert ar.get(10) == 42  # the submitter still gets its result
            [record] = rc.db_query({"msg_id": ar.msg_ids[0]},
                                   keys=["status", "stdout", "buffers", "result_buffers"])
            assert record == {"msg_id": ar.msg_ids[0], "status": "ok", "stdout": "hello\n",
                              "buffers": None, "result_buffers": None}
            with pytest.raises(Exception, match="no longer stored"):
                rc.resubmit(ar.msg_ids[0])
            if where == "task":
                view.store = True
                kept = view.apply_async(abs, -3)
                assert kept.get(10) == 3 and rc.resubmit(kept.msg_ids[0]).get(10) == 3
    finally:
        c.stop()
