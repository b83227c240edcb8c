"""The load-balanced scheduler's bookkeeping, as a state machine that does no I/O.

    events in:  EngineUp  EngineDown  TaskSubmitted  TaskFinished  DirectSubmitted
                DirectFinished  AbortTask  InterruptTask  Tick
    instructions out:  SendTask  FailTask  DeliverReply  Requeued  SignalEngine

`SchedulerState.handle(*events)` is the only way the state changes. The controller decodes
socket traffic into events and carries out the instructions; tests feed events directly.
An engine is named by its uuid; a task by its msg_id. A task's life:

    submitted ─▶ BLOCKED ──(after/follow met)──▶ READY ──(an engine has room)──▶ RUNNING
                   │ can never be met: ImpossibleDependency        │             │ reply ok
                   │ timeout passes: DependencyTimeout   ◀─────────┘             ▼
                   ▼                                   error + retries left,  DeliverReply
                 FailTask                              or UnmetDependency: Requeued → READY

READY tasks go out highest `priority` first, then in submission order. A task never goes
twice to an engine that failed it (retries) or lacked its functional dependencies
(UnmetDependency); when no engine is left to try, it fails with its last error or, for
unmet dependencies, with ImpossibleDependency — but a task with a `timeout` that every
registered engine has failed waits, until that long after its submission, for an engine
that registers later, then fails with TaskTimeout (as ipyparallel's do). Nothing waits forever on what cannot
happen: dependencies that failed, engines that are gone, tasks that never existed. A
dependency on a msg_id nobody knows gets `grace` seconds to show up (a direct task sent on
another socket at the same moment may arrive later) before InvalidDependency.
"""
import heapq
import itertools
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import FrozenSet, Optional, Tuple

from .prefetch import Prefetch
from .schemes import get_scheme
from .statemachine import StateMachine

BLOCKED, READY, RUNNING, RELEASED = "blocked", "ready", "running", "released"
STEAL_MIN = 0.005  # seconds of queued work on an engine worth a steal's round trip


# -- what tasks depend on -----------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """How a finished task ended, and where (None: it never reached an engine)."""
    ok: bool
    engine: Optional[str] = None


@dataclass(frozen=True)
class Dep:
    """A graph dependency: met when all (or any) of `msg_ids` ended in an accepted way."""
    msg_ids: FrozenSet[str]
    all: bool = True
    success: bool = True
    failure: bool = False

    def accepts(self, outcome):
        return self.success if outcome.ok else self.failure


MET, WAIT = "met", "wait"  # any other result of judging a Dep is the reason it cannot be met


def judge(dep, known, name):
    """MET, WAIT, or why `dep` can never be met, given the Outcomes `known` so far."""
    if not dep.msg_ids:
        return MET
    outcomes = [(m, known[m]) for m in sorted(dep.msg_ids) if m in known]
    pending = len(dep.msg_ids) - len(outcomes)
    bad = [(m, o) for m, o in outcomes if not dep.accepts(o)]
    if dep.all and bad:
        m, o = bad[0]
        return (f"{name} dependency {m} {'succeeded' if o.ok else 'failed'}, which "
                f"{name}= does not accept ({_accepted(dep)})")
    if not dep.all and len(bad) == len(dep.msg_ids):
        return f"none of the {len(bad)} {name}= dependencies ended as it accepts " \
               f"({_accepted(dep)})"
    if dep.all:
        return WAIT if pending else MET
    return MET if len(bad) < len(outcomes) else WAIT


def judge_follow(dep, known):
    """(MET, engines it may run on), (WAIT, None) or (reason, None)."""
    state = judge(dep, known, "follow")
    if state != MET:
        return state, None
    places = {known[m].engine for m in dep.msg_ids if m in known and dep.accepts(known[m])}
    nowhere = "a follow= dependency never ran on an engine, so there is nowhere to follow"
    if dep.all and None in places:
        return nowhere, None
    if dep.all and len(places) > 1:
        return (f"the follow= dependencies ran on {len(places)} different engines; with "
                "all=True no engine can follow all of them"), None
    places.discard(None)
    if not places:
        return (WAIT if any(m not in known for m in dep.msg_ids) else nowhere), None
    return MET, frozenset(places)


