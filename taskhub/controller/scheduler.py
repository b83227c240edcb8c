"""The load-balanced scheduler's bookkeeping, as a state machine that does no I/O.

    events in:  EngineUp  EngineDown  TaskSubmitted  TaskFinished  Tick
    instructions out:  SendTask(msg_id, engine)  FailTask(msg_id, ename, evalue)

`SchedulerState.handle(*events)` is the only way the state changes. The controller decodes
socket traffic into events and carries out the instructions; tests feed events directly.
An engine is named by its uuid; a task by its msg_id. Tasks that cannot be placed yet (no
engine, or every allowed engine at its high-water mark) wait in submission order.
"""
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .schemes import get_scheme


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineUp:
    engine: str


@dataclass(frozen=True)
class EngineDown:
    engine: str
    reason: str = "engine died"


@dataclass(frozen=True)
class TaskSubmitted:
    msg_id: str
    targets: Optional[Tuple[str, ...]] = None  # allowed engines; None: any


@dataclass(frozen=True)
class TaskFinished:
    msg_id: str
    engine: str


@dataclass(frozen=True)
class Tick:
    now: float


# -- instructions -------------------------------------------------------------------------
@dataclass(frozen=True)
class SendTask:
    msg_id: str
    engine: str


@dataclass(frozen=True)
class FailTask:
    msg_id: str
    ename: str
    evalue: str


@dataclass
class _Waiting:
    msg_id: str
    targets: Optional[frozenset] = field(default=None)


class SchedulerState:
    """Where each task runs. `hwm` caps outstanding tasks per engine (0: no cap)."""

    def __init__(self, scheme="leastload", hwm=0, seed=None):
        self.scheme = get_scheme(scheme)
        self.hwm = hwm
        self.rng = random.Random(seed)
        self.engines = []        # uuids, least recently used first
        self.loads = {}          # uuid -> outstanding task count
        self.assigned = {}       # msg_id -> uuid
        self.waiting = deque()   # _Waiting, in submission order
        self._handlers = {EngineUp: self._engine_up, EngineDown: self._engine_down,
                          TaskSubmitted: self._submitted, TaskFinished: self._finished,
                          Tick: self._tick}

    def handle(self, *events):
        out = []
        for event in events:
            out.extend(self._handlers[type(event)](event))
        return out

    # -- event handlers ---------------------------------------------------------------------
    def _engine_up(self, ev):
        if ev.engine in self.loads:
            return []
        self.engines.insert(0, ev.engine)  # a fresh engine is the least recently used
        self.loads[ev.engine] = 0
        return self._drain()

    def _engine_down(self, ev):
        if ev.engine not in self.loads:
            return []
        self.engines.remove(ev.engine)
        del self.loads[ev.engine]
        lost = [m for m, e in self.assigned.items() if e == ev.engine]
        out = [FailTask(m, "EngineError", f"{ev.reason} while running this task")
               for m in lost]
        for m in lost:
            del self.assigned[m]
        return out + self._fail_unplaceable() + self._drain()

    def _submitted(self, ev):
        targets = frozenset(ev.targets) if ev.targets is not None else None
        self.waiting.append(_Waiting(ev.msg_id, targets))
        if targets is not None and not targets & set(self.loads):
            return self._fail_unplaceable()
        return self._drain()

    def _finished(self, ev):
        engine = self.assigned.pop(ev.msg_id, None)
        if engine is None or engine not in self.loads:
            return []
        self.loads[engine] -= 1
        return self._drain()

    def _tick(self, ev):
        return []

    # -- placement --------------------------------------------------------------------------
    def _free(self, engine):
        return not self.hwm or self.loads[engine] < self.hwm

    def _drain(self):
        """Place waiting tasks, oldest first, while some engine has room."""
        out, kept = [], deque()
        while self.waiting and any(self._free(e) for e in self.engines):
            task = self.waiting.popleft()
            engine = self._choose(task.targets)
            if engine is None:
                kept.append(task)
                continue
            out.append(self._assign(task.msg_id, engine))
        kept.extend(self.waiting)
        self.waiting = kept
        return out

    def _choose(self, targets):
        candidates = [e for e in self.engines
                      if self._free(e) and (targets is None or e in targets)]
        if not candidates:
            return None
        return candidates[self.scheme([self.loads[e] for e in candidates], self.rng)]

    def _assign(self, msg_id, engine):
        self.assigned[msg_id] = engine
        self.loads[engine] += 1
        self.engines.remove(engine)
        self.engines.append(engine)  # now the most recently used
        return SendTask(msg_id, engine)

    def _fail_unplaceable(self):
        """Fail waiting tasks whose allowed engines are all gone: they could wait forever."""
        alive = set(self.loads)
        doomed = [t for t in self.waiting if t.targets is not None and not t.targets & alive]
        for t in doomed:
            self.waiting.remove(t)
        return [FailTask(t.msg_id, "ImpossibleDependency",
                         "none of the task's target engines is registered") for t in doomed]
