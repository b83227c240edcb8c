"""An engine's own bookkeeping, with no sockets and no threads: what is queued, what runs,
what must never run, which replies wait for a batch, and which registration it serves.

    per task (plain methods, the hot path):
        arrived ─▶ queue ─▶ take ─▶ begin … end ─▶ finished ─▶ hold ─▶ take_replies
    control events (`handle`):  Abort  AbortQueued  Interrupt  Tick  Rejoin
    instructions out:           StopTask  GaveBack

A request arrives into the queue tagged with the generation (registrations so far, less
one) it came in. The main thread takes the next one — told whether it was aborted while it
waited, in which case it answers "aborted" without running it — begins it, ends it and
holds its reply back for a batch while more tasks are queued (BATCH_GATHER at most).

Control requests are events: an abort marks tasks never to run (and stops the running one
if it is named); a queued-only abort (a client's cancel, or the hub stealing work back for
an idle engine) takes only tasks still queued and not taken before, and says which
(GaveBack), so no task is given back twice; an interrupt stops the running task; a Tick
stops a task past its time limit, and repeats a stop (not an interrupt) every STOP_REPEAT
seconds while the task it named goes on running (code that swallowed it). A Rejoin (the hub declared this engine dead and
has failed or retried its work) starts a new generation: the queue, the marks and the
held replies are dropped, the running task is stopped, and any reply of an earlier
generation still on its way is dropped when it would be sent.

The per-task steps are methods rather than events: they run several times per task on the
main thread, where an event object and an instruction list each cost a measurable part of
a tiny task's latency. The engine holds its sockets' condition around the rest, except
where one thread's single step is atomic under the GIL: `begin`/`end` (one assignment the
IO thread reads), `arrived` on the main thread while it alone reads the sockets (one
append; `queued_ids` copies the queue before it walks it), and a look at `aborted` before
taking the lock. A start notice is decided by `notices` (startnotice.py).
"""
import collections
from dataclasses import dataclass
from typing import Optional

from .startnotice import StartNotices

BATCH_GATHER = 0.0005  # how long a reply may wait for others while more tasks are queued
BATCH_GATHER_MAX = 64
IO_WAIT_MS = 100  # the IO thread's longest sleep: how late output or a start notice may be
STOP_REPEAT = 1.0  # seconds between stops of a task that went on running after one


class Stop(BaseException):
    """Raised in a running task to stop it; a BaseException so `except Exception` in user
    code does not swallow it."""

    def __init__(self, ename, evalue):
        super().__init__(evalue)
        self.ename, self.evalue = ename, evalue


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Abort:
    """abort_request: `msg_ids` never run, the running one stopped if named; None: every
    task queued now (the running one is left alone)."""
    msg_ids: Optional[list]


@dataclass(frozen=True)
class AbortQueued:
    """abort_request with queued_only: a cancel or a steal; the running task is left alone."""
    msg_ids: list


@dataclass(frozen=True)
class Interrupt:
    """interrupt_request: KeyboardInterrupt in the running task if named (None: any)."""
    msg_ids: Optional[list]


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Rejoin:
    """The hub declared this engine dead; it registers again as a new engine."""


# -- instructions -------------------------------------------------------------------------
@dataclass(frozen=True)
class StopTask:
    """Stop the running task `msg_id` (SIGINT to the main thread) with `exception()`:
    KeyboardInterrupt for an interrupt, else a Stop the user sees as `ename: evalue`."""
    msg_id: str
    ename: str
    evalue: str = ""

    def exception(self):
        if self.ename == "KeyboardInterrupt":
            return KeyboardInterrupt()
        return Stop(self.ename, self.evalue)


@dataclass(frozen=True)
class GaveBack:
    """These queued tasks will not run here: the asker may send them elsewhere."""
    msg_ids: list


