"""SQLite task database: the default backend, one file in the profile, durable across restarts.

One row per task, one column per TaskRecord key:

    str keys       TEXT                 dict keys   TEXT holding JSON
    int keys       INTEGER              buffers     BLOB (see pack_buffers)
    datetime keys  INTEGER microseconds since the Unix epoch (UTC), so SQL compares exactly

Queries become WHERE clauses with bound parameters (`where_clause`): $in/$nin bind one JSON
list read back by json_each, $regex calls a REGEXP function registered on the connection,
$glob uses SQLite's GLOB (REGEXP for patterns with [sets], whose syntax differs from
fnmatch's). A page (find_records with a limit) is found as rowids first, then read
(SQLiteDB._page). Writes collect in one transaction until commit(); reads on the
connection see them. Opening a file made by an older version adds the columns it lacks.
"""
import itertools
import json
import logging
import os
import re
import sqlite3
import stat
import struct
import threading
import time
from datetime import datetime, timedelta, timezone

from taskhub import filemodes
from taskhub.jsonutil import EncodedJSON
from taskhub.controller.db.base import (
    KEY_KINDS, TASK_RECORD_KEYS, RecordRows, TaskDB, _check_keys, check_new_ids, clean_value,
    record_changes,
)
from taskhub.error import CorruptTaskDB
from taskhub.controller.db.query import (
    GLOB_END, LOGICAL, compile_regex, glob_to_regex, glob_tokens, page_bounds, projection,
    sort_spec, validate,
)

log = logging.getLogger("taskhub.controller")

_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "datetime": "INTEGER", "dict": "TEXT",
              "buffers": "BLOB"}
_INDEXED = ("submitted", "completed", "engine_uuid", "client_uuid", "task_group")
# Indexes that serve the pages of the web view's task table: a filter on the first column
# reads its matches already in submission order, so the newest page of failed tasks, of one
# engine's or of one label's is a few index entries however many records there are. (Wider
# ones, e.g. status with engine_id, would count combined filters inside the index, but
# cost the hub half as much again per task written: measured, not worth it.)
_PAGE_INDEXES = {"status": ("status", "submitted"), "engine_id": ("engine_id", "submitted"),
                 "label": ("label", "submitted")}
_REPLACED_INDEXES = ("label",)  # single-key indexes of older files, now (key, submitted)
# A page (find_records with a limit) that the planner would sort in full is first tried by
# reading the sort key's index in order, for at most this many seconds: that wins unless
# few records match, and then sorting them is cheap (see SQLiteDB._page_ids).
SORT_INDEX_BUDGET = 0.02
CHECKPOINT_PERIOD = 0.5  # seconds between checkpoints of the write-ahead log (_Checkpointer)
WAL_RESTART_BYTES = 64 * 2**20  # a write-ahead log this big is emptied once caught up
# Free pages (left by purged records) are given back to the file system once they are at
# least this share of the file and this many bytes, at most VACUUM_STEP_BYTES per
# checkpoint period, so the write lock is held briefly (see reclaim).
RECLAIM_SHARE, RECLAIM_BYTES, VACUUM_STEP_BYTES = 1 / 8, 4 * 2**20, 64 * 2**20
CONVERT_BYTES = 64 * 2**20  # an older file up to this size is converted to auto_vacuum at open
_PROGRESS_STEPS = 20000  # SQLite VM instructions between looks at the clock
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_GLOB_TEXT = {"*": "[*]", "?": "[?]", "[": "[[]"}


def pack_buffers(buffers):
    """A list of bytes as one blob: count (u32), each length (u64), then the data; big-endian."""
    header = struct.pack(f">I{len(buffers)}Q", len(buffers), *map(len, buffers))
    return header + b"".join(buffers)


def unpack_buffers(blob):
    """The list of bytes `pack_buffers` made `blob` from."""
    (count,) = struct.unpack_from(">I", blob)
    offset, buffers = 4 + 8 * count, []
    for length in struct.unpack_from(f">{count}Q", blob, 4):
        buffers.append(bytes(blob[offset:offset + length]))
        offset += length
    return buffers


