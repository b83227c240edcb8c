"""Issue 17, restart resumes: the controller SIGKILLed in the middle of a map and started
again on its profile; the map's original client gets every result.

The decisions — which unfinished task is claimed by an engine that reconnects, queued
again, or lost (`ResumeBook`), which senders' old messages a new replay guard refuses
(`replay_floors`), when an engine learns its controller was started again
(`ControllerClock`) and which replies it still keeps (`ReplyLog`) — are tested event by
event first. Then the real thing, on SQLite and on MongoDB: `ipcluster start --daemonize`,
a 2,000-task load-balanced map from a client that stays alive, SIGKILL of the controller,
`ipcluster start` again, and `ar.get()` in the same client.
"""
import os
import signal
import time

import pytest
from conftest import wait_until

from taskhub.cluster.launcher import is_ours
from taskhub.controller import resume as rs
from taskhub.controller.hubstate import HubState
from taskhub.engine.reconnect import ControllerClock, ReplyLog
from taskhub.replay import ReplayGuard

pytestmark = pytest.mark.timeout(300)

TASKS = 2000


# -- the resume planner, event by event --------------------------------------------------
def _rec(msg_id, queue="task", engine=None, buffers=(b"f", b"args"), engine_id=None):
    return {"msg_id": msg_id, "queue": queue, "engine_uuid": engine, "engine_id": engine_id,
            "buffers": list(buffers) if buffers is not None else None}


def test_with_no_engine_to_wait_for_tasks_are_requeued_at_once_and_unstored_ones_lost():
    book = rs.ResumeBook([_rec("a"), _rec("b", buffers=None)], now=0.0, wait=10.0)
    first = book.start()
    assert isinstance(first[0], rs.Lose) and first[0].msg_id == "b"
    assert "its request is not stored" in first[0].reason
    assert first[1:] == [rs.Requeue("a")] and book.pending == 0


def test_tasks_not_recorded_as_sent_wait_for_every_engine_the_records_name():
    book = rs.ResumeBook([_rec("a"), _rec("b"), _rec("c", engine="e1"),
                          _rec("d", engine="e2")], now=0.0, wait=10.0)
    assert book.start() == []
    assert book.handle(rs.EngineBack("e1", frozenset({"b", "c"}))) == []
    assert book.claimed_by("b") == "e1" and book.claimed_by("c") == "e1"
    # the last engine named is back: what nobody claimed is queued again
    assert book.handle(rs.EngineBack("e2", frozenset())) == [rs.Requeue("a"),
                                                           rs.Requeue("d", "e2")]


def test_the_pure_scheme_loses_every_load_balanced_task_with_its_reason():
    book = rs.ResumeBook([_rec("a"), _rec("b", engine="e1")], now=0.0, wait=10.0,
                         pure=True)
    lost = book.start()
    assert [type(i) for i in lost] == [rs.Lose, rs.Lose]
    assert all("pure scheme" in i.reason for i in lost)


def test_an_engine_that_comes_back_claims_what_it_holds_and_the_rest_is_requeued():
    book = rs.ResumeBook([_rec("a", engine="e1"), _rec("b", engine="e1"),
                          _rec("c", engine="e2"), _rec("d", "mux", "e1", engine_id=3)],
                         now=0.0, wait=10.0)
    assert book.start() == []
    out = book.handle(rs.EngineBack("e1", frozenset({"a"})))
    assert out[0] == rs.Requeue("b", "e1")
    assert isinstance(out[1], rs.Lose) and out[1].msg_id == "d"
    assert "engine 3, which came back" in out[1].reason
    assert book.claimed_by("a") == "e1" and book.claimed_by("c") is None
    assert book.handle(rs.Answered("a")) == [] and book.claimed_by("a") is None
    assert book.pending == 1  # c, still waiting for e2


def test_an_engine_that_does_not_come_back_in_time_has_its_tasks_requeued_or_lost():
    book = rs.ResumeBook([_rec("a", engine="e2"), _rec("d", "mux", "e2", engine_id=1)],
                         now=100.0, wait=10.0)
    book.start()
    assert book.handle(rs.Tick(109.9)) == []
    out = book.handle(rs.Tick(110.0))
    assert out[0] == rs.Requeue("a", "e2")
    assert isinstance(out[1], rs.Lose) and "did not come back" in out[1].reason
    assert book.pending == 0


def test_a_claimed_task_whose_engine_goes_away_is_requeued():
    book = rs.ResumeBook([_rec("a", engine="e1")], now=0.0, wait=10.0)
    book.start()
    book.handle(rs.EngineBack("e1", frozenset({"a"})))
    assert book.handle(rs.Tick(1000.0)) == []  # claimed: no deadline any more
    assert book.handle(rs.EngineGone("e1")) == [rs.Requeue("a", "e1")]


