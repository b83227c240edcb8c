"""What CurveZMQ costs: a plain and a `--curve` cluster side by side, measured alternately,
in wall time and in CPU time (user + system of the controller, the engines and this client
together) — CPU being the steadier figure on a shared machine, where wall times swing with
other load.

    .venv/bin/python -m bench.curve_cost [--rounds 3] [--tasks 2000] [--mb 100]

Per round and cluster: a load-balanced map of `--tasks` no-op tasks, 100 sequential
load-balanced apply_sync calls (median), and a `--mb` MB numpy array pushed to both engines
and pulled back. `python -m bench --systems taskhub,taskhub-curve` gives the same
workloads' wall times in the report's format.
"""
import argparse
import os
import statistics
import time

from bench.cpu_per_task import cpu_seconds
from bench.systems import tasks
from bench.systems.taskhub_system import TaskhubSystem
from bench.systems.views import median_latency

SYSTEMS = {"plain": [], "curve": ["--curve"]}


class Measured:
    """One running cluster and the CPU its processes (and this one) have used."""

    def __init__(self, controller_args):
        self.system = TaskhubSystem(controller_args=controller_args + ["--web-port", "-1"])
        self.system.start(2)
        rc = self.system.rc
        self.pids = [self.system.controller_pid(), *rc[:].apply_sync(os.getpid)]

    def cpu(self):
        return sum(cpu_seconds(p) for p in self.pids) + time.process_time()

    def timed(self, call):
        """(wall seconds, CPU seconds of the whole cluster) of `call()`."""
        cpu, t0 = self.cpu(), time.perf_counter()
        call()
        return time.perf_counter() - t0, self.cpu() - cpu

    def map(self, n):
        lview = self.system.lview
        return self.timed(lambda: lview.map_sync(tasks.noop, range(n)))

    def latency(self, count=100):
        lview = self.system.lview
        cpu = self.cpu()
        seconds = median_latency(lambda: lview.apply_async(tasks.noop, 1).get(30), count)
        return seconds, (self.cpu() - cpu) / count

    def push_pull(self, nbytes):
        import numpy
        array, view = numpy.ones(nbytes // 8), self.system.rc[:]
        push = self.timed(lambda: view.push({"bench_array": array}, block=True))
        pull = self.timed(lambda: view.pull("bench_array", block=True))
        view.execute("del bench_array", block=True)
        return push, pull


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args(argv)
    clusters = {name: Measured(a) for name, a in SYSTEMS.items()}
    rows = {}
    try:
        for _ in range(args.rounds):
            for name, c in clusters.items():  # alternated, so both see the same load
                push, pull = c.push_pull(args.mb * 1000 * 1000)
                for metric, value in ((f"map {args.tasks:,} no-op tasks", c.map(args.tasks)),
                                      ("apply_sync lb (median; CPU per call)", c.latency()),
                                      (f"push {args.mb} MB to 2 engines", push),
                                      (f"pull {args.mb} MB from 2 engines", pull)):
                    rows.setdefault(metric, {}).setdefault(name, []).append(value)
    finally:
        for c in clusters.values():
            c.system.stop()
    print(f"{'metric':40} {'plain wall':>11} {'curve wall':>11} {'ratio':>6}   "
          f"{'plain CPU':>10} {'curve CPU':>10} {'ratio':>6}")
    for metric, by in rows.items():
        (pw, pc), (cw, cc) = ([statistics.median(v[i] for v in by[n]) for i in (0, 1)]
                              for n in ("plain", "curve"))
        print(f"{metric:40} {pw:11.4f} {cw:11.4f} {cw / pw:6.2f}   {pc:10.4f} {cc:10.4f} "
              f"{cc / pc:6.2f}")
    print(f"(medians of {args.rounds} rounds, seconds; CPU: controller + engines + client)")


if __name__ == "__main__":
    main()
