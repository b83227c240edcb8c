"""The scheduler state machine, event by event, without sockets."""
import random

import pytest

from taskhub.controller import schemes
from taskhub.controller.scheduler import (AbortTask, Dep, DeliverReply, DirectFinished,
                                          DirectSubmitted,
                                          EngineDown, EngineUp, FailTask, InterruptTask,
                                          Outcome, Requeued, SchedulerState, SendTask,
                                          SignalEngine, TaskFinished, TaskSubmitted, Tick)


def test_tasks_wait_for_an_engine_then_go_in_order():
    s = SchedulerState()
    assert s.handle(TaskSubmitted("t1"), TaskSubmitted("t2")) == []
    assert s.handle(EngineUp("e1")) == [SendTask("t1", "e1"), SendTask("t2", "e1")]


def test_leastload_spreads_and_breaks_ties_by_least_recent_use():
    s = SchedulerState()
    s.handle(EngineUp("a"), EngineUp("b"))  # b is newest, so least recently used
    out = s.handle(*(TaskSubmitted(f"t{i}") for i in range(4)))
    assert out == [SendTask("t0", "b"), SendTask("t1", "a"), SendTask("t2", "b"),
                   SendTask("t3", "a")]
    assert s.handle(TaskFinished("t0", "b"), TaskSubmitted("t4")) == [DeliverReply("t0"),
                                                                      SendTask("t4", "b")]


def test_high_water_mark_holds_tasks_back_until_a_slot_frees():
    s = SchedulerState(hwm=1)
    s.handle(EngineUp("a"))
    assert s.handle(TaskSubmitted("t1"), TaskSubmitted("t2")) == [SendTask("t1", "a")]
    assert [t.msg_id for t in s.waiting] == ["t2"]
    assert s.handle(TaskFinished("t1", "a")) == [DeliverReply("t1"), SendTask("t2", "a")]


def test_engine_death_fails_its_tasks_and_keeps_the_rest():
    s = SchedulerState()
    s.handle(EngineUp("a"), EngineUp("b"))
    s.handle(TaskSubmitted("t1"), TaskSubmitted("t2"))  # t1 -> b, t2 -> a
    out = s.handle(EngineDown("b", "engine 1 missed heartbeats"))
    assert out == [FailTask("t1", "EngineError",
                            "engine 1 missed heartbeats while running this task")]
    assert s.assigned == {"t2": "a"}
    assert s.handle(TaskSubmitted("t3")) == [SendTask("t3", "a")]


def test_targets_restrict_placement():
    s = SchedulerState()
    s.handle(EngineUp("a"), EngineUp("b"))
    assert s.handle(TaskSubmitted("t1", targets=("a",)),
                    TaskSubmitted("t2", targets=("a",))) == [SendTask("t1", "a"),
                                                             SendTask("t2", "a")]


def test_targets_that_vanish_fail_waiting_tasks_instead_of_hanging():
    s = SchedulerState(hwm=1)
    s.handle(EngineUp("a"), EngineUp("b"))
    s.handle(TaskSubmitted("t1", targets=("a",)), TaskSubmitted("t2", targets=("a",)))
    out = s.handle(EngineDown("a"))
    assert [type(i) for i in out] == [FailTask, FailTask]
    assert {i.msg_id for i in out} == {"t1", "t2"}
    assert out[1].ename == "ImpossibleDependency"
    assert not s.waiting


def test_targets_of_no_registered_engine_fail_at_once():
    s = SchedulerState()
    s.handle(EngineUp("a"))
    assert s.handle(TaskSubmitted("t1", targets=("zz",))) == [
        FailTask("t1", "ImpossibleDependency", "none of the task's target engines is registered")]


def test_duplicate_and_unknown_events_are_harmless():
    s = SchedulerState()
    s.handle(EngineUp("a"))
    assert s.handle(EngineUp("a"), EngineDown("zz"), TaskFinished("nope", "a")) == []
    assert s.engines == ["a"] and s.loads == {"a": 0}


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scheduling scheme 'fastest'.*leastload"):
        SchedulerState("fastest")


@pytest.mark.parametrize("loads,expected", [([3, 1, 1], 1), ([0, 0], 0), ([5], 0),
                                            ([2, 2, 0], 2)])
