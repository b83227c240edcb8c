"""An engine's own bookkeeping (taskhub/engine/state.py), event by event: no sockets, no
threads, no clock but the numbers passed in."""
from types import SimpleNamespace

from taskhub.engine.startnotice import StartNotices
from taskhub.engine.state import (Abort, AbortQueued, EngineState, GaveBack, Interrupt, Rejoin,
                                  Stop, StopTask, Tick)


def msg(msg_id):
    return SimpleNamespace(msg_id=msg_id)


def queued(state, *msg_ids, channel="task"):
    for m in msg_ids:
        state.arrived(channel, [b"hub"], msg(m))


def take_all(state):
    """(msg_id, aborted) of every task taken, in order."""
    out = []
    while (task := state.take()) is not None:
        out.append((task[2].msg_id, task[4]))
    return out


def running(state, msg_id, limit=None, now=0.0):
    """Take the next task (it must be `msg_id`, not aborted) and begin it."""
    channel, idents, m, generation, aborted = state.take()
    assert (m.msg_id, aborted) == (msg_id, False)
    state.begin(msg_id, limit, now)


def test_tasks_are_taken_in_arrival_order_with_their_channel_and_generation():
    s = EngineState()
    s.arrived("task", [b"a"], msg("t1"))
    s.arrived("mux", [b"b"], msg("t2"))
    first, second = s.take(), s.take()
    assert first[0::3] == ("task", 0) and first[2].msg_id == "t1" and first[4] is False
    assert second[:2] == ("mux", [b"b"]) and second[2].msg_id == "t2"
    assert s.take() is None


def test_aborting_queued_tasks_answers_them_aborted_and_leaves_the_others():
    s = EngineState()
    queued(s, "t1", "t2", "t3")
    assert s.handle(Abort(["t2", "elsewhere"])) == []  # nothing runs: nothing to stop
    assert take_all(s) == [("t1", False), ("t2", True), ("t3", False)]
    assert s.aborted == {"elsewhere"}  # an id never queued here stays marked, harmless


def test_abort_without_ids_takes_what_is_queued_now_but_not_what_runs_or_comes_later():
    s = EngineState()
    queued(s, "run", "q1", "q2")
    running(s, "run")
    assert s.handle(Abort(None)) == []  # the running task is left alone
    queued(s, "later")
    assert take_all(s) == [("q1", True), ("q2", True), ("later", False)]


def test_abort_naming_the_running_task_stops_it_and_the_mark_is_then_forgotten():
    s = EngineState()
    queued(s, "run", "next")
    running(s, "run")
    assert s.handle(Abort(["run"])) == [StopTask("run", "TaskAborted", "aborted while it ran")]
    s.end()
    s.finished("run")
    assert s.aborted == set()
    assert take_all(s) == [("next", False)]


def test_an_abort_between_take_and_begin_is_seen_as_the_task_begins():
    s = EngineState()
    queued(s, "t1", "t2")
    s.take()
    assert s.handle(Abort(["t1"])) == []  # not running yet: no task to stop
    s.begin("t1", None, 0.0)
    assert s.aborted_as_it_began("t1")
    assert not s.aborted_as_it_began("t2")


def test_giving_back_takes_only_queued_tasks_and_none_twice():
    s = EngineState()
    queued(s, "run", "q1", "q2", "q3")
    running(s, "run")
    assert s.handle(AbortQueued(["run", "q1", "q3", "unknown"])) == [GaveBack(["q1", "q3"])]
    # a second asker (a steal racing a client's cancel) gets none of them again
    assert s.handle(AbortQueued(["q1", "q2"])) == [GaveBack(["q2"])]
    assert take_all(s) == [("q1", True), ("q2", True), ("q3", True)]
    assert s.running[0] == "run"  # untouched


def test_a_task_taken_off_the_queue_cannot_be_given_back():
    s = EngineState()
    queued(s, "t1")
    s.take()
    assert s.handle(AbortQueued(["t1"])) == [GaveBack([])]


def test_an_interrupt_stops_only_a_named_running_task():
    s = EngineState()
    assert s.handle(Interrupt(None)) == []  # idle: nothing to interrupt
    queued(s, "run", "q")
    running(s, "run")
    assert s.handle(Interrupt(["q"])) == []
    assert s.handle(Interrupt(["run"])) == [StopTask("run", "KeyboardInterrupt")]
    assert s.handle(Interrupt(None)) == [StopTask("run", "KeyboardInterrupt")]
    assert isinstance(StopTask("run", "KeyboardInterrupt").exception(), KeyboardInterrupt)


def test_a_time_limit_stops_the_task_when_it_passes():
    s = EngineState()
    queued(s, "slow", "free")
    running(s, "slow", limit=2.0, now=10.0)
    assert s.handle(Tick(11.9)) == []
    stop = s.handle(Tick(12.0))
    assert stop == [StopTask("slow", "TaskTimeout",
                             "the task ran longer than its time limit of 2s and was interrupted")]
    exc = stop[0].exception()
    assert isinstance(exc, Stop) and (exc.ename, exc.evalue) == ("TaskTimeout", stop[0].evalue)
    assert s.handle(Tick(12.9)) == []  # once: the task has a moment to stop
    s.end()
    running(s, "free", now=20.0)  # no limit: never stopped
    assert s.handle(Tick(1e9)) == []


