"""What bounds the controller's memory: the loop's byte budget per socket and turn, the
engine sockets' receive high-water mark, giving freed memory back when idle, the outcomes
the scheduler remembers, and the SQLite write-ahead log. These tests check that nothing is
lost or starved by them; none measures memory or time."""
import contextlib
import os
import sqlite3

import zmq
from conftest import LoopbackCluster, wait_until

from taskhub.controller import controller as controller_module
from taskhub.controller import malloc
from taskhub.controller.controller import Controller
from taskhub.controller.db import make_db
from taskhub.controller.db import sqlite as sqlite_db
from taskhub.controller.scheduler import (Dep, EngineUp, Outcome, SchedulerState, SendTask,
                                          TaskFinished, TaskSubmitted)
from taskhub.session import Session, new_key

KB = 1000


def _inproc_pair(ctx, name):
    """A PUSH/PULL pair over inproc: what is sent is in the PULL socket when send returns."""
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"inproc://{name}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"inproc://{name}")
    return push, pull


def _bare_controller():
    return Controller(Session(new_key()), make_db("none"))


def test_drain_stops_at_the_byte_budget_and_the_rest_waits(monkeypatch):
    monkeypatch.setattr(controller_module, "MAX_BYTES_PER_TURN", 250 * KB)
    controller, ctx = _bare_controller(), zmq.Context()
    push, pull = _inproc_pair(ctx, "budget")
    try:
        for i in range(10):
            push.send_multipart([str(i).encode(), bytes(100 * KB)])
        got, per_drain = [], []
        while len(got) < 10:
            before = len(got)
            controller._drain(pull, lambda frames: got.append(int(frames[0])))
            per_drain.append(len(got) - before)
        # a drain reads until the budget is reached: 3 × 100 KB frames, then the next turn
        assert per_drain == [3, 3, 3, 1]
        assert got == list(range(10))  # every message, in order
        assert controller._taken_in == 10 * (100 * KB + 1)
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


def test_drain_reads_one_message_bigger_than_the_whole_budget(monkeypatch):
    monkeypatch.setattr(controller_module, "MAX_BYTES_PER_TURN", 10 * KB)
    controller, ctx = _bare_controller(), zmq.Context()
    push, pull = _inproc_pair(ctx, "one-big")
    try:
        for i in range(3):
            push.send_multipart([str(i).encode(), bytes(100 * KB)])
        got = []
        for _ in range(3):
            controller._drain(pull, lambda frames: got.append(int(frames[0])))
        assert got == [0, 1, 2]  # one per drain: a socket is never starved by the budget
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


def test_drain_still_counts_messages(monkeypatch):
    """Small messages: the message limit, not the byte budget, ends a drain."""
    monkeypatch.setattr(controller_module, "MAX_PER_TURN", 4)
    controller, ctx = _bare_controller(), zmq.Context()
    push, pull = _inproc_pair(ctx, "count")
    try:
        for i in range(6):
            push.send(b"x")
        got = []
        controller._drain(pull, got.append)
        assert len(got) == 4
        controller._drain(pull, got.append)
        assert len(got) == 6
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


def test_a_burst_bigger_than_the_budget_is_all_delivered_and_recorded(tmp_path, monkeypatch):
    """Results of 20 × the byte budget (and far more than the engine sockets' high-water
    mark lets wait in the controller): every one reaches the client and the task DB."""
    monkeypatch.setattr(controller_module, "MAX_BYTES_PER_TURN", 256 * KB)
    monkeypatch.setattr(controller_module, "ENGINE_RCVHWM", 2)
    cluster = LoopbackCluster(tmp_path / "p", n=2, heartbeat_period=0.2,
                              heartbeat_misses=25).start()
    try:
        assert cluster.controller.sockets["e_task"].rcvhwm == 2
        assert cluster.controller.sockets["e_mux"].rcvhwm == 2
        with cluster.client() as rc:
            n, size = 50, 100 * KB
            ar = rc.load_balanced_view().map_async(lambda i, size: bytes([i]) * size,
                                                   range(n), [size] * n, chunksize=1)
            results = ar.get(120)
            assert [r[:1] for r in results] == [bytes([i]) for i in range(n)]
            assert all(len(r) == size for r in results)
            direct = [rc[0].apply_async(lambda i: bytes([i]) * 100_000, i) for i in range(20)]
            assert [d.get(120)[:1] for d in direct] == [bytes([i]) for i in range(20)]
            records = rc.db_query({"msg_id": {"$in": ar.msg_ids}},
                                  keys=["msg_id", "status", "result_buffers"])
            assert len(records) == n
            assert all(r["status"] == "ok" and r["result_buffers"] for r in records)
    finally:
        cluster.stop()


