"""Adaptive prefetch and work stealing, event by event, without sockets
(taskhub/controller/prefetch.py, the stealing part of scheduler.py)."""
import math

import pytest

from taskhub.controller.prefetch import Prefetch
from taskhub.controller.scheduler import (AbortTask, DeliverReply, EngineDown, EngineUp,
                                          FailTask, GaveBack, HoldReply, Returned, SchedulerState,
                                          SendTask, StealTasks, TaskFinished, TaskStarted,
                                          TaskSubmitted, Tick)


# -- the depth ---------------------------------------------------------------------------
def run_tasks(p, engine, duration, n, t=0.0):
    """`engine` runs n tasks back to back, each `duration` long, from time t."""
    p.sent(engine, 0, t)
    for i in range(n):
        t += duration
        p.finished(engine, n - i - 1, t)
    return t


def test_depth_is_one_until_the_engine_has_answered():
    p = Prefetch(horizon=0.02)
    p.add("a")
    assert p.depth("a", 0.0) == 1


def test_tiny_tasks_go_deep_and_long_ones_one_at_a_time():
    p = Prefetch(horizon=0.02, max_depth=256)
    p.add("tiny")
    p.add("long")
    t = run_tasks(p, "tiny", 0.0001, 50)
    assert p.depth("tiny", t) == 200  # 20 ms of 100 µs tasks
    t = run_tasks(p, "long", 1.0, 3)
    assert p.depth("long", t) == 1


def test_hwm_caps_the_depth_and_eager_sends_everything():
    p = Prefetch(hwm=3, horizon=0.02)
    p.add("a")
    t = run_tasks(p, "a", 0.0001, 50)
    assert p.depth("a", t) == 3
    assert math.isinf(Prefetch(mode="eager").depth("a", 0.0))
    assert Prefetch(mode="eager", hwm=2).depth("a", 0.0) == 2
    with pytest.raises(ValueError, match="adaptive, eager"):
        Prefetch(mode="lazy")


def test_an_engine_busy_far_longer_than_usual_is_stalled_and_gets_no_more():
    p = Prefetch(horizon=0.02, stall=4)
    p.add("a")
    t = run_tasks(p, "a", 0.001, 20)
    p.sent("a", 0, t)  # a task that turns out long
    assert not p.stalled("a", t + 0.01) and p.depth("a", t + 0.01) == 20
    assert p.stalled("a", t + 0.5) and p.depth("a", t + 0.5) == 1


# -- the scheduler under adaptive prefetch -----------------------------------------------
def adaptive(engines=("a", "b"), **kw):
    s = SchedulerState(prefetch="adaptive", horizon=0.02, **kw)
    for e in engines:
        s.handle(EngineUp(e))
    return s


def sends(out):
    return [(i.msg_id, i.engine) for i in out if isinstance(i, SendTask)]


def test_tasks_wait_at_the_hub_and_priorities_order_all_of_them():
    s = adaptive()
    out = s.handle(TaskSubmitted("busy-a", now=0.0), TaskSubmitted("busy-b", now=0.0))
    assert sends(out) == [("busy-a", "b"), ("busy-b", "a")]
    low = [TaskSubmitted(f"low{i}", priority=0, now=0.1) for i in range(8)]
    high = [TaskSubmitted(f"high{i}", priority=5, now=0.1) for i in range(8)]
    assert sends(s.handle(*low, *high)) == []  # both engines busy: nothing leaves the hub
    order = []
    t = 1.0
    for done in ["busy-a", "busy-b"]:
        t += 1.0
        out = s.handle(TaskFinished(done, s.assigned[done], now=t))
        order += sends(out)
    while len(order) < 16:  # one engine at a time finishes its (one) task
        t += 1.0
        m, e = next(iter(s.assigned.items()))
        order += sends(s.handle(TaskFinished(m, e, now=t)))
    names = [m for m, _ in order]
    assert names[:8] == [f"high{i}" for i in range(8)]
    assert names[8:] == [f"low{i}" for i in range(8)]


def warm(s, engine, duration=0.0001, n=50, t=0.0):
    """Give `engine` a history of tiny tasks, so it gets tasks deep."""
    for i in range(n):
        s.handle(TaskSubmitted(f"warm-{engine}-{i}", targets=(engine,), now=t))
        t += duration
        s.handle(TaskFinished(f"warm-{engine}-{i}", engine, now=t))
    return t


def queued_on(s, engine):
    return [m for m, e in s.assigned.items() if e == engine]


def setup_steal():
    """Engine a runs a long task with 4 tasks queued behind it; b has just gone idle."""
    s = adaptive()
    t = warm(s, "a")
    t = warm(s, "b", t=t)
    out = s.handle(TaskSubmitted("long", now=t),
                   *[TaskSubmitted(f"q{i}", now=t) for i in range(4)],
                   TaskSubmitted("short", now=t))
    assert len(sends(out)) == 6
    s.handle(TaskStarted("long", s.assigned["long"], now=t))
    victim = s.assigned["long"]
    thief = "b" if victim == "a" else "a"
    # move everything else to the victim's queue, then the thief finishes its last task
    for m in [m for m, e in s.assigned.items() if e == thief]:
        out = s.handle(TaskFinished(m, thief, now=t + 1.0))
    return s, victim, thief, out, t + 1.0


