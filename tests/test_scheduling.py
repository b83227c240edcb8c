"""Tier 2: load-balanced scheduling on a live cluster.

`TestScheduling` is one suite run against every Python scheme (scheme × suite): flags,
retries, engine death, graph and functional dependencies, abort, interrupt, time limits,
priorities and resubmit. The pure scheme, which can do none of the per-task decisions, has
its own tests below, including the errors a user sees when asking it for them.

Tasks that must still be running or waiting at a given moment wait on a file the test
creates ("gates"), and say they started by writing a file ("markers"); nothing sleeps to wait.
"""
import os
import signal
import time

import pytest
from conftest import LoopbackCluster, wait_for_file, wait_until

from taskhub import Dependency, depend, dependent, require
from taskhub.controller import schemes
from taskhub.controller.app import IPControllerApp
from taskhub.error import (DependencyTimeout, EngineError,
                           ImpossibleDependency, InvalidDependency, RemoteError, TaskAborted,
                           TaskTimeout, UnknownTaskError, UnmetDependency)


# -- functions the engines run --------------------------------------------------------------
def mark_then_sleep(marker, seconds):
    """Say we started (our pid in `marker`), then sleep."""
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return seconds


def slow_first_time(marker, x):
    """The first run marks `marker` and hangs; any later run answers at once."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(30)
    return x * 2


def fails_first_time(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first try fails")
    return os.getpid()


def always_fails():
    raise ValueError("never works")


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def add(a, b=0):
    return a + b


def uses_colorsys():
    return colorsys.rgb_to_hsv(1.0, 0.0, 0.0)  # noqa: F821 - bound on the engine by @require


def greets(name):
    return shout(name)  # noqa: F821 - bound on the engine by @require(shout)


def only_on(pid):
    if os.getpid() != pid:
        raise UnmetDependency(f"wanted pid {pid}")
    return pid


def marker_pid(marker):
    """The pid a task wrote into `marker`, once it has."""
    wait_until(lambda: os.path.exists(marker) and open(marker).read(), what=f"{marker}")
    return int(open(marker).read())


# -- the clusters ---------------------------------------------------------------------------
PYTHON_SCHEMES = sorted(schemes.SCHEMES)


@pytest.fixture(scope="module", params=PYTHON_SCHEMES)
def scheme_cluster(request, tmp_path_factory):
    """Two engines under one scheme; death is noticed within ~1s (tests kill engines)."""
    c = LoopbackCluster(tmp_path_factory.mktemp(f"sched-{request.param}"), n=2,
                        scheme=request.param, heartbeat_period=0.1, heartbeat_misses=10)
    yield c.start()
    c.stop()


@pytest.fixture
def src(scheme_cluster):
    """A client of the scheme's cluster, with two engines up (a test may have killed one)."""
    with scheme_cluster.client() as client:
        if len(client.ids) < 2:
            scheme_cluster.add_engine()
            client.wait_for_engines(2, timeout=30)
        yield client


