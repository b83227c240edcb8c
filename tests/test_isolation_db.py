"""Issue 13, the task DB's part: nothing a query or the DB's disk does stops the cluster.

Each hostile scenario asserts what the user sees, that the controller keeps serving (another
apply answers), that the engines stay registered, and that every result a client received is
in the DB once it works again. Failures are made the way they happen where that works as
root too: a full disk by SQLite's max_page_count, a read-only DB by query_only (root writes
through chmod), a read-only -shm by its mode and by a read-only bind mount over it (which
refuses root too), a deleted file by unlinking it, corruption by overwriting pages."""
import logging
import os
import sqlite3
import subprocess
import threading
import warnings

import pytest
from conftest import LoopbackCluster, wait_for_file, wait_until

from taskhub.controller import app as controller_app
from taskhub.controller.backlog import WriteBacklog, split_oversized
from taskhub.controller.db import make_db
from taskhub.controller.db.memory import MemoryDB
from taskhub.controller.dbworker import DBWorker, QueryTimeout
from taskhub.controller.recentids import RecentIds
from taskhub.error import CorruptTaskDB, QueryError, RemoteError, TaskDBWarning, TaskhubError


def _echo(x):
    return x


@pytest.fixture
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path / "profile", n=2, heartbeat_period=0.2,
                        heartbeat_misses=25).start()
    yield c
    c.stop()


def _on_writer(cluster, sql):
    """Run `sql` on the controller's DB writer connection, in order with its writes."""
    done = []
    cluster.controller.dbworker.on_writer(lambda db: db._conn.execute(sql).fetchall(),
                                          lambda ok, value: done.append((ok, value)))
    wait_until(lambda: done, what=f"the writer ran {sql}")
    assert done[0][0], done[0][1]


def _db_state(rc):
    return rc.stats()["db"]


def _serving(cluster, rc):
    """Another client's apply answers, and both engines are still registered."""
    with cluster.client() as other:
        assert other.load_balanced_view().apply_sync(_echo, "still here") == "still here"
    assert rc.stats()["engines"] == 2


def _in_file(path, msg_ids):
    """The msg_ids among `msg_ids` that a fresh connection finds in the DB file."""
    with make_db("sqlite", filename=str(path)) as db:
        return {r["msg_id"] for r in db.find_records({"msg_id": {"$in": list(msg_ids)}},
                                                     ["msg_id", "result_content"])
                if r["result_content"] is not None}


def _fail_then_recover(cluster, break_sql, fix_sql, expected_error):
    db_file = cluster.profile_dir / "tasks.db"
    with cluster.client() as rc:
        before = rc.load_balanced_view().map_sync(_echo, range(5))
        _on_writer(cluster, break_sql)
        view = rc.load_balanced_view()
        ar = view.map_async(_echo, range(20))
        assert ar.get(30) == list(range(20))  # results are delivered while the DB fails
        wait_until(lambda: _db_state(rc)["db_state"] == "failing", what="db failing")
        assert expected_error in _db_state(rc)["db_error"]
        with pytest.warns(TaskDBWarning, match="cannot be written"):
            rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"])
        _serving(cluster, rc)
        _on_writer(cluster, fix_sql)
        wait_until(lambda: _db_state(rc)["db_state"] == "ok", timeout=20, what="recovered")
        with warnings.catch_warnings():
            warnings.simplefilter("error", TaskDBWarning)
            found = rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["result_content"])
        assert sorted(r["msg_id"] for r in found) == sorted(ar.msg_ids)
        assert all(r["result_content"]["status"] == "ok" for r in found)
        assert before == list(range(5))
    assert _in_file(db_file, ar.msg_ids) == set(ar.msg_ids)


def test_a_full_disk_is_a_state_and_records_are_written_after_it(cluster):
    pages = sqlite3.connect(cluster.profile_dir / "tasks.db").execute(
        "PRAGMA page_count").fetchone()[0]
    _fail_then_recover(cluster, f"PRAGMA max_page_count = {pages}",
                       "PRAGMA max_page_count = 1073741823", "full")


