"""Ray 2.x (from PyPI, in its own venv): a local `ray.init(num_cpus=N)`, tasks of one CPU.

Ray has no task database, no direct view and no controller process comparable to a hub;
only the load-balanced calls apply (a no-op map, latency, uneven maps). Its worker
processes start lazily, so `start` warms them up with a few rounds of no-op tasks.
"""
import sys

from . import tasks
from .base import BenchError, System, median_latency, timed


class RaySystem(System):
    def __init__(self):
        super().__init__()
        self.started = False

    def describe(self):
        import ray
        return {"ray": ray.__version__, "python": sys.version.split()[0]}

    def start(self, n):
        import ray
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        self.started = True
        self.noop = ray.remote(num_cpus=1)(tasks.noop)
        self.sleep = ray.remote(num_cpus=1)(tasks.sleep)
        for _ in range(3):  # until every worker process has started and imported
            self._map(self.noop, range(4 * n))

    def stop(self):
        if self.started:
            import ray
            ray.shutdown()
            self.started = False

    def _map(self, remote, items):
        import ray
        return ray.get([remote.remote(x) for x in items])

    def map_noop(self, n_tasks, timeout):
        seconds, result = timed(self._map, self.noop, range(n_tasks))
        if len(result) != n_tasks or result[-1] != n_tasks - 1:
            raise BenchError(f"map returned {len(result)} results, not {n_tasks}")
        return seconds

    def map_sleep(self, durations, timeout):
        seconds, result = timed(self._map, self.sleep, durations)
        if result != list(durations):
            raise BenchError("the sleep map returned other results than its durations")
        return seconds

    def latency(self, kind, count, timeout):
        if kind != "lb":
            raise BenchError("Ray has no direct view")
        import ray
        return median_latency(lambda: ray.get(self.noop.remote(1), timeout=timeout), count)
