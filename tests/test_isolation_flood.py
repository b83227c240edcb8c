"""Issue 13, output floods: a task printing 500,000 lines (~50 MB) neither stops its engine
nor the controller nor anyone else's work; its record keeps the start of its output and
says so; the client that asked gets all of it.

Order, not timing: the flood prints until the test opens a gate, which it does only after
another client's apply_sync came back, so that reply came while the flood was printing.
"""
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import LoopbackCluster, wait_for_file, wait_until

from taskhub.client import Client
from taskhub.engine.capture import CHUNK, TaskOutput, truncation_marker

pytestmark = pytest.mark.timeout(300)

LINES = 500_000
LINE = "x" * 92  # with "line 0000000 " and the newline: 106 chars a line, ~53 MB in all
LIMIT = 2**20


def flood(gate, lines, line):
    """(Runs on an engine.) Print `lines` numbered lines, then more until `gate` exists."""
    import os
    i = 0
    while i < lines or not os.path.exists(gate):
        print(f"line {i:07d} {line}")
        i += 1
    return i


def whoami(x):
    import os
    return os.getpid(), x


# -- TaskOutput, write by write -----------------------------------------------------------
def test_the_record_keeps_the_first_limit_chars_and_says_how_much_more_there_was():
    out = TaskOutput({"msg_id": "m"}, limit=10)
    for text in ("abcdef", "ghijkl", "mn"):
        out.write("stdout", text)
    out.write("stderr", "oops")
    assert out.text("stdout") == "abcdefghij" + truncation_marker("stdout", 4, 10)
    assert "stdout truncated" in out.text("stdout") and "4 more" in out.text("stdout")
    assert out.text("stderr") == "oops" and out.truncated() == {"stdout": 14}


def test_writes_are_published_as_few_chunks_in_order_and_what_is_refused_goes_first_again():
    out = TaskOutput({"msg_id": "m"})
    for i in range(3000):
        out.write("stdout", f"{i:04d}{'.' * 45}\n")   # 50 chars a line, 150,000 in all
    out.write("stderr", "E")
    chunks = out.take_unpublished(max_chars=2 * CHUNK)
    assert {n for n, _ in chunks} == {"stdout"} and len(chunks) <= 3  # not 2,600 writes
    assert 2 * CHUNK <= sum(len(t) for _, t in chunks) < 2 * CHUNK + 50  # a line over, at most
    assert all(len(t) <= CHUNK for _, t in chunks)
    out.unpublish(chunks[1:])                          # iopub took only the first
    rest = out.take_unpublished()
    text = "".join(t for _, t in chunks[:1] + rest[:-1])
    assert text == "".join(f"{i:04d}{'.' * 45}\n" for i in range(3000))
    assert rest[-1] == ("stderr", "E") and out.pending == 0


def test_the_task_thread_waits_for_room_and_other_threads_never_do():
    made, written, holder = threading.Event(), threading.Event(), {}

    def task():  # TaskOutput is made on the thread that runs the task, as the engine does
        out = holder["out"] = TaskOutput({"msg_id": "m"}, max_pending=10)
        made.set()
        out.write("stdout", "0123456789")   # full now
        out.write("stdout", "more")         # waits for the IO thread to take some
        written.set()
    thread = threading.Thread(target=task)
    thread.start()
    assert made.wait(10)
    out = holder["out"]
    wait_until(lambda: out.pending >= 10, what="the first write")
    out.write("stderr", "from the IO thread")   # another thread: never waits
    assert not written.is_set()
    assert out.take_unpublished()[0] == ("stdout", "0123456789")
    assert written.wait(10)
    thread.join(10)
    assert out.text("stdout") == "0123456789more"


# -- a real cluster -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def flood_cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("flood"), n=2, heartbeat_period=0.2,
                        heartbeat_misses=25, output_limit=LIMIT).start()
    yield c
    c.stop()


def test_a_flood_is_recorded_capped_reaches_its_client_whole_and_stops_nobody(
        flood_cluster, tmp_path):
    gate = str(tmp_path / "gate")
    with flood_cluster.client() as flooder, flood_cluster.client() as other:
        e0, e1 = flooder.ids[:2]
        ar = flooder[e0].apply_async(flood, gate, LINES, LINE)
        wait_until(lambda: len(ar.stdout) > 10 * CHUNK, 60, what="the flood to start")
        pid, x = other[e1].apply_sync(whoami, 7)      # another client, while it prints
        lb_answer = other.load_balanced_view().apply_sync(whoami, 8)
        assert not ar.done()                          # the flood goes on until the gate
        open(gate, "w").close()
        printed = ar.get(240)
        assert x == 7 and lb_answer[1] == 8
        assert printed >= LINES
        full = "".join(f"line {i:07d} {LINE}\n" for i in range(printed))
        # the end of the stream may come just after the reply (another socket):
        # wait_for_output waits for it
        assert ar.wait_for_output(60)
        assert ar.stdout == full

        [rec] = flooder.db_query({"msg_id": ar.msg_id}, keys=["stdout", "completed"])
        marker = truncation_marker("stdout", len(full) - LIMIT, LIMIT)
        assert rec["stdout"] == full[:LIMIT] + marker
        assert rec["completed"] is not None

        # the engine that flooded, and the controller, still serve; nobody was dropped
        assert set(flooder.ids) >= {e0, e1}
        assert flooder[e0].apply_sync(whoami, 9)[1] == 9