def _to_sql(key, value):
    if value is None:
        return None
    kind = KEY_KINDS[key]
    if kind == "datetime":
        return (value - _EPOCH) // _MICROSECOND
    if kind == "buffers":
        return pack_buffers(value)
    if kind == "dict":
        if type(value) is EncodedJSON:  # as it came off the wire: no need to encode it again
            return value.json
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"TaskRecord key {key!r} must hold a JSON-able dict: {error}") from None
    return value


def _sql_value(key):
    """A function turning a value of `key` into its column value, as _to_sql(clean_value())
    does, with the values the hub writes (exact str, UTC datetime, dict with its wire JSON,
    list of bytes) taken on a short path: the writer runs on the controller's loop."""
    kind = KEY_KINDS[key]

    def checked(value):
        return _to_sql(key, clean_value(key, value))
    if kind == "str":
        return lambda value: value if type(value) is str else checked(value)
    if kind == "int":
        return lambda value: value if type(value) is int else checked(value)
    if kind == "dict":
        return lambda value: value.json if type(value) is EncodedJSON else checked(value)
    if kind == "datetime":
        return lambda value: ((value - _EPOCH) // _MICROSECOND
                              if type(value) is datetime and value.tzinfo is timezone.utc
                              else checked(value))
    return lambda value: (pack_buffers(value) if type(value) is list
                          and all(type(b) is bytes for b in value) else checked(value))


_SQL_VALUE = {key: _sql_value(key) for key in TASK_RECORD_KEYS}
_EMPTY_ROW = dict.fromkeys(TASK_RECORD_KEYS)


def _row(record):
    """The column values of a new record: what new_record checks and cleans, converted for
    SQL in the same pass, and only for the keys present (most of a new record is None)."""
    msg_id = record.get("msg_id") if isinstance(record, dict) else None
    if not isinstance(msg_id, str) or not msg_id:
        _check_keys(record)
        raise ValueError(f"a TaskRecord needs a non-empty msg_id str, not {msg_id!r}")
    row = _EMPTY_ROW.copy()
    try:
        for key, value in record.items():
            if value is not None:
                row[key] = _SQL_VALUE[key](value)
    except KeyError:
        _check_keys(record)  # names the unknown key
        raise
    return list(row.values())


def _sql_changes(msg_id, changes):
    """What record_changes checks and cleans, converted for SQL in the same pass."""
    if not isinstance(changes, dict) or "msg_id" in changes:
        changes = record_changes(msg_id, changes)  # its checks, and its error messages
    try:
        return {key: None if value is None else _SQL_VALUE[key](value)
                for key, value in changes.items()}
    except KeyError:
        _check_keys(changes)
        raise


_FROM_SQL = {"datetime": lambda micros: _EPOCH + micros * _MICROSECOND,
             "dict": json.loads, "buffers": unpack_buffers}


def _iso_sql(column):
    """SQL for the datetime `column` (µs since the epoch) as ISO text with its UTC offset,
    "2026-11-21 22:28:59.021667+00:00" (a space between date and time, as SQLite writes it:
    datetime.fromisoformat reads it), NULL for NULL. Seconds are floored, so dates before
    1970 are right too."""
    micros = f"(({column} % 1000000 + 1000000) % 1000000)"
    return (f"datetime(({column} - {micros}) / 1000000, 'unixepoch') || '.' || "
            f"substr({micros} + 1000000, 2) || '+00:00'")


def _row_segments(keys):
    """(kind, SQL) pieces whose values, joined by ",", are the JSON of a row of `keys`, in
    order: a dict column as the JSON text stored ("null" for NULL), a buffer column as its
    blob (to be counted and unpacked), and a run of other keys as one json_array with its
    brackets trimmed (its first and last characters are never brackets otherwise: every
    item is a str, a number or null)."""
    segments, run = [], []
    for key in [*keys, None]:
        kind = KEY_KINDS.get(key)
        if kind in ("str", "int", "datetime"):
            run.append(_iso_sql(f'"{key}"') if kind == "datetime" else f'"{key}"')
            continue
        if run:
            segments.append(("json", f"trim(json_array({', '.join(run)}), '[]')"))
            run = []
        if kind == "dict":
            segments.append(("json", f"""coalesce("{key}", 'null')"""))
        elif kind == "buffers":
            segments.append(("buffers", f'"{key}"'))
    return segments


