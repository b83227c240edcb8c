"""Tier 2: a real controller (in-process thread) and real engine processes on 127.0.0.1."""
import asyncio
import concurrent.futures
import os
from datetime import datetime, timedelta, timezone

import pytest
from conftest import wait_for_file, wait_until

from taskhub.client import AsyncResult, Client
from taskhub.error import (CompositeError, ConnectionFileError, QueryError, RemoteError,
                           TimeoutError, UnknownTaskError)


def square(x):
    return x * x


def test_load_balanced_map_is_ordered_and_recorded(rc):
    lview = rc.load_balanced_view()
    assert lview.map_sync(lambda x: x * x, range(200)) == [x * x for x in range(200)]
    ar = lview.map_async(square, range(50), chunksize=7)
    assert ar.get(30) == [x * x for x in range(50)]
    assert len(ar.msg_ids) == 8 and len(ar) == 50
    records = rc.db_query({"msg_id": {"$in": ar.msg_ids}},
                          keys=["engine_uuid", "submitted", "started", "completed"])
    assert len(records) == 8
    for rec in records:
        assert rec["engine_uuid"] and rec["submitted"] <= rec["completed"]
        assert rec["started"].tzinfo is not None


def test_map_with_several_sequences_and_iteration(rc):
    lview = rc.load_balanced_view()
    ar = lview.map(lambda a, b: a + b, [1, 2, 3], (10, 20, 30), block=False)
    assert list(ar) == [11, 22, 33]
    assert ar.successful() and ar.ready()


def test_apply_results_and_metadata(rc):
    lview = rc.load_balanced_view()
    assert lview.apply_sync(pow, 2, 10) == 1024
    ar = lview.apply_async(lambda: print("hello from a task") or os.getpid())
    pid = ar.get(10)
    assert pid != os.getpid()
    assert isinstance(ar, concurrent.futures.Future) and isinstance(ar, AsyncResult)
    assert ar.stdout == "hello from a task\n"
    assert ar.engine_id in rc.ids and ar.status == "ok"
    assert ar.started <= ar.completed
    [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["stdout", "engine_id"])
    assert rec["stdout"] == "hello from a task\n" and rec["engine_id"] == ar.engine_id


def test_remote_error_carries_engine_name_value_and_traceback(rc):
    def fails():
        raise KeyError("missing-thing")

    ar = rc.load_balanced_view().apply_async(fails)
    with pytest.raises(RemoteError) as info:
        ar.get(10)
    err = info.value
    assert err.ename == "KeyError" and "missing-thing" in err.evalue
    assert err.engine_id in rc.ids and err.task == ar.msg_ids[0]
    assert "in fails" in err.traceback and "KeyError" in err.traceback
    [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["error", "status"])
    assert rec["status"] == "error" and rec["error"]["ename"] == "KeyError"


def test_a_failing_map_chunk_raises_composite_error(rc):
    ar = rc.load_balanced_view().map_async(lambda x: 1 / x, [1, 0, 2, 0])
    with pytest.raises(CompositeError) as info:
        ar.get(10)
    assert len(info.value.errors) == 2
    assert all(e.ename == "ZeroDivisionError" for e in info.value.errors)


def test_futures_work_with_stdlib_wait_and_asyncio(rc):
    lview = rc.load_balanced_view()
    futures = [lview.apply_async(square, i) for i in range(5)]
    done, _ = concurrent.futures.wait(futures, timeout=10)
    assert len(done) == 5

    async def main():
        return await lview.apply_async(square, 7)

    assert asyncio.run(main()) == 49


def test_direct_view_namespace_operations(rc):
    dview = rc[:]
    assert sorted(dview.apply_sync(os.getpid)) == sorted(set(dview.apply_sync(os.getpid)))
    dview.push({"a": 5}, block=True)
    assert dview.pull("a", block=True) == [5, 5]
    dview.execute("b = a * 2", block=True)
    assert rc[rc.ids[0]]["b"] == 10
    rc[rc.ids[1]]["c"] = "set"
    assert rc[rc.ids[1]]["c"] == "set"
    dview.scatter("part", list(range(11)), block=True)
    assert dview.gather("part", block=True) == list(range(11))
    assert dview.map_sync(square, range(9)) == [x * x for x in range(9)]
    # ipyparallel's lazy "all": the view uses whichever engines are registered when it runs
    assert rc.direct_view().targets == "all" and len(rc.direct_view()) == len(rc.ids)


def test_pulling_an_undefined_name_is_a_remote_name_error(rc):
    with pytest.raises(CompositeError) as info:
        rc[:].pull("never_defined", block=True)
    assert {e.ename for e in info.value.errors} == {"NameError"}


