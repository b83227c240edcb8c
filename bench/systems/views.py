"""The timed calls of systems driven through ipyparallel's API — taskhub and ipyparallel.

Both have a Client with `load_balanced_view()`, DirectViews (`rc[0]`, `rc[:]`), `db_query`,
`resubmit` and `hub_history`, so one set of calls drives both, word for word: whatever the
ratio shows comes from the systems, not from how the benchmark called them. A subclass
starts and stops its cluster (setting `self.rc`, `self.lview`, `self.workdir`) and answers
the few questions the APIs answer differently (the hooks at the bottom).
"""
from . import procs, tasks
from .base import BenchError, System, copy_sqlite_records, median_latency, timed, waves

WAVE = 1000  # tasks in flight while filling the DB: bounds the driver's memory


class ViewSystem(System):
    rc = lview = workdir = None
    peak_mb = 0.0

    def warm_up(self, n):
        """Imports and first connections on every engine, before anything is timed."""
        self.lview.map_sync(tasks.noop, range(4 * n))
        self.rc[:].apply_sync(tasks.noop)
        self.forget_results()

    def map_noop(self, n_tasks, timeout):
        seconds, result = timed(self._map, tasks.noop, [range(n_tasks)], timeout)
        if len(result) != n_tasks or result[-1] != n_tasks - 1:
            raise BenchError(f"map returned {len(result)} results, not {n_tasks}")
        return seconds

    def map_sleep(self, durations, timeout):
        seconds, result = timed(self._map, tasks.sleep, [durations], timeout)
        if result != list(durations):
            raise BenchError("the sleep map returned other results than its durations")
        return seconds

    def _map(self, f, seqs, timeout):
        ar = self.lview.map_async(f, *seqs, chunksize=1)
        if not ar.wait(timeout):
            raise BenchError(f"map not done after {timeout:g} s ({ar.progress} of "
                             f"{len(seqs[0]):,} tasks answered)")
        result = ar.get()
        self.forget_results()
        return result

    def latency(self, kind, count, timeout):
        view = self.rc[0] if kind == "direct" else self.lview
        seconds = median_latency(lambda: view.apply_async(tasks.noop, 1).get(timeout), count)
        self.forget_results()
        return seconds

    def fill(self, n_records, result_bytes, timeout):
        have = len(self.rc.hub_history())
        with procs.PeakRss(self.controller_pid()) as peak:
            for size in waves(max(0, n_records - have), WAVE):
                self._map(tasks.payload, [range(size), [result_bytes] * size], timeout)
        self.peak_mb = max(self.peak_mb, peak.peak_mb)
        return len(self.rc.hub_history())

    def copy_records(self, n_records, timeout):
        path, table = self.sqlite_table()
        self.settle_db()
        return copy_sqlite_records(path, n_records, table)

    def db_query(self, which, timeout):
        query = ({"completed": {"$ne": None}} if which == "completed"
                 else {"engine_uuid": {"$in": [self.engine_uuid(0)]}})
        seconds, records = timed(self.rc.db_query, query)
        if not records:
            raise BenchError(f"the {which!r} query found no records")
        return seconds

    def resubmit(self, count, timeout):
        done = self.rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"])[:count]
        ids = [r["msg_id"] for r in done]
        seconds, _ = timed(lambda: self.rc.resubmit(ids).get(timeout))
        self.forget_results()
        return seconds

    def controller_memory(self):
        memory = procs.tree_memory(self.controller_pid())
        return {**memory, "peak_rss_mb": max(self.peak_mb, memory["rss_mb"])}

    def push_pull(self, nbytes, timeout):
        import numpy
        array = numpy.ones(nbytes // 8)
        view = self.rc[:]
        push, _ = timed(view.push, {"bench_array": array}, block=True)
        pull, back = timed(view.pull, "bench_array", block=True)
        if len(back) != len(self.rc.ids) or any(b.shape != array.shape for b in back):
            raise BenchError("pull returned something else than what was pushed")
        self.forget_results()
        return {"push": push, "pull": pull}

    # -- hooks ------------------------------------------------------------------------------
    def controller_pid(self):
        """The pid of the controller's main process (its children count too)."""
        raise NotImplementedError

    def engine_uuid(self, engine_id):
        raise NotImplementedError

    def sqlite_table(self):
        """(SQLite file, table) of the task DB; BenchError if it is not SQLite."""
        raise NotImplementedError

    def settle_db(self):
        """Return once the controller has committed what it wrote (the file is unlocked)."""

    def forget_results(self):
        """Drop what the client caches of finished tasks (so the driver's memory stays flat)."""