def test_leastload_scheme(loads, expected):
    assert schemes.leastload(loads, random.Random(0)) == expected


def test_lru_scheme_takes_the_first():
    assert schemes.lru([9, 0, 0], random.Random(0)) == 0


@pytest.mark.parametrize("name", ["plainrandom", "twobin", "weighted"])
def test_random_schemes_stay_in_range_and_cover_engines(name):
    rng = random.Random(1)
    picks = {schemes.SCHEMES[name]([0, 0, 0, 0], rng) for _ in range(200)}
    assert picks <= {0, 1, 2, 3} and len(picks) >= 3


def test_weighted_prefers_the_idle_engine():
    rng = random.Random(2)
    picks = [schemes.weighted([50, 0], rng) for _ in range(200)]
    assert picks.count(1) > 150


def test_twobin_returns_the_less_recently_used_of_its_two():
    rng = random.Random(3)
    assert all(schemes.twobin([0, 0], rng) == 0 for _ in range(20))


# -- priorities ----------------------------------------------------------------------------
def test_ready_tasks_go_highest_priority_first_then_in_submission_order():
    s = SchedulerState(hwm=1)
    s.handle(EngineUp("a"), TaskSubmitted("busy"))
    s.handle(TaskSubmitted("low", priority=1), TaskSubmitted("high", priority=5),
             TaskSubmitted("mid", priority=3), TaskSubmitted("mid2", priority=3))
    order = []
    for done in ("busy", "high", "mid", "mid2"):
        order += [i.msg_id for i in s.handle(TaskFinished(done, "a")) if isinstance(i, SendTask)]
    assert order == ["high", "mid", "mid2", "low"]


# -- retries -------------------------------------------------------------------------------
def two_engines(**kw):
    s = SchedulerState(**kw)
    s.handle(EngineUp("a"), EngineUp("b"))  # b is the least recently used
    return s


def test_a_failed_task_with_retries_runs_again_on_another_engine():
    s = two_engines()
    assert s.handle(TaskSubmitted("t", retries=1)) == [SendTask("t", "b")]
    assert s.handle(TaskFinished("t", "b", ok=False, ename="OSError", evalue="flaky")) == [
        Requeued("t", "b", "OSError", "flaky"), SendTask("t", "a")]
    assert s.handle(TaskFinished("t", "a")) == [DeliverReply("t")]
    assert not s.tasks and s.loads == {"a": 0, "b": 0}


def test_without_retries_the_failure_is_the_answer():
    s = two_engines()
    s.handle(TaskSubmitted("t"))
    assert s.handle(TaskFinished("t", "b", ok=False, ename="E")) == [DeliverReply("t")]


def test_when_every_engine_has_failed_it_the_last_error_is_the_answer():
    s = two_engines()
    s.handle(TaskSubmitted("t", retries=5))
    s.handle(TaskFinished("t", "b", ok=False, ename="E", evalue="1"))
    assert s.handle(TaskFinished("t", "a", ok=False, ename="E", evalue="2")) == [
        DeliverReply("t")]
    assert not s.tasks


def test_a_retried_task_never_returns_to_the_engine_that_failed_it():
    s = two_engines(hwm=1)
    s.handle(TaskSubmitted("t", retries=1), TaskSubmitted("long"))  # t -> b, long -> a
    out = s.handle(TaskFinished("t", "b", ok=False, ename="E"))
    assert out == [Requeued("t", "b", "E", "")]  # b is idle, but t waits for a
    assert s.handle(TaskFinished("long", "a")) == [DeliverReply("long"), SendTask("t", "a")]


def test_engine_death_retries_elsewhere_or_fails_with_engine_error():
    s = two_engines()
    s.handle(TaskSubmitted("kept", retries=1), TaskSubmitted("lost", targets=("b",)))
    out = s.handle(EngineDown("b", "engine 1 missed heartbeats"))
    why = "engine 1 missed heartbeats while running this task"
    assert out == [Requeued("kept", "b", "EngineError", why),
                   FailTask("lost", "EngineError", why), SendTask("kept", "a")]