def test_bad_input_raises_at_once(rc):
    lview = rc.load_balanced_view()
    with pytest.raises(TypeError, match="apply expects a callable.*int"):
        lview.apply(5)
    with pytest.raises(TypeError, match="map expects a callable"):
        lview.map("nope", [1])
    with pytest.raises(TypeError, match="must be iterable"):
        lview.map(square, 5)
    with pytest.raises(ValueError, match="chunksize"):
        lview.map(square, [1], chunksize=0)
    with pytest.raises(IndexError, match=r"no engine with id 99; registered ids: \[0, 1\]"):
        rc[99]
    with pytest.raises(IndexError, match="no engine with id 99"):
        rc.load_balanced_view(targets=[99])
    with pytest.raises(TypeError, match="indexed by int"):
        rc["zero"]
    with pytest.raises(TypeError, match="execute expects a string"):
        rc[:].execute(42)
    with pytest.raises(TypeError, match="query must be a dict"):
        rc.db_query("completed")
    with pytest.raises(TypeError, match="get_result takes"):
        rc.get_result([1, 2])


def test_bad_queries_are_clear_errors_and_the_hub_keeps_serving(rc):
    with pytest.raises(QueryError, match="did you mean 'completed'"):
        rc.db_query({"complete": None})
    with pytest.raises(QueryError, match=r"\$foo"):
        rc.db_query({"completed": {"$foo": 1}})
    assert rc.load_balanced_view().apply_sync(square, 3) == 9


def test_db_query_with_datetimes_and_buffers(rc):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    ar = rc.load_balanced_view().apply_async(square, 12)
    ar.get(10)
    records = rc.db_query({"submitted": {"$gte": before}, "msg_id": ar.msg_ids[0]},
                          keys=["msg_id", "result_buffers"])
    assert len(records) == 1 and records[0]["result_buffers"]
    assert "buffers" not in records[0]
    assert ar.msg_ids[0] in rc.hub_history()


def test_db_query_rows_give_what_the_earlier_reply_form_gave(rc):
    """Rows (what db_query asks for) against record dicts (what a request without `rows`
    still gets, for earlier clients): the same records, every key type exactly."""
    from taskhub.controller.db import TASK_RECORD_KEYS
    from taskhub.controller.db.query import projection
    from taskhub.jsonutil import dates_in_record
    lview = rc.load_balanced_view()
    lview.map_sync(square, range(5))
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        lview.apply_sync(lambda: 1 / 0)
    for keys, page in [(None, {}), (list(TASK_RECORD_KEYS), {}),
                       (["result_buffers", "completed", "error"], {"sort": "-completed",
                                                                   "limit": 3, "skip": 1})]:
        query = {"client_uuid": rc.session.session}
        content = rc._hub_request("db_request", {"query": query, "keys": keys, **page})
        assert "rows" not in content
        buffers, lens = iter(content["_buffers"]), iter(content["buffer_lens"])
        earlier = []
        for record in content["records"]:
            for key, n in (next(lens), next(lens)):
                if n is not None:
                    record[key] = [bytes(next(buffers)) for _ in range(n)]
            earlier.append(dates_in_record(record))
        records = rc.db_query(query, keys=keys, **page)
        assert records == earlier
        assert all(list(r) == list(projection(keys)) for r in records)  # as find_records
        assert all(r["completed"].utcoffset() == timedelta(0) for r in records)
        if keys == list(TASK_RECORD_KEYS):
            assert any(r["error"] for r in records) and any(r["buffers"] for r in records)
    with pytest.raises(QueryError, match="needs a datetime, not str"):
        rc.db_query({"completed": {"$lt": "yesterday"}})


def test_db_query_rows_come_in_many_replies_and_a_late_refusal_ends_them(cluster, rc,
                                                                         monkeypatch):
    from taskhub.controller import queries
    rc.load_balanced_view().map_sync(square, range(7))
    query, keys = {"client_uuid": rc.session.session}, ["completed", "result_buffers"]
    whole = rc.db_query(query, keys=keys)
    monkeypatch.setattr(queries, "ROWS_PER_REPLY", 2)
    assert rc.db_query(query, keys=keys) == whole and len(whole) == 7
    assert rc.db_query({"label": "no such label"}) == []

    # an idle DB worker gives a query to its first reader (dbworker.py)
    db = cluster.controller.dbworker.reader_db
    def failing(*args, **kwargs):
        chunks = iter(type(db).find_rows(db, *args, **kwargs))
        yield next(chunks)
        raise ValueError("the task DB failed half-way")
    monkeypatch.setattr(db, "find_rows", failing)
    with pytest.raises(ValueError, match="failed half-way"):
        rc.db_query(query, keys=keys)
    assert not rc._partial
    monkeypatch.undo()
    assert rc.db_query(query, keys=keys) == whole