def _accepted(dep):
    return " or ".join(w for w, ok in (("success", dep.success), ("failure", dep.failure)) if ok)


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
    """A new task. `outcomes`/`external` describe dependencies the scheduler cannot know
    itself: tasks that finished long ago (from the task DB) and direct tasks still running."""
    msg_id: str
    targets: Optional[Tuple[str, ...]] = None  # allowed engines; None: any
    after: Optional[Dep] = None
    follow: Optional[Dep] = None
    timeout: Optional[float] = None  # seconds it may wait to be sent; None: forever
    retries: int = 0
    priority: float = 0
    now: float = 0.0
    outcomes: Optional[dict] = None  # msg_id -> Outcome
    external: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class TaskFinished:
    msg_id: str
    engine: str
    ok: bool = True
    ename: str = ""
    evalue: str = ""
    now: Optional[float] = None  # when the reply came (prefetch measures durations)


@dataclass(frozen=True)
class TaskStarted:
    """The engine a task was sent to started running it."""
    msg_id: str
    engine: str
    now: float = 0.0


@dataclass(frozen=True)
class GaveBack:
    """`engine` answered a StealTasks for `asked`: `taken` are those it had not started,
    which it will never run (it answers each with a TaskAborted reply, ignored here)."""
    engine: str
    asked: Tuple[str, ...]
    taken: Tuple[str, ...]


@dataclass(frozen=True)
class DirectSubmitted:
    """A task outside the scheduler (sent to a named engine) was submitted."""
    msg_id: str


@dataclass(frozen=True)
class DirectFinished:
    """A task outside the scheduler (sent to a named engine) ended."""
    msg_id: str
    engine: Optional[str]
    ok: bool


@dataclass(frozen=True)
class AbortTask:
    msg_id: str


@dataclass(frozen=True)
class InterruptTask:
    msg_id: str


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


@dataclass(frozen=True)
class DeliverReply:
    """The engine's reply to this task is its answer: pass it on."""
    msg_id: str


@dataclass(frozen=True)
class Requeued:
    """The attempt on `engine` failed with ename/evalue; the task will run elsewhere."""
    msg_id: str
    engine: str
    ename: str
    evalue: str


@dataclass(frozen=True)
class StealTasks:
    """Ask `engine` to give back those of `msg_ids` it has not started (a queued-only
    abort); its answer is the GaveBack event."""
    engine: str
    msg_ids: Tuple[str, ...]


@dataclass(frozen=True)
class Returned:
    """`engine` gave the task back before it started: it waits at the hub again."""
    msg_id: str
    engine: str


@dataclass(frozen=True)
class HoldReply:
    """Keep the engine's reply to this task: whether it is the answer (a cancel aborted
    it) or the skipped copy of a task given back is known when the steal is answered."""
    msg_id: str


@dataclass(frozen=True)
class SignalEngine:
    """Ask `engine` to stop this task: action is 'abort' or 'interrupt'."""
    msg_id: str
    engine: str
    action: str


@dataclass(eq=False)
class _Task:
    msg_id: str
    seq: int
    priority: float = 0
    targets: Optional[frozenset] = None
    after: Optional[Dep] = None
    follow: Optional[Dep] = None
    retries: int = 0
    timeout: Optional[float] = None
    deadline: Optional[float] = None     # until it is first sent; then None
    expires: Optional[float] = None      # submission + timeout, kept once it is sent
    known: dict = field(default_factory=dict)   # dependency msg_id -> Outcome
    where: Optional[frozenset] = None    # engines its follow= allows, once met
    tried: set = field(default_factory=set)     # engines it failed on or could not run on
    last_error: Optional[Tuple[str, str]] = None
    engine: Optional[str] = None
    state: str = BLOCKED
    final: bool = False                  # aborted or interrupted: no second attempt
    started: bool = False                # its engine said it started running it
    stealing: bool = False               # asked back from its engine, no answer yet
    held: Optional[TaskFinished] = None  # a TaskAborted reply that came during the steal
    ghosts: set = field(default_factory=set)  # engines that gave it back: each sends one
    # TaskAborted reply for it later, which is not this task's answer


