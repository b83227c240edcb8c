"""The task DB off the routing thread: a writer thread and READERS reader threads.

    controller loop ── batches (recorder.commit) ──▶ writes ─▶ WRITER thread (own connection)
          │                                                    │ fails? kept (backlog.py)
          ├── read jobs (queries) ──▶ READER threads, each its own connection (SQLite WAL
          │                           lets them read beside the writer); a job first waits
          │                           until the writer has taken every batch sent before
          │                           it, so a query sees every task
          ◀── answers (done queue) + one wake-up frame on the controller's inproc socket

A job goes to the reader with the fewest jobs in hand, so one client's slow query (up to
`query_timeout`) does not hold up another's quick one; jobs with the same `key` (one
client's queries, the scheduler's dependency look-ups) go to the same reader while one of
them is in hand, so they are answered in the order they were asked.

The loop never waits on either: a write is put on a queue, a read's answer comes back as a
callback the loop runs when woken (`deliver`). A backend with no second connection (memory,
none, MongoDB's client is thread-safe but shared) is used by both threads under one lock.
Until `start()` (before the loop runs: fail_lost_tasks at start, unit tests) everything runs
at once on the caller's thread.

What the writer decides when a write fails is `backlog.WriteBacklog`'s, without I/O: keep the
batch (memory, then a spill file), retry, report the state. The reader gives each job
`query_timeout` seconds (the backends' `deadline`), so no query holds the reader for long.
"""
import contextlib
import logging
import queue
import sqlite3
import threading
import time

import zmq

from ..error import QueryError
from .backlog import WriteBacklog, split_oversized
from .db.base import TaskDB

log = logging.getLogger("taskhub.controller")

QUERY_TIMEOUT = 10.0  # seconds a query may run before it is refused
READERS = 2  # reader threads (and connections): a slow query holds up only its own
RETRY_PERIOD = 1.0  # seconds between attempts to write to a failing DB
STREAM_AHEAD = 4  # answers of a streamed query (db_reply chunks) made before the loop sends
CHECK_FILE_PERIOD = 1.0  # seconds between looks at whether the DB file was deleted/replaced
_STOP = object()


class QueryTimeout(QueryError):
    """A query ran longer than the controller's query_timeout."""


class WriteProxy:
    """What the recorder writes to: collects one transaction, which `commit` hands on."""

    def __init__(self, worker):
        self._worker = worker
        self._adds, self._updates = [], []

    def add_records(self, records):
        self._adds.extend(records)

    def update_records(self, updates):
        self._updates.extend(updates)

    def commit(self):
        adds, updates, self._adds, self._updates = self._adds, self._updates, [], []
        if adds or updates:
            self._worker.write(adds, updates)


class _Reader:
    """One reader thread's connection, job queue and bookkeeping."""

    def __init__(self, db):
        self.db = db
        self.jobs = queue.SimpleQueue()
        self.pause = threading.Lock()  # held by a read; taken to restore the file
        self.ahead = threading.Semaphore(STREAM_AHEAD)  # streamed answers not yet sent
        self.load = 0  # jobs given and not yet answered (the loop's thread only)