def test_past_the_memory_bound_kept_records_go_to_a_spill_file(tmp_path):
    c = LoopbackCluster(tmp_path / "profile", n=2, heartbeat_period=0.2,
                        heartbeat_misses=25, db_kept_bytes=4000).start()
    try:
        pages = sqlite3.connect(c.profile_dir / "tasks.db").execute(
            "PRAGMA page_count").fetchone()[0]
        with c.client() as rc:
            _on_writer(c, f"PRAGMA max_page_count = {pages}")
            ar = rc.load_balanced_view().map_async(_echo, range(40), chunksize=1)
            assert ar.get(30) == list(range(40))
            # each retry takes the file back in and spills again if it fails: wait for
            # a moment that sees both
            spill = c.profile_dir / "tasks.db.spill"
            wait_until(lambda: _db_state(rc)["db_kept_in_spill_file"] > 0 and spill.exists(),
                       what="spilled")
            _on_writer(c, "PRAGMA max_page_count = 1073741823")
            wait_until(lambda: _db_state(rc)["db_state"] == "ok", timeout=20, what="ok")
            assert rc.db_count({"msg_id": {"$in": ar.msg_ids}, "status": "ok"}) == 40
            assert not os.path.exists(c.profile_dir / "tasks.db.spill")
            _serving(c, rc)
    finally:
        c.stop()


def test_a_read_only_db_is_a_state_and_records_are_written_after_it(cluster):
    # query_only refuses writes as a read-only file does ("attempt to write a readonly
    # database"), for root too, whom chmod does not stop
    _fail_then_recover(cluster, "PRAGMA query_only = 1", "PRAGMA query_only = 0",
                       "readonly")


def _read_only_by_mode(path):
    os.chmod(path, 0o400)
    return lambda: os.chmod(path, 0o600)


def _read_only_by_mount(path):
    """A read-only bind mount of the file over itself: refuses root's writes too (EROFS),
    where a mode does not."""
    try:
        subprocess.run(["mount", "--bind", path, path], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot bind-mount here (needs CAP_SYS_ADMIN): {error}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", path], check=True,
                       capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(["umount", path], check=True)
        raise
    return lambda: subprocess.run(["umount", path], check=True)


@pytest.mark.parametrize("make_read_only", [_read_only_by_mode, _read_only_by_mount],
                         ids=["chmod", "read-only-mount"])
def test_a_read_only_shm_is_a_state_and_records_are_written_after_it(cluster, caplog,
                                                                     make_read_only):
    caplog.set_level(logging.WARNING, logger="taskhub.controller")
    shm = str(cluster.profile_dir / "tasks.db-shm")
    with cluster.client() as rc:
        before = rc.load_balanced_view().map_async(_echo, range(5))
        before.get(30)
        wait_until(lambda: rc.db_count({"msg_id": {"$in": before.msg_ids}}) == 5,
                   what="the first tasks written")
        undo = make_read_only(shm)
        try:
            assert not os.access(shm, os.W_OK) or os.getuid() == 0
            wait_until(lambda: _db_state(rc)["db_state"] == "failing", what="db failing")
            assert "tasks.db-shm is" in _db_state(rc)["db_error"]
            ar = rc.load_balanced_view().map_async(_echo, range(20), chunksize=1)
            assert ar.get(30) == list(range(20))  # delivered while the DB fails
            wait_until(lambda: _db_state(rc)["db_kept_in_memory"] >= 20, what="kept")
            with pytest.warns(TaskDBWarning, match="cannot be written"):
                rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"])
            _serving(cluster, rc)
        finally:
            undo()
        wait_until(lambda: _db_state(rc)["db_state"] == "ok", timeout=20, what="recovered")
        assert rc.db_count({"msg_id": {"$in": ar.msg_ids}, "status": "ok"}) == 20
        assert _db_state(rc)["db_kept_in_memory"] == 0
        _serving(cluster, rc)
    logged = caplog.text
    assert "tasks.db-shm is" in logged and "keeping records" in logged
    assert "writable again" in logged
    assert _in_file(cluster.profile_dir / "tasks.db", before.msg_ids + ar.msg_ids) == \
        set(before.msg_ids + ar.msg_ids)


def test_a_shm_cut_shorter_is_noticed_before_anything_touches_it(tmp_path, monkeypatch):
    # the stat is what is faked: cutting the mapped file in this process would be the
    # SIGBUS itself, the next time SQLite (or its checkpoint thread) touches the index
    with make_db("sqlite", filename=str(tmp_path / "t.db")) as db:
        db.add_records([{"msg_id": f"m{i}"} for i in range(100)])
        db.commit()
        assert db.shm_problem() is None
        shm, real_stat = str(tmp_path / "t.db-shm"), os.stat
        assert real_stat(shm).st_size > 0

        def cut(path, *args, **kw):
            st = real_stat(path, *args, **kw)
            return os.stat_result((*st[:6], 0, *st[7:])) if str(path) == shm else st
        monkeypatch.setattr(os, "stat", cut)
        assert "was cut to 0 bytes" in db.shm_problem()
        monkeypatch.undo()
        assert db.shm_problem() is None


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_db_file_is_noticed_and_restored(cluster, how):
    db_file = cluster.profile_dir / "tasks.db"
    with cluster.client() as rc:
        first = rc.load_balanced_view().map_async(_echo, range(30))
        first.get(30)
        identity = os.stat(db_file).st_ino
        wait_until(lambda: rc.db_count({"msg_id": {"$in": first.msg_ids}}) == 30,
                   what="the first tasks written")
        if how == "replaced":  # another DB put in its place, e.g. restored from a backup
            elsewhere = cluster.profile_dir / "elsewhere.db"
            with make_db("sqlite", filename=str(elsewhere)) as other:
                other.add_records([{"msg_id": "from-elsewhere"}])
        for suffix in ("-wal", "-shm", ""):
            if os.path.exists(f"{db_file}{suffix}"):
                os.unlink(f"{db_file}{suffix}")
        if how == "replaced":
            os.replace(elsewhere, db_file)
            identity = os.stat(db_file).st_ino
            wait_until(lambda: os.path.exists(f"{db_file}.replaced"), what="set aside")
        wait_until(lambda: db_file.exists() and os.stat(db_file).st_ino != identity,
                   what="the DB file restored")
        later = rc.load_balanced_view().map_async(_echo, range(10))
        assert later.get(30) == list(range(10))
        wait_until(lambda: rc.db_count({"msg_id": {"$in": later.msg_ids}}) == 10,
                   what="later tasks written")
        assert rc.db_count({"msg_id": {"$in": first.msg_ids}}) == 30
        # another connection to the file sees them too (its write-ahead log is its own)
        assert _in_file(db_file, later.msg_ids) == set(later.msg_ids)
        _serving(cluster, rc)
    assert _in_file(db_file, first.msg_ids + later.msg_ids) == \
        set(first.msg_ids + later.msg_ids)
    if how == "replaced":
        assert _in_file(f"{db_file}.replaced", ["from-elsewhere"]) == set() and \
            make_db("sqlite", filename=f"{db_file}.replaced").count() == 1


def test_a_corrupt_db_is_refused_at_start_with_what_to_do(tmp_path):
    path = tmp_path / "tasks.db"
    with make_db("sqlite", filename=str(path)) as db:
        db.add_records([{"msg_id": f"m{i}", "label": "x" * 2000} for i in range(200)])
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 6] = b"\xff" * (4096 * 3)  # pages in the middle of the file
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptTaskDB, match="is corrupt.*Move it aside.*recover"):
        make_db("sqlite", filename=str(path))
    app = controller_app.IPControllerApp()
    app.location = tmp_path
    with pytest.raises(SystemExit, match="ipcontroller: the task DB .* is corrupt"):
        app.make_db()