class TestScheduling:
    # -- flags ------------------------------------------------------------------------------
    def test_flags_per_call_as_view_defaults_and_temporarily(self, src):
        lview = src.load_balanced_view()
        lview.retries = 2
        lview.set_flags(priority=3, label="batch")
        with lview.temp_flags(time_limit=30, retries=1, label="tmp"):
            inner = lview.apply_async(add, 1, 2)
            assert (lview.retries, lview.label, lview.time_limit) == (1, "tmp", 30)
        per_call = lview.apply_with_flags(add, (2,), {"b": 3}, timeout=5, priority=-1)
        plain = lview.apply_async(add, 3)
        assert (inner.get(10), per_call.get(10), plain.get(10)) == (3, 5, 3)
        assert (lview.retries, lview.priority, lview.label, lview.time_limit) == \
            (2, 3, "batch", None)
        flags = ("targets", "after", "follow", "timeout", "retries", "priority",
                 "time_limit", "label")
        md = {r["msg_id"]: ({k: v for k, v in r["metadata"].items() if k in flags},
                            r["label"]) for r in src.db_query(
            {"msg_id": {"$in": [inner.msg_ids[0], per_call.msg_ids[0], plain.msg_ids[0]]}},
            keys=["metadata", "label"])}
        assert md[inner.msg_ids[0]] == ({"retries": 1, "priority": 3, "time_limit": 30,
                                         "label": "tmp"}, "tmp")
        assert md[per_call.msg_ids[0]][0] == {"retries": 2, "priority": -1, "timeout": 5,
                                              "label": "batch"}
        assert md[plain.msg_ids[0]] == ({"retries": 2, "priority": 3, "label": "batch"},
                                        "batch")
        assert lview.apply_with_flags(add, [4], block=True) == 4

    def test_targets_flag_keeps_tasks_on_the_named_engine(self, src):
        e0 = src.ids[0]
        lview = src.load_balanced_view()
        lview.targets = e0
        assert set(lview.map_sync(lambda x: os.getpid(), range(6))) == \
            {src[e0].apply_sync(os.getpid)}

    # -- retries and engine death ----------------------------------------------------------
    def test_a_failed_task_is_retried_on_another_engine(self, src, tmp_path):
        lview = src.load_balanced_view()
        ar = lview.apply_with_flags(fails_first_time, (str(tmp_path / "m"),), retries=1)
        pid = ar.get(10)
        [rec] = src.db_query({"msg_id": ar.msg_ids[0]},
                             keys=["status", "engine_id", "result_metadata"])
        [failed] = rec["result_metadata"]["failed_attempts"]
        assert rec["status"] == "ok" and failed["ename"] == "RuntimeError"
        assert failed["engine_id"] != rec["engine_id"] == ar.engine_id
        assert pid == src[rec["engine_id"]].apply_sync(os.getpid)

    def test_when_every_engine_failed_it_the_last_error_is_raised(self, src):
        ar = src.load_balanced_view().apply_with_flags(always_fails, retries=5)
        with pytest.raises(RemoteError, match="never works") as info:
            ar.get(10)
        assert info.value.ename == "ValueError" and "in always_fails" in info.value.traceback
        [rec] = src.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_metadata", "engine_id"])
        assert len(rec["result_metadata"]["failed_attempts"]) == 1  # 2 engines: 2 attempts

    def test_sigkill_with_retries_gives_the_right_result_and_without_an_engine_error(
            self, scheme_cluster, src, tmp_path):
        lview = src.load_balanced_view()
        pids = dict(zip(src.ids, src[:].apply_sync(os.getpid)))
        retried = lview.apply_with_flags(slow_first_time, (str(tmp_path / "m"), 21),
                                         retries=1)
        victim_pid = marker_pid(tmp_path / "m")
        victim = next(i for i, p in pids.items() if p == victim_pid)
        doomed = lview.apply_with_flags(time.sleep, (30,), targets=victim)
        # adaptive prefetch sends `doomed` to the busy victim only if the victim's recent
        # tasks were short (it then expects to need it soon); else it waits at the hub
        wait_until(lambda: src.queue_status(victim)["tasks"]
                   + src.queue_status()["unassigned"] == 2, what="both placed")
        sent = src.queue_status(victim)["tasks"] == 2
        os.kill(victim_pid, signal.SIGKILL)
        assert retried.get(15) == 42
        with pytest.raises(EngineError if sent else ImpossibleDependency,
                           match="missed heartbeats" if sent
                           else "none of the task's target engines"):
            doomed.get(15)
        wait_until(lambda: victim not in src.ids, what="the dead engine to leave rc.ids")
        assert victim not in src.queue_status()
        recs = {r["msg_id"]: r for r in src.db_query(
            {"msg_id": {"$in": retried.msg_ids + doomed.msg_ids}},
            keys=["status", "error", "engine_id", "result_metadata"])}
        ok, dead = recs[retried.msg_ids[0]], recs[doomed.msg_ids[0]]
        [failed] = ok["result_metadata"]["failed_attempts"]
        assert ok["status"] == "ok" and ok["engine_id"] != victim
        assert (failed["engine_id"], failed["ename"]) == (victim, "EngineError")
        assert dead["status"] == "error"
        assert dead["error"]["ename"] == ("EngineError" if sent else "ImpossibleDependency")
        assert dead["engine_id"] == (victim if sent else None)
        assert lview.map_sync(abs, [-1, -2]) == [1, 2]

    # -- graph dependencies ----------------------------------------------------------------
    def test_after_waits_and_follow_goes_where_its_dependency_ran(self, src, tmp_path):
        lview = src.load_balanced_view()
        gate = lview.apply_async(wait_for_file, str(tmp_path / "gate"))
        log = str(tmp_path / "log")
        second = lview.apply_with_flags(append_line, (log, "second"), after=gate)
        third = lview.apply_with_flags(append_line, (log, "third"),
                                       after=[second.msg_ids[0], gate])
        follower = lview.apply_with_flags(os.getpid, follow=gate)
        assert not second.wait(0.2)
        open(tmp_path / "gate", "w").close()
        assert third.get(10) == "third" and open(log).read() == "second\nthird\n"
        assert follower.get(10) == gate.get(10) and follower.engine_id == gate.engine_id

    def test_any_and_failure_dependencies(self, src):
        lview = src.load_balanced_view()
        good, bad = lview.apply_async(add, 1), lview.apply_async(always_fails)
        anyone = lview.apply_with_flags(add, (5,), after=Dependency([good, bad], all=False))
        cleanup = lview.apply_with_flags(
            add, (7,), after=Dependency(bad, success=False, failure=True))
        either = lview.apply_with_flags(
            add, (9,), after=Dependency([good, bad], success=True, failure=True))
        assert (anyone.get(10), cleanup.get(10), either.get(10)) == (5, 7, 9)

    def test_impossible_dependencies_fail_instead_of_waiting(self, src):
        lview = src.load_balanced_view()
        with pytest.raises(InvalidDependency, match="no task has msg_id nonexistent"):
            lview.apply_with_flags(add, (1,), after="nonexistent").get(10)
        bad, bad2 = lview.apply_async(always_fails), lview.apply_async(always_fails)
        with pytest.raises(ImpossibleDependency, match="failed, which after= does not accept"):
            lview.apply_with_flags(add, (1,), after=bad).get(10)
        with pytest.raises(ImpossibleDependency, match="none of the 2 after= dependencies"):
            lview.apply_with_flags(add, (1,), after=Dependency([bad, bad2], all=False)).get(10)
        e0, e1 = src.ids
        here, there = (src.load_balanced_view(targets=e).apply_async(add, 1) for e in (e0, e1))
        with pytest.raises(ImpossibleDependency, match="2 different engines"):
            lview.apply_with_flags(add, (1,), follow=[here, there]).get(10)

    def test_dependency_timeout(self, src, tmp_path):
        lview = src.load_balanced_view()
        gate = lview.apply_async(wait_for_file, str(tmp_path / "gate"))
        with pytest.raises(DependencyTimeout, match="not met within its timeout of 0.3s"):
            lview.apply_with_flags(add, (1,), after=gate, timeout=0.3).get(10)
        open(tmp_path / "gate", "w").close()
        gate.get(10)

    def test_dependencies_on_direct_and_on_long_finished_tasks(self, scheme_cluster, src,
                                                                tmp_path):
        e1 = src.ids[1]
        direct = src[e1].apply_async(wait_for_file, str(tmp_path / "gate"))
        follower = src.load_balanced_view().apply_with_flags(os.getpid, follow=direct)
        open(tmp_path / "gate", "w").close()
        assert follower.get(10) == direct.get(10)
        old = src.load_balanced_view().apply_async(add, 1)
        old.get(10)
        # as if the scheduler had forgotten it (it keeps the latest outcomes only): the
        # controller then finds it in the task DB
        scheme_cluster.controller.scheduler.outcomes.pop(old.msg_ids[0], None)
        again = src.load_balanced_view().apply_with_flags(os.getpid, follow=old)
        assert again.get(10) and again.engine_id == old.engine_id

    # -- abort, interrupt, time limits -----------------------------------------------------
    def test_abort_waiting_queued_and_running_tasks(self, src, tmp_path):
        e0 = src.ids[0]
        lview = src.load_balanced_view(targets=e0)
        running = lview.apply_async(mark_then_sleep, str(tmp_path / "m"), 30)
        queued = lview.apply_async(add, 1)          # behind `running` on the engine
        waiting = lview.apply_with_flags(add, (2,), after=running)  # in the scheduler
        marker_pid(tmp_path / "m")
        src.abort([waiting, queued.msg_ids[0]])
        with pytest.raises(TaskAborted, match="before it ran"):
            waiting.get(10)
        lview.abort()  # everything the view still has: the running task
        with pytest.raises(TaskAborted, match="while it ran"):
            running.get(10)
        with pytest.raises(TaskAborted, match="before it ran"):
            queued.get(10)
        assert lview.apply_sync(add, 3) == 3
        src.abort(running)  # finished: nothing to do
        with pytest.raises(UnknownTaskError, match="no-such-task"):
            src.abort("no-such-task")

    def test_interrupt_a_running_task_and_the_engine_carries_on(self, src, tmp_path):
        lview = src.load_balanced_view(targets=src.ids[0])
        ar = lview.apply_with_flags(mark_then_sleep, (str(tmp_path / "m"), 30), retries=2)
        marker_pid(tmp_path / "m")
        src.interrupt(ar)
        with pytest.raises(RemoteError, match="KeyboardInterrupt") as info:
            ar.get(10)
        assert "mark_then_sleep" in info.value.traceback
        assert lview.apply_sync(add, 4) == 4

    def test_time_limit_stops_a_task_and_the_engine_stays_usable(self, src):
        lview = src.load_balanced_view(targets=src.ids[0])
        with pytest.raises(TaskTimeout, match="time limit of 0.3s") as info:
            lview.apply_with_flags(time.sleep, (30,), time_limit=0.3).get(10)
        assert "TaskTimeout" in info.value.traceback
        assert lview.apply_with_flags(add, (5,), time_limit=5).get(10) == 5

    def test_time_limit_with_retries_runs_again_elsewhere(self, src, tmp_path):
        ar = src.load_balanced_view().apply_with_flags(
            slow_first_time, (str(tmp_path / "m"), 4), time_limit=0.5, retries=1)
        assert ar.get(10) == 8
        [rec] = src.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_metadata"])
        assert rec["result_metadata"]["failed_attempts"][0]["ename"] == "TaskTimeout"

    def test_higher_priority_first_among_ready_tasks(self, src, tmp_path):
        lview = src.load_balanced_view(targets=src.ids[0])
        gate = lview.apply_async(wait_for_file, str(tmp_path / "gate"))
        log = str(tmp_path / "log")
        ars = [lview.apply_with_flags(append_line, (log, name), after=gate, priority=p)
               for name, p in (("low", -1), ("high", 10), ("mid", 0), ("mid2", 0))]
        # all four must be waiting in the hub when the gate opens, or one that arrives late
        # is sent on its own, whatever its priority
        wait_until(lambda: src.queue_status()["unassigned"] == 4, what="the tasks to wait")
        open(tmp_path / "gate", "w").close()
        assert [ar.get(10) for ar in ars] == ["low", "high", "mid", "mid2"]
        assert open(log).read().split() == ["high", "mid", "mid2", "low"]

    # -- functional dependencies -----------------------------------------------------------
    def test_depend_runs_where_the_check_holds(self, src):
        e1 = src.ids[1]
        pid = src[e1].apply_sync(os.getpid)
        lview = src.load_balanced_view()
        assert lview.apply_sync(dependent(os.getpid, lambda: os.getpid() == pid)) == pid
        on_pid = depend(lambda p: os.getpid() == p, pid)(os.getpid)
        assert [lview.apply_async(on_pid).get(10) for _ in range(4)] == [pid] * 4
        assert lview.apply_sync(only_on, pid) == pid  # UnmetDependency raised by hand

    def test_require_imports_and_binds_names_on_the_engine(self, src):
        def shout(text):
            return text.upper() + "!"

        lview = src.load_balanced_view()
        assert lview.apply_sync(require("colorsys")(uses_colorsys)) == (0.0, 1.0, 1.0)
        assert lview.apply_sync(require(shout)(greets), "hi") == "HI!"
        e0 = src.ids[0]
        src[e0].execute("import sys, types; sys.modules['only_here'] = "
                        "types.ModuleType('only_here')", block=True)
        pid = src[e0].apply_sync(os.getpid)
        assert {lview.apply_async(require("only_here")(os.getpid)).get(10)
                for _ in range(3)} == {pid}

    def test_a_dependency_no_engine_meets_is_impossible_after_each_engine_once(self, src):
        ar = src.load_balanced_view().apply_async(require("no_such_module_xyz")(add), 1)
        with pytest.raises(ImpossibleDependency, match="no_such_module_xyz") as info:
            ar.get(10)
        assert "2 tried" in str(info.value)
        [rec] = src.db_query({"msg_id": ar.msg_ids[0]},
                             keys=["engine_id", "result_metadata", "error"])
        [failed] = rec["result_metadata"]["failed_attempts"]
        assert failed["ename"] == "UnmetDependency"
        assert {failed["engine_id"], rec["engine_id"]} == set(src.ids)  # never twice

    # -- resubmit --------------------------------------------------------------------------
    def test_resubmit_with_new_arguments(self, src):
        lview = src.load_balanced_view()
        ar = lview.apply_async(add, 1, b=2)
        assert ar.get(10) == 3
        mid = ar.msg_ids[0]
        assert src.resubmit(mid, args=(10,)).get(10) == 12             # kwargs kept
        assert src.resubmit(mid, kwargs={"b": 5}).get(10) == 6          # args kept
        assert src.resubmit([mid], args=[1], kwargs={}).get(10) == [1]
        again = src.resubmit(mid)
        assert again.get(10) == 3
        [old] = src.db_query({"msg_id": mid}, keys=["resubmitted"])
        assert old["resubmitted"] == again.msg_ids[0]
        with pytest.raises(TypeError, match="args must be a tuple"):
            src.resubmit(mid, args=5)

    def test_resubmit_a_failed_task_and_a_direct_one(self, src):
        failed = src.load_balanced_view().apply_async(add, 1, "x")
        with pytest.raises(RemoteError, match="TypeError"):
            failed.get(10)
        assert src.resubmit(failed.msg_ids[0], args=(1, 2)).get(10) == 3
        e1 = src.ids[1]
        direct = src[e1].apply_async(os.getpid)
        pid = direct.get(10)
        again = src.resubmit(direct.msg_ids[0])
        assert again.get(10) == pid and again.engine_id == e1

    def test_resubmit_refuses_pending_and_unknown_tasks(self, src, tmp_path):
        gate = src.load_balanced_view().apply_async(wait_for_file, str(tmp_path / "gate"))
        wait_until(lambda: gate.msg_ids[0] in src.hub_history(), what="the hub to record it")
        with pytest.raises(ValueError, match="not finished"):
            src.resubmit(gate.msg_ids)
        with pytest.raises(UnknownTaskError, match="nope"):
            src.resubmit("nope", args=(1,))
        open(tmp_path / "gate", "w").close()
        gate.get(10)