class SchedulerState(StateMachine):
    """Where each task runs, and when. `hwm` caps outstanding tasks per engine (0: no cap);
    `prefetch` is how many an engine gets before it needs them: "adaptive" (a depth from
    measured durations, prefetch.py) or "eager" (all it may have, at once);
    `remember` is how many finished tasks' outcomes are kept for dependencies (older ones
    the controller looks up in the task DB); `grace` is how long (seconds) a dependency on
    an unknown msg_id waits for that task to show up."""

    def __init__(self, scheme="leastload", hwm=0, seed=None, remember=65536, grace=1.0,
                 prefetch="eager", horizon=None, steal=True):
        self.scheme = get_scheme(scheme)
        self.hwm = hwm
        self.prefetch = Prefetch(prefetch, hwm, **({} if horizon is None
                                                   else {"horizon": horizon}))
        self.adaptive = self.prefetch.adaptive
        self.now = 0.0           # the latest time an event brought
        self.steal = self.adaptive and steal
        self.stealing_from = set()  # engines asked to give tasks back, not answered yet
        self.returned = 0        # tasks engines gave back, so far
        self.rng = random.Random(seed)
        self.remember = remember
        self.grace = grace
        self.engines = []        # uuids, least recently used first
        self.loads = {}          # uuid -> outstanding task count
        self.assigned = {}       # msg_id -> uuid, for running tasks
        self.tasks = {}          # msg_id -> _Task, for every task not finished
        self.outcomes = OrderedDict()  # msg_id -> Outcome of recently finished tasks
        self._shared = {}        # Outcome -> the equal instance `outcomes` holds (see _remember)
        self.dependents = {}     # msg_id -> msg_ids of blocked tasks waiting for it
        self.external = set()    # direct tasks that blocked tasks wait for
        self._ready = []         # heap of (-priority, seq, msg_id)
        self._deadlines = []     # heap of (deadline, msg_id)
        self._unknown = []       # heap of (end of grace, unknown msg_id something waits for)
        self._seq = itertools.count()
        self._handlers = {EngineUp: self._engine_up, EngineDown: self._engine_down,
                          TaskSubmitted: self._submitted, TaskFinished: self._finished,
                          TaskStarted: self._started, GaveBack: self._gave_back,
                          DirectSubmitted: self._direct_submitted,
                          DirectFinished: self._direct_finished, AbortTask: self._abort,
                          InterruptTask: self._interrupt, Tick: self._tick}

    @property
    def waiting(self):
        """The tasks not sent to an engine yet (each has .msg_id), in submission order."""
        return [t for t in self.tasks.values() if t.state != RUNNING]

    def knows(self, msg_id):
        """Whether a dependency on `msg_id` can be judged without outside help."""
        return msg_id in self.tasks or msg_id in self.outcomes or msg_id in self.external

    # -- engines ----------------------------------------------------------------------------
    def _engine_up(self, ev):
        if ev.engine in self.loads:
            return []
        self.engines.insert(0, ev.engine)  # a fresh engine is the least recently used
        self.loads[ev.engine] = 0
        self.prefetch.add(ev.engine)
        return self._drain()

    def _engine_down(self, ev):
        if ev.engine not in self.loads:
            return []
        self.engines.remove(ev.engine)
        del self.loads[ev.engine]
        self.prefetch.remove(ev.engine)
        self.stealing_from.discard(ev.engine)
        out = []
        for m in [m for m, e in self.assigned.items() if e == ev.engine]:
            task = self.tasks[m]
            self._release(task)
            out += self._attempt_failed(task, ev.engine, "EngineError",
                                        f"{ev.reason} while running this task", replied=False)
        for task in [t for t in self.tasks.values() if t.state != RUNNING]:
            if not self._placeable(task) and task.msg_id in self.tasks and \
                    not (task.deadline is not None and self._may_wait_for_engine(task)):
                out += self._conclude(task, False, None, self._give_up(task))
        return out + self._drain()

    # -- tasks ------------------------------------------------------------------------------
    def _submitted(self, ev):
        if ev.msg_id in self.tasks:
            return []
        self.now = max(self.now, ev.now)
        task = _Task(ev.msg_id, next(self._seq), ev.priority,
                     frozenset(ev.targets) if ev.targets is not None else None, ev.after,
                     ev.follow, ev.retries, ev.timeout)
        self.tasks[task.msg_id] = task
        if ev.timeout:
            task.deadline = task.expires = ev.now + ev.timeout
            heapq.heappush(self._deadlines, (task.deadline, task.msg_id))
        if self._link_dependencies(task, ev):
            return self._conclude(task, False, None, FailTask(
                task.msg_id, "InvalidDependency", "a task cannot depend on itself"))
        problem = self._evaluate(task)
        if problem:
            return self._conclude(task, False, None,
                                  FailTask(task.msg_id, "ImpossibleDependency", problem))
        return self._drain()

    def _link_dependencies(self, task, ev):
        """Note what `task` waits for; True if it waits for itself."""
        if ev.external:
            self.external.update(ev.external)
        if not task.after and not task.follow:
            return False
        outcomes = ev.outcomes or {}
        for dep in (task.after, task.follow):
            for m in dep.msg_ids if dep else ():
                if m == task.msg_id:
                    return True
                if m in self.outcomes or m in outcomes:
                    task.known[m] = self.outcomes.get(m) or outcomes[m]
                    continue
                if not (m in self.tasks or m in self.external):
                    heapq.heappush(self._unknown, (ev.now + self.grace, m))
                self.dependents.setdefault(m, set()).add(task.msg_id)
        return False

    def _finished(self, ev):
        task = self.tasks.get(ev.msg_id)
        if task is not None and ev.engine in task.ghosts:
            task.ghosts.discard(ev.engine)  # replies come in order: this is the given-back copy's
            return []
        if task is None or task.state != RUNNING or task.engine != ev.engine:
            return []  # a late or stray reply: not the answer this task waits for
        if task.stealing and ev.ename == "TaskAborted" and not task.final:
            # the engine skipped it: because it gave it back (the steal's answer is still
            # on its way), or because a client cancelled it there — the answer tells
            task.held = ev
            return [HoldReply(task.msg_id)]
        if ev.now is not None:
            self.now = max(self.now, ev.now)
        self._release(task)
        self.prefetch.finished(ev.engine, self.loads[ev.engine], self.now)
        if ev.ok:
            out = self._conclude(task, True, ev.engine, DeliverReply(task.msg_id))
        else:
            out = self._attempt_failed(task, ev.engine, ev.ename, ev.evalue, replied=True)
        out += self._drain()
        if self.steal and not self.loads[ev.engine] and not self._ready:
            out += self._steal_for(ev.engine)
        return out

    def _started(self, ev):
        task = self.tasks.get(ev.msg_id)
        if task is not None and task.state == RUNNING and task.engine == ev.engine:
            task.started = True
        return []

    # -- work stealing ----------------------------------------------------------------------
    def _steal_for(self, thief):
        """`thief` is idle and the hub has nothing for it: ask the engine with the most
        work queued behind its running task for some of it back (all of it if that engine
        is stalled on a long task, else the newest half). Only tasks any engine may run
        are asked for, and one request per engine at a time."""
        queued = {}
        for m, e in self.assigned.items():
            if e == thief or e in self.stealing_from:
                continue
            task = self.tasks[m]
            if task.started or task.stealing or task.targets is not None \
                    or task.where is not None or task.tried:
                continue
            queued.setdefault(e, []).append(m)
        best, best_backlog = None, 0.0
        for e, ids in queued.items():
            # the first one sent may be running (short tasks send no start notice)
            waiting = len(ids) - (0 if self.loads[e] > len(ids) else 1)
            if waiting <= 0:
                continue
            stalled = self.prefetch.stalled(e, self.now)
            backlog = float("inf") if stalled else self.prefetch.backlog(e, waiting)
            if backlog > best_backlog:
                best, best_backlog = e, backlog
        if best is None or best_backlog < STEAL_MIN:
            return []
        ids = queued[best]
        take = ids if best_backlog == float("inf") else ids[-max(1, len(ids) // 2):]
        for m in take:
            self.tasks[m].stealing = True
        self.stealing_from.add(best)
        return [StealTasks(best, tuple(take))]

    def _gave_back(self, ev):
        self.stealing_from.discard(ev.engine)
        taken, out = set(ev.taken), []
        for m in ev.asked:
            task = self.tasks.get(m)
            if task is None or task.state != RUNNING or task.engine != ev.engine:
                continue  # finished, or failed with its engine, meanwhile
            task.stealing = False
            held, task.held = task.held, None
            if m not in taken and held is not None:  # a cancel's abort: the answer
                out += self._finished(held)
            elif m not in taken:
                continue  # it had started: it finishes where it is
            else:
                if held is None:  # its skipped copy's reply is still to come
                    task.ghosts.add(ev.engine)
                out += self._give_back(task, ev.engine)
        return out + self._drain()

    def _give_back(self, task, engine):
        """`engine` will not run `task`: it waits at the hub again (a TaskAborted reply
        from the engine is still to come if `engine` is in task.ghosts)."""
        self._release(task)
        self.returned += 1
        # never back to that engine: it would drop the same signed frames as a replay
        task.tried.add(engine)
        if task.final:  # aborted by its client while the steal was on its way
            return self._conclude(task, False, None, FailTask(
                task.msg_id, "TaskAborted", "aborted before it ran"))
        if not self._placeable(task):
            return self._conclude(task, False, None, self._give_up(task))
        self._make_ready(task)
        return [Returned(task.msg_id, engine)]

    def _direct_submitted(self, ev):
        if ev.msg_id in self.dependents:  # something waits for it: do not call it unknown
            self.external.add(ev.msg_id)
        return []

    def _direct_finished(self, ev):
        if ev.msg_id not in self.external and ev.msg_id not in self.dependents:
            return []
        self.external.discard(ev.msg_id)
        return self._settle(ev.msg_id, Outcome(ev.ok, ev.engine)) + self._drain()

    def _abort(self, ev):
        task = self.tasks.get(ev.msg_id)
        if task is None:
            return []
        if task.state == RUNNING:
            task.final = True
            return [SignalEngine(task.msg_id, task.engine, "abort")]
        return self._conclude(task, False, None, FailTask(
            task.msg_id, "TaskAborted", "aborted before it ran")) + self._drain()

    def _interrupt(self, ev):
        task = self.tasks.get(ev.msg_id)
        if task is None or task.state != RUNNING:
            return []
        task.final = True
        return [SignalEngine(task.msg_id, task.engine, "interrupt")]

    def _tick(self, ev):
        self.now = max(self.now, ev.now)
        out = self._fail_unknown(ev.now)
        if self.steal and not self._ready:  # an engine may have stalled since it went idle
            for e in [e for e in self.engines if not self.loads[e]]:
                out += self._steal_for(e)
        while self._deadlines and self._deadlines[0][0] <= ev.now:
            deadline, m = heapq.heappop(self._deadlines)
            task = self.tasks.get(m)
            if task is None or task.deadline != deadline:
                continue  # finished, or sent to an engine in time
            if task.tried and task.last_error and task.last_error[0] != "UnmetDependency":
                out += self._conclude(task, False, None, self._timed_out(task))
                continue
            why = ("its dependencies were not met" if task.state == BLOCKED
                   else "no engine could take it")
            out += self._conclude(task, False, None, FailTask(
                m, "DependencyTimeout", f"{why} within its timeout of {task.timeout:g}s"))
        return out + self._drain() if out else out

    def _fail_unknown(self, now):
        """InvalidDependency for tasks waiting on a msg_id that never showed up."""
        out = []
        while self._unknown and self._unknown[0][0] <= now:
            _, m = heapq.heappop(self._unknown)
            if self.knows(m) or m not in self.dependents:
                continue
            waiting = [self.tasks[d] for d in self.dependents.pop(m) if d in self.tasks]
            for task in sorted(waiting, key=lambda t: t.seq):
                if task.msg_id in self.tasks:
                    out += self._conclude(task, False, None, FailTask(
                        task.msg_id, "InvalidDependency", f"no task has msg_id {m}"))
        return out

    # -- failures and retries ---------------------------------------------------------------
    def _attempt_failed(self, task, engine, ename, evalue, replied):
        """`task` failed on `engine`: try elsewhere if it may, else conclude it."""
        final = DeliverReply(task.msg_id) if replied else FailTask(task.msg_id, ename, evalue)
        unmet = ename == "UnmetDependency"
        if task.final or not (unmet or task.retries > 0):
            return self._conclude(task, False, engine, final)
        task.tried.add(engine)
        task.retries -= 0 if unmet else 1
        task.last_error = (ename, evalue)
        if not unmet and not self._placeable(task) and self._may_wait_for_engine(task):
            if task.expires <= self.now:
                return self._conclude(task, False, engine, self._timed_out(task))
            task.deadline = task.expires  # parked: an engine that registers may take it
            heapq.heappush(self._deadlines, (task.deadline, task.msg_id))
        elif not self._placeable(task):
            return self._conclude(task, False, engine,
                                  self._give_up(task) if unmet else final)
        self._make_ready(task)
        return [Requeued(task.msg_id, engine, ename, evalue)]

    @staticmethod
    def _may_wait_for_engine(task):
        """Whether a task every registered engine has failed may wait for another: it has a
        timeout, and no targets or follow= that a new engine could never be in."""
        return task.expires is not None and task.targets is None and task.where is None

    @staticmethod
    def _timed_out(task):
        ename, evalue = task.last_error
        return FailTask(task.msg_id, "TaskTimeout", f"it failed on all {len(task.tried)} "
                        f"engines it was tried on (the last: {ename}: {evalue}) and no other "
                        f"engine took it within its timeout of {task.timeout:g}s")

    def _give_up(self, task):
        """The FailTask for a task that no engine, now or later, can run."""
        m = task.msg_id
        if task.last_error is None and task.tried:
            return FailTask(m, "ImpossibleDependency", "no engine is left to run it: the "
                            "engine that gave it back (work stealing) cannot take it again")
        if task.last_error is None:
            why = ("none of the task's target engines is registered"
                   if task.targets is not None and not task.targets & set(self.loads)
                   else "the engine its follow= dependencies ran on is gone")
            return FailTask(m, "ImpossibleDependency", why)
        ename, evalue = task.last_error
        if ename == "UnmetDependency":
            return FailTask(m, "ImpossibleDependency", f"no engine can run it; the last "
                            f"of {len(task.tried)} tried said: {evalue}")
        return FailTask(m, ename, f"{evalue} (failed on all {len(task.tried)} engines tried)")

    def _conclude(self, task, ok, engine, instruction):
        """`task` is finished with `instruction`; judge what waited for it."""
        self._forget(task)
        return [instruction] + self._settle(task.msg_id, Outcome(ok, engine))

    def _settle(self, msg_id, outcome):
        """Record `outcome` and judge the blocked tasks waiting on it (and on them…)."""
        out, work = [], [(msg_id, outcome)]
        while work:
            m, outcome = work.pop()
            self._remember(m, outcome)
            waiting = [self.tasks[d] for d in self.dependents.pop(m, ()) if d in self.tasks]
            for task in sorted(waiting, key=lambda t: t.seq):
                task.known[m] = outcome
                problem = self._evaluate(task)
                if problem:
                    self._forget(task)
                    out.append(FailTask(task.msg_id, "ImpossibleDependency", problem))
                    work.append((task.msg_id, Outcome(False)))
        return out

    def _remember(self, msg_id, outcome):
        # Outcomes are few (ok or not, per engine) but remembered by the 65,536: share one
        # instance, and its engine uuid, rather than keep a copy of each per task (~10 MB)
        if len(self._shared) > 4096:
            self._shared.clear()
        self.outcomes[msg_id] = self._shared.setdefault(outcome, outcome)
        if len(self.outcomes) > self.remember:
            self.outcomes.popitem(last=False)

    def _forget(self, task):
        self._release(task)
        self.tasks.pop(task.msg_id, None)

    # -- judging and placing ----------------------------------------------------------------
    def _evaluate(self, task):
        """Make a blocked task READY if its dependencies are met; why it never can, or None."""
        if task.state != BLOCKED:
            return None
        after = judge(task.after, task.known, "after") if task.after else MET
        follow, where = judge_follow(task.follow, task.known) if task.follow else (MET, None)
        task.where = where
        for state in (after, follow):
            if state not in (MET, WAIT):
                return state
        if not self._placeable(task):
            return self._give_up(task).evalue
        if after == MET and follow == MET:
            self._make_ready(task)
        return None

    def _placeable(self, task):
        """Whether some engine, now or once one registers, may run `task`."""
        if task.targets is None and task.where is None and not task.tried:
            return True  # any engine may: most tasks
        if not self.engines:
            return task.targets is None and task.where is None
        return any(self._allowed(task, e) for e in self.engines)

    def _allowed(self, task, engine):
        return ((task.targets is None or engine in task.targets)
                and (task.where is None or engine in task.where)
                and engine not in task.tried)

    def _make_ready(self, task):
        task.state = READY
        heapq.heappush(self._ready, (-task.priority, task.seq, task.msg_id))

    def _free(self, engine):
        if self.adaptive:
            return self.loads[engine] < self.prefetch.depth(engine, self.now)
        return not self.hwm or self.loads[engine] < self.hwm

    def _room(self):
        return bool(self.engines) and (not (self.hwm or self.adaptive)
                                       or any(map(self._free, self.engines)))

    def _drain(self):
        """Send READY tasks, best first, while some engine has room."""
        out, later = [], []
        while self._ready and self._room():
            entry = heapq.heappop(self._ready)
            task = self.tasks.get(entry[2])
            if task is None or task.state != READY:
                continue  # finished or failed while it waited
            engine = self._choose(task)
            if engine is None:
                later.append(entry)
            else:
                out.append(self._assign(task, engine))
        for entry in later:
            heapq.heappush(self._ready, entry)
        return out

    def _choose(self, task):
        if task.targets is None and task.where is None and not task.tried:
            candidates = [e for e in self.engines if self._free(e)]
        else:
            candidates = [e for e in self.engines if self._free(e) and self._allowed(task, e)]
        if not candidates:
            return None
        return candidates[self.scheme([self.loads[e] for e in candidates], self.rng)]

    def _assign(self, task, engine):
        task.state, task.engine, task.deadline = RUNNING, engine, None
        self.assigned[task.msg_id] = engine
        self.prefetch.sent(engine, self.loads[engine], self.now)
        self.loads[engine] += 1
        self.engines.remove(engine)
        self.engines.append(engine)  # now the most recently used
        return SendTask(task.msg_id, engine)

    def _release(self, task):
        """Take a running task off its engine's load."""
        if task.state != RUNNING:
            return
        self.assigned.pop(task.msg_id, None)
        if task.engine in self.loads:
            self.loads[task.engine] -= 1
        task.state, task.engine, task.started = RELEASED, None, False