# -- replay protection across the restart -----------------------------------------------
def test_replay_floors_refuse_recorded_messages_and_accept_what_follows():
    floors = rs.replay_floors([{"sender": "s1", "seq": 5}, {"sender": "s1", "seq": 9},
                               {"sender": "s2", "seq": 0}, {"seq": 3}, None])
    assert floors == {"s1": 9, "s2": 0}
    guard = ReplayGuard(window=1000)
    for sender, floor in floors.items():
        guard.seed(sender, floor)
    assert guard.accept("s1", 9) == "replayed" and guard.accept("s1", 2) == "replayed"
    assert guard.accept("s1", 10) is None and guard.accept("s2", 1) is None
    assert guard.accept("s3", 0) is None  # a sender never recorded: as before


def test_seeding_a_sender_already_seen_raises_its_floor_only():
    guard = ReplayGuard(window=1000)
    for seq in (1, 2, 7):
        assert guard.accept("s", seq) is None
    guard.seed("s", 5)
    assert guard.accept("s", 4) == "replayed" and guard.accept("s", 7) == "replayed"
    assert guard.accept("s", 6) is None
    guard.seed("s", 3)  # lower: changes nothing
    assert guard.accept("s", 8) is None


def test_a_requeued_header_keeps_msg_id_and_session_and_takes_a_fresh_sequence():
    recorded = {"msg_id": "m", "session": "client-s", "sender": "old", "seq": 4,
                "date": "then", "msg_type": "apply_request"}
    header = rs.requeue_header(recorded, {"sender": "new", "seq": 0, "date": "now"})
    assert header == {"msg_id": "m", "session": "client-s", "sender": "new", "seq": 0,
                      "date": "now", "msg_type": "apply_request"}


def test_a_reconnecting_engine_gets_its_old_id_once_and_new_ones_follow():
    hub = HubState()
    hub.next_id = hub.resumable_below = 3
    assert hub.register("e1", {}, 0.0, want_id=1).id == 1
    assert hub.register("e9", {}, 0.0, want_id=1).id == 3  # taken: a new id
    assert hub.register("e2", {}, 0.0, want_id=7).id == 4  # never given before: refused
    assert hub.register("e3", {}, 0.0).id == 5


# -- the controller's shell: records in, requests rebuilt, guard seeded -----------------
def test_resume_rebuilds_stored_requests_seeds_the_guard_and_fails_the_unstored(tmp_path):
    from datetime import datetime, timezone

    from taskhub.controller import restart
    from taskhub.controller.controller import Controller
    from taskhub.controller.db import make_db
    from taskhub.session import Session, new_key

    now = datetime.now(timezone.utc)
    client = Session(new_key())
    header = client.header("apply_request")
    store = make_db("sqlite", filename=str(tmp_path / "tasks.db"))
    store.add_records([
        {"msg_id": header["msg_id"], "header": header, "metadata": {}, "content": {},
         "buffers": [b"f", b"a"], "submitted": now, "queue": "task",
         "client_uuid": header["session"], "engine_id": 4},
        {"msg_id": "gone", "header": {"msg_id": "gone"}, "submitted": now, "queue": "task",
         "buffers": None},
        {"msg_id": "done", "header": {"msg_id": "done", "sender": header["sender"],
                                      "seq": header["seq"] + 5},
         "submitted": now, "completed": now, "engine_id": 4}])
    store.commit()
    c = Controller(Session(client.key), store)
    restart.resume(c, now=0.0, wait=10.0)
    assert c.resumer is None  # nothing waits for an engine: all settled at once
    client_ident, raw = c.queued[header["msg_id"]]
    assert client_ident == header["session"].encode()
    assert header["msg_id"] in c.scheduler.tasks  # queued again, the same msg_id
    requeued = c.session.decode(raw)
    assert requeued["header"]["msg_id"] == header["msg_id"]
    assert requeued["header"]["sender"] == c.session.header("x")["sender"]  # signed anew
    assert c.hub.next_id == c.hub.resumable_below == 5
    # the client's recorded messages are replays now; what it sends next is not
    guard = c.session.replay_guard
    assert guard.accept(header["sender"], header["seq"] + 5) == "replayed"
    assert guard.accept(header["sender"], header["seq"] + 6) is None
    c.recorder.flush()
    [lost] = store.find_records({"msg_id": "gone"}, ["status", "error"])
    assert lost["status"] == "lost" and "not stored" in lost["error"]["evalue"]
    store.close()


# -- the engine's side -------------------------------------------------------------------
def test_the_engine_notices_a_new_controller_incarnation_and_waits_out_its_grace():
    clock = ControllerClock(timeout=30.0, grace=60.0, now=0.0)
    assert clock.pinged(b"aa:1.0", 1.0) is False
    assert clock.pinged(b"aa:2.0", 2.0) is False
    assert not clock.silent_too_long(2.0 + 89.0)
    assert clock.silent_too_long(2.0 + 90.5)
    assert clock.pinged(b"bb:9.0", 95.0) is True  # started again
    assert clock.pinged(b"bb:9.5", 95.5) is False
    assert clock.unregistered == 95.0  # until reconnect() succeeds, which clears it
    assert not clock.silent_too_long(95.0 + 60.0)
    assert clock.silent_too_long(95.0 + 60.5)  # pinged, but never taken back