# -- scheme-independent checks ----------------------------------------------------------------
def test_bad_flag_values_raise_at_once_with_the_flag_named(rc):
    lview = rc.load_balanced_view()
    for flags, exc, text in [
            ({"retries": -1}, ValueError, "retries must be ≥ 0"),
            ({"retries": 1.5}, TypeError, "retries must be an integer"),
            ({"retries": True}, TypeError, "retries must be an integer"),
            ({"timeout": "soon"}, TypeError, "timeout must be a number"),
            ({"timeout": -1}, ValueError, "timeout must be ≥ 0"),
            ({"time_limit": 0}, ValueError, "time_limit must be > 0"),
            ({"priority": "high"}, TypeError, "priority must be a number"),
            ({"label": 3}, TypeError, "label must be a string"),
            ({"after": 3}, TypeError, "after must be msg_ids, AsyncResults"),
            ({"follow": [None]}, TypeError, "follow must be msg_ids"),
            ({"targets": "zero"}, TypeError, "targets must be an engine id"),
            ({"targets": [99]}, IndexError, "no engine with id 99"),
            ({"block": "yes"}, TypeError, "block must be True or False"),
            ({"retry": 1}, TypeError, "unknown flag 'retry'; LoadBalancedView flags are: "
                                      "after, block, follow, label, priority, retries"),
    ]:
        with pytest.raises(exc, match=text):
            lview.set_flags(**flags)
        with pytest.raises(exc, match=text):
            lview.apply_with_flags(add, (1,), **flags)
    with pytest.raises(ValueError, match="time_limit"):
        lview.time_limit = -2
    with pytest.raises(ValueError, match="can never be met"):
        Dependency(["x"], success=False)
    with pytest.raises(TypeError, match="args must be a tuple"):
        lview.apply_with_flags(add, 1)
    lview.set_flags(retries=1, priority=2.5)
    with pytest.raises(ValueError):
        lview.set_flags(priority=1, retries=-1)  # nothing is set when one value is bad
    assert (lview.retries, lview.priority) == (1, 2.5)