def test_a_retry_waits_for_a_new_engine_when_none_is_left():
    s = SchedulerState()
    s.handle(EngineUp("a"), TaskSubmitted("t", retries=1))
    assert s.handle(EngineDown("a")) == [Requeued("t", "a", "EngineError",
                                                  "engine died while running this task")]
    assert s.handle(EngineUp("c")) == [SendTask("t", "c")]


def test_a_retried_task_fails_with_the_last_error_once_no_engine_is_left_to_try():
    s = two_engines(hwm=1)
    s.handle(TaskSubmitted("t", retries=3), TaskSubmitted("long"))
    s.handle(TaskFinished("t", "b", ok=False, ename="E", evalue="bad"))
    assert s.handle(EngineDown("a")) == [
        FailTask("long", "EngineError", "engine died while running this task"),
        FailTask("t", "E", "bad (failed on all 1 engines tried)")]


def test_a_retried_task_with_a_timeout_waits_for_a_new_engine_then_times_out():
    s = two_engines()
    s.handle(TaskSubmitted("t", retries=5, timeout=10, now=0),
             TaskSubmitted("u", retries=5, timeout=10, now=0))
    while s.assigned:  # each fails on each engine it is sent to, once
        msg_id, engine = next(iter(s.assigned.items()))
        s.handle(TaskFinished(msg_id, engine, ok=False, ename="E", evalue="bad"))
    assert sorted(s.tasks) == ["t", "u"]  # parked, not failed: a new engine may come
    assert s.handle(Tick(5)) == []
    assert s.handle(EngineUp("c")) == [SendTask("t", "c"), SendTask("u", "c")]
    assert s.handle(TaskFinished("t", "c")) == [DeliverReply("t")]
    [again] = s.handle(TaskFinished("u", "c", ok=False, ename="E", evalue="worse"))
    assert again == Requeued("u", "c", "E", "worse")
    [timeout] = s.handle(Tick(10))
    assert timeout.msg_id == "u" and timeout.ename == "TaskTimeout"
    assert "all 3 engines" in timeout.evalue and "E: worse" in timeout.evalue
    assert not s.tasks


def test_a_retried_task_past_its_timeout_fails_at_once_when_no_engine_is_left():
    s = two_engines()
    s.handle(TaskSubmitted("t", retries=5, timeout=0.1, now=0), Tick(1))
    first = s.tasks["t"].engine
    s.handle(TaskFinished("t", first, ok=False, ename="E", evalue="bad"))
    [fail] = s.handle(TaskFinished("t", s.tasks["t"].engine, ok=False, ename="E",
                                   evalue="bad"))
    assert fail.ename == "TaskTimeout" and not s.tasks


# -- functional dependencies ---------------------------------------------------------------
def test_unmet_dependency_moves_the_task_and_never_back_then_gives_up():
    s = two_engines()
    s.handle(TaskSubmitted("t"))
    assert s.handle(TaskFinished("t", "b", ok=False, ename="UnmetDependency", evalue="no")) \
        == [Requeued("t", "b", "UnmetDependency", "no"), SendTask("t", "a")]
    [fail] = s.handle(TaskFinished("t", "a", ok=False, ename="UnmetDependency", evalue="no"))
    assert fail.ename == "ImpossibleDependency" and "2 tried" in fail.evalue
    assert not s.tasks


def test_unmet_dependency_does_not_use_up_retries():
    s = two_engines()
    s.handle(TaskSubmitted("t", retries=1))
    s.handle(TaskFinished("t", "b", ok=False, ename="UnmetDependency"))
    assert s.tasks["t"].retries == 1


# -- graph dependencies --------------------------------------------------------------------
def after(*ids, **kw):
    return Dep(frozenset(ids), **kw)


def test_after_waits_for_success_then_runs():
    s = two_engines()
    s.handle(TaskSubmitted("t1"))
    assert s.handle(TaskSubmitted("t2", after=after("t1"))) == []
    assert [t.msg_id for t in s.waiting] == ["t2"]
    assert s.handle(TaskFinished("t1", "b")) == [DeliverReply("t1"), SendTask("t2", "a")]


