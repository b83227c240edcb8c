"""The interface every system under test implements, and helpers they share.

A System lives in its own driver process (see serve.py) and is driven one call at a time.
Timed calls measure inside the driver, with `time.perf_counter`, so the pipe to the runner
costs nothing that is reported. A call that does not apply to a system (ProcessPoolExecutor
has no task DB) raises `Unsupported`; one that cannot finish raises `BenchError` with a
message fit for the report ("19,412 of 20,000 results after 60 s").

Life cycle: `start(n)` … any timed calls … `stop()`. `cli_start_stop` is the exception: it
runs the system's own command-line tool and needs no cluster started first.
"""
import statistics
import time


class Unsupported(Exception):
    """The system has no equivalent of this call."""


class BenchError(Exception):
    """A call failed in a way the report should show instead of a number."""


class System:
    """A cluster of `n` workers of one system, driven by the benchmark runner."""

    def __init__(self, **options):
        self.options = options

    def describe(self):
        """{name: version} of what this system is made of (for the report)."""
        return {}

    def start(self, n):
        """Start a cluster of `n` engines/workers, ready and warmed up (imports done)."""
        raise Unsupported("start")

    def stop(self):
        """Stop everything `start` started; idempotent; must leave no process behind."""

    def map_noop(self, n_tasks, timeout):
        """Seconds to map a no-op over range(n_tasks), one task per item, load-balanced."""
        raise Unsupported("map_noop")

    def map_sleep(self, durations, timeout):
        """Seconds to map `tasks.sleep` over `durations`, one task per item, load-balanced."""
        raise Unsupported("map_sleep")

    def uneven(self, loads, repeat, noop_tasks, timeout):
        """bench/uneven.py's figures: {workload: best makespan in s of `repeat` maps of
        `tasks.sleep` over its durations, ..., "noop": best `noop_tasks`-map tasks/s}."""
        out = {name: min(self.map_sleep(durations, timeout) for _ in range(repeat))
               for name, durations in loads.items()}
        best = min(self.map_noop(noop_tasks, timeout) for _ in range(repeat))
        out["noop"] = noop_tasks / best
        return out

    def latency(self, kind, count, timeout):
        """Median seconds of `count` sequential calls of a no-op; kind "lb" or "direct"."""
        raise Unsupported("latency")

    def fill(self, n_records, result_bytes, timeout):
        """Run tasks until the task DB holds `n_records` (untimed); returns the count."""
        raise Unsupported("fill")

    def copy_records(self, n_records, timeout):
        """Grow the task DB to `n_records` by copying the records it holds (untimed; see
        `copy_sqlite_records`); returns the count."""
        raise Unsupported("copy_records")

    def db_query(self, which, timeout):
        """Seconds of one task-DB query: "completed" (every completed record, every key)
        or "in" (every key of the records whose engine_uuid is $in [the first engine])."""
        raise Unsupported("db_query")

    def resubmit(self, count, timeout):
        """Seconds to resubmit `count` finished tasks and get every result."""
        raise Unsupported("resubmit")

    def controller_memory(self):
        """{"rss_mb": summed RSS of the controller's processes, "processes": how many}."""
        raise Unsupported("controller_memory")

    def push_pull(self, nbytes, timeout):
        """{"push": s, "pull": s} to send a numpy array of `nbytes` to every engine and
        get it back from every engine."""
        raise Unsupported("push_pull")

    def cli_start_stop(self, n, workdir, timeout):
        """{"start": s, "stop": s}: the command-line start of `n` engines until a client
        sees them all, and the stop until every process it started is gone."""
        raise Unsupported("cli_start_stop")


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def median_latency(call, count):
    """Median seconds of `count` sequential calls of `call()`."""
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def waves(total, size):
    """Split `total` items into consecutive wave sizes of at most `size`."""
    full, rest = divmod(total, size)
    return [size] * full + ([rest] if rest else [])


def run_command(cmd, timeout, check=True):
    """Run a command line, its output to our stderr; BenchError if it fails."""
    import subprocess
    import sys
    out = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=timeout,
                         check=False)
    if check and out.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd[:3]))} … exited with status {out.returncode}")


def cli_cycle(start_cmd, wait_ready, stop_cmd, timeout):
    """{"start": s, "stop": s} of one command-line start → ready → stop → all gone.

    `wait_ready()` returns once a client sees every engine. "Gone" means every process
    that carries this driver's token (everything the start command started) has exited.
    """
    from . import procs
    try:
        start, _ = timed(lambda: (run_command(start_cmd, timeout), wait_ready()))
        started = procs.started_by_me()
        stop, gone = timed(lambda: (run_command(stop_cmd, timeout),
                                    procs.wait_gone(started, timeout))[1])
    except BaseException:
        run_command(stop_cmd, timeout, check=False)
        raise
    if not gone:
        raise BenchError(f"processes still running {timeout:g} s after the stop command: "
                         f"{[p for p in started if procs.alive(p)]}")
    return {"start": start, "stop": stop, "processes": len(started)}


def copy_sqlite_records(path, n_records, table=None):
    """Grow the task table of the SQLite file `path` to `n_records` rows by copying the
    rows it holds, each copy with a fresh msg_id ("<msg_id>~<k>"); returns the row count.

    For the 200,000-record queries: running 180,000 more tasks through ipyparallel takes
    minutes, and what a query costs depends on the rows, not on how they got there. Safe
    while a controller runs, if it is idle and has committed (SQLite locks the file).
    """
    import sqlite3
    conn = sqlite3.connect(path, timeout=60)
    try:
        if table is None:
            (table,), = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info('{table}')")]
        have, last = conn.execute(f'SELECT count(*), max(rowid) FROM "{table}"').fetchone()
        names = ", ".join(f'"{c}"' for c in columns)
        for k in range(1, n_records // max(have, 1) + 2):
            missing = n_records - conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if missing <= 0:
                break
            values = ", ".join(f"msg_id || '~{k}'" if c == "msg_id" else f'"{c}"'
                               for c in columns)
            conn.execute(f'INSERT INTO "{table}" ({names}) SELECT {values} FROM "{table}" '
                         f"WHERE rowid <= ? LIMIT ?", (last, missing))
        conn.commit()
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    finally:
        conn.close()
