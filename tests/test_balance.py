"""Load balancing under the default (adaptive prefetch + work stealing), on live loopback
clusters: priorities order all work not started, short tasks do not wait behind a long
one, and stealing never runs a task twice nor loses one — even when the engine asked to
give tasks back dies before it answers. Assertions are on order and placement only."""
import os
import signal

import pytest
from conftest import LoopbackCluster, wait_until



def gated(arg):
    """Wait for the file `arg` (a str), or sleep `arg` seconds; log the run to $LOG."""
    import os
    import time
    log = os.environ.get("TASKHUB_TEST_LOG")
    if isinstance(arg, str):
        deadline = time.monotonic() + 60
        while not os.path.exists(arg) and time.monotonic() < deadline:
            time.sleep(0.005)
        result = os.path.exists(arg)
    else:
        time.sleep(arg)
        result = arg
    if log:
        with open(log, "a") as f:
            f.write(f"{arg}\n")
    return result


def logged(arg, log):
    import os
    os.environ["TASKHUB_TEST_LOG"] = log
    return gated(arg)


@pytest.fixture
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=2, heartbeat_period=0.1, heartbeat_misses=10)
    yield c.start()
    c.stop()


def records(rc, msg_ids, keys=("status", "engine_id", "started", "completed")):
    return {r["msg_id"]: r for r in rc.db_query({"msg_id": {"$in": list(msg_ids)}},
                                                keys=list(keys))}


def test_high_priority_work_starts_first_while_engines_are_busy(tmp_path):
    c = LoopbackCluster(tmp_path / "p", n=1).start()
    gate = str(tmp_path / "gate")
    try:
        with c.client() as rc:
            view = rc.load_balanced_view()
            busy = view.apply_async(gated, gate)
            # (.get: the query may overtake the request, which goes on another socket)
            wait_until(lambda: records(rc, busy.msg_ids).get(busy.msg_ids[0], {}).get(
                "status") == "running", what="the engine busy")
            low = [view.apply_with_flags(gated, (0.01,), priority=0) for _ in range(8)]
            high = [view.apply_with_flags(gated, (0.01,), priority=5) for _ in range(8)]
            open(gate, "w").close()
            for ar in [busy, *low, *high]:
                ar.get(30)
            ids = {ar.msg_ids[0]: name for name, ars in (("low", low), ("high", high))
                   for ar in ars}
            recs = records(rc, ids)
            order = [ids[m] for m in sorted(ids, key=lambda m: recs[m]["started"])]
            assert order == ["high"] * 8 + ["low"] * 8
            high_order = sorted((recs[ar.msg_ids[0]]["started"], i) for i, ar in enumerate(high))
            assert [i for _, i in high_order] == list(range(8))  # then submission order
    finally:
        c.stop()


def test_short_tasks_do_not_wait_behind_a_long_one(cluster, tmp_path):
    log = str(tmp_path / "runs")
    gate = str(tmp_path / "gate")
    with cluster.client() as rc:
        view = rc.load_balanced_view()
        view.map_sync(abs, range(300))  # a history of tiny tasks: both engines go deep
        args = [gate] + [0.01] * 20
        ar = view.map_async(logged, args, [log] * len(args))
        long_id, short_ids = ar.msg_ids[0], ar.msg_ids[1:]
        # every short task finishes while the long one still waits for its gate (and is
        # announced running: its start notice goes out START_NOTICE_AFTER after it began)
        wait_until(lambda: all(r["completed"] for r in records(rc, short_ids).values())
                   and records(rc, [long_id])[long_id]["status"] == "running",
                   timeout=60, what="the short tasks, and the long one running")
        recs = records(rc, ar.msg_ids)
        long_engine = recs[long_id]["engine_id"]
        assert recs[long_id]["status"] == "running"
        assert all(recs[m]["engine_id"] != long_engine for m in short_ids)
        open(gate, "w").close()
        assert ar.get(30) == [True] + [0.01] * 20
        with open(log) as f:
            runs = f.read().split()
        assert sorted(runs) == sorted(str(a) for a in args)  # each ran exactly once
        assert all(r["status"] == "ok" for r in records(rc, ar.msg_ids).values())


def test_steals_racing_completions_run_each_task_once(cluster, tmp_path):
    log = str(tmp_path / "runs")
    with cluster.client() as rc:
        view = rc.load_balanced_view()
        view.map_sync(abs, range(300))
        args = [0.3 if i % 4 == 0 else 0.01 for i in range(40)] * 2
        ar = view.map_async(logged, args, [log] * len(args))
        assert ar.get(60) == args
        with open(log) as f:
            assert len(f.read().split()) == len(args)  # none ran twice, none was lost
        recs = records(rc, ar.msg_ids)
        assert [recs[m]["status"] for m in ar.msg_ids] == ["ok"] * len(args)
        assert cluster.controller.scheduler.returned > 0  # stealing did happen
        assert view.map_sync(abs, range(-5, 0)) == [5, 4, 3, 2, 1]


def test_an_engine_killed_mid_steal_loses_nothing(cluster, tmp_path):
    log = str(tmp_path / "runs")
    gates = [str(tmp_path / "gate1"), str(tmp_path / "gate2")]
    with cluster.client() as rc:
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
        view = rc.load_balanced_view()
        view.map_sync(abs, range(300))  # deep prefetch: short tasks queue behind the gates
        view.retries = 1
        args = gates + [0.01] * 10
        ar = view.map_async(logged, args, [log] * len(args))
        wait_until(lambda: all(r["status"] == "running"
                               for r in records(rc, ar.msg_ids[:2]).values()),
                   what="both gates running")
        recs = records(rc, ar.msg_ids)
        victim = recs[ar.msg_ids[0]]["engine_id"]
        thief = recs[ar.msg_ids[1]]["engine_id"]
        assert victim != thief
        os.kill(pids[victim], signal.SIGSTOP)  # it will not answer the steal
        try:
            open(gates[1], "w").close()  # the thief runs dry and asks the victim
            sched = cluster.controller.scheduler
            wait_until(lambda: sched.stealing_from, what="a steal on its way")
        finally:
            os.kill(pids[victim], signal.SIGKILL)
        open(gates[0], "w").close()  # gate1 runs again on the thief (retries=1)
        assert ar.get(30) == [True, True] + [0.01] * 10
        recs = records(rc, ar.msg_ids, keys=["status", "engine_id", "completed",
                                              "result_metadata"])
        assert [recs[m]["status"] for m in ar.msg_ids] == ["ok"] * 12
        assert all(recs[m]["engine_id"] == thief for m in ar.msg_ids)
        [attempt] = recs[ar.msg_ids[0]]["result_metadata"]["failed_attempts"]
        assert (attempt["engine_id"], attempt["ename"]) == (victim, "EngineError")
        with open(log) as f:  # every task ran to the end exactly once, on the thief
            assert sorted(f.read().split()) == sorted(gates + ["0.01"] * 10)
        assert view.map_sync(abs, [-1, -2]) == [1, 2]  # the cluster keeps serving
