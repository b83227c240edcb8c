"""Resuming a profile whose controller died: what becomes of the tasks it left unfinished.

    task DB: records with completed=None ──▶ ResumeBook(records, now, wait)
    events in:   EngineBack(uuid, holding)   EngineGone(uuid)   Answered(msg_id)   Tick(now)
    instructions out:  Requeue(msg_id, note)   Lose(msg_id, reason)

A controller started again on the profile (same ports, same keys: see app.py) finds every
task the dead one had not finished. An engine that outlived it reconnects and says what it
still holds (running, queued, or finished with a reply the dead controller may never have
read): those tasks are *claimed* — their answer comes from that engine, nothing runs twice.
Any engine that reconnects may claim any task still waiting (the DB lags behind what
was sent where by a moment). Everything else:

  load-balanced, request stored, sent to engine E         ─▶ wait for E (`wait` seconds):
        E back without it, or E not back in time: Requeue
  load-balanced, request stored, not recorded as sent     ─▶ wait until every engine the
        records name is back (or `wait` seconds): Requeue — at once if they name none
  direct (mux) to engine E                                ─▶ wait for E the same way:
        claimed, else Lose (a direct task runs on its engine or nowhere)
  request not stored (store=False, culled), or the pure scheme  ─▶ Lose at once

A claimed task whose engine goes away (EngineGone) is requeued (direct: lost). A requeued
task may run a second time (at-least-once): its record keeps the interrupted attempt in
`failed_attempts`, like a retry. No I/O here; tests drive it event by event.
"""
from dataclasses import dataclass

from .statemachine import StateMachine

WAITING, CLAIMED = "waiting", "claimed"
INTERRUPTED = "the controller stopped while this attempt was under way"


@dataclass(frozen=True)
class EngineBack:
    uuid: str
    holding: frozenset


@dataclass(frozen=True)
class EngineGone:
    uuid: str


@dataclass(frozen=True)
class Answered:
    msg_id: str


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class Requeue:
    """Queue the stored request again; `engine` is where the interrupted attempt was (or
    None: it never left the scheduler, so no attempt was interrupted)."""
    msg_id: str
    engine: object = None


@dataclass(frozen=True)
class Lose:
    msg_id: str
    reason: str


@dataclass
class _Entry:
    queue: str            # "task" (load-balanced) or "mux" (direct)
    engine: object        # uuid it was sent to, or None
    engine_id: object
    deadline: float
    state: str = WAITING


class ResumeBook(StateMachine):
    """The unfinished tasks of a dead controller until each is claimed, requeued or lost.
    `start()` returns the instructions due at once."""

    def __init__(self, records, now, wait, pure=False):
        self.entries = {}
        self._first = []
        for rec in records:
            self._plan(rec, now + wait, pure)
        self.expected = {e.engine for e in self.entries.values() if e.engine is not None}
        if not self.expected:  # nobody can be holding them: queue them now
            self._first += [self._release(m, "") for m in list(self.entries)]
        self._handlers = {EngineBack: self._back, EngineGone: self._gone,
                          Answered: self._answered, Tick: self._tick}

    def _plan(self, rec, deadline, pure):
        msg_id, queue, engine = rec["msg_id"], rec.get("queue"), rec.get("engine_uuid")
        if queue == "task" and (pure or not rec.get("buffers")):
            why = ("the pure scheme keeps no request to queue again" if pure else
                   "its request is not stored (store=False, or culled by retention), so it "
                   "cannot be queued again")
            self._first.append(Lose(msg_id, f"the controller stopped before this task "
                                            f"finished and {why}; resubmit it"))
        elif queue == "task" or (queue == "mux" and engine is not None):
            self.entries[msg_id] = _Entry(queue, engine, rec.get("engine_id"), deadline)
        else:
            self._first.append(Lose(msg_id, "the controller stopped before this task "
                                            "finished; resubmit it"))

    def start(self):
        first, self._first = self._first, []
        return first

    @property
    def pending(self):
        """How many tasks still wait for their engine or their claimed answer."""
        return len(self.entries)

    def claimed_by(self, msg_id):
        """The engine whose answer `msg_id` waits for, or None."""
        entry = self.entries.get(msg_id)
        return entry.engine if entry is not None and entry.state == CLAIMED else None

    def _release(self, msg_id, why):
        entry = self.entries.pop(msg_id)
        if entry.queue == "task":
            return Requeue(msg_id, entry.engine)
        return Lose(msg_id, f"this direct task was on engine {entry.engine_id}, which {why}; "
                            "resubmit it")

    def _back(self, ev):
        out = []
        self.expected.discard(ev.uuid)
        for msg_id, entry in list(self.entries.items()):
            if entry.state != WAITING:
                continue
            if msg_id in ev.holding:
                entry.state, entry.engine = CLAIMED, ev.uuid
            elif entry.engine == ev.uuid or (entry.engine is None and not self.expected):
                out.append(self._release(msg_id, "came back after the controller restart "
                                                  "without it"))
        return out

    def _gone(self, ev):
        out = [self._release(m, "went away before it finished")
               for m, e in list(self.entries.items()) if e.engine == ev.uuid]
        if ev.uuid in self.expected:  # it will not claim anything: stop waiting for it
            self.expected.discard(ev.uuid)
            if not self.expected:
                out += [self._release(m, "") for m, e in list(self.entries.items())
                        if e.engine is None]
        return out

    def _answered(self, ev):
        self.entries.pop(ev.msg_id, None)
        return []

    def _tick(self, ev):
        return [self._release(m, "did not come back after the controller restart")
                for m, e in list(self.entries.items())
                if e.state == WAITING and ev.now >= e.deadline]


def replay_floors(headers):
    """{sender: highest seq} over recorded request headers: a controller started again
    refuses those senders' messages at or below it (replays of what the dead one took in),
    and accepts the new ones that follow."""
    floors = {}
    for header in headers:
        if not isinstance(header, dict):
            continue
        sender, seq = header.get("sender"), header.get("seq")
        if isinstance(sender, str) and isinstance(seq, int) and not isinstance(seq, bool):
            floors[sender] = max(seq, floors.get(sender, -1))
    return floors


def requeue_header(recorded, fresh):
    """The header a requeued request is signed with: the recorded one (its msg_id and
    session, which the client and the engine's output routing go by) with the sender and
    sequence number of the controller that signs it now (`fresh`), so replay guards see a
    new message, not a replay of the old one."""
    header = dict(recorded)
    for key in ("sender", "seq", "date"):
        if key in fresh:
            header[key] = fresh[key]
        else:
            header.pop(key, None)
    return header