def test_get_result_from_another_client_and_resubmit(cluster, rc):
    ar = rc.load_balanced_view().apply_async(square, 6)
    ar.get(10)
    with cluster.client() as other:
        assert other.get_result(ar.msg_ids[0]).get(10) == 36
        again = other.resubmit(ar.msg_ids[0])
        assert again.get(10) == 36 and again.msg_ids != ar.msg_ids
    [old] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["resubmitted"])
    assert old["resubmitted"] == again.msg_ids[0]


def test_get_result_of_a_pending_task_resolves_when_it_finishes(cluster, rc, tmp_path):
    gate = tmp_path / "gate"
    ar = rc.load_balanced_view().apply_async(wait_for_file, str(gate))
    wait_until(lambda: ar.msg_ids[0] in rc.hub_history(), what="the hub to record the task")
    with cluster.client() as other:
        hub_ar = other.get_result(ar.msg_ids[0])
        assert not hub_ar.done()  # asked while the task was pending
        gate.touch()
        assert hub_ar.get(10) == ar.get(10)


def test_unknown_ids_are_clear_errors(rc):
    with pytest.raises(UnknownTaskError, match="no-such-id"):
        rc.get_result("no-such-id")
    with pytest.raises(UnknownTaskError, match="no-such-id"):
        rc.resubmit(["no-such-id"])


def test_a_unique_msg_id_prefix_names_its_task_as_in_git(rc):
    ar = rc.load_balanced_view().map_async(square, range(17), chunksize=1)
    ar.get(10)
    first = ar.msg_ids[0]
    assert len({m[:8] for m in ar.msg_ids}) == 17  # the short forms tell tasks apart
    hub_ar = rc.get_result(first[:8])
    assert hub_ar.msg_ids == [first] and hub_ar.get(10) == [0]
    again = rc.resubmit(first[:8])
    assert again.get(10) == [0] and again.msg_ids[0] != first
    # 17 ids over 16 hex digits: two share their first digit
    digit = next(m[0] for m in ar.msg_ids if sum(o[0] == m[0] for o in ar.msg_ids) > 1)
    with pytest.raises(ValueError, match=f"msg_id prefix '{digit}' is ambiguous: it starts "
                                         f"{digit}[0-9a-f]{{31}}, {digit}"):
        rc.get_result(digit)
    with pytest.raises(UnknownTaskError, match="no task in the task database has a msg_id "
                                               "that is or starts with 'zz9'"):
        rc.resubmit("zz9")
    assert rc.result_status(first[:8])["completed"] == [first]
    assert rc.purge_results(ar.msg_ids[1][:8]) == 1


def test_the_demo_history_table_shows_short_ids_that_differ(rc, capsys):
    from taskhub import demo
    rc.load_balanced_view().map_sync(square, range(6), chunksize=1)
    demo.show_history(rc)
    demo.resubmit_one(rc)
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("msg_id"))) + 1:][:6]
    assert len({row.split()[0] for row in table}) == 6
    assert any(ln.startswith("== 5. Run a recorded task again: rc.resubmit('") for ln in lines)


def test_resubmitting_a_running_task_is_refused(rc, tmp_path):
    gate = tmp_path / "gate"
    ar = rc.load_balanced_view().apply_async(wait_for_file, str(gate))
    wait_until(lambda: ar.msg_ids[0] in rc.hub_history(), what="the hub to record the task")
    with pytest.raises(ValueError, match="not finished"):
        rc.resubmit(ar.msg_ids)
    gate.touch()
    ar.get(10)


def test_timeout_on_get(rc, tmp_path):
    gate = tmp_path / "gate"
    ar = rc.load_balanced_view().apply_async(wait_for_file, str(gate))
    with pytest.raises(TimeoutError, match="0 of 1 tasks done"):
        ar.get(0.01)
    assert not ar.wait(0.01)
    gate.touch()
    assert ar.wait(10)


def test_queue_status_and_wait(rc):
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(square, i) for i in range(10)]
    assert rc.wait(ars, timeout=10)
    status = rc.queue_status()
    assert set(status) == {*rc.ids, "unassigned"}
    assert all(status[i]["queue"] == 0 for i in rc.ids)


def test_connection_file_errors(tmp_path):
    with pytest.raises(ConnectionFileError, match="no connection file at .*is a cluster running"):
        Client(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConnectionFileError, match="not a taskhub connection file"):
        Client(bad)
    unreadable = tmp_path / "dir.json"
    unreadable.mkdir()
    with pytest.raises(ConnectionFileError, match="cannot read connection file"):
        Client(unreadable)
    with pytest.raises(ConnectionFileError):
        Client(profile="no-such-profile")