def test_abort_and_interrupt_reach_direct_tasks_too(rc, tmp_path):
    dview = rc[rc.ids[1]]
    running = dview.apply_async(mark_then_sleep, str(tmp_path / "a"), 30)
    queued = dview.apply_async(add, 1)
    marker_pid(tmp_path / "a")
    rc.abort(queued)
    rc.interrupt(running)
    with pytest.raises(RemoteError, match="KeyboardInterrupt"):
        running.get(10)
    with pytest.raises(TaskAborted, match="before it ran"):
        queued.get(10)
    again = dview.apply_async(mark_then_sleep, str(tmp_path / "b"), 30)
    marker_pid(tmp_path / "b")
    rc.abort(again)
    with pytest.raises(TaskAborted, match="while it ran"):
        again.get(10)
    assert dview.apply_sync(add, 2) == 2


def test_the_hub_refuses_bad_options_from_a_client_that_skipped_the_checks(rc):
    from taskhub import serialize
    bad = {"retries": "many"}
    msg_id = rc._send_task(serialize.pack_apply(add, (1,), {}), bad, {})
    with pytest.raises(RemoteError, match="retries must be an integer"):
        rc._track([msg_id], "single").get(10)
    msg_id = rc._send_task(serialize.pack_apply(add, (1,), {}),
                           {"after": {"msg_ids": ["x"], "success": False}}, {})
    with pytest.raises(RemoteError, match="can never be met"):
        rc._track([msg_id], "single").get(10)