def test_a_stop_the_task_swallowed_is_raised_again_while_it_runs():
    s = EngineState()
    queued(s, "run", "next")
    running(s, "run")
    stop = StopTask("run", "TaskAborted", "aborted while it ran")
    assert s.handle(Abort(["run"])) == [stop]
    assert s.handle(Tick(5.0)) == []       # the turn that sent it: the clock starts
    assert s.io_wait_ms(5.9375) == 63  # it wakes for the repeat
    assert s.handle(Tick(5.5)) == []
    assert s.handle(Tick(6.0)) == [stop]   # still running a second on: again
    assert s.handle(Tick(6.5)) == []
    assert s.handle(Tick(7.0)) == [stop]
    s.end()                                # it stopped at last
    assert s.handle(Tick(9.0)) == [] and s.unheeded is None
    running(s, "next", now=9.0)
    assert s.handle(Tick(20.0)) == []      # another task is never stopped for it


def test_an_interrupt_is_not_repeated_code_may_catch_it_and_go_on():
    s = EngineState()
    queued(s, "run")
    running(s, "run")
    assert s.handle(Interrupt(None)) == [StopTask("run", "KeyboardInterrupt")]
    assert s.handle(Tick(1.0), Tick(5.0), Tick(50.0)) == []


def test_rejoining_drops_the_old_generations_work_and_stops_the_running_task():
    s = EngineState()
    queued(s, "run", "q1", "q2")
    running(s, "run")
    s.handle(Abort(["q2"]))
    s.hold("task", "done", 0, b"reply-of-done", now=0.0)
    s.rejoin_asked = True
    assert s.handle(Rejoin()) == [StopTask("run", "EngineError", "the hub declared this "
                                           "engine dead while the task ran")]
    assert (s.generation, s.rejoin_asked, s.aborted) == (1, False, set())
    assert s.take() is None and s.held == []
    queued(s, "new")
    assert s.take()[3] == 1


def test_a_reply_of_an_earlier_generation_is_dropped_when_it_would_be_sent():
    s = EngineState()
    queued(s, "t")
    _, _, _, generation, _ = s.take()
    s.handle(Rejoin())  # while "t" ran
    s.hold("task", "t", generation, b"late", now=0.0)
    s.hold("task", "t2", s.generation, b"fresh", now=0.0)
    assert s.take_replies() == ({"task": [b"fresh"]}, ["t"])


def test_replies_are_held_for_a_batch_until_the_gather_time_or_the_batch_is_full():
    s = EngineState(batch_gather=0.5, batch_max=3)
    assert not s.replies_due(0.0) and s.main_wait_ms(0.0) is None
    s.hold("task", "a", 0, b"A", now=10.0)
    s.hold("mux", "b", 0, b"B", now=10.25)
    assert s.held_until == 10.5  # the first reply held starts the clock
    assert not s.replies_due(10.25) and s.main_wait_ms(10.25) == 251
    assert s.replies_due(10.5)
    s.hold("task", "c", 0, b"C", now=10.25)
    assert s.replies_due(10.25)  # full
    assert s.take_replies() == ({"task": [b"A", b"C"], "mux": [b"B"]}, [])
    assert s.held == [] and not s.replies_due(99.0)


def test_the_io_thread_is_woken_for_a_time_limit_and_once_per_held_batch():
    s = EngineState(batch_gather=0.5)
    assert not s.wants_io(None)
    assert s.wants_io(5.0)
    s.hold("task", "a", 0, b"A", now=1.0)
    assert s.wants_io(None)
    assert not s.wants_io(None)  # the same batch: already woken for it
    s.take_replies()
    s.hold("task", "b", 0, b"B", now=2.0)
    assert s.wants_io(None)


def test_the_io_thread_sleeps_less_for_output_a_time_limit_held_replies_and_notices():
    clock = [0.0]
    s = EngineState(batch_gather=0.05, notices=StartNotices(after=0.03, clock=lambda: clock[0]))
    assert s.io_wait_ms(0.0) == 100
    assert s.io_wait_ms(0.0, output_pending=True) == 0
    assert s.io_wait_ms(0.0, output_pending=True, output_full=True) == 10
    queued(s, "t")
    running(s, "t", limit=0.07, now=0.0)
    assert s.io_wait_ms(0.0) == 71
    s.handle(Tick(0.07))
    assert s.io_wait_ms(0.07) == 100  # its limit was enforced: no reason to wake for it
    s.hold("task", "x", 0, b"X", now=0.0)
    assert s.io_wait_ms(0.0) == 51
    s.notices.begin("task", [b"hub"], {"msg_id": "t"})
    assert s.io_wait_ms(0.0) == 31
