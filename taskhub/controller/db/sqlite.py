"""SQLite task database: the default backend, one file in the profile, durable across restarts.

One row per task, one column per TaskRecord key:

    str keys       TEXT                 dict keys   TEXT holding JSON
    int keys       INTEGER              buffers     BLOB (see pack_buffers)
    datetime keys  INTEGER microseconds since the Unix epoch (UTC), so SQL compares exactly

Queries become WHERE clauses with bound parameters (`where_clause`): $in/$nin bind one JSON
list read back by json_each, $regex calls a REGEXP function registered on the connection,
$glob uses SQLite's GLOB (REGEXP for patterns with [sets], whose syntax differs from
fnmatch's). Writes collect in one transaction until commit(); reads on the connection see
them. Opening a file made by an older version adds the columns it lacks.
"""
import itertools
import json
import os
import re
import sqlite3
import struct
from datetime import datetime, timedelta, timezone

from taskhub.controller.db.base import (
    KEY_KINDS, TASK_RECORD_KEYS, TaskDB, check_new_ids, new_record, record_changes,
)
from taskhub.controller.db.query import glob_to_regex, glob_tokens, projection, validate

_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "datetime": "INTEGER", "dict": "TEXT",
              "buffers": "BLOB"}
_INDEXED = ("submitted", "completed", "engine_uuid", "client_uuid", "label")
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
        try:
            return json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"TaskRecord key {key!r} must hold a JSON-able dict: {error}") from None
    return value


_FROM_SQL = {"datetime": lambda micros: _EPOCH + micros * _MICROSECOND,
             "dict": json.loads, "buffers": unpack_buffers}


def _regexp(pattern, value):
    """SQLite's `value REGEXP pattern`: Python re.search; NULL never matches."""
    return isinstance(value, str) and re.search(pattern, value) is not None


def where_clause(query):
    """(SQL condition, parameters) for the task-DB `query`; values are always bound."""
    clauses, params = [], []
    for key, condition in validate(query).items():
        for op, operand in condition.items():
            sql, args = _clause(key, op, operand)
            clauses.append(sql)
            params.extend(args)
    return " AND ".join(clauses) or "1", params


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
        return f"{column} REGEXP ?", [glob_to_regex(pattern)]
    glob = "".join(_GLOB_TEXT.get(text, text) if kind == "text" else text
                   for kind, text, _ in tokens)
    return f"{column} GLOB ?", [glob]


class SQLiteDB(TaskDB):
    """TaskDB in the table `table` of the SQLite file `filename` (":memory:" for none)."""

    def __init__(self, filename=":memory:", table="tasks"):
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"SQLite table name must be letters, digits and _, not {table!r}")
        self.filename = os.fspath(filename)
        self.table = table
        self._conn = None

    def open(self):
        # one thread at a time (see TaskDB), but not necessarily the one that opened it
        self._conn = sqlite3.connect(self.filename, check_same_thread=False)
        self._conn.create_function("REGEXP", 2, _regexp, deterministic=True)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._create_table()
        return self

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
        self._conn.commit()

    def _existing(self, ids):
        rows = self._conn.execute(f'SELECT msg_id FROM "{self.table}" WHERE msg_id IN '
                                  f'(SELECT value FROM json_each(?))', [json.dumps(ids)])
        return {msg_id for (msg_id,) in rows}

    def add_records(self, records):
        records = [new_record(record) for record in records]
        rows = [[_to_sql(key, record[key]) for key in TASK_RECORD_KEYS] for record in records]
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
            ids = [record["msg_id"] for record in records]
            check_new_ids(ids, self._existing(ids))
            raise
        self._conn.execute("RELEASE add_records")

    def update_records(self, updates):
        updates = [(msg_id, record_changes(msg_id, changes)) for msg_id, changes in updates]
        todo = [(msg_id, changes) for msg_id, changes in updates
                if isinstance(msg_id, str) and changes]
        changed = 0
        # consecutive updates of the same keys share one statement; order is kept
        for keys, run in itertools.groupby(todo, key=lambda update: tuple(update[1])):
            sets = ", ".join(f'"{key}" = ?' for key in keys)
            rows = [[_to_sql(key, changes[key]) for key in keys] + [msg_id]
                    for msg_id, changes in run]
            changed += self._conn.executemany(
                f'UPDATE "{self.table}" SET {sets} WHERE msg_id = ?', rows).rowcount
        if changed == len(todo) and len(todo) == len(updates):
            return []  # every id was known: no need to look them up
        known = self._existing([msg_id for msg_id, _ in updates if isinstance(msg_id, str)])
        return [msg_id for msg_id, _ in updates if msg_id not in known]

    def find_records(self, query, keys=None):
        keys = projection(keys)
        where, params = where_clause(query)
        columns = ", ".join(f'"{key}"' for key in keys)
        rows = self._conn.execute(f'SELECT {columns} FROM "{self.table}" WHERE {where} '
                                  f'ORDER BY submitted, rowid', params)
        convert = [_FROM_SQL.get(KEY_KINDS[key]) for key in keys]
        return [{key: value if value is None or to_python is None else to_python(value)
                 for key, to_python, value in zip(keys, convert, row)} for row in rows]

    def drop_matching_records(self, query):
        where, params = where_clause(query)
        return self._conn.execute(f'DELETE FROM "{self.table}" WHERE {where}', params).rowcount

    def count(self, query=None):
        where, params = where_clause(query or {})
        return self._conn.execute(f'SELECT count(*) FROM "{self.table}" WHERE {where}',
                                  params).fetchone()[0]

    def commit(self):
        self._conn.commit()

    def close(self):
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
            self._conn = None