@pytest.fixture(scope="module")
def hwm_cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("hwm"), n=1, hwm=1, heartbeat_period=0.2,
                        heartbeat_misses=25)
    yield c.start()
    c.stop()


def test_with_a_high_water_mark_tasks_wait_in_the_scheduler_by_priority(hwm_cluster,
                                                                        tmp_path):
    with hwm_cluster.client() as rc:
        lview = rc.load_balanced_view()
        gate = lview.apply_async(wait_for_file, str(tmp_path / "gate"))
        log = str(tmp_path / "log")
        ars = [lview.apply_with_flags(append_line, (log, str(p)), priority=p)
               for p in (1, 3, 2)]
        wait_until(lambda: rc.queue_status()["unassigned"] == 3, what="3 tasks held back")
        assert rc.queue_status(rc.ids[0])["tasks"] == 1
        open(tmp_path / "gate", "w").close()
        rc.wait([gate, *ars], timeout=10)
        assert gate.successful()
        assert open(log).read().split() == ["3", "2", "1"]


# -- the pure scheme --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pure_cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("pure"), n=2, scheme="pure",
                        heartbeat_period=0.2, heartbeat_misses=25)
    yield c.start()
    c.stop()


@pytest.fixture
def prc(pure_cluster):
    with pure_cluster.client() as client:
        yield client


