"""Tier 2: garbage on the controller's sockets, engines dying, control requests."""
import os
import signal
import time

import pytest
import zmq
from conftest import LoopbackCluster, wait_for_file, wait_until

from taskhub.error import CompositeError, EngineError, RemoteError, TaskAborted
from taskhub.session import DELIM, Session


@pytest.fixture
def fast_cluster(tmp_path):
    """Its own cluster: these tests kill engines. Death is noticed within ~1s."""
    c = LoopbackCluster(tmp_path / "profile", n=2, heartbeat_period=0.1,
                        heartbeat_misses=10).start()
    yield c
    c.stop()


def _garbage_messages(session):
    good, _ = Session(b"wrong key").serialize("apply_request", {})
    forged = list(good)
    forged_header = b'{"msg_id":"x","msg_type":"registration_request"}'
    return [
        [b"just one frame"],
        [b"", b"", b""],
        [DELIM],
        [DELIM, b"", b"{}", b"{}", b"{}", b"{}"],              # unsigned
        good,                                                   # signed with another key
        [DELIM, b"f" * 64, forged_header, b"{}", b"{}", b"{}"],  # forged signature
        [b"\xff" * 10_000],                                     # binary noise
        forged[:3],
    ]


@pytest.mark.parametrize("channel", ["query", "task", "mux", "control"])
def test_garbage_to_client_sockets_is_dropped_and_the_hub_keeps_serving(cluster, rc, channel):
    before = sum(rc.stats()["dropped"].values())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{cluster.controller.ports[channel]}")
    for frames in _garbage_messages(rc.session):
        sock.send_multipart(frames)
    wait_until(lambda: sum(rc.stats()["dropped"].values()) >= before + 7,
               what="the controller to count the garbage")
    sock.close(linger=0)
    assert rc.load_balanced_view().apply_sync(pow, 3, 2) == 9
    assert rc[:].apply_sync(pow, 2, 2) == [4, 4]


@pytest.mark.parametrize("channel", ["e_task", "e_mux", "hb_pong"])
def test_garbage_to_engine_sockets_is_dropped(cluster, rc, channel):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.routing_id = b"intruder"
    sock.connect(f"tcp://127.0.0.1:{cluster.controller.ports[channel]}")
    for frames in _garbage_messages(rc.session):
        sock.send_multipart(frames)
    # a reply with a valid signature from an engine the hub never registered is dropped too
    frames, _ = rc.session.serialize("apply_reply", {"status": "ok"},
                                     parent={"msg_id": "nope"}, idents=[b"client"])
    sock.send_multipart(frames)
    wait_until(lambda: rc.stats()["dropped"].get("reply from unknown engine", 0) >= 1
               or channel == "hb_pong", what="the forged reply to be dropped")
    sock.close(linger=0)
    assert rc.load_balanced_view().map_sync(abs, [-1, -2]) == [1, 2]
    assert sorted(rc.ids) == [0, 1]


def test_nothing_recorded_is_lost_to_garbage(cluster, rc):
    ar = rc.load_balanced_view().map_async(abs, range(-20, 0))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{cluster.controller.ports['task']}")
    for frames in _garbage_messages(rc.session) * 5:
        sock.send_multipart(frames)
    sock.close(linger=0)
    assert ar.get(10) == list(range(20, 0, -1))
    records = rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["completed", "result_content"])
    assert len(records) == 20 and all(r["completed"] for r in records)


def test_killed_engine_fails_its_task_and_leaves_the_cluster(fast_cluster):
    with fast_cluster.client() as rc:
        lview = rc.load_balanced_view()
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
        victim = rc.ids[0]
        ar = rc.load_balanced_view(targets=[victim]).apply_async(time.sleep, 30)
        wait_until(lambda: rc.queue_status()[victim]["tasks"] == 1, what="the task to start")
        os.kill(pids[victim], signal.SIGKILL)
        with pytest.raises(EngineError, match="missed heartbeats"):
            ar.get(15)
        wait_until(lambda: victim not in rc.ids, what="the dead engine to leave rc.ids")
        [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["status", "error", "completed"])
        assert rec["status"] == "error" and rec["error"]["ename"] == "EngineError"
        assert rec["completed"] is not None
        assert lview.map_sync(abs, [-1, -2, -3]) == [1, 2, 3]  # the survivor works on


def test_direct_task_on_a_dying_engine_fails_with_engine_error(fast_cluster):
    with fast_cluster.client() as rc:
        victim = rc.ids[1]
        pid = rc[victim].apply_sync(os.getpid)
        ar = rc[victim].apply_async(time.sleep, 30)
        wait_until(lambda: rc.queue_status()[victim]["queue"] == 1, what="the task to start")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError):
            ar.get(15)


def test_engine_shutdown_and_abort_through_control(fast_cluster, tmp_path):
    with fast_cluster.client() as rc:
        target = rc.ids[0]
        dview = rc[target]
        proc = next(p for p in fast_cluster.engines if p.pid == dview.apply_sync(os.getpid))
        gate = tmp_path / "gate"
        busy = dview.apply_async(wait_for_file, str(gate))
        queued = dview.apply_async(pow, 2, 5)
        wait_until(lambda: rc.queue_status()[target]["queue"] == 2, what="both to be queued")
        rc._hub_request("abort_request", {"msg_ids": queued.msg_ids}, 5, "control",
                        [rc._engines[target].encode()])
        gate.touch()  # the aborted request is answered when the engine comes to it
        with pytest.raises(TaskAborted):
            queued.get(10)
        assert busy.get(10) == proc.pid
        rc.shutdown(targets=[target])
        wait_until(lambda: target not in rc.ids, what="the engine to unregister")
        assert proc.wait(10) == 0


def test_a_task_that_exits_the_interpreter_is_reported_not_fatal(cluster, rc):
    def leave():
        raise SystemExit(3)

    with pytest.raises(RemoteError, match="SystemExit"):
        rc.load_balanced_view().apply_sync(leave)
    with pytest.raises(CompositeError):
        rc[:].apply_sync(leave)
    assert rc[:].apply_sync(abs, -1) == [1, 1]