class DBWorker:
    """Runs the task DB's writes and reads on threads of their own (module docstring)."""

    def __init__(self, db, reader_db=None, query_timeout=QUERY_TIMEOUT, backlog=None,
                 max_value_bytes=None, blob_dir=None, readers=READERS):
        self.db = db
        self.reader_db = reader_db or db
        self._lock = threading.Lock() if reader_db is None else None
        # a shared connection (under _lock) gains nothing from more threads
        self._n_readers = max(1, readers) if reader_db is not None else 1
        self._readers = [_Reader(self.reader_db)]
        self._lanes = {}  # key -> (reader, jobs of that key in hand): the loop's thread
        self.query_timeout = query_timeout
        self.backlog = backlog or WriteBacklog()
        self.max_value_bytes = max_value_bytes
        self.blob_dir = blob_dir
        self.proxy = WriteProxy(self)
        self._writes, self._done = queue.SimpleQueue(), queue.SimpleQueue()
        self._sent = 0      # batches handed to the writer (loop thread only)
        self._taken = 0     # batches the writer took: written or kept (under _cond)
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = []
        self._wake_url = None
        self._context = None
        self._local = threading.local()  # each thread's PUSH socket to the loop's wake-up
        self._next_retry = 0.0  # when a failing DB is tried again (writer thread)
        self.rejected = {}  # msg_id -> why a record was not written (duplicates): bounded
        self.counts = {"duplicate msg_id": 0, "values stored beside the DB": 0,
                       "records not written": 0}

    # -- the loop's side --------------------------------------------------------------------
    def start(self, context, wake_url):
        """Start the threads; each answer wakes the loop with a frame on `wake_url`."""
        self._context, self._wake_url = context, wake_url
        while len(self._readers) < self._n_readers:
            self._readers.append(_Reader(reader_for(self.db)))
        loops = [("writer", self._write_loop, ())] + [
            (f"reader-{i}", self._read_loop, (reader,)) for i, reader in enumerate(self._readers)]
        for name, target, args in loops:  # the writer first: see _writer_alive
            thread = threading.Thread(target=target, args=args, name=f"taskhub-db-{name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def started(self):
        return bool(self._threads)

    def write(self, adds, updates):
        """Write one transaction (from the recorder); never waits once started."""
        self._sent += 1
        if not self.started:
            self._take((self._sent, adds, updates))
            return
        self._writes.put((self._sent, adds, updates))

    def read(self, job, then, key=None):
        """Run job(db) on a reader once the writer has taken every write sent so far; the
        loop then runs then(ok, value), value being the result or the exception raised.
        Jobs of one `key` are answered in order (module docstring)."""
        if not self.started:
            then(*self._run_read(self._readers[0], job))
            return
        self._give(key, (self._sent, job, then))

    def read_stream(self, job, each, key=None):
        """As `read`, for a job(db) returning an iterator: each(ok, item) runs on the loop
        for every item as the reader makes it (at most STREAM_AHEAD made ahead of the loop),
        and each(False, error) if making one raises (the last call then)."""
        if not self.started:
            ok, items = self._run_read(self._readers[0], job)
            if not ok:
                return each(False, items)
            try:
                for item in items:
                    each(True, item)
            except Exception as error:
                each(False, self._explained(error))
            return
        self._give(key, (self._sent, job, each, "stream"))

    def _give(self, key, entry):
        """Hand a job to the reader its key is with, else to the least busy one."""
        lane = self._lanes.get(key) if key is not None else None
        reader = lane[0] if lane else min(self._readers, key=lambda r: r.load)
        reader.load += 1
        if key is not None:
            self._lanes[key] = (reader, lane[1] + 1 if lane else 1)
        reader.jobs.put((key, *entry))

    def _answered(self, reader, key):
        """(On the loop's thread, after the job's last answer.)"""
        reader.load -= 1
        if key is None:
            return
        lane = self._lanes[key]
        if lane[1] == 1:
            del self._lanes[key]
        else:
            self._lanes[key] = (lane[0], lane[1] - 1)

    def on_writer(self, job, then=None):
        """Run job(db) on the writer thread, in order with the writes (purges, tests)."""
        if not self.started:
            ok, value = self._guarded(job, self.db)
            if then is not None:
                then(ok, value)
            return
        self._writes.put((None, job, then))

    def deliver(self):
        """Run the callbacks of the answers that have come back (on the loop thread)."""
        while True:
            try:
                then, ok, value = self._done.get_nowait()
            except queue.Empty:
                return
            try:
                then(ok, value)
            except Exception:
                log.exception("error handling a task DB answer")

    def state(self):
        """What rc.stats() and the web view show about the task DB."""
        return {**self.backlog.state(), **self.counts}

    def stop(self):
        """Let the writer write what it was given (as far as the DB lets it), then end both
        threads. Records still unwritable stay in the spill file for the next start."""
        if not self.started:
            return
        self._stopping = True
        self._writes.put(_STOP)
        for reader in self._readers:
            reader.jobs.put(_STOP)
        for thread in self._threads:
            thread.join(30)
        self._threads = []
        for reader in self._readers[1:]:  # the first is the owner's to close
            reader.db.close()
        del self._readers[1:]

    # -- the writer thread ------------------------------------------------------------------
    def _write_loop(self):
        try:
            self._write_until_stopped()
        finally:
            self._close_wake()

    def _write_until_stopped(self):
        next_file_check = time.monotonic() + CHECK_FILE_PERIOD
        while True:
            timeout = RETRY_PERIOD if self.backlog.failing else CHECK_FILE_PERIOD
            try:
                item = self._writes.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._retry()
                self.backlog.spill_all()
                return
            if time.monotonic() >= next_file_check:
                self._check_file()
                next_file_check = time.monotonic() + CHECK_FILE_PERIOD
            try:
                self._handle_write(item)
            except Exception:  # a bug here must not end the writer: the loop relies on it
                log.exception("task DB writer: unexpected error; going on")

    def _handle_write(self, item):
        if item is None:
            self._retry()
        elif item[0] is None:  # a job for the writer's connection
            self._done.put((item[2] or _ignore, *self._guarded(item[1], self.db)))
            self._wake()
        else:
            self._take(item)

    def _take(self, item):
        seq, adds, updates = item
        if self.backlog.failing and time.monotonic() >= self._next_retry:
            self._retry()
        try:
            if self.backlog.failing:
                self.backlog.keep(adds, updates)
            else:
                self._write_or_keep(adds, updates)
        finally:  # taken either way: a reader waiting for it must not wait for ever
            with self._cond:
                self._taken = seq
                self._cond.notify_all()

    def _write_or_keep(self, adds, updates):
        error = self._try_write(adds, updates)
        if error is not None:
            self.backlog.keep(adds, updates)
            if self.backlog.failed(error):
                log.error("task DB: cannot write (%s); keeping records (in memory up to %d "
                          "MB, then in %s) until it can", error,
                          self.backlog.memory_bytes // 2**20, self.backlog.spill_path)

    def _retry(self):
        """Write what was kept, oldest first, if the DB takes it now."""
        if not self.backlog.failing and not self.backlog.has_spill():
            return
        self._next_retry = time.monotonic() + RETRY_PERIOD
        problem = self._file_problem()
        if problem is not None:
            self.backlog.still_failing(problem)
            return
        for adds, updates in self.backlog.batches():
            error = self._try_write(adds, updates)
            if error is not None:
                self.backlog.still_failing(error)
                return
            self.backlog.written()
        if self.backlog.recovered():
            log.warning("task DB: writable again; every record kept meanwhile is written")

    def _try_write(self, adds, updates):
        """None if written and committed; else why not (the transaction rolled back).

        A refusal of the DB's state (full, read-only, I/O error) is for the caller to keep
        the batch and retry; a refusal of some record's content (a value too big, a bad
        type) would be refused again, so the batch is written record by record instead,
        and what still cannot be written is logged and left out."""
        try:
            self._locked(self._write_batch, adds, updates)
        except Exception as error:
            self._rollback()
            if _transient(error):
                return f"{type(error).__name__}: {error}"
            log.error("task DB: a transaction was refused (%s: %s); writing its records one "
                      "by one", type(error).__name__, error)
            return self._one_by_one(adds, updates)
        return None

    def _one_by_one(self, adds, updates):
        for batch in [([a], []) for a in adds] + [([], [u]) for u in updates]:
            try:
                self._locked(self._write_batch, *batch)
            except Exception as error:
                self._rollback()
                if _transient(error):  # the DB itself failed meanwhile
                    return f"{type(error).__name__}: {error}"
                msg_id = (batch[0] or [{}])[0].get("msg_id") if batch[0] else batch[1][0][0]
                log.error("task DB: cannot write the record of task %s (%s: %s); left out",
                          msg_id, type(error).__name__, error)
                self.counts["records not written"] += 1
        return None

    def _write_batch(self, adds, updates):
        adds = [a for a in adds if a["msg_id"] not in self.rejected]
        updates = [u for u in updates if u[0] not in self.rejected]
        limit = self._value_limit()
        if limit:
            stored = split_oversized(adds, updates, limit, self.blob_dir)
            self.counts["values stored beside the DB"] += stored
        try:
            self.db.add_records(adds)
        except ValueError:  # a msg_id the DB holds already: written once, never twice
            adds = self._without_duplicates(adds)
            self.db.add_records(adds)
        if updates:
            self.db.update_records(updates)
        self.db.commit()

    def _value_limit(self):
        """The largest value to write into a row: db_max_value_bytes, and below the most
        the DB takes (SQLite's SQLITE_LIMIT_LENGTH, 1e9 by default: over it, DataError)."""
        most = getattr(self.db, "value_limit", lambda: None)()
        limits = [n for n in (self.max_value_bytes, most and most - 4096) if n]
        return min(limits) if limits else None

    def _without_duplicates(self, adds):
        ids = [a["msg_id"] for a in adds]
        seen, keep = set(), []
        existing = {r["msg_id"] for r in self.db.find_records({"msg_id": {"$in": ids}},
                                                              ["msg_id"])}
        for record in adds:
            msg_id = record["msg_id"]
            if msg_id in existing or msg_id in seen:
                self._reject(msg_id, "a task with this msg_id is already in the task DB")
            else:
                keep.append(record)
            seen.add(msg_id)
        return keep

    def _reject(self, msg_id, why):
        log.error("task DB: not writing task %s: %s (a request must carry a new msg_id)",
                  msg_id, why)
        self.counts["duplicate msg_id"] += 1
        self.rejected[msg_id] = why
        if len(self.rejected) > 10000:
            del self.rejected[next(iter(self.rejected))]

    def _rollback(self):
        try:
            self._locked(lambda: getattr(self.db, "rollback", _ignore)())
        except sqlite3.Error:
            pass

    def _file_problem(self):
        """Why the DB's files must not be written through now (sqlite's shm_problem)."""
        check = getattr(self.db, "shm_problem", None)
        return check() if check is not None else None

    def _check_file(self):
        """A DB file unfit to write through makes the DB failing (writes are kept until it
        is fit again); a deleted or replaced one is made again from what the writer holds."""
        problem = self._file_problem()
        if problem is not None:
            if self.backlog.failed(problem):
                log.error("task DB: %s; keeping records (in memory up to %d MB, then in %s) "
                          "until it is writable again", problem,
                          self.backlog.memory_bytes // 2**20, self.backlog.spill_path)
            return
        check = getattr(self.db, "file_replaced", None)
        if check is None or not check():
            return
        log.error("task DB: the file %s was deleted or replaced while in use; restoring it "
                  "from the controller's open copy", self.db.filename)
        separate = [r.db for r in self._readers if r.db is not self.db]
        try:
            with contextlib.ExitStack() as paused:  # readers close first, then reopen
                for reader in self._readers:
                    paused.enter_context(reader.pause)
                self.db.restore_file(close_others=lambda: [db.close() for db in separate])
                for db in separate:
                    db.reopen()
        except (sqlite3.Error, OSError) as error:
            self.backlog.failed(f"cannot restore {self.db.filename}: {error}")
            log.error("task DB: cannot restore %s: %s", self.db.filename, error)
            return
        log.warning("task DB: %s restored (every record it held, and new ones go on being "
                    "written)", self.db.filename)

    # -- the reader threads -----------------------------------------------------------------
    def _read_loop(self, reader):
        try:
            self._read_until_stopped(reader)
        finally:
            self._close_wake()

    def _read_until_stopped(self, reader):
        while True:
            item = reader.jobs.get()
            if item is _STOP:
                return
            key, seq, job, then = item[:4]
            with self._cond:
                self._cond.wait_for(lambda: self._taken >= seq or not self._writer_alive())
            if len(item) > 4:
                self._stream(reader, job, then)
            else:
                self._done.put((then, *self._run_read(reader, job)))
            self._done.put((lambda ok, value: self._answered(reader, key), True, None))
            self._wake()

    def _stream(self, reader, job, each):
        """Hand the loop each item of job(db) as it is made, within the query's budget."""
        db = reader.db
        db.deadline = time.monotonic() + self.query_timeout
        try:
            with reader.pause:
                ok, items = self._guarded(job, db)
                if not ok:
                    return self._hand(reader, each, False, self._explained(items))
                try:
                    for item in items:
                        if not self._hand(reader, each, True, item):
                            return
                except Exception as error:
                    self._hand(reader, each, False, self._explained(error))
        finally:
            db.deadline = None

    def _hand(self, reader, each, ok, value):
        """Give the loop one answer, once fewer than STREAM_AHEAD wait; False if stopping."""
        while not reader.ahead.acquire(timeout=0.1):
            if self._stopping:
                return False

        def run(ok, value):
            reader.ahead.release()
            each(ok, value)
        self._done.put((run, ok, value))
        self._wake()
        return True

    def _writer_alive(self):
        return self._threads and self._threads[0].is_alive()

    def _run_read(self, reader, job):
        db = reader.db
        db.deadline = time.monotonic() + self.query_timeout
        try:
            with reader.pause:
                ok, value = self._guarded(job, db)
        finally:
            db.deadline = None
        return ok, (value if ok else self._explained(value))

    def _explained(self, error):
        if not db_interrupted(error):
            return error
        return QueryTimeout(f"the query ran longer than the controller's query_timeout "
                            f"({self.query_timeout:g} s) and was stopped; narrow it (a key "
                            "with an index: submitted, completed, engine_uuid, client_uuid, "
                            "status, label) or raise query_timeout")

    def _guarded(self, job, db):
        try:
            return True, self._locked(job, db)
        except Exception as error:  # given to the callback: a refusal for the asker
            return False, error

    def _locked(self, job, *args):
        if self._lock is None:
            return job(*args)
        with self._lock:
            return job(*args)

    def _wake(self):
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._local.sock = self._context.socket(zmq.PUSH)
            sock.linger = 0
            sock.connect(self._wake_url)
        try:
            sock.send(b"", zmq.NOBLOCK)
        except zmq.Again:  # wake-ups queued already: the loop will look
            pass

    def _close_wake(self):
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close(linger=0)


# a DB refuses these for its own state (full, read-only, I/O error, corrupt, server
# gone), not for what a record holds: the batch is kept and retried
_TRANSIENT = (sqlite3.DatabaseError, OSError, MemoryError)
# ... and these for what a record holds: a retry would be refused again
_PERMANENT = (sqlite3.DataError, sqlite3.IntegrityError, sqlite3.ProgrammingError,
              sqlite3.NotSupportedError)
try:
    from pymongo.errors import AutoReconnect, ConnectionFailure, WriteConcernError
    _TRANSIENT += (AutoReconnect, ConnectionFailure, WriteConcernError)
except ImportError:  # pymongo is needed only for the mongodb backend
    pass


def _transient(error):
    return isinstance(error, _TRANSIENT) and not isinstance(error, _PERMANENT)


def db_interrupted(error):
    """Whether `error` is a backend's way of saying its deadline passed."""
    return isinstance(error, TimeoutError) or type(error).__name__ == "ExecutionTimeout" or (
        isinstance(error, sqlite3.OperationalError) and "interrupted" in str(error))


def _ignore(*args):
    return None


def reader_for(db):
    """A second connection to `db` for the reader thread, or None to share `db` (locked)."""
    if isinstance(db, TaskDB) and hasattr(db, "reader"):
        return db.reader()
    return None


def spill_path_for(db):
    """Where a failing `db`'s kept records go once memory's bound is reached."""
    filename = getattr(db, "filename", None)
    if filename and filename != ":memory:":
        return f"{filename}.spill"
    return None


def blob_dir_for(db):
    filename = getattr(db, "filename", None)
    if filename and filename != ":memory:":
        return f"{filename}.values"
    return None
