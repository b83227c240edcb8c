"""dask.distributed: a LocalCluster of worker processes with one thread each (its own venv).

dask has no task database and no "direct view"; the closest equivalents are used: a task
pinned with workers=[address] for a direct call, scatter(broadcast=True) for a push and one
pinned identity task per worker for a pull. LocalCluster runs its scheduler inside the
client's process, so there is no controller process whose memory could be compared.
"""
import sys

from . import tasks
from .base import BenchError, System, median_latency, timed


class DaskSystem(System):
    def __init__(self):
        super().__init__()
        self.cluster = self.client = None

    def describe(self):
        import dask
        import distributed
        return {"dask": dask.__version__, "distributed": distributed.__version__,
                "python": sys.version.split()[0]}

    def start(self, n):
        self.cluster, self.client = _start(n)
        self.client.gather(self.client.map(tasks.noop, range(4 * n), pure=False))  # warm up
        self.workers = sorted(self.client.scheduler_info()["workers"])

    def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def map_noop(self, n_tasks, timeout):
        def run():
            futures = self.client.map(tasks.noop, range(n_tasks), pure=False)
            return self.client.gather(futures)
        seconds, result = timed(run)
        if len(result) != n_tasks or result[-1] != n_tasks - 1:
            raise BenchError(f"map returned {len(result)} results, not {n_tasks}")
        return seconds

    def map_sleep(self, durations, timeout):
        seconds, result = timed(lambda: self.client.gather(
            self.client.map(tasks.sleep, durations, pure=False)))
        if result != list(durations):
            raise BenchError("the sleep map returned other results than its durations")
        return seconds

    def latency(self, kind, count, timeout):
        pin = {"workers": self.workers[:1], "allow_other_workers": False} \
            if kind == "direct" else {}
        return median_latency(
            lambda: self.client.submit(tasks.noop, 1, pure=False, **pin).result(timeout),
            count)

    def push_pull(self, nbytes, timeout):
        import numpy
        array = numpy.ones(nbytes // 8)
        push, stored = timed(self.client.scatter, array, broadcast=True)
        pull, back = timed(self.client.gather, [
            self.client.submit(tasks.identity, stored, workers=[w], allow_other_workers=False,
                               pure=False) for w in self.workers])
        if any(b.shape != array.shape for b in back):
            raise BenchError("pull returned something else than what was pushed")
        return {"push": push, "pull": pull}

    def cli_start_stop(self, n, workdir, timeout):
        """dask has no `ipcluster`: LocalCluster(n) until n workers, close until all gone."""
        from . import procs
        start, (cluster, client) = timed(_start, n)
        started = procs.started_by_me()
        stop, gone = timed(lambda: (client.close(), cluster.close(),
                                    procs.wait_gone(started, timeout))[2])
        if not gone:
            raise BenchError(f"processes still running after close: {started}")
        return {"start": start, "stop": stop, "processes": len(started)}


def _start(n):
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    client.wait_for_workers(n)
    return cluster, client