def test_an_idle_engine_takes_back_tasks_queued_behind_a_long_one():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    asked = steal.msg_ids
    assert steal.engine == victim and "long" not in asked  # it said it started
    assert set(asked) == set(queued_on(s, victim)) - {"long"}  # stalled: all of them
    out = s.handle(GaveBack(victim, asked, asked[1:]))  # the first had started meanwhile
    assert [i.msg_id for i in out if isinstance(i, Returned)] == list(asked[1:])
    assert set(m for m, e in sends(out)) <= set(asked[1:])
    assert all(e == thief for _, e in sends(out))
    # the victim's TaskAborted copies of what it gave back are not answers
    for m in asked[1:]:
        assert s.handle(TaskFinished(m, victim, False, "TaskAborted", "aborted before it ran",
                                     now=t)) == []
    # the thief's replies are; each task is answered exactly once
    delivered = []
    while any(e == thief for e in s.assigned.values()):
        m = next(m for m, e in s.assigned.items() if e == thief)
        delivered += [i.msg_id for i in s.handle(TaskFinished(m, thief, now=t))
                      if isinstance(i, DeliverReply)]
    assert sorted(delivered) == sorted(asked[1:])
    out = s.handle(TaskFinished(asked[0], victim, now=t))
    assert [i.msg_id for i in out if isinstance(i, DeliverReply)] == [asked[0]]


def test_a_given_back_task_never_goes_back_to_the_engine_that_gave_it():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    s.handle(EngineDown(thief))
    out = s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids))
    # only the giver is left: it would drop the same signed request as a replay
    assert sends(out) == []
    assert {i.msg_id for i in out if isinstance(i, FailTask)} == set(steal.msg_ids)


def test_the_skipped_copys_reply_before_the_answer_to_the_steal():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    first = steal.msg_ids[0]
    out = s.handle(TaskFinished(first, victim, False, "TaskAborted", "aborted before it ran",
                                now=t))
    assert out == [HoldReply(first)]  # given back, or cancelled by its client? not known yet
    out = s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids))
    assert Returned(first, victim) in out and (first, thief) in sends(out)
    assert not any(isinstance(i, (DeliverReply, FailTask)) for i in out)
    out = s.handle(TaskFinished(first, thief, now=t))
    assert [i.msg_id for i in out if isinstance(i, DeliverReply)] == [first]


def test_a_cancel_that_aborted_it_during_a_steal_is_its_answer():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    first = steal.msg_ids[0]
    # a client's cancel took it on the engine first: the steal does not get it
    assert s.handle(TaskFinished(first, victim, False, "TaskAborted", "aborted before it ran",
                                 now=t)) == [HoldReply(first)]
    out = s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids[1:]))
    assert [i.msg_id for i in out if isinstance(i, DeliverReply)] == [first]
    assert first not in [m for m, _ in sends(out)] and first not in s.tasks


def test_a_steal_racing_a_completion_answers_once():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    first = steal.msg_ids[0]
    out = s.handle(TaskFinished(first, victim, now=t))  # it ran before the steal came
    assert [i.msg_id for i in out if isinstance(i, DeliverReply)] == [first]
    out = s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids[1:]))
    assert first not in [i.msg_id for i in out if isinstance(i, Returned)]
    assert first not in s.tasks


def test_an_engine_that_dies_mid_steal_fails_its_tasks_once():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    out = s.handle(EngineDown(victim, "engine died"))
    failed = [i.msg_id for i in out if isinstance(i, FailTask)]
    assert sorted(failed) == sorted(["long", *steal.msg_ids])
    assert s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids)) == []
    assert not s.tasks and not s.stealing_from


def test_an_abort_during_a_steal_ends_the_task_aborted():
    s, victim, thief, out, t = setup_steal()
    [steal] = [i for i in out if isinstance(i, StealTasks)]
    first = steal.msg_ids[0]
    s.handle(AbortTask(first))
    out = s.handle(GaveBack(victim, steal.msg_ids, steal.msg_ids))
    [fail] = [i for i in out if isinstance(i, FailTask) and i.msg_id == first]
    assert fail.ename == "TaskAborted" and first not in s.tasks


def test_no_steal_when_the_queued_work_is_not_worth_a_round_trip():
    s = adaptive()
    t = warm(s, "a")
    t = warm(s, "b", t=t)
    s.handle(*[TaskSubmitted(f"t{i}", now=t) for i in range(4)])
    b_tasks = queued_on(s, "b")
    out = []
    for m in b_tasks:
        out += s.handle(TaskFinished(m, "b", now=t + 0.0001))
    assert not any(isinstance(i, StealTasks) for i in out)  # 100 µs of work left on a


def test_eager_mode_never_steals():
    s = SchedulerState(prefetch="eager")
    s.handle(EngineUp("a"), EngineUp("b"))
    out = s.handle(*[TaskSubmitted(f"t{i}", now=0.0) for i in range(6)])
    assert len(sends(out)) == 6
    out = s.handle(*[TaskFinished(m, "b", now=5.0) for m in queued_on(s, "b")], Tick(9.0))
    assert not any(isinstance(i, StealTasks) for i in out)