def _rows_with_buffers(keys, segments, cursor):
    """The RecordRows of rows of `segments` selected separately (some are buffer blobs)."""
    rows, buffers = [], []
    for values in cursor:
        parts = []
        for (kind, _), value in zip(segments, values):
            if kind == "buffers" and value is not None:
                value = unpack_buffers(value)
                buffers.extend(value)
                value = str(len(value)).encode()
            parts.append(b"null" if value is None else value)
        rows.append(b"[" + b",".join(parts) + b"]")
    return RecordRows(keys, [b"[", b",".join(rows), b"]"], buffers)


def _in_chunks(cursor, size, make):
    """make(rows) for every `size` rows of `cursor` (all of them at once if None), at least
    once. The statement ran already: errors in the query were raised before this."""
    first = True
    while True:
        rows = cursor.fetchmany(size) if size else cursor.fetchall()
        if rows or first:
            yield make(rows)
        first = False
        if not size or len(rows) < size:
            return


class _ByRowid:
    """The rows of `columns` of the records with the rowids `ids`, in that order, read by
    fetchmany (what _in_chunks uses of a cursor)."""

    def __init__(self, conn, columns, table, ids):
        self._conn, self._ids, self._next = conn, ids, 0
        self._sql = (f'SELECT {columns} FROM json_each(?) AS page JOIN "{table}" '
                     f'ON "{table}".rowid = page.value ORDER BY page.key')

    def fetchmany(self, size):
        ids = self._ids[self._next:self._next + size]
        self._next += size
        return self._conn.execute(self._sql, [json.dumps(ids)]).fetchall() if ids else []

    def fetchall(self):
        return self.fetchmany(len(self._ids))


def _regexp(pattern, value):
    """SQLite's `value REGEXP pattern`: a search in linear time (query.compile_regex);
    NULL never matches."""
    return isinstance(value, str) and compile_regex(pattern).search(value) is not None


def _file_identity(filename):
    """(device, inode) of the file at `filename`, or None if there is none."""
    if filename == ":memory:":
        return None
    try:
        st = os.stat(filename)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def where_clause(query):
    """(SQL condition, parameters) for the task-DB `query`; values are always bound."""
    return _where(validate(query))


def _where(normal):
    """(SQL, parameters) of a query in normal form. A comparison with NULL is NULL, which
    WHERE takes as false: a negation wraps its operand in coalesce(.., 0) so that "no
    match" stays false before NOT turns it true, as in the other backends."""
    clauses, params = [], []
    for key, condition in normal.items():
        if key in LOGICAL:
            parts = [_logical_clause(key, condition)]
        else:
            parts = [_not_clause(key, operand) if op == "$not" else _clause(key, op, operand)
                     for op, operand in condition.items()]
        for sql, args in parts:
            clauses.append(sql)
            params.extend(args)
    return " AND ".join(clauses) or "1", params


def _logical_clause(op, queries):
    parts = [_where(q) for q in queries]
    joined = f" {'AND' if op == '$and' else 'OR'} ".join(f"({sql})" for sql, _ in parts)
    params = [p for _, args in parts for p in args]
    return (f"NOT coalesce(({joined}), 0)" if op == "$nor" else f"({joined})"), params


def _not_clause(key, condition):
    sql, params = _where({key: condition})
    return f"NOT coalesce(({sql}), 0)", params


def order_clause(sort):
    """The ORDER BY terms for find_records' `sort`; ties go in submission order.

    The indexes (_INDEXED, _PAGE_INDEXES) hold rowids in that order, so a page sorted by
    an indexed key reads straight off its index; NULL sorts first, as in MongoDB.
    """
    order = sort_spec(sort)
    if not order:
        return "submitted, rowid"
    last = "DESC" if order[-1][1] < 0 else "ASC"
    terms = [f'"{key}" {"DESC" if direction < 0 else "ASC"}' for key, direction in order]
    if "submitted" not in dict(order):
        terms.append(f"submitted {last}")
    return ", ".join([*terms, f"rowid {last}"])


