"""The hub's engine bookkeeping, with no I/O: registration, heartbeats, direct tasks.

    events in:  Register  ChannelReady  Pong  Unregister  DirectSent  DirectDone  Tick
    instructions out:  EngineIsUp  EngineIsDown  FailTask  AskToRejoin

An engine registers (gets the next integer id, never reused), then says hello on each of its
task channels (`channels`: without "task" under the pure scheme, whose device cannot pass a
hello back); once every channel has spoken it is up. An engine whose heartbeat has been
silent for `heartbeat_timeout` seconds (or that unregisters) is down, and every direct task
outstanding on it fails. Load-balanced tasks are the scheduler's; the controller tells it too.

An engine declared dead for its silence may only have been stopped (SIGSTOP) or cut off,
and come back: its heart answers pings again. The hub never takes it back under its old
identity — its tasks have been failed or retried — but asks it (at most every
`ask_interval` seconds) to rejoin: to register again as a new engine.
"""
from dataclasses import dataclass, field
from typing import Optional

from .scheduler import FailTask
from .statemachine import StateMachine

CHANNELS = frozenset({"mux", "task", "control"})


@dataclass(frozen=True)
class Register:
    uuid: str
    info: dict
    now: float


@dataclass(frozen=True)
class ChannelReady:
    uuid: str
    channel: str


@dataclass(frozen=True)
class Pong:
    uuid: str
    now: float


@dataclass(frozen=True)
class Unregister:
    uuid: str
    reason: str = "engine shut down"


@dataclass(frozen=True)
class DirectSent:
    msg_id: str
    uuid: str


@dataclass(frozen=True)
class DirectDone:
    msg_id: str


@dataclass(frozen=True)
class Tick:
    now: float


@dataclass(frozen=True)
class EngineIsUp:
    id: int
    uuid: str


@dataclass(frozen=True)
class EngineIsDown:
    id: int
    uuid: str
    reason: str


@dataclass(frozen=True)
class AskToRejoin:
    """Tell the engine `uuid`, declared dead but heard from again, to register anew."""
    uuid: str


@dataclass
class EngineRecord:
    id: int
    uuid: str
    info: dict
    registered: float
    last_beat: float
    ready: set = field(default_factory=set)
    up: bool = False
    direct: set = field(default_factory=set)  # outstanding direct msg_ids
    completed: int = 0


class RegistrationError(ValueError):
    """A registration the hub refuses; the message says why."""