def test_a_controller_that_never_answers_times_out(tmp_path):
    import json
    import socket
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = {"ip": "127.0.0.1", "key": "k", "ports": {n: port for n in (
        "query", "task", "mux", "control", "iopub", "notification")}}
    (tmp_path / "c.json").write_text(json.dumps(info))
    (tmp_path / "c.json").chmod(0o600)  # a wider one is warned about (test_security_files)
    with pytest.raises(TimeoutError, match="no answer from the controller"):
        Client(tmp_path / "c.json", timeout=0.3)


def test_result_status_and_queue_status_verbose(rc, tmp_path):
    gate = tmp_path / "gate"
    lview = rc.load_balanced_view()
    done = lview.apply_async(square, 4)
    done.get(10)
    slow = lview.apply_async(wait_for_file, str(gate))
    wait_until(lambda: slow.msg_ids[0] in rc.hub_history(), what="the hub to see the task")
    status = rc.result_status(done.msg_ids + slow.msg_ids)
    assert status == {"pending": slow.msg_ids, "completed": done.msg_ids}
    full = rc.result_status(done.msg_ids, status_only=False)
    assert full[done.msg_ids[0]] == 16
    verbose = rc.queue_status(verbose=True)
    engine = next(i for i in rc.ids if slow.msg_ids[0] in verbose[i]["tasks"])
    assert done.msg_ids[0] in verbose[done.engine_id]["completed"]
    assert rc.queue_status(targets=engine)["tasks"] == 1
    gate.touch()
    slow.get(10)
    with pytest.raises(UnknownTaskError, match="nope"):
        rc.result_status(["nope"])
    with pytest.raises(IndexError, match="no engine with id 42"):
        rc.queue_status(targets=[42])


def test_purge_results(rc):
    lview = rc.load_balanced_view()
    ar = lview.map_async(square, range(4))
    ar.get(10)
    assert rc.purge_results(jobs=ar.msg_ids[:2]) == 2
    left = rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"])
    assert [r["msg_id"] for r in left] == ar.msg_ids[2:]
    with pytest.raises(UnknownTaskError):
        rc.get_result(ar.msg_ids[0])
    assert rc.purge_results(targets=rc.ids) >= 2
    assert rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"]) == []
    with pytest.raises(TypeError, match="purge_results takes"):
        rc.purge_results(jobs=[3])


def test_a_map_larger_than_zmq_queues_loses_nothing(rc):
    """Regression: zmq's default high-water mark (1000) made the controller drop tasks."""
    ar = rc.load_balanced_view().map_async(abs, range(-3000, 0))
    assert ar.get(60) == list(range(3000, 0, -1))


def test_the_hub_refuses_malformed_requests_and_keeps_serving(rc):
    with pytest.raises(QueryError, match="a query must be a dict, not list"):
        rc._hub_request("db_request", {"query": [1, 2], "keys": None})
    with pytest.raises(TypeError, match="msg_ids must be a list of strings"):
        rc._hub_request("result_request", {"msg_ids": "abc"})
    with pytest.raises(QueryError):
        rc._hub_request("db_request", {"query": {}, "keys": [3]})
    with pytest.raises(Exception, match="unknown request 'frobnicate_request'"):
        rc._hub_request("frobnicate_request", {})
    assert rc.load_balanced_view().apply_sync(square, 2) == 4


def test_requests_naming_a_task_sent_right_after_it_never_overtake_it(rc):
    """An abort, status or resubmission sent at once after a task used to race it."""
    from taskhub.error import TaskAborted
    lview = rc.load_balanced_view()
    for _ in range(30):
        ar = lview.apply_async(abs, -1)
        assert set(rc.result_status(ar.msg_ids)) == {"pending", "completed"}
        rc.abort(ar)
        try:
            assert ar.get(10) == 1
        except TaskAborted:
            pass


def second_waits(started, release, x):
    """x = 0 answers at once; x = 1 marks `started`, then waits (≤ 30 s) for `release`."""
    import time
    from pathlib import Path
    if x:
        Path(started).touch()
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    return x


def test_a_reply_held_for_a_batch_goes_out_while_the_task_behind_it_runs(rc, tmp_path):
    """Both tasks reach the engine together: the first one's reply waits for others to join
    it only while the second is queued, and goes out (from the engine's IO thread) while the
    second runs, however long that takes."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    lview = rc.load_balanced_view(targets=rc.ids[0])
    ar = lview.map_async(second_waits, [started] * 2, [release] * 2, [0, 1], chunksize=1)
    try:
        wait_until(lambda: os.path.exists(started), 30, what="the second task to start")
        wait_until(lambda: ar.progress == 1, 10, what="the first reply")
        assert not ar.ready()
    finally:
        open(release, "w").close()
    assert ar.get(30) == [0, 1]