def _clause(key, op, operand):
    column = f'"{key}"'  # key is a validated TaskRecord key, never user text
    if op in _COMPARE:
        return f"{column} {_COMPARE[op]} ?", [_to_sql(key, operand)]
    if op == "$eq" and operand is None:
        return f"{column} IS NULL", []
    if op == "$eq":
        return f"{column} = ?", [_to_sql(key, operand)]
    if op == "$ne":
        return f"{column} IS NOT ?", [_to_sql(key, operand)]  # IS NOT: NULL-safe
    if op == "$in":
        return _in_clause(key, column, operand)
    if op == "$nin":  # NULL IN (...) is NULL, and a None value is "not in" unless listed
        sql, params = _in_clause(key, column, operand)
        return f"NOT coalesce({sql}, 0)", params
    if op == "$exists":
        return f"{column} IS {'NOT ' if operand else ''}NULL", []
    if op == "$regex":
        return f"{column} REGEXP ?", [operand]
    return _glob_clause(column, operand)


def _in_clause(key, column, operands):
    values = [_to_sql(key, value) for value in operands if value is not None]
    sql = f"{column} IN (SELECT value FROM json_each(?))"
    if None in operands:
        sql = f"({sql} OR {column} IS NULL)"
    return sql, [json.dumps(values)]


def _glob_clause(column, pattern):
    tokens = glob_tokens(pattern)
    if any(kind == "set" for kind, _, _ in tokens):
        return f"{column} REGEXP ?", [glob_to_regex(pattern, end=GLOB_END)]
    glob = "".join(_GLOB_TEXT.get(text, text) if kind == "text" else text
                   for kind, text, _ in tokens)
    return f"{column} GLOB ?", [glob]


def checkpoint(conn, restart_frames):
    """One checkpoint of the write-ahead log on `conn` (see _Checkpointer): PASSIVE, then,
    if the log holds `restart_frames` or more and at most 1/16 of that is left to copy,
    TRUNCATE. Returns (log frames, frames copied) as the last checkpoint left them."""
    _, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if log >= restart_frames and log - done <= restart_frames // 16:
        _, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return log, done