def test_a_failed_dependency_makes_its_dependents_impossible_in_a_cascade():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskSubmitted("t2", after=after("t1")),
             TaskSubmitted("t3", after=after("t2")))
    out = s.handle(TaskFinished("t1", "b", ok=False, ename="ValueError"))
    assert out[0] == DeliverReply("t1")
    assert [(i.msg_id, i.ename) for i in out[1:]] == [("t2", "ImpossibleDependency"),
                                                      ("t3", "ImpossibleDependency")]
    assert "t1 failed" in out[1].evalue and "success" in out[1].evalue
    assert not s.tasks and not s.dependents


def test_failure_only_dependencies_run_cleanup_tasks():
    s = two_engines()
    s.handle(TaskSubmitted("ok"), TaskSubmitted("bad"))
    s.handle(TaskSubmitted("c1", after=after("ok", success=False, failure=True)),
             TaskSubmitted("c2", after=after("bad", success=False, failure=True)))
    [_, fail] = s.handle(TaskFinished("ok", "b"))
    assert fail.msg_id == "c1" and fail.ename == "ImpossibleDependency"
    out = s.handle(TaskFinished("bad", "a", ok=False, ename="E"))
    assert out[0] == DeliverReply("bad") and isinstance(out[1], SendTask)


def test_any_waits_for_one_success_and_fails_when_all_failed():
    s = two_engines()
    s.handle(*(TaskSubmitted(m) for m in ("x", "y", "p", "q")))
    s.handle(TaskSubmitted("any_ok", after=after("x", "y", all=False)),
             TaskSubmitted("any_bad", after=after("p", "q", all=False)))
    assert s.handle(TaskFinished("x", "b", ok=False)) == [DeliverReply("x")]
    assert s.handle(TaskFinished("y", "a"))[1].msg_id == "any_ok"
    assert s.handle(TaskFinished("p", "b", ok=False)) == [DeliverReply("p")]
    out = s.handle(TaskFinished("q", "a", ok=False))
    assert out[1].msg_id == "any_bad" and "none of the 2" in out[1].evalue


def test_follow_runs_where_its_dependency_ran():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskFinished("t1", "b"))  # a is now less recently used
    assert s.handle(TaskSubmitted("t2", follow=after("t1"))) == [SendTask("t2", "b")]


def test_follow_all_across_engines_is_impossible():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskSubmitted("t2"))  # t1 -> b, t2 -> a
    s.handle(TaskSubmitted("t3", follow=after("t1", "t2")))
    s.handle(TaskFinished("t1", "b"))
    [_, fail] = s.handle(TaskFinished("t2", "a"))
    assert fail.msg_id == "t3" and "2 different engines" in fail.evalue


def test_follow_any_picks_among_the_engines_where_any_ran():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskSubmitted("t2"))
    s.handle(TaskSubmitted("t3", follow=after("t1", "t2", all=False)))
    assert s.handle(TaskFinished("t2", "a")) == [DeliverReply("t2"), SendTask("t3", "a")]


def test_following_an_engine_that_died_is_impossible():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskFinished("t1", "b"), EngineDown("b"))
    [fail] = s.handle(TaskSubmitted("t2", follow=after("t1")))
    assert fail.ename == "ImpossibleDependency" and "gone" in fail.evalue


def test_a_blocked_task_pinned_to_a_dying_engine_fails_at_once():
    s = two_engines()
    s.handle(TaskSubmitted("t1"), TaskFinished("t1", "b"), TaskSubmitted("slow"))
    s.handle(TaskSubmitted("t2", follow=after("t1"), after=after("slow")))
    out = s.handle(EngineDown("b"))
    assert [(i.msg_id, i.ename) for i in out] == [("t2", "ImpossibleDependency")]


def test_unknown_dependencies_are_invalid_after_a_grace_and_self_ones_at_once():
    s = two_engines(grace=1.0)
    assert s.handle(TaskSubmitted("t1", after=after("nope"), now=10),
                    TaskSubmitted("t3", after=after("t1"), now=10), Tick(10.9)) == []
    assert s.handle(Tick(11)) == [FailTask("t1", "InvalidDependency", "no task has msg_id nope"),
                                  FailTask("t3", "ImpossibleDependency", "after dependency t1 "
                                           "failed, which after= does not accept (success)")]
    [fail] = s.handle(TaskSubmitted("t2", follow=after("t2")))
    assert fail.ename == "InvalidDependency" and "itself" in fail.evalue
    assert not s.tasks and not s.dependents


