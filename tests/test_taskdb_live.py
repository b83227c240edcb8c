"""The task DB through a live cluster: every backend, restarts, and the old IPython docs."""
import uuid
from datetime import datetime, timedelta

import pytest
from conftest import LoopbackCluster

from taskhub.error import NoTaskDB, QueryError


def double(x):
    return 2 * x


def test_the_ipython_task_db_guide_examples(cluster, rc):
    """Every example query of the old IPython task-DB guide, as written there."""
    rc.load_balanced_view().map_sync(double, range(6))
    rc[:].apply_sync(double, 1)
    with pytest.raises(QueryError, match="unknown TaskRecord key 'complete'.*'completed'"):
        rc.db_query({'complete': None}, keys=['msg_id', 'started'])
    incomplete = rc.db_query({'completed': None}, keys=['msg_id', 'started'])
    assert all(set(r) == {'msg_id', 'started'} for r in incomplete)

    hourago = datetime.now() - timedelta(1. / 24)
    recent = rc.db_query({'started': {'$gte': hourago}, 'client_uuid': rc.session.session})
    assert len(recent) == 8 and all(r['client_uuid'] == rc.session.session for r in recent)
    older = rc.db_query({'started': {'$le': hourago},
                         'client_uuid': {'$ne': rc.session.session}})
    assert older == []

    uuids = map(rc._engines.get, (0, 1))
    hist = rc.db_query({'engine_uuid': {'$in': uuids}}, keys='result_header')
    assert len(hist) >= 8 and all(r['result_header']['msg_type'] == 'apply_reply'
                                  for r in hist if r['result_header'])


def test_a_later_client_sees_an_earlier_clients_history_and_results(cluster):
    with cluster.client() as first:
        ar = first.load_balanced_view().map_async(double, range(3))
        assert ar.get(10) == [0, 2, 4]
        first_session = first.session.session
    with cluster.client() as second:
        assert second.get_result(ar.msg_ids).get(10) == [[0], [2], [4]]
        mine = second.db_query({'client_uuid': first_session}, keys=['msg_id'])
        assert [r['msg_id'] for r in mine] == ar.msg_ids
        assert set(ar.msg_ids) <= set(second.hub_history())


@pytest.fixture(params=["sqlite", "mongodb"])
def durable(request, tmp_path):
    if request.param == "mongodb":
        url = request.getfixturevalue("mongod_url")
        return {"db": "mongodb", "db_options": {
            "url": url, "collection": f"tasks_{uuid.uuid4().hex[:8]}"}}
    return {"db": "sqlite"}


def test_a_restarted_controller_sees_the_previous_history(tmp_path, durable):
    profile = tmp_path / "profile"
    first = LoopbackCluster(profile, n=1, **durable).start()
    try:
        with first.client() as rc:
            ar = rc.load_balanced_view().apply_async(lambda: print("before") or 41)
            assert ar.get(10) == 41
    finally:
        first.stop()
    second = LoopbackCluster(profile, n=1, **durable).start()
    try:
        with second.client() as rc:
            [rec] = rc.db_query({'msg_id': ar.msg_ids[0]}, keys=['stdout', 'completed'])
            assert rec['stdout'] == "before\n" and rec['completed'] is not None
            assert rc.get_result(ar.msg_ids[0]).get(10) == 41
            assert rc.resubmit(ar.msg_ids[0]).get(10) == 41
            assert len(rc.hub_history()) == 2
    finally:
        second.stop()


def test_the_memory_backend_records_tasks(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1, db="memory").start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().map_async(double, range(4))
            ar.get(10)
            assert len(rc.db_query({'completed': {'$ne': None}}, keys='msg_id')) == 4
    finally:
        c.stop()


def test_without_a_task_db_tasks_run_and_reads_say_why_they_fail(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1, db="none").start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().apply_async(double, 4)
            assert ar.get(10) == 8
            with pytest.raises(NoTaskDB, match="without a task database"):
                rc.db_query({})
            with pytest.raises(NoTaskDB):
                rc.hub_history()
            assert rc.load_balanced_view().apply_sync(double, 5) == 10
    finally:
        c.stop()


def test_query_values_that_cannot_travel_are_a_client_side_error(rc):
    with pytest.raises(TypeError, match="cannot be sent in a message"):
        rc.db_query({'engine_id': {'$in': [object()]}})


def _slow_now_and_then(i):
    import time
    time.sleep(0.3 if i % 500 == 0 else 0)
    return i


@pytest.fixture(params=["memory", "sqlite", "mongodb"])
def any_db(request):
    if request.param == "mongodb":
        return {"db": "mongodb", "db_options": {
            "url": request.getfixturevalue("mongod_url"),
            "collection": f"tasks_{uuid.uuid4().hex[:8]}"}}
    return {"db": request.param}


def test_history_and_sorted_queries_keep_submission_order(tmp_path, any_db):
    """5,000 tasks in one burst, a few of them slow, so their records are written after
    later ones: history and sort by submission still follow the order they were sent in
    (on MongoDB too, whose dates hold milliseconds and so tie)."""
    c = LoopbackCluster(tmp_path / "p", n=2, **any_db).start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().map_async(_slow_now_and_then, range(5000))
            assert ar.get(120) == list(range(5000))
            assert rc.hub_history() == ar.msg_ids
            by_submitted = rc.db_query({}, keys=["msg_id"], sort="submitted")
            assert [r["msg_id"] for r in by_submitted] == ar.msg_ids
            newest_first = rc.db_query({}, keys=["msg_id"], sort=[("submitted", -1)],
                                       limit=10)
            assert [r["msg_id"] for r in newest_first] == ar.msg_ids[::-1][:10]
    finally:
        c.stop()


def _megabyte(i):
    return bytes([i % 256]) * 2**20


def _db_bytes(profile):
    return sum(f.stat().st_size for f in profile.glob("tasks.db*"))


def test_purging_gives_the_space_back_while_tasks_run(tmp_path):
    """200 results of 1 MB, then purge_results('all'): the file and its log shrink below
    half their size without a restart, while the cluster keeps running tasks."""
    c = LoopbackCluster(tmp_path / "p", n=2).start()
    try:
        with c.client() as rc:
            view = rc.load_balanced_view()
            assert len(view.map_sync(_megabyte, range(200))) == 200
            rc.db_count({})  # flushes the records to the file
            full = _db_bytes(c.profile_dir)
            assert full > 200 * 2**20
            assert rc.purge_results("all") == 200
            ran = 0
            while _db_bytes(c.profile_dir) >= full / 2:
                assert view.apply_sync(double, ran) == 2 * ran  # the cluster keeps serving
                ran += 1
                assert ran < 3000, f"still {_db_bytes(c.profile_dir)} bytes of {full}"
            assert rc.db_count({}) == ran
    finally:
        c.stop()