def _resend(client, rec, msg_id):
    """Send task `rec` again as `client`, under `msg_id`, signed afresh by a key holder (a
    replay of the recorded header itself is refused earlier, by the session's replay guard:
    tests/test_security_sign.py); its AsyncResult."""
    header = {**rec["header"], **client.session.header("apply_request", msg_id)}
    frames, _ = client.session.serialize("apply_request", rec["content"],
                                         metadata=rec["metadata"], buffers=rec["buffers"],
                                         header=header)
    dup = client._track([msg_id], "single")
    client._send("task", frames)
    return dup


def marked(path, x):
    """(Runs on an engine.) Append a line to `path`: how many times this task ran."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x


def test_a_duplicate_msg_id_is_refused_and_not_run(cluster, tmp_path):
    runs = tmp_path / "runs"
    with cluster.client() as rc, cluster.client() as other:
        view = rc.load_balanced_view()
        ar = view.apply_async(marked, str(runs), "original")
        assert ar.get(10) == "original"
        wait_until(lambda: rc.db_count({"msg_id": ar.msg_ids[0]}) == 1, what="written")
        [rec] = rc.db_query({"msg_id": ar.msg_ids[0]},
                            keys=["header", "content", "metadata", "buffers"])
        gate = tmp_path / "gate"
        pending = view.apply_async(wait_for_file, str(gate))
        wait_until(lambda: rc.stats()["outstanding"] == 1, what="the pending task arrived")
        # the msg_id of a pending task, then of a finished one: each refused at once
        for msg_id in (pending.msg_ids[0], ar.msg_ids[0]):
            with pytest.raises(RemoteError, match="already used by another task"):
                _resend(other, rec, msg_id).get(10)
        gate.touch()
        pending.get(10)
        assert runs.read_text() == "original\n"  # the finished task did not run again
        assert rc.stats()["outstanding"] == 0
        [after] = rc.db_query({"msg_id": ar.msg_ids[0]},
                              keys=["client_uuid", "result_content", "completed"])
        assert after["client_uuid"] == rc.session.session
        assert after["result_content"]["status"] == "ok"
        assert rc.db_count({"msg_id": pending.msg_ids[0]}) == 1
        _serving(cluster, rc)


def test_a_restarted_controller_refuses_the_msg_ids_its_db_holds(tmp_path):
    profile, runs = tmp_path / "profile", tmp_path / "runs"
    c = LoopbackCluster(profile, n=1).start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().apply_async(marked, str(runs), "original")
            ar.get(10)
            wait_until(lambda: rc.db_count({"msg_id": ar.msg_ids[0]}) == 1, what="written")
            [rec] = rc.db_query({"msg_id": ar.msg_ids[0]},
                                keys=["header", "content", "metadata", "buffers"])
    finally:
        c.stop()
    c = LoopbackCluster(profile, n=1).start()  # the same DB file, a new controller
    try:
        with c.client() as other:
            with pytest.raises(RemoteError, match="already used by another task"):
                _resend(other, rec, ar.msg_ids[0]).get(10)
            assert other.load_balanced_view().apply_sync(_echo, 1) == 1
        assert runs.read_text() == "original\n"
    finally:
        c.stop()


def test_recent_ids_forget_the_oldest_past_their_capacity():
    recent = RecentIds(capacity=3)
    for msg_id in "abcd":
        recent.add(msg_id)
    recent.add("c")  # already there: not added twice, and "b" is not forgotten for it
    assert [m in recent for m in "abcd"] == [False, True, True, True] and len(recent) == 3
    db = MemoryDB()
    db.add_records([{"msg_id": f"m{i}", "submitted": None} for i in range(3)])
    seeded = RecentIds(capacity=2)
    seeded.seed(db)
    assert len(seeded) == 2


def test_a_catastrophic_regex_answers_while_others_are_served(cluster):
    with cluster.client() as rc:
        ar = rc.load_balanced_view().apply_async(_echo, 1)
        ar.get(10)
        label = "a" * 28 + "!"
        labelled = rc.load_balanced_view()
        labelled.label = label
        labelled.apply_sync(_echo, 2)
        found = rc.db_query({"label": {"$regex": "(a+)+$"}}, keys=["label"])
        assert found == []  # "$" after a's never matches before "!": answered, not stuck
        assert rc.db_query({"label": {"$regex": "^(a+)+!$"}}, keys=["label"])[0]["label"] \
            == label
        _serving(cluster, rc)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_query_past_its_time_budget_is_refused_clearly(tmp_path, kind):
    db = make_db(kind, **({"filename": str(tmp_path / "t.db")} if kind == "sqlite" else {}))
    db.add_records([{"msg_id": f"m{i}", "label": f"l{i}"} for i in range(30000)])
    db.commit()
    worker = DBWorker(db, query_timeout=0.0)
    answers = []
    worker.read(lambda d: d.count({"label": {"$regex": "l.*9"}}), lambda *a: answers.append(a))
    [(ok, error)] = answers
    assert not ok and isinstance(error, QueryTimeout)
    assert "query_timeout (0 s)" in str(error)
    worker.query_timeout = 10
    worker.read(lambda d: d.count({}), lambda *a: answers.append(a))
    assert answers[-1] == (True, 30000)
    db.close()


def test_the_backlog_spills_past_its_bound_and_gives_back_in_order(tmp_path):
    backlog = WriteBacklog(memory_bytes=2000, spill_path=str(tmp_path / "t.db.spill"))
    assert backlog.failed("disk full") and not backlog.failed("disk full")
    for i in range(10):
        backlog.keep([{"msg_id": f"m{i}", "buffers": [b"x" * 100]}], [(f"m{i}", {"a": 1})])
    assert backlog.state()["db_kept_in_spill_file"] > 0
    order = []
    for adds, _ in backlog.batches():
        order.append(adds[0]["msg_id"])
        backlog.written()
    assert order == [f"m{i}" for i in range(10)]
    assert backlog.recovered() and backlog.state()["db_state"] == "ok"
    assert not (tmp_path / "t.db.spill").exists()


def test_values_over_the_limit_are_stored_beside_the_db(tmp_path):
    adds = [{"msg_id": "m1", "buffers": [b"x" * 50], "metadata": {"a": 1},
             "stdout": "y" * 100}]
    updates = [("m1", {"result_buffers": [b"z" * 200], "result_metadata": {}})]
    assert split_oversized(adds, updates, 40, str(tmp_path / "values")) == 3
    note = adds[0]["metadata"]["taskhub_unstored"]["buffers"]
    assert adds[0]["buffers"] is None and os.path.getsize(note["file"]) > 50
    assert "over db_max_value_bytes (40)" in note["reason"]
    assert adds[0]["stdout"].startswith("y" * 20) and "not stored" in adds[0]["stdout"]
    assert updates[0][1]["result_buffers"] is None


def test_a_big_result_is_delivered_and_stored_beside_the_db(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1, db_max_value_bytes=100_000).start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().apply_async(_echo, b"b" * 300_000)
            assert ar.get(30) == b"b" * 300_000
            wait_until(lambda: rc.db_count({"msg_id": ar.msg_ids[0],
                                            "completed": {"$ne": None}}) == 1,
                       what="the big result recorded")
            with c.client() as other:
                assert other.get_result(ar.msg_ids[0]).get(10) == b"b" * 300_000
            assert rc.stats()["db"]["values stored beside the DB"] >= 1
            values = c.profile_dir / "tasks.db.values"
            assert len(os.listdir(values)) == 2  # the argument and the result
            rc.purge_results(ar.msg_ids)
            assert os.listdir(values) == []  # purged with its record
            _serving_one(c, rc)
    finally:
        c.stop()


def _serving_one(cluster, rc):
    assert rc.load_balanced_view().apply_sync(_echo, 7) == 7
    assert rc.stats()["engines"] == 1


def test_memory_backend_shares_one_db_under_a_lock():
    worker = DBWorker(MemoryDB())
    worker.write([{"msg_id": "a"}], [])
    answers = []
    worker.read(lambda d: d.count({}), lambda *a: answers.append(a))
    assert answers == [(True, 1)]


def test_a_value_over_sqlites_own_limit_never_stops_the_writer(tmp_path):
    """SQLite refuses a value over SQLITE_LIMIT_LENGTH (1e9 bytes by default) with
    DataError, which killed the controller; here the limit is lowered to 10,000 bytes and
    db_max_value_bytes left above it: the value goes beside the DB all the same."""
    db = make_db("sqlite", filename=str(tmp_path / "t.db"))
    db._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
    worker = DBWorker(db, max_value_bytes=10**8, blob_dir=str(tmp_path / "values"))
    worker.write([{"msg_id": "big", "result_buffers": [b"r" * 50_000],
                   "result_metadata": {}}, {"msg_id": "small", "label": "fine"}], [])
    assert worker.state()["db_state"] == "ok"
    answers = []
    worker.read(lambda d: d.get_record("big"), lambda *a: answers.append(a))
    [(ok, rec)] = answers
    assert ok and rec["result_buffers"] is None
    assert "over db_max_value_bytes" in \
        rec["result_metadata"]["taskhub_unstored"]["result_buffers"]["reason"]
    assert db.count({"msg_id": "small"}) == 1
    db.close()


def test_records_spilled_by_an_earlier_run_are_written_at_the_next_start(tmp_path):
    path = tmp_path / "t.db"
    spill = WriteBacklog(spill_path=f"{path}.spill")
    spill.failed("disk full")
    spill.keep([{"msg_id": "kept-1"}], [])
    spill.keep([], [("kept-1", {"label": "updated"})])
    spill.spill_all()
    db = make_db("sqlite", filename=str(path))
    worker = DBWorker(db, backlog=WriteBacklog(spill_path=f"{path}.spill"))
    assert worker.state()["db_state"] == "failing"  # until what was kept is written
    worker.write([{"msg_id": "new-1"}], [])
    assert worker.state()["db_state"] == "ok"
    assert [r["label"] for r in db.find_records({}, ["label"])] == ["updated", None]
    assert not os.path.exists(f"{path}.spill")
    db.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("pattern", [r"^(a|aa)+\1$", r"(?=(a+)+$)", r"x(?<!a)b"])
def test_a_pattern_that_could_backtrack_without_bound_is_refused(tmp_path, kind, pattern):
    db = make_db(kind, **({"filename": str(tmp_path / "t.db")} if kind == "sqlite" else {}))
    db.add_records([{"msg_id": "m", "label": "a" * 28 + "!"}])
    with pytest.raises(QueryError, match="backreferences or lookaround.*RE2"):
        db.find_records({"label": {"$regex": pattern}})
    assert [r["msg_id"] for r in db.find_records({"label": {"$regex": r"a\Z|!$"}})] == ["m"]
    assert [r["msg_id"] for r in db.find_records({"label": {"$glob": "[a]*!"}})] == ["m"]
    db.close()


def test_a_query_over_its_budget_reaches_the_client_as_a_clear_error(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1, db="memory", query_timeout=0.0).start()
    try:
        with c.client() as rc:
            ar = rc.load_balanced_view().map_async(_echo, range(5))
            assert ar.get(10) == list(range(5))
            with pytest.raises(Exception, match="longer than the controller's query_timeout "
                                                "\\(0 s\\).*narrow it") as info:
                rc.db_query({"label": {"$regex": "x"}})
            assert isinstance(info.value, TaskhubError)
            _serving_one(c, rc)
    finally:
        c.stop()


def test_a_slow_query_does_not_hold_up_another_clients_quick_one(tmp_path, monkeypatch):
    """One client's query held inside the DB (its REGEXP waits for the test's gate): another
    client's db_query, sent after it, is answered while it is still held."""
    from taskhub.controller.db import sqlite as sqlite_module
    entered, gate = threading.Event(), threading.Event()
    plain = sqlite_module._regexp

    def held(pattern, value):  # runs on a reader thread of the controller
        if pattern == "held":
            entered.set()
            assert gate.wait(60), "the test never opened the gate"
            return False
        return plain(pattern, value)
    monkeypatch.setattr(sqlite_module, "_regexp", held)  # before the connections are made
    c = LoopbackCluster(tmp_path / "profile", n=1, query_timeout=120).start()
    try:
        with c.client() as slow_asker, c.client() as quick_asker:
            ar = slow_asker.load_balanced_view().apply_async(_echo, "x")
            ar.get(10)
            slow = []
            asking = threading.Thread(target=lambda: slow.append(
                slow_asker.db_query({"label": {"$regex": "held"}}, keys=["msg_id"])))
            asking.start()
            assert entered.wait(30), "the slow query never reached the DB"
            found = quick_asker.db_query({"msg_id": ar.msg_ids[0]}, keys=["msg_id"])
            assert [r["msg_id"] for r in found] == ar.msg_ids
            assert quick_asker.db_count({}) >= 1
            assert not slow and asking.is_alive()  # answered while the slow one was held
            gate.set()
            asking.join(30)
            assert slow == [[]]
    finally:
        gate.set()
        c.stop()


