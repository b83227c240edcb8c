"""Runs workloads: systems side by side, alternating call by call, within a time budget.

    for each workload:        drivers started (or reused from the previous workload)
      for each phase:         prepare every system once (untimed)
        for r in repeats:     the systems in an order rotated by r (A B C, B C A, …)
          for each step:        one timed call per system → a sample of its cell

A cell is (workload, metric, system). Once a cell has spent `budget` seconds it gets no
more repeats (a 40-second map of ipyparallel is measured once, a 0.4-second one of taskhub
three times): this keeps a full run near 20 minutes without dropping anything. A cell that
failed is not tried again; a driver that timed out is dead for the rest of its workload.
"""
import time
from dataclasses import dataclass, field

from .driver import CallUnsupported, Driver, DriverError
from .systems import VARIANTS


@dataclass
class Cell:
    unit: str
    samples: list = field(default_factory=list)
    error: str = None
    spent: float = 0.0


@dataclass
class Results:
    """Cells by (workload title, metric label) then system; versions by system."""
    rows: dict = field(default_factory=dict)
    subjects: dict = field(default_factory=dict)   # workload title -> the subject system
    versions: dict = field(default_factory=dict)
    leaks: dict = field(default_factory=dict)      # system -> pids killed after it stopped

    def cell(self, title, label, system, unit):
        return self.rows.setdefault((title, label), {}).setdefault(system, Cell(unit))


class Runner:
    def __init__(self, repeats, budget, log_dir, say=print):
        self.repeats = repeats
        self.budget = budget
        self.log_dir = log_dir
        self.say = say
        self.results = Results()
        self._running = {}  # (system, engines) -> Driver kept for the next workload

    def run(self, workloads):
        try:
            for workload in workloads:
                self.run_workload(workload)
        finally:
            self._release(keep=())
        return self.results

    # -- drivers ----------------------------------------------------------------------------
    def _drivers(self, workload):
        """{system: Driver} for `workload`, started (and reused when that is allowed)."""
        keep = () if workload.fresh else {(s, workload.engines) for s in workload.systems}
        self._release(keep)
        drivers = {s: self._running.get((s, workload.engines)) for s in workload.systems}
        new = [s for s, d in drivers.items() if d is None or d.dead]
        for system in new:
            drivers[system] = self._running[(system, workload.engines)] = \
                Driver.spawn(VARIANTS[system], self.log_dir)
        self._call_all([drivers[s] for s in new], "describe", {}, 60,
                       lambda d, v: self.results.versions.setdefault(d.variant.name, v))
        if workload.engines and new:
            self.say(f"  starting {', '.join(new)} ({workload.engines} engines each)")
            self._call_all([drivers[s] for s in new], "start", {"n": workload.engines}, 180)
        return drivers

    def _call_all(self, drivers, method, kwargs, timeout, keep=None):
        """Make the same untimed call on several drivers at once (they work in parallel);
        a driver whose call fails is dead for this workload."""
        sent = []
        for driver in drivers:
            try:
                driver.send(method, timeout, **kwargs)
                sent.append(driver)
            except DriverError:
                pass
        for driver in sent:
            try:
                value = driver.receive()
                if keep:
                    keep(driver, value)
            except DriverError as e:
                driver.dead = driver.dead or f"{method} failed: {e}"

    def _release(self, keep):
        """Stop (all at once) and close the running drivers not in `keep`."""
        gone = {key: self._running.pop(key) for key in list(self._running) if key not in keep}
        self._call_all([d for d in gone.values() if not d.dead], "stop", {}, 120)
        for key, driver in gone.items():
            leftover = driver.close()
            if leftover:
                self.results.leaks.setdefault(key[0], []).extend(leftover)
                self.say(f"  ! {key[0]} left {len(leftover)} processes running; killed them")

    # -- measuring --------------------------------------------------------------------------
    def run_workload(self, workload):
        self.say(f"== {workload.title}")
        self.results.subjects[workload.title] = workload.systems[0]
        drivers = self._drivers(workload)
        for phase in workload.phases:
            systems = [s for s in workload.systems if not phase.systems or s in phase.systems]
            self._prepare([drivers[s] for s in systems], phase)
            for r in range(phase.repeats or self.repeats):
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                for step in phase.steps:
                    for system in order:
                        self._measure(workload, step, system, drivers[system])
        if workload.fresh:
            self._release(keep=())

    def _prepare(self, drivers, phase):
        """Run the phase's untimed preparations on every system at once."""
        for method, kwargs, timeout in phase.prepare:
            self.say(f"  {method} {kwargs}: {', '.join(d.variant.name for d in drivers)}")
            self._call_all([d for d in drivers if not d.dead], method, kwargs, timeout)

    def _measure(self, workload, step, system, driver):
        cells = {key: self.results.cell(workload.title, label, system, unit)
                 for key, label, unit in _metrics(step)}
        first = next(iter(cells.values()))
        if first.error or (first.samples and first.spent >= self.budget):
            return
        if driver.dead:
            return _fail(cells, driver.dead)
        t0 = time.perf_counter()
        try:
            result = driver.call(step.method, timeout=step.timeout, **step.kwargs)
        except CallUnsupported:
            return _fail(cells, "n/a")
        except DriverError as e:
            return _fail(cells, str(e))
        finally:
            first.spent += time.perf_counter() - t0
        values = result if step.parts else {None: result}
        for key, cell in cells.items():
            cell.samples.append(values[key])
        self.say(f"  {system:<14} {step.label}: {_short(values)}")


def _metrics(step):
    """(result key, metric label, unit) of each number a step's call returns."""
    if not step.parts:
        return [(None, step.label, step.unit)]
    return [(key, f"{step.label}: {suffix}", unit) for key, (suffix, unit) in step.parts.items()]


def _fail(cells, why):
    for cell in cells.values():
        cell.error = cell.error or why


def _short(values):
    return ", ".join(f"{v:.4g}" if k is None else f"{k} {v:.4g}" for k, v in values.items())