class EngineState:
    def __init__(self, batch_gather=BATCH_GATHER, batch_max=BATCH_GATHER_MAX,
                 notices=None):
        self.batch_gather = batch_gather
        self.batch_max = batch_max
        self.notices = notices if notices is not None else StartNotices()
        self.generation = 0
        self.queue = collections.deque()  # (channel, idents, msg, generation) to run
        self.aborted = set()         # msg_ids never to run
        self.running = None          # (msg_id, deadline or None, time limit) of the task now
        self.timed_out = None        # msg_id whose time limit was already enforced
        self.unheeded = None         # [StopTask, when last sent or None] while its task runs
        self.held = []               # (channel, msg_id, generation, frames) held for a batch
        self.held_until = 0.0
        self.poked_for = None        # the batch held back the IO thread was woken for
        self.rejoin_asked = False
        self._handlers = {Abort: self._abort, AbortQueued: self._abort_queued,
                          Interrupt: self._interrupt, Tick: self._tick, Rejoin: self._rejoin}

    def handle(self, *events):
        out = []
        for event in events:
            out.extend(self._handlers[type(event)](event))
        return out

    # -- the task path ----------------------------------------------------------------------
    def arrived(self, channel, idents, msg):
        """An apply_request came in on `channel`: queued under the current generation."""
        self.queue.append((channel, idents, msg, self.generation))

    def take(self):
        """The next task to answer, (channel, idents, msg, generation, aborted), or None:
        `aborted` says it is to be answered as aborted, not run. Tasks of an earlier
        generation are dropped (the hub gave up on them)."""
        queue_, generation = self.queue, self.generation
        while queue_:
            channel, idents, msg, gen = queue_.popleft()
            if gen != generation:
                continue
            aborted = self.aborted
            if aborted and msg.msg_id in aborted:
                aborted.discard(msg.msg_id)
                return channel, idents, msg, gen, True
            return channel, idents, msg, gen, False
        return None

    def begin(self, msg_id, limit, now):
        """The task `msg_id` runs from `now`, for at most `limit` seconds (None: no limit)."""
        self.running = (msg_id, now + limit if limit else None, limit)

    def aborted_as_it_began(self, msg_id):
        """(after `begin`) Whether an abort came between `take` and `begin`: it found no
        task to stop (see `_abort` for why this needs no lock to be seen)."""
        return msg_id in self.aborted

    def end(self):
        self.running = None

    def finished(self, msg_id):
        """The task's reply is made: an abort that came while it ran is forgotten."""
        self.aborted.discard(msg_id)

    def wants_io(self, limit):
        """As a task begins: whether to wake the IO thread, which sleeps up to IO_WAIT_MS —
        to watch the task's time limit, or to send the replies held back (once per batch)."""
        if limit is not None or (self.held and self.poked_for != self.held_until):
            self.poked_for = self.held_until
            return True
        return False

    # -- replies held back for a batch ------------------------------------------------------
    def hold(self, channel, msg_id, generation, frames, now):
        if not self.held:
            self.held_until = now + self.batch_gather
        self.held.append((channel, msg_id, generation, frames))

    def replies_due(self, now):
        """(main thread, between tasks) Whether the held replies go before the next task."""
        return bool(self.held) and (len(self.held) >= self.batch_max or now >= self.held_until)

    def take_replies(self, sent_log=None, now=None):
        """The held replies to send now, {channel: [frames, …]} in order, and the msg_ids of
        those dropped because they belong to an earlier generation. Each one to send is
        added to `sent_log` (reconnect.ReplyLog: resent to a controller started again)."""
        held, self.held = self.held, []
        ready, dropped = {}, []
        for channel, msg_id, generation, frames in held:
            if generation != self.generation:
                dropped.append(msg_id)
            else:
                ready.setdefault(channel, []).append(frames)
                if sent_log is not None:
                    sent_log.add(msg_id, channel, frames, now)
        return ready, dropped

    # -- how long the threads may sleep -----------------------------------------------------
    def main_wait_ms(self, now):
        """ms the idle main thread may wait for requests: held replies are sent by then."""
        return None if not self.held else max(0, int((self.held_until - now) * 1000) + 1)

    def io_wait_ms(self, now, output_pending=False, output_full=False):
        """ms the IO thread may sleep: IO_WAIT_MS (output is published and a started task
        announced that late at most, without a wake-up per task); less to publish pending
        output, stop a task close to its time limit, send held replies, announce a task."""
        timeout = IO_WAIT_MS
        if output_pending:
            timeout = 10 if output_full else 0
        running = self.running
        if running is not None and running[1] is not None and self.timed_out != running[0]:
            timeout = min(timeout, int((running[1] - now) * 1000) + 1)
        if self.held:
            timeout = min(timeout, int((self.held_until - now) * 1000) + 1)
        if self.unheeded is not None:
            sent = self.unheeded[1]
            due = now if sent is None else sent + STOP_REPEAT
            timeout = min(timeout, int((due - now) * 1000) + 1)
        return self.notices.wait_ms(max(0, timeout))

    def queued_ids(self):
        # a copy first (one C call): the main thread appends to the queue without the lock
        # while it owns the sockets, and iterating a deque that changes raises
        return [item[2].msg_id for item in list(self.queue)]

    # -- control events ---------------------------------------------------------------------
    def _stop(self, msg_ids, ename, evalue=""):
        running = self.running
        if running is None or (msg_ids is not None and running[0] not in msg_ids):
            return []
        stop = StopTask(running[0], ename, evalue)
        if ename != "KeyboardInterrupt":  # code may catch an interrupt and carry on: its own
            self.unheeded = [stop, None]  # choice; an abort or a time limit is not
        return [stop]

    def _repeat_stop(self, now):
        """A stop raised where the task's code swallowed it — while IPython's shell is made
        on a first execute, or in a bare `except:` — leaves the task running: it is raised
        again every STOP_REPEAT seconds for as long as that task runs."""
        stop, sent = self.unheeded
        running = self.running
        if running is None or running[0] != stop.msg_id:
            self.unheeded = None
            return []
        if sent is None:
            self.unheeded[1] = now  # the first Tick after the stop went out
            return []
        if now - sent < STOP_REPEAT:
            return []
        self.unheeded[1] = now
        return [stop]

    def _abort(self, event):
        # marked first, then the running task looked at: the main thread sets `running`
        # first, then looks at the marks (`aborted_as_it_began`), without a lock — so one
        # of the two sees the other, and a task aborted as it begins never runs on
        self.aborted.update(self.queued_ids() if event.msg_ids is None else event.msg_ids)
        if event.msg_ids is None:
            return []
        return self._stop(event.msg_ids, "TaskAborted", "aborted while it ran")

    def _abort_queued(self, event):
        queued = set(self.queued_ids())
        # one already taken (by a client's cancel, or a steal) is not taken twice: the
        # second asker would believe it still had to run it, or that it never will
        taken = [m for m in event.msg_ids if m in queued and m not in self.aborted]
        self.aborted.update(taken)
        return [GaveBack(taken)]

    def _interrupt(self, event):
        return self._stop(event.msg_ids, "KeyboardInterrupt")

    def _tick(self, event):
        if self.unheeded is not None:
            repeat = self._repeat_stop(event.now)
            if repeat:
                return repeat
        running = self.running
        if (running is None or running[1] is None or event.now < running[1]
                or self.timed_out == running[0]):
            return []
        self.timed_out = running[0]
        stop = self._stop([running[0]], "TaskTimeout", f"the task ran longer than its time "
                          f"limit of {running[2]:g}s and was interrupted")
        self.unheeded[1] = event.now
        return stop

    def _rejoin(self, event):
        self.rejoin_asked = False
        self.generation += 1  # work of earlier generations is skipped, replies dropped
        self.aborted.clear()
        self.queue.clear()
        self.held.clear()
        return self._stop(None, "EngineError", "the hub declared this engine dead while the "
                          "task ran")
