"""The scheduler state machine, event by event, without sockets."""
import random

import pytest

from taskhub.controller import schemes
from taskhub.controller.scheduler import (EngineDown, EngineUp, FailTask, SchedulerState,
                                          SendTask, TaskFinished, TaskSubmitted)


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
    assert s.handle(TaskFinished("t0", "b"), TaskSubmitted("t4")) == [SendTask("t4", "b")]


def test_high_water_mark_holds_tasks_back_until_a_slot_frees():
    s = SchedulerState(hwm=1)
    s.handle(EngineUp("a"))
    assert s.handle(TaskSubmitted("t1"), TaskSubmitted("t2")) == [SendTask("t1", "a")]
    assert [t.msg_id for t in s.waiting] == ["t2"]
    assert s.handle(TaskFinished("t1", "a")) == [SendTask("t2", "a")]


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