def test_pure_runs_and_records_tasks(prc):
    lview = prc.load_balanced_view()
    ar = lview.map_async(lambda x: (x * x, os.getpid()), range(40))
    results = ar.get(20)
    assert [r[0] for r in results] == [x * x for x in range(40)]
    assert len({r[1] for r in results}) == 2  # the device used both engines
    recs = prc.db_query({"msg_id": {"$in": ar.msg_ids}},
                        keys=["engine_id", "completed", "status", "queue"])
    assert len(recs) == 40
    assert all(r["status"] == "ok" and r["engine_id"] in prc.ids and r["completed"]
               and r["queue"] == "task" for r in recs)
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        lview.apply_sync(lambda: 1 / 0)


def test_pure_refuses_what_it_cannot_do_at_submission(prc):
    lview = prc.load_balanced_view()
    earlier = lview.apply_async(add, 1)
    for flags in ({"retries": 1}, {"after": earlier}, {"follow": [earlier]},
                  {"priority": 2}, {"timeout": 3}, {"targets": prc.ids[0]}):
        name = next(iter(flags))
        with pytest.raises(ValueError, match=f"{name}= needs a Python scheduler.*'pure'"):
            lview.apply_with_flags(add, (1,), **flags)
        with pytest.raises(ValueError, match="'pure'"):
            lview.set_flags(**flags)
    with pytest.raises(ValueError, match="functional dependency"):
        lview.apply(require("json")(add), 1)
    with pytest.raises(ValueError, match="'pure'"):
        prc.load_balanced_view(targets=[prc.ids[0]])
    assert lview.apply_with_flags(add, (2,), retries=0, priority=0, label="ok").get(10) == 2
    assert earlier.get(10) == 1


def test_pure_time_limit_resubmit_get_result_and_abort(pure_cluster, prc, tmp_path):
    lview = prc.load_balanced_view()
    with pytest.raises(TaskTimeout):
        lview.apply_with_flags(time.sleep, (30,), time_limit=0.3).get(10)
    ar = lview.apply_async(add, 2, 3)
    assert ar.get(10) == 5
    assert prc.resubmit(ar.msg_ids[0], args=(4, 3)).get(10) == 7
    gate = lview.apply_async(wait_for_file, str(tmp_path / "gate"))
    with pure_cluster.client() as other:
        watched = other.get_result(gate.msg_ids[0])
        open(tmp_path / "gate", "w").close()
        assert watched.get(10) == gate.get(10)
    running = lview.apply_async(mark_then_sleep, str(tmp_path / "m"), 30)
    marker_pid(tmp_path / "m")
    prc.abort(running)  # the hub does not know where it runs: every engine is asked
    with pytest.raises(TaskAborted, match="while it ran"):
        running.get(10)
    assert prc.queue_status()["unassigned"] == 0


def test_the_controller_app_offers_every_scheme():
    assert set(IPControllerApp.class_traits()["scheme"].values) == {*schemes.SCHEMES, "pure"}