def test_reads_go_to_the_least_busy_reader_and_one_keys_reads_stay_in_order(tmp_path):
    import zmq
    db = make_db("sqlite", filename=str(tmp_path / "t.db"))
    worker = DBWorker(db, reader_db=db.reader(), readers=2)
    context = zmq.Context()
    wake = context.socket(zmq.PULL)
    wake.bind("inproc://test-readers")
    worker.start(context, "inproc://test-readers")
    gate, answers = threading.Event(), []

    def job(name, wait=False):
        def run(db):
            if wait:
                assert gate.wait(30)
            return name, threading.current_thread().name
        return run

    def answered(n):
        wake.poll(100)
        worker.deliver()
        return len(answers) >= n
    try:
        note = lambda ok, value: answers.append(value)  # noqa: E731
        worker.read(job("held", wait=True), note, key="a")
        worker.read(job("other asker"), note, key="b")   # the idle reader takes it
        worker.read(job("after held"), note, key="a")    # behind "held", same reader
        wait_until(lambda: answered(1), what="the other asker answered")
        assert answers == [("other asker", "taskhub-db-reader-1")]
        gate.set()
        wait_until(lambda: answered(3), what="the held reads answered")
        assert answers[1:] == [("held", "taskhub-db-reader-0"),
                               ("after held", "taskhub-db-reader-0")]
        wait_until(lambda: answered(3) and not worker._lanes and
                   [r.load for r in worker._readers] == [0, 0], what="every job let go")
    finally:
        gate.set()
        worker.stop()
        worker.reader_db.close()
        db.close()
        wake.close(0)
        context.term()