def reclaim(conn):
    """Give the free pages of the file back to the file system, a step at a time: returns
    how many pages were freed (0 if too few were free to bother). Needs a file whose
    auto_vacuum is INCREMENTAL (files made by this version; smaller older ones are
    converted at open)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    if free < pages * RECLAIM_SHARE or free * page_size < RECLAIM_BYTES:
        return 0
    step = min(free, VACUUM_STEP_BYTES // page_size)
    # executescript steps the statement to its end; execute() would free one page only
    conn.executescript(f"PRAGMA incremental_vacuum({step});")
    return step


class _Checkpointer:
    """Copies the write-ahead log into the database file every CHECKPOINT_PERIOD seconds,
    on a thread and connection of its own.

    SQLite's automatic checkpoint runs inside a commit, in the writer — the controller's
    loop — and is where synchronous=NORMAL syncs the file: measured, it made a commit 6x
    dearer. Commits stay exactly as durable (the log is still written at each commit; a
    checkpoint only moves committed pages), and a PASSIVE checkpoint never blocks the
    writer.

    But only a writer that finds every frame of the log copied starts the log over, and
    under a steady stream of commits a PASSIVE checkpoint never quite catches up: the log
    grew by everything written (4 GB after 40,000 tasks with 100 KB results), and with it
    its index, which SQLite maps into the controller's memory (-shm, 8 KB per MB of log).
    So once the log holds WAL_RESTART_BYTES and a PASSIVE round has left little to copy, a
    TRUNCATE checkpoint copies that little while holding the writer off, and empties the
    log. The connection does not wait for locks: if the writer is in a transaction, the
    TRUNCATE gives up at once and the next period tries again.

    The same thread gives back the space of purged records (`reclaim`): an incremental
    vacuum step moves pages within the log, and the checkpoint after it shortens the file;
    the log, grown by the step, is emptied by a TRUNCATE checkpoint as soon as it is
    copied. The routing loop never waits for any of it."""

    def __init__(self, filename):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(filename,), daemon=True,
                                        name="taskhub-sqlite-checkpoint")
        self._thread.start()

    def _run(self, filename):
        conn = sqlite3.connect(filename, timeout=0, check_same_thread=False)
        try:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            while not self._stop.wait(CHECKPOINT_PERIOD):
                try:
                    restart = WAL_RESTART_BYTES // page_size
                    if reclaim(conn):
                        restart = 0  # the log now holds the moved pages: empty it once copied
                    checkpoint(conn, restart)
                except sqlite3.Error:  # busy or locked now: the next period tries again
                    pass
        finally:
            conn.close()

    def stop(self):
        self._stop.set()
        self._thread.join(10)


class SQLiteDB(TaskDB):
    """TaskDB in the table `table` of the SQLite file `filename` (":memory:" for none)."""

    def __init__(self, filename=":memory:", table="tasks", quick_check=True):
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"SQLite table name must be letters, digits and _, not {table!r}")
        self.filename = os.fspath(filename)
        self.table = table
        self.quick_check = quick_check
        self._conn = None
        self._checkpointer = None
        self._identity = None
        self._shm_size = None  # the -shm file's largest size seen (shm_problem)

    def open(self):
        if self.filename != ":memory:":  # SQLite gives -wal and -shm the file's mode
            for suffix in ("", "-wal", "-shm"):
                if not suffix or os.path.exists(self.filename + suffix):
                    filemodes.private_file(self.filename + suffix)
        # one thread at a time (see TaskDB), but not necessarily the one that opened it
        self._conn = self._connect()
        self._refuse_if_corrupt()
        self._use_incremental_vacuum()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":  # a file
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.filename)
            self._shm_size = 0
        self._create_table()
        return self

    def _connect(self):
        conn = sqlite3.connect(self.filename, check_same_thread=False)
        conn.create_function("REGEXP", 2, _regexp, deterministic=True)
        conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
        self._identity = _file_identity(self.filename)
        return conn

    def _past_deadline(self):
        return self.deadline is not None and time.monotonic() > self.deadline

    def _refuse_if_corrupt(self):
        """At start, `PRAGMA quick_check`: a corrupt file is refused, saying what to do,
        rather than served until a query touches the bad page and never answers."""
        if self.filename == ":memory:" or not self.quick_check:
            return
        try:
            rows = [r[0] for r in self._conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as error:
            rows = [str(error)]
        if rows != ["ok"]:
            self._conn.close()
            self._conn = None
            found = "; ".join(rows).replace("\n", "; ")
            raise CorruptTaskDB(
                f"the task DB {self.filename} is corrupt ({found}). Move it aside "
                f"(mv {self.filename} {self.filename}.corrupt, with its -wal and -shm files) "
                f"to start with an empty history, or salvage what it holds first: "
                f"sqlite3 {self.filename} .recover | sqlite3 recovered.db")

    def reader(self):
        """Another connection to the same file, for reads beside the writer (WAL), or None
        for an in-memory database (which a second connection would not see)."""
        if self.filename == ":memory:":
            return None
        other = SQLiteDB(self.filename, self.table)
        other._conn = other._connect()
        return other

    def value_limit(self):
        """The most bytes a value may have here (SQLite refuses more with DataError)."""
        return self._conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)

    def rollback(self):
        if self._conn is not None:
            self._conn.rollback()

    def file_replaced(self):
        """Whether the file at `filename` is no longer the one this connection writes to
        (deleted, or another file put in its place)."""
        return self._identity is not None and _file_identity(self.filename) != self._identity

    def shm_problem(self):
        """Why the write-ahead index (`<filename>-shm`, which SQLite maps into memory) is
        not fit to write through, or None. A file made read-only (its mode, or a read-only
        mount over it) does not stop this process's open mapping, but any new connection
        would find the DB read-only; a file cut shorter than what SQLite mapped faults
        (SIGBUS) at the next access beyond its end, killing the controller with nothing
        logged. Both are states the writer holds its writes for (dbworker.py)."""
        if self._shm_size is None:
            return None
        path = self.filename + "-shm"
        try:
            st = os.stat(path)
            mount_read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            return None  # no index yet, or between connections: SQLite makes it again
        except OSError as error:
            return f"cannot look at {path}: {error}"
        if mount_read_only or not st.st_mode & stat.S_IWUSR:
            how = "on a read-only mount" if mount_read_only else \
                f"read-only (mode {stat.filemode(st.st_mode)})"
            return f"the write-ahead index {path} is {how}"
        if st.st_size < self._shm_size:
            return (f"the write-ahead index {path} was cut to {st.st_size} bytes "
                    f"(SQLite maps {self._shm_size})")
        self._shm_size = st.st_size
        return None

    def reopen(self):
        """(For a reader) connect again, to the file now at `filename`."""
        if self._conn is not None:
            self._conn.close()
        self._conn = self._connect()

    def restore_file(self, close_others=lambda: None):
        """The file was deleted or replaced: copy everything this connection still sees
        (the open file lives on while open) into a new file at `filename`. A file put in
        its place is kept beside it as `<filename>.replaced`. `close_others` closes the
        other connections to the old file first: a last connection to close deletes the
        write-ahead log by name, which must not be the new file's."""
        tmp = f"{self.filename}.restoring"
        if os.path.exists(tmp):
            os.unlink(tmp)
        target = sqlite3.connect(tmp)
        try:
            self._conn.commit()
            self._conn.backup(target)
        finally:
            target.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        close_others()
        self._conn.close()
        if os.path.exists(self.filename):
            os.replace(self.filename, f"{self.filename}.replaced")
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.filename + suffix):
                os.unlink(self.filename + suffix)
        os.replace(tmp, self.filename)
        self.open()

    def _use_incremental_vacuum(self):
        """Make purged space returnable (see reclaim): set on a new file before its first
        table; an older file is rebuilt so (VACUUM, before WAL mode) if it is small, else
        told in the log how to do it."""
        conn = self._conn
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
            return
        pages, page_size = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                            for name in ("page_count", "page_size"))
        if pages * page_size <= CONVERT_BYTES:
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("VACUUM")
        else:
            log.info("%s was made by an older taskhub: purged records leave its size as it "
                     "is; to make it shrink, stop the controller and run "
                     "`sqlite3 %s 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;'` once",
                     self.filename, self.filename)

    def _create_table(self):
        table = self.table
        self._conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (msg_id TEXT PRIMARY KEY)')
        present = {row[1] for row in self._conn.execute(f'PRAGMA table_info("{table}")')}
        for key in TASK_RECORD_KEYS:
            if key not in present:
                self._conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{key}" '
                                   f'{_SQL_TYPES[KEY_KINDS[key]]}')
        for key in _INDEXED:
            self._conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_{key}" '
                               f'ON "{table}" ("{key}")')
        for key, columns in _PAGE_INDEXES.items():
            self._conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_by_{key}" ON "{table}" '
                               f'({", ".join(columns)})')
        for key in _REPLACED_INDEXES:
            self._conn.execute(f'DROP INDEX IF EXISTS "{table}_{key}"')
        # only resubmitted tasks are in it: finds the task a resubmission came from
        self._conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_resubmitted" ON "{table}" '
                           f'(resubmitted) WHERE resubmitted IS NOT NULL')
        self._conn.commit()

    def _sort_index(self, key):
        """The index that holds rows in `key` order (then submission order), or None."""
        if key == "msg_id":
            return f"sqlite_autoindex_{self.table}_1"  # the primary key's
        if key in _PAGE_INDEXES:
            return f"{self.table}_by_{key}"
        return f"{self.table}_{key}" if key in _INDEXED else None

    def _existing(self, ids):
        rows = self._conn.execute(f'SELECT msg_id FROM "{self.table}" WHERE msg_id IN '
                                  f'(SELECT value FROM json_each(?))', [json.dumps(ids)])
        return {msg_id for (msg_id,) in rows}

    def add_records(self, records):
        rows = [_row(record) for record in records]
        columns = ", ".join(f'"{key}"' for key in TASK_RECORD_KEYS)
        marks = ", ".join("?" * len(TASK_RECORD_KEYS))
        # the primary key finds clashes; only then do we pay for naming them. The savepoint
        # sits inside the open transaction, so releasing it commits nothing.
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        self._conn.execute("SAVEPOINT add_records")
        try:
            self._conn.executemany(f'INSERT INTO "{self.table}" ({columns}) VALUES ({marks})',
                                   rows)
        except sqlite3.IntegrityError:
            self._conn.execute("ROLLBACK TO add_records")
            self._conn.execute("RELEASE add_records")
            ids = [row[0] for row in rows]
            check_new_ids(ids, self._existing(ids))
            raise
        self._conn.execute("RELEASE add_records")

    def update_records(self, updates):
        updates = [(msg_id, _sql_changes(msg_id, changes)) for msg_id, changes in updates]
        todo = [(msg_id, changes) for msg_id, changes in updates
                if isinstance(msg_id, str) and changes]
        changed = 0
        # consecutive updates of the same keys share one statement; order is kept
        for keys, run in itertools.groupby(todo, key=lambda update: tuple(update[1])):
            sets = ", ".join(f'"{key}" = ?' for key in keys)
            rows = [[*changes.values(), msg_id] for msg_id, changes in run]
            changed += self._conn.executemany(
                f'UPDATE "{self.table}" SET {sets} WHERE msg_id = ?', rows).rowcount
        if changed == len(todo) and len(todo) == len(updates):
            return []  # every id was known: no need to look them up
        known = self._existing([msg_id for msg_id, _ in updates if isinstance(msg_id, str)])
        return [msg_id for msg_id, _ in updates if msg_id not in known]

    def get_history(self):
        """Every msg_id, in submission order: read as strings alone, not as a record dict
        each (200,000 of those were ~50 MB in the controller, for a moment)."""
        rows = self._conn.execute(f'SELECT msg_id FROM "{self.table}" '
                                  f'ORDER BY {order_clause(None)}')
        return [msg_id for (msg_id,) in rows]

    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        keys = projection(keys)
        rows = self._select(", ".join(f'"{key}"' for key in keys), query, sort, limit, skip)
        convert = [_FROM_SQL.get(KEY_KINDS[key]) for key in keys]
        return [{key: value if value is None or to_python is None else to_python(value)
                 for key, to_python, value in zip(keys, convert, row)} for row in rows]

    def find_rows(self, query, keys=None, sort=None, limit=None, skip=None, chunk=None):
        """The rows of a db_reply, made as text by SQLite: dict columns are spliced in as
        stored (JSON), the other keys encoded by json_array, datetimes as ISO text
        (`_iso_sql`) — no value becomes a Python object on the way, except buffers."""
        keys = projection(keys)
        segments = _row_segments(keys)
        if all(kind != "buffers" for kind, _ in segments):
            row = " || ',' || ".join(sql for _, sql in segments)
            # a blob: the UTF-8 text as stored, no str made and none encoded again
            cursor = self._select(f"CAST('[' || {row} || ']' AS BLOB)", query, sort, limit,
                                  skip, chunk)
            return _in_chunks(cursor, chunk, lambda rows: RecordRows(
                keys, [b"[", b",".join([text for (text,) in rows]), b"]"], []))
        columns = ", ".join(sql if kind == "buffers" else f"CAST({sql} AS BLOB)"
                            for kind, sql in segments)
        return _in_chunks(self._select(columns, query, sort, limit, skip, chunk), chunk,
                          lambda rows: _rows_with_buffers(keys, segments, rows))

    def _select(self, columns, query, sort, limit, skip, chunk=None):
        """A cursor over `columns` (SQL) of the records `query` matches, in order, paged.

        With `chunk` (rows to be read that many at a time), a statement that would sort
        every match (no index gives the order) finds the rowids in order first and reads
        the rows `chunk` at a time (_ByRowid): the first rows come before the last are
        made, and the sort holds rowids and keys, not the columns made for the rows."""
        where, params = where_clause(query)
        order, (limit, skip) = order_clause(sort), page_bounds(limit, skip)
        source = self._source(query)
        if limit is not None:
            return self._page(columns, source, where, params, sort, limit, skip)
        rest = f'FROM {source} WHERE {where} ORDER BY {order}'
        if skip:
            rest, params = rest + " LIMIT -1 OFFSET ?", [*params, skip]
        if chunk and self._sorts_everything(f"SELECT rowid {rest}", params):
            ids = self._conn.execute(f"SELECT rowid {rest}", params)
            return _ByRowid(self._conn, columns, self.table, [rowid for (rowid,) in ids])
        return self._conn.execute(f"SELECT {columns} {rest}", params)

    def _source(self, query):
        """What a query reads: the table, or, when it asks for one status other than "ok",
        the table through its status index. Failures are few, so reading them first beats
        reading another filter's matches, but SQLite keeps no statistics of values: for
        "failed on engine 3" it read engine 3's 62,000 records, not the 20,000 failures
        (1,000,000 records; 150 ms instead of 30)."""
        status = validate(query).get("status", {})
        if list(status) == ["$eq"] and isinstance(status["$eq"], str) and status["$eq"] != "ok":
            return f'"{self.table}" INDEXED BY "{self.table}_by_status"'
        return f'"{self.table}"'

    def _page(self, columns, source, where, params, sort, limit, skip):
        """One page: first the rowids, in order, then those rows' columns.

        Finding the rowids needs only the columns of the filter and the sort, often all in
        one index: then no row is read until the page is known, and a sort holds rowids
        and keys, not whole records (which made a sorted page of 60,000 matches 5x slower)."""
        def select(source):
            return (f'SELECT rowid FROM {source} WHERE {where} ORDER BY {order_clause(sort)} '
                    f'LIMIT ? OFFSET ?')
        ids = self._page_ids(select, source, [*params, limit, skip], sort)
        table = self.table
        return self._conn.execute(f'SELECT {columns} FROM json_each(?) AS page JOIN "{table}" '
                                  f'ON "{table}".rowid = page.value ORDER BY page.key',
                                  [json.dumps(ids)])

    def _page_ids(self, select, source, params, sort):
        """The rowids `select(source)` gives. SQLite picks the index for the WHERE clause by
        guesses (no statistics), and when that index does not give the sort order it reads
        every match and sorts them: 1 s for 990,000 "ok" records of 1,000,000. Reading the
        sort key's index in order instead stops after `limit` matches — unless the filter
        is rare, so that run gets SORT_INDEX_BUDGET seconds before the planner's plan runs."""
        order = sort_spec(sort)
        index = self._sort_index(order[0][0]) if order else None
        if index is not None and self._sorts_everything(select(source), params):
            rows = self._within(SORT_INDEX_BUDGET,
                                select(f'"{self.table}" INDEXED BY "{index}"'), params)
            if rows is not None:
                return [rowid for (rowid,) in rows]
        return [rowid for (rowid,) in self._conn.execute(select(source), params)]

    def _sorts_everything(self, sql, params):
        plan = self._conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return any(step[-1] == "USE TEMP B-TREE FOR ORDER BY" for step in plan)

    def _within(self, seconds, sql, params):
        """The rows of `sql`, or None if it takes longer than `seconds` (then abandoned)."""
        deadline = time.perf_counter() + seconds
        self._conn.set_progress_handler(
            lambda: time.perf_counter() > deadline or self._past_deadline(), _PROGRESS_STEPS)
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:  # a SELECT: the transaction stays open
            if "interrupted" not in str(error) or self._past_deadline():
                raise
            return None
        finally:
            self._conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)

    def drop_matching_records(self, query):
        where, params = where_clause(query)
        return self._conn.execute(f'DELETE FROM "{self.table}" WHERE {where}', params).rowcount

    def buffer_sizes(self, query):
        where, params = where_clause(query)  # the stored blobs' sizes, read off the rows
        return self._conn.execute(
            f'SELECT msg_id, coalesce(length(buffers), 0) + coalesce(length(result_buffers), '
            f'0) FROM {self._source(query)} WHERE {where} ORDER BY {order_clause(None)}',
            params).fetchall()

    def count(self, query=None):
        where, params = where_clause(query or {})
        return self._conn.execute(f'SELECT count(*) FROM {self._source(query or {})} '
                                  f'WHERE {where}', params).fetchone()[0]

    def commit(self):
        self._conn.commit()

    def close(self):
        if self._checkpointer is not None:
            self._checkpointer.stop()  # first: the last connection to close checkpoints
            self._checkpointer = None
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
            self._conn = None