class HubState(StateMachine):
    """Engines by id and uuid; `heartbeat_timeout` seconds of silence means dead."""

    def __init__(self, heartbeat_timeout=10.0, channels=CHANNELS, ask_interval=1.0,
                 period=None, engine_limit=None, limit_reason=""):
        self.heartbeat_timeout = heartbeat_timeout
        self.engine_limit = engine_limit  # None: no limit; else the most engines at once
        self.limit_reason = limit_reason
        self.period = period      # expected time between Ticks; None: never forgive stalls
        self._last_tick = None
        self.ask_interval = ask_interval
        self.channels = frozenset(channels)
        self.engines = {}      # id -> EngineRecord, registered and not yet down
        self.by_uuid = {}      # uuid -> EngineRecord
        self.direct_owner = {}  # msg_id -> uuid
        # uuid -> when last asked to rejoin, of each engine that died of silence: kept for
        # good (one small entry per such engine), as it may come back at any time
        self.silenced = {}
        self.next_id = 0
        # ids below it were given by a dead predecessor: an engine that outlived it may ask
        # for its own back, once (controller/resume.py)
        self.resumable_below = 0
        self._resumed_ids = set()
        self._handlers = {Register: self._register, ChannelReady: self._ready, Pong: self._pong,
                          Unregister: self._unregister, DirectSent: self._sent,
                          DirectDone: self._done, Tick: self._tick}

    def register(self, uuid, info, now, want_id=None):
        """Register an engine and return its record (raises RegistrationError). `want_id`:
        the id it had under a dead predecessor, kept if no engine has it here."""
        if not isinstance(uuid, str) or not uuid or uuid in self.by_uuid:
            raise RegistrationError(f"engine uuid {uuid!r} is invalid or already registered")
        if self.engine_limit is not None and len(self.engines) >= self.engine_limit:
            raise RegistrationError(f"this controller takes at most {self.engine_limit} "
                                    f"engines and has {len(self.engines)}: {self.limit_reason}")
        if self._resumable(want_id):
            self._resumed_ids.add(want_id)
            rec = EngineRecord(want_id, uuid, dict(info), now, now)
        else:
            rec = EngineRecord(self.next_id, uuid, dict(info), now, now)
            self.next_id += 1
        self.engines[rec.id] = rec
        self.by_uuid[uuid] = rec
        return rec

    def _resumable(self, want_id):
        return (isinstance(want_id, int) and not isinstance(want_id, bool)
                and 0 <= want_id < self.resumable_below and want_id not in self._resumed_ids
                and want_id not in self.engines)

    def up_ids(self):
        return sorted(i for i, r in self.engines.items() if r.up)

    def uuid_of(self, engine_id) -> Optional[str]:
        rec = self.engines.get(engine_id)
        return rec.uuid if rec is not None and rec.up else None

    def id_of(self, uuid) -> Optional[int]:
        rec = self.by_uuid.get(uuid)
        return rec.id if rec is not None else None

    # -- event handlers ---------------------------------------------------------------------
    def _register(self, ev):
        self.register(ev.uuid, ev.info, ev.now)
        return []

    def _ready(self, ev):
        rec = self.by_uuid.get(ev.uuid)
        if rec is None or rec.up or ev.channel not in self.channels:
            return []
        rec.ready.add(ev.channel)
        if rec.ready == self.channels:
            rec.up = True
            return [EngineIsUp(rec.id, rec.uuid)]
        return []

    def _pong(self, ev):
        rec = self.by_uuid.get(ev.uuid)
        if rec is not None:
            rec.last_beat = max(rec.last_beat, ev.now)
            return []
        asked = self.silenced.get(ev.uuid)
        if asked is None or ev.now - asked < self.ask_interval:
            return []  # a stranger (pongs are unsigned), or asked a moment ago
        self.silenced[ev.uuid] = ev.now
        return [AskToRejoin(ev.uuid)]

    def _unregister(self, ev):
        rec = self.by_uuid.get(ev.uuid)
        return self._down(rec, ev.reason) if rec is not None else []

    def _sent(self, ev):
        rec = self.by_uuid.get(ev.uuid)
        if rec is None:
            return [FailTask(ev.msg_id, "EngineError", "the target engine is not registered")]
        rec.direct.add(ev.msg_id)
        self.direct_owner[ev.msg_id] = ev.uuid
        return []

    def _done(self, ev):
        rec = self.by_uuid.get(self.direct_owner.pop(ev.msg_id, None))
        if rec is not None:
            rec.direct.discard(ev.msg_id)
        return []

    def _tick(self, ev):
        self._forgive_stall(ev.now)
        out = []
        for rec in list(self.engines.values()):
            if ev.now - rec.last_beat > self.heartbeat_timeout:
                silent = ev.now - rec.last_beat
                self.silenced[rec.uuid] = float("-inf")
                out.extend(self._down(rec, f"engine {rec.id} missed heartbeats "
                                           f"for {silent:.1f}s"))
        return out

    def _forgive_stall(self, now):
        """Time the hub spent not listening — a long query on its one thread — is not the
        engines' silence: credit it back, so a stalled hub does not declare them all dead."""
        last, self._last_tick = self._last_tick, now
        if last is None or self.period is None:
            return
        stalled = now - last - self.period
        if stalled > self.period:
            for rec in self.engines.values():
                rec.last_beat = min(now, rec.last_beat + stalled)

    def _down(self, rec, reason):
        del self.engines[rec.id]
        del self.by_uuid[rec.uuid]
        out = [EngineIsDown(rec.id, rec.uuid, reason)]
        for msg_id in sorted(rec.direct):
            self.direct_owner.pop(msg_id, None)
            out.append(FailTask(msg_id, "EngineError", f"{reason} while running this task"))
        return out