def test_an_idle_loop_gives_memory_back_after_a_busy_spell(tmp_path, monkeypatch):
    released = []
    monkeypatch.setattr(controller_module, "RELEASE_AFTER", 1000 * KB)
    monkeypatch.setattr(malloc, "release", lambda: released.append(1) or True)
    cluster = LoopbackCluster(tmp_path / "p", n=1, heartbeat_period=0.2,
                              heartbeat_misses=25).start()
    try:
        with cluster.client() as rc:
            rc.load_balanced_view().map_sync(lambda i: bytes(100_000), range(20))
            wait_until(lambda: released, timeout=30, what="the idle loop to release memory")
            # the count starts again: heartbeats alone are far from another release
            assert cluster.controller._taken_in < 1000 * KB
    finally:
        cluster.stop()


def test_release_is_safe_to_call():
    assert isinstance(malloc.release(), bool)
    assert isinstance(malloc.release(), bool)  # twice: nothing left to give is fine


def test_release_is_a_no_op_without_glibc(monkeypatch):
    def no_glibc(name):
        raise ValueError(name)
    monkeypatch.setattr(malloc.os, "confstr", no_glibc)
    monkeypatch.setattr(malloc, "_libc", None)
    assert malloc.glibc() is None
    assert malloc.release() is False


def test_glibc_is_found_where_there_is_one(monkeypatch):
    monkeypatch.setattr(malloc, "_libc", None)
    try:
        version = malloc.os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        version = None
    libc = malloc.glibc()
    if version and malloc.sys.platform.startswith("linux"):
        assert libc is not None and hasattr(libc, "malloc_trim")
    else:
        assert libc is None


def test_remembered_outcomes_share_one_instance_per_kind():
    """The scheduler remembers the outcomes of 65,536 finished tasks for dependencies: equal
    outcomes are one object (and one engine uuid string), not a copy per task."""
    s = SchedulerState()
    s.handle(EngineUp("a"))
    for i in range(100):
        s.handle(TaskSubmitted(f"t{i}"))
        # a fresh, equal engine string for each reply, as decoding a message makes
        s.handle(TaskFinished(f"t{i}", "".join(["a"]), ok=i % 2 == 0))
    assert len(s.outcomes) == 100
    assert len({id(o) for o in s.outcomes.values()}) == 2
    assert s.outcomes["t0"] == Outcome(True, "a") and s.outcomes["t1"] == Outcome(False, "a")
    # and a dependency on a remembered task is still judged by it
    assert s.handle(TaskSubmitted("t100", after=Dep(frozenset({"t0"})))) == [
        SendTask("t100", "a")]


@contextlib.contextmanager
def _wal_db(tmp_path, rows):
    """(path, writer, checkpointer): a WAL database holding `rows` blobs of 10 kB, all still
    in the log, a connection that wrote them and one to checkpoint with (never waiting)."""
    path = tmp_path / "t.db"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (b BLOB)")
    writer.executemany("INSERT INTO t VALUES (?)", [(bytes(10_000),)] * rows)
    writer.commit()
    conn = sqlite3.connect(path, timeout=0)
    try:
        yield path, writer, conn
    finally:
        conn.close()
        writer.close()


def test_a_big_write_ahead_log_is_emptied_once_copied(tmp_path):
    """Else the log, and the index SQLite maps into the controller's memory beside it, grow
    with everything written while the controller writes without pause."""
    with _wal_db(tmp_path, 100) as (path, writer, conn):
        assert os.path.getsize(f"{path}-wal") > 100 * 10_000
        assert sqlite_db.checkpoint(conn, restart_frames=50) == (0, 0)
        assert os.path.getsize(f"{path}-wal") == 0
        writer.execute("INSERT INTO t VALUES (?)", (b"after",))  # the log starts over
        writer.commit()
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (101,)


def test_a_small_write_ahead_log_is_only_copied(tmp_path):
    with _wal_db(tmp_path, 10) as (_, _, conn):
        log, done = sqlite_db.checkpoint(conn, restart_frames=10_000)
        assert log == done > 0  # all copied (PASSIVE), the log left as it is


def test_the_log_is_not_emptied_under_a_writer_in_a_transaction(tmp_path):
    with _wal_db(tmp_path, 100) as (_, writer, conn):
        writer.execute("INSERT INTO t VALUES (?)", (b"pending",))  # a transaction is open
        log, done = sqlite_db.checkpoint(conn, restart_frames=50)  # gives up, no waiting
        assert log > 0
        writer.commit()
        assert sqlite_db.checkpoint(conn, restart_frames=50) == (0, 0)


def test_sqlite_history_is_the_generic_one_read_as_strings():
    from datetime import datetime, timedelta, timezone

    from taskhub.controller.db.base import TaskDB
    db = sqlite_db.SQLiteDB(":memory:").open()
    try:
        t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        db.add_records([{"msg_id": f"m{i}", "submitted": t0 + timedelta(seconds=(7 * i) % 5)}
                        for i in range(20)] + [{"msg_id": "no-date"}])
        history = db.get_history()
        assert history == TaskDB.get_history(db)  # submission order, ties as inserted
        assert len(history) == 21 and all(type(m) is str for m in history)
    finally:
        db.close()
