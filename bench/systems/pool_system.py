"""concurrent.futures.ProcessPoolExecutor: the standard library's pool, no task history."""
import sys
from concurrent.futures import ProcessPoolExecutor

from . import tasks
from .base import BenchError, System, median_latency, timed


class PoolSystem(System):
    def __init__(self):
        super().__init__()
        self.pool = None

    def describe(self):
        return {"python": sys.version.split()[0]}

    def start(self, n):
        self.pool = ProcessPoolExecutor(n)
        list(self.pool.map(tasks.noop, range(4 * n)))  # warm up: every worker started

    def stop(self):
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def map_noop(self, n_tasks, timeout):
        seconds, result = timed(lambda: list(self.pool.map(tasks.noop, range(n_tasks),
                                                           timeout=timeout)))
        if len(result) != n_tasks or result[-1] != n_tasks - 1:
            raise BenchError(f"map returned {len(result)} results, not {n_tasks}")
        return seconds

    def latency(self, kind, count, timeout):
        if kind != "lb":
            return super().latency(kind, count, timeout)
        return median_latency(lambda: self.pool.submit(tasks.noop, 1).result(timeout), count)
