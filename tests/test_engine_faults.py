"""Issue 7, engine faults beyond SIGKILL (tests/test_faults.py, test_scheduling.py): an
engine that hangs and comes back, one whose process ends while idle, one whose task runs
out of memory, and one the kernel's OOM killer kills.

Each test runs its own cluster with a 1 s heartbeat timeout (0.1 s × 10). A hung engine is
a SIGSTOPped one: alive, silent. After SIGCONT it must corrupt nothing and rejoin as a new
engine. The OOM-killer test puts one engine in a cgroup (v1 memory controller) of its own
with a small limit; without cgroups it fails, saying why.
"""
import os
import resource
import signal
import time
from pathlib import Path

import pytest
import zmq
from conftest import LoopbackCluster, wait_until

from taskhub.error import EngineError, RemoteError

pytestmark = pytest.mark.timeout(120)

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")


# -- functions the engines run ---------------------------------------------------------
def slow_first_time(marker, x):
    """The first run writes its pid to `marker` and hangs; any later run answers at once."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(30)
    return x * 2


def allocate_beyond(limit_mb, alloc_mb):
    """Allocate `alloc_mb` MiB under an address-space limit `limit_mb` above what this
    process maps now; the limit is lifted again whatever happens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (limit_mb << 20), hard))
    try:
        return len(b"x" * (alloc_mb << 20))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def touch_memory(mb):
    return len(b"x" * (mb << 20))


# -- fixtures and helpers --------------------------------------------------------------
@pytest.fixture
def fast_cluster(tmp_path):
    c = LoopbackCluster(tmp_path / "profile", n=2, heartbeat_period=0.1,
                        heartbeat_misses=10).start()
    yield c
    for proc in c.engines:  # an engine left stopped by a failed test would never exit
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
    c.stop()


def engine_pids(rc):
    return dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))