def test_a_dependency_that_shows_up_within_the_grace_is_waited_for():
    s = two_engines(grace=1.0)
    s.handle(TaskSubmitted("lb", after=after("late")), TaskSubmitted("d", after=after("direct")))
    s.handle(TaskSubmitted("late"), DirectSubmitted("direct"), Tick(5))
    assert not s.waiting[0].known and len(s.tasks) == 3
    assert s.handle(DirectFinished("direct", "a", True)) == [SendTask("d", "a")]
    assert s.handle(TaskFinished("late", "b")) == [DeliverReply("late"), SendTask("lb", "b")]


def test_outcomes_looked_up_elsewhere_count_as_finished():
    s = two_engines()
    assert s.handle(TaskSubmitted("t1", follow=after("old"),
                                  outcomes={"old": Outcome(True, "a")})) == [SendTask("t1", "a")]
    [fail] = s.handle(TaskSubmitted("t2", after=after("lost"), outcomes={"lost": Outcome(False)}))
    assert fail.ename == "ImpossibleDependency"


def test_waiting_on_a_direct_task():
    s = two_engines()
    assert s.handle(TaskSubmitted("t1", after=after("d"), external=frozenset({"d"}))) == []
    assert s.handle(DirectFinished("other", "a", True)) == []
    assert s.handle(DirectFinished("d", "a", True)) == [SendTask("t1", "b")]
    assert not s.external


def test_old_outcomes_are_forgotten_beyond_remember():
    s = SchedulerState(remember=2)
    s.handle(EngineUp("a"))
    for m in ("t1", "t2", "t3"):
        s.handle(TaskSubmitted(m), TaskFinished(m, "a"))
    assert not s.knows("t1") and s.knows("t3")


def test_dependency_timeout_fails_only_tasks_not_yet_sent():
    s = two_engines()
    s.handle(TaskSubmitted("gate"), TaskSubmitted("quick", timeout=5, now=0),
             TaskSubmitted("t", after=after("gate"), timeout=5, now=0))
    assert s.handle(Tick(4.9)) == []
    [fail] = s.handle(Tick(5.0))
    assert fail == FailTask("t", "DependencyTimeout",
                            "its dependencies were not met within its timeout of 5s")
    assert s.handle(Tick(100)) == [] and "quick" in s.assigned


# -- abort and interrupt -------------------------------------------------------------------
def test_aborting_a_waiting_task_fails_it_and_what_depends_on_it():
    s = two_engines()
    s.handle(TaskSubmitted("gate"), TaskSubmitted("t", after=after("gate")),
             TaskSubmitted("u", after=after("t")))
    out = s.handle(AbortTask("t"))
    assert out[0] == FailTask("t", "TaskAborted", "aborted before it ran")
    assert out[1].msg_id == "u" and out[1].ename == "ImpossibleDependency"
    assert s.handle(AbortTask("t")) == []


def test_aborting_a_running_task_signals_its_engine_and_is_never_retried():
    s = two_engines()
    s.handle(TaskSubmitted("t", retries=3))
    assert s.handle(AbortTask("t")) == [SignalEngine("t", "b", "abort")]
    assert s.handle(TaskFinished("t", "b", ok=False, ename="TaskAborted")) == [
        DeliverReply("t")]


def test_interrupt_reaches_only_running_tasks():
    s = SchedulerState(hwm=1)
    s.handle(EngineUp("a"), TaskSubmitted("run", retries=2), TaskSubmitted("queued"))
    assert s.handle(InterruptTask("queued")) == []
    assert s.handle(InterruptTask("run")) == [SignalEngine("run", "a", "interrupt")]
    assert s.handle(TaskFinished("run", "a", ok=False, ename="KeyboardInterrupt")) == [
        DeliverReply("run"), SendTask("queued", "a")]


def test_a_stray_reply_from_the_wrong_engine_is_ignored():
    s = two_engines()
    s.handle(TaskSubmitted("t"))
    assert s.handle(TaskFinished("t", "a")) == []
    assert s.assigned == {"t": "b"}