def test_the_incarnation_from_registration_counts_before_any_ping():
    # the controller died before its first ping reached the engine: the first ping the
    # engine ever hears is from the one started again
    clock = ControllerClock(timeout=30.0, grace=60.0, now=0.0, incarnation="aa")
    assert clock.pinged(b"bb:1.0", 1.0) is True


def test_the_reply_log_keeps_recent_replies_within_its_byte_bound():
    log = ReplyLog(keep=10.0, max_bytes=100)
    log.add("a", "task", [b"x" * 40], now=0.0)
    log.add("b", "task", [b"x" * 40], now=5.0)
    log.add("c", "mux", [b"x" * 40], now=6.0)  # over 100 bytes: a goes
    assert log.ids() == ["b", "c"]
    log.prune(15.5)
    assert log.ids() == ["c"] and log.replies() == [("mux", [b"x" * 40])]


# -- end to end --------------------------------------------------------------------------
def slow_square(x):
    import time as _time
    _time.sleep(0.004)
    return x * x


def _recorded_controller(profile):
    from taskhub.cluster.cluster import read_record
    record = read_record(profile.dir)
    return record["controller"]["processes"][0]["pid"] if record else None


def _resume_a_killed_map(profile, *start_args, by_watcher=False, kill_engine=False):
    from taskhub.client import Client
    profile.start("-n", "2", *start_args)
    rc = Client(profile_dir=str(profile.dir), reconnect_timeout=120)
    try:
        rc.wait_for_engines(2, timeout=60)
        ids_before, engines_before = sorted(rc.ids), sorted(profile.engine_pids())
        ar = rc.load_balanced_view().map_async(slow_square, range(TASKS))
        wait_until(lambda: ar.progress >= TASKS // 10, 120, what="a tenth of the map done")
        old_pid = profile.controller_pid()
        os.kill(old_pid, signal.SIGKILL)
        if kill_engine:  # it dies too: what it held is queued again, on a new engine
            os.kill(engines_before[0], signal.SIGKILL)
            wait_until(lambda: not is_ours(engines_before[0]), 10, what="the engine to die")
        wait_until(lambda: not is_ours(old_pid), 10, what="the controller to die")
        assert not ar.done()
        restarted = time.monotonic()
        if by_watcher:  # --restart-controller: the background watcher starts it again
            wait_until(lambda: _recorded_controller(profile) not in (None, old_pid), 60,
                       what="the watcher to start the controller again")
        else:
            profile.start("-n", "2", *start_args)
        results = ar.get(240)
        took = time.monotonic() - restarted
        assert results == [x * x for x in range(TASKS)]
        survivors = engines_before[1:] if kill_engine else engines_before
        assert set(survivors) <= set(profile.engine_pids())  # the same processes
        assert all(is_ours(pid) for pid in survivors)
        assert len([p for p in profile.engine_pids() if is_ours(p)]) == 2
        assert profile.controller_pid() != old_pid
        if not kill_engine:
            wait_until(lambda: sorted(rc.ids) == ids_before, 30, what="the engines' old ids")
        records = rc.db_query({"msg_id": {"$in": ar.msg_ids}},
                              keys=["status", "completed", "result_metadata"])
        assert sorted(r["msg_id"] for r in records) == sorted(ar.msg_ids)
        assert [r["msg_id"] for r in records if r["status"] != "ok"
                or r["completed"] is None] == []
        requeued = [r for r in records
                    if (r["result_metadata"] or {}).get("failed_attempts")]
        for r in requeued:  # the interrupted attempt is on the record, like a retry
            attempts = r["result_metadata"]["failed_attempts"]
            assert [a["ename"] for a in attempts] == ["ControllerRestart"]
        print(f"\nrestart to the map's end: {took:.2f}s "
              f"({len(requeued)} tasks queued again)")
        return requeued
    finally:
        rc.close()


def test_a_map_survives_a_sigkilled_controller_started_again_on_sqlite(profile):
    _resume_a_killed_map(profile)


def test_a_map_survives_a_sigkilled_controller_started_again_on_mongodb(profile, mongod_url):
    database = f"restart_{os.getpid()}_{int(time.time())}"  # a database of its own
    profile.dir.joinpath("ipcontroller_config.py").write_text(
        f"c = get_config()\nc.IPControllerApp.mongodb_database = {database!r}\n")
    _resume_a_killed_map(profile, "--db", "mongodb", "--mongodb-url", mongod_url)


def test_the_watcher_starts_a_killed_controller_again_and_the_map_goes_on(profile):
    _resume_a_killed_map(profile, "--restart-controller", by_watcher=True)


def test_what_an_engine_that_died_with_the_controller_held_runs_again_elsewhere(profile):
    profile.dir.joinpath("ipcontroller_config.py").write_text(
        "c = get_config()\nc.IPControllerApp.resume_wait = 3.0\n")
    requeued = _resume_a_killed_map(profile, kill_engine=True)
    assert requeued  # its queue and running task: each with the interrupted attempt