# -- heartbeats do not wait for the routing loop ------------------------------------------
ENGINE_TIMEOUT = 2.0  # the engines' --controller-timeout: they leave after that much silence


@pytest.fixture
def patient_cluster(tmp_path):
    """Engines that shut down after ENGINE_TIMEOUT without a ping; a hub that declares an
    engine dead after 1s without a pong."""
    c = LoopbackCluster(tmp_path / "profile", n=0, heartbeat_period=0.2, heartbeat_misses=5)
    c.start()
    for _ in range(2):
        c.add_engine("--controller-timeout", str(ENGINE_TIMEOUT))
    with c.client() as rc:
        rc.wait_for_engines(2, timeout=30)
    yield c
    c.stop()


def test_a_stalled_routing_loop_does_not_make_engines_leave(patient_cluster):
    c = patient_cluster
    heart, queries = c.controller.heart, c.controller.queries
    answer = queries.handle
    # pings the heart thread sends while the loop stands still: well past the engines'
    # timeout (a count of pings, so no clock is read here)
    stall_for = int(3 * ENGINE_TIMEOUT / heart.period)
    stalled = threading.Event()

    def stall_then_answer(msg, ident):  # runs on the routing loop's thread
        if msg.msg_type == "queue_request":
            start = heart.pings
            stalled.set()
            while heart.pings < start + stall_for:  # the loop routes nothing meanwhile
                time.sleep(0.01)
        return answer(msg, ident)

    queries.handle = stall_then_answer
    try:
        with c.client() as rc:
            ids = sorted(rc.ids)
            assert rc.queue_status()  # comes back once the stall is over
            assert stalled.is_set()
            assert [p.poll() for p in c.engines] == [None, None]  # no engine left
            assert sorted(rc.ids) == ids == sorted(c.controller.hub.up_ids())
            assert sorted(rc[:].apply_sync(os.getpid)) == sorted(p.pid for p in c.engines)
    finally:
        queries.handle = answer
    logs = [p.read_text() for p in (c.profile_dir / "log").glob("engine-*.log")]
    assert not any("no heartbeat from the controller" in text for text in logs)


# -- clients that come and go leave nothing behind ----------------------------------------
def per_client_state(controller):
    """What the controller keeps for each client: its batch flag, the tasks it watches,
    replies queued for it."""
    return {"batch peers": len(controller.batch_peers),
            "watchers": sum(len(v) for v in controller.watchers.values()),
            "queued replies": len(controller._client_out)}


def test_clients_that_connect_and_close_leave_no_per_client_state(flood_cluster, tmp_path):
    c, gate = flood_cluster, tmp_path / "gate"
    with c.client() as owner:
        baseline = per_client_state(c.controller)
        ar = owner.load_balanced_view().apply_async(wait_for_file, str(gate))
        for i in range(200):
            with c.client() as passer_by:
                if i % 20 == 0:  # some watch the owner's task, then go before it ends
                    passer_by.get_result(ar.msg_id)
                    assert per_client_state(c.controller)["watchers"] >= 1
        wait_until(lambda: per_client_state(c.controller) == baseline, 30,
                   what=f"per-client state back to {baseline}")
        gate.touch()
        assert ar.get(30) in [p.pid for p in c.engines]   # the task itself was not touched
        assert per_client_state(c.controller) == baseline


# a client process that connects, watches a task, says so, and waits to be killed
VANISHING_CLIENT = """
import pathlib, sys, threading
from taskhub import Client
rc = Client(profile_dir=sys.argv[1])
rc.get_result(sys.argv[2])
pathlib.Path(sys.argv[3]).touch()
threading.Event().wait()
"""


def test_clients_that_vanish_without_goodbye_leave_no_per_client_state(
        flood_cluster, tmp_path, monkeypatch):
    c, gate = flood_cluster, tmp_path / "gate"
    with c.client() as owner:
        baseline = per_client_state(c.controller)
        ar = owner.load_balanced_view().apply_async(wait_for_file, str(gate))
        ready = [tmp_path / f"ready-{i}" for i in range(3)]
        killed = [subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT,
                                    str(c.profile_dir), ar.msg_id, str(path)])
                  for path in ready]
        try:
            wait_until(lambda: all(p.exists() for p in ready), 60, what="clients watching")
            assert per_client_state(c.controller)["watchers"] >= 3
            assert per_client_state(c.controller)["batch peers"] >= baseline["batch peers"] + 3
        finally:
            for proc in killed:
                proc.kill()  # SIGKILL: no goodbye, no close; the kernel shuts its sockets
                proc.wait(10)
        # and clients of this process closing without their goodbye
        monkeypatch.setattr(Client, "_say_goodbye", lambda self, query: None)
        for i in range(100):
            with c.client() as passer_by:
                if i % 10 == 0:
                    passer_by.get_result(ar.msg_id)
        wait_until(lambda: per_client_state(c.controller) == baseline, 30,
                   what=f"per-client state back to {baseline}")
        assert c.controller.peers.gone >= 103
        gate.touch()
        assert ar.get(30) in [p.pid for p in c.engines]   # the task itself was not touched
        assert per_client_state(c.controller) == baseline
        assert owner.load_balanced_view().apply_sync(whoami, 1)[1] == 1  # still served