def late_reply(cluster, rc, engine_uuid, msg_id):
    """What a reply from `engine_uuid` to task `msg_id` looks like on the wire, signed and
    all, sent to the hub's task channel as that engine."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.routing_id = engine_uuid.encode()
    sock.connect(f"tcp://127.0.0.1:{cluster.controller.ports['e_task']}")
    frames, _ = rc.session.serialize("apply_reply", {"status": "ok"},
                                     parent={"msg_id": msg_id, "msg_type": "apply_request"},
                                     metadata={"status": "ok"}, buffers=[b"\x80\x05K\x07."],
                                     idents=[b"some-client"])
    sock.send_multipart(frames)
    sock.close(linger=1000)


def unknown_replies(rc):
    return rc.stats()["dropped"].get("reply from unknown engine", 0)


RECORD_KEYS = ["status", "engine_id", "engine_uuid", "completed", "result_content",
               "result_buffers", "result_metadata", "error"]


# -- an engine that hangs --------------------------------------------------------------
def _slow_task_and_its_engine(rc, pids, tmp_path, x):
    """A load-balanced slow_first_time(x) with one retry, once it runs; (its AsyncResult,
    the id of the engine running it)."""
    marker = tmp_path / "started"
    ar = rc.load_balanced_view().apply_with_flags(slow_first_time, (str(marker), x), retries=1)
    wait_until(marker.exists, 30, what="the task to start")
    return ar, next(i for i, pid in pids.items() if pid == int(marker.read_text()))


def test_a_hung_engine_is_declared_dead_and_its_tasks_retried_or_failed(fast_cluster, tmp_path):
    with fast_cluster.client() as rc:
        pids = engine_pids(rc)
        retried, victim = _slow_task_and_its_engine(rc, pids, tmp_path, 21)
        survivor = next(i for i in pids if i != victim)
        direct = rc[victim].apply_async(time.sleep, 30)
        os.kill(pids[victim], signal.SIGSTOP)
        assert retried.get(15) == 42 and retried.metadata["engine_id"] == survivor
        with pytest.raises(EngineError, match=f"engine {victim} missed heartbeats"):
            direct.get(15)
        wait_until(lambda: victim not in rc.ids, 5, what="the hung engine to leave rc.ids")
        [rec] = rc.db_query({"msg_id": retried.msg_ids[0]}, keys=RECORD_KEYS)
        assert (rec["status"], rec["engine_id"]) == ("ok", survivor)
        [attempt] = rec["result_metadata"]["failed_attempts"]
        assert (attempt["engine_id"], attempt["ename"]) == (victim, "EngineError")
        [failed] = rc.db_query({"msg_id": direct.msg_ids[0]}, keys=["status", "error"])
        assert (failed["status"], failed["error"]["ename"]) == ("error", "EngineError")
        assert rc[survivor].apply_sync(os.getpid) == pids[survivor]  # the rest: unaffected
        os.kill(pids[victim], signal.SIGCONT)


def test_a_hung_engine_that_resumes_corrupts_nothing_and_rejoins_as_a_new_engine(
        fast_cluster, tmp_path):
    with fast_cluster.client() as rc:
        pids = engine_pids(rc)
        ar, victim = _slow_task_and_its_engine(rc, pids, tmp_path, 5)
        victim_uuid = rc._engines[victim]
        os.kill(pids[victim], signal.SIGSTOP)
        assert ar.get(15) == 10
        wait_until(lambda: victim not in rc.ids, 5, what="the hung engine to leave rc.ids")
        [settled] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=RECORD_KEYS)

        # its late reply, had it sent one now, would be dropped and counted, nothing more
        dropped = unknown_replies(rc)
        late_reply(fast_cluster, rc, victim_uuid, ar.msg_ids[0])
        wait_until(lambda: unknown_replies(rc) == dropped + 1, 5, what="the reply dropped")

        os.kill(pids[victim], signal.SIGCONT)
        wait_until(lambda: len(rc.ids) == 2, 20, what="the engine to rejoin")
        rejoined = max(rc.ids)
        assert rejoined == len(pids) and victim not in rc.ids  # a new id, never the old one
        assert rc[rejoined].apply_sync(os.getpid) == pids[victim]
        assert rc.db_query({"msg_id": ar.msg_ids[0]}, keys=RECORD_KEYS) == [settled]
        assert ar.get(0) == 10 and rc.stats()["outstanding"] == 0
        spread = rc.load_balanced_view().map_async(time.sleep, [0.02] * 40, chunksize=1)
        spread.get(30)
        assert {md["engine_id"] for md in spread.metadata} == set(rc.ids)


# -- an engine whose process ends while idle -------------------------------------------
def test_an_idle_engine_that_dies_leaves_rc_ids_within_the_heartbeat_timeout(fast_cluster):
    with fast_cluster.client() as rc:
        pids = engine_pids(rc)
        history = rc.hub_history()
        victim, survivor = rc.ids
        died = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        wait_until(lambda: rc.ids == [survivor], 5, what="the dead engine to leave rc.ids")
        assert time.monotonic() - died < 3.0
        assert rc.hub_history() == history  # it had nothing: nothing failed, nothing added
        assert rc.load_balanced_view().map_sync(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
        assert rc.stats()["engines"] == 1


# -- out of memory ----------------------------------------------------------------------
def test_a_task_out_of_memory_fails_with_memory_error_and_the_engine_carries_on(
        fast_cluster):
    with fast_cluster.client() as rc:
        target = rc.ids[0]
        pid = rc[target].apply_sync(os.getpid)
        ar = rc[target].apply_async(allocate_beyond, 64, 1024)
        with pytest.raises(RemoteError) as failure:
            ar.get(30)
        assert (failure.value.ename, failure.value.engine_id) == ("MemoryError", target)
        [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["status", "error", "engine_id",
                                                            "completed"])
        assert (rec["status"], rec["error"]["ename"], rec["engine_id"]) == \
            ("error", "MemoryError", target)
        assert rc[target].apply_sync(os.getpid) == pid       # the same process, still serving
        assert rc[target].apply_sync(touch_memory, 256) == 256 << 20  # with its memory back
        assert rc.ids == [0, 1]


@pytest.fixture
def memory_cgroup():
    """A cgroup of our own under the v1 memory controller (removed afterwards)."""
    path = CGROUP_ROOT / f"taskhub-test-{os.getpid()}"
    try:
        path.mkdir()
    except OSError as e:
        pytest.fail(f"cannot create a memory cgroup at {path} (needs root and the cgroup v1 "
                    f"memory controller mounted at {CGROUP_ROOT}): {e}")
    yield path
    wait_until(lambda: not (path / "cgroup.procs").read_text().strip(), 10,
               what="the cgroup to empty")
    path.rmdir()


def test_an_engine_the_oom_killer_kills_fails_its_task_like_sigkill(fast_cluster,
                                                                     memory_cgroup):
    with fast_cluster.client() as rc:
        pids = engine_pids(rc)
        victim, survivor = rc.ids
        (memory_cgroup / "memory.limit_in_bytes").write_text(str(200 << 20))
        (memory_cgroup / "cgroup.procs").write_text(str(pids[victim]))
        ar = rc[victim].apply_async(touch_memory, 1024)
        with pytest.raises(EngineError, match=f"engine {victim} missed heartbeats"):
            ar.get(15)
        proc = next(p for p in fast_cluster.engines if p.pid == pids[victim])
        assert proc.wait(5) == -signal.SIGKILL
        oom = dict(line.split() for line in
                   (memory_cgroup / "memory.oom_control").read_text().splitlines())
        assert int(oom["oom_kill"]) == 1  # the kernel's OOM killer did it
        wait_until(lambda: rc.ids == [survivor], 5, what="the killed engine to leave rc.ids")
        [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["status", "error", "engine_id"])
        assert (rec["status"], rec["error"]["ename"], rec["engine_id"]) == \
            ("error", "EngineError", victim)
        assert rc[survivor].apply_sync(touch_memory, 64) == 64 << 20


def test_an_idle_engine_declared_dead_rejoins_and_serves_again(fast_cluster):
    """An idle engine's main thread holds its task sockets, waiting for work: to rejoin,
    the IO thread has it lend them, replaces them, and the main thread serves on the new
    ones."""
    with fast_cluster.client() as rc:
        pids = engine_pids(rc)
        victim, survivor = rc.ids
        os.kill(pids[victim], signal.SIGSTOP)
        wait_until(lambda: victim not in rc.ids, 10, what="the stopped engine to leave rc.ids")
        os.kill(pids[victim], signal.SIGCONT)
        wait_until(lambda: len(rc.ids) == 2, 20, what="the engine to rejoin")
        rejoined = max(rc.ids)
        assert victim not in rc.ids and rc[rejoined].apply_sync(os.getpid) == pids[victim]
        assert rc[rejoined].map_sync(abs, range(-3, 0)) == [3, 2, 1]
        assert rc[survivor].apply_sync(os.getpid) == pids[survivor]
