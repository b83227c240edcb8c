"""The task database interface every backend implements, and the TaskRecord helpers they share.

A TaskRecord is a flat dict with one entry per key of TASK_RECORD_KEYS: what was asked
(header, content, buffers), who asked (client_uuid), where it ran (engine_uuid, engine_id),
when (submitted -> started -> completed, received) and what came back (result_*, stdout,
stderr, error). The hub writes records as messages pass; clients read them back with
queries in the language of `taskhub.controller.db.query`.

    hub --add_records / update_records--> TaskDB --> memory | sqlite | mongodb | none
        <--get_record / find_records-----        (commit() once per event-loop turn)

A backend implements the bulk methods (add_records, update_records, find_records,
drop_matching_records); the single-record methods are built on them here.
"""
import difflib
import json
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import NamedTuple

from taskhub.error import UnknownTaskError

# Every key a TaskRecord has. Add new keys here (and, if they do not hold a str, to the
# matching set below); the SQLite backend adds the column to existing files on open.
TASK_RECORD_KEYS = (
    "msg_id", "header", "metadata", "content", "buffers", "submitted",
    "client_uuid", "engine_uuid", "started", "completed", "resubmitted", "received",
    "result_header", "result_metadata", "result_content", "result_buffers", "queue",
    "execute_input", "execute_result", "error", "stdout", "stderr", "label", "engine_id",
    "status", "task_group",
)
DATETIME_KEYS = frozenset({"submitted", "started", "completed", "received"})
DICT_KEYS = frozenset({
    "header", "metadata", "content", "result_header", "result_metadata", "result_content",
    "execute_input", "execute_result", "error",
})
BUFFER_KEYS = frozenset({"buffers", "result_buffers"})
INT_KEYS = frozenset({"engine_id"})


def _kind(key):
    for kind, keys in (("datetime", DATETIME_KEYS), ("dict", DICT_KEYS),
                       ("buffers", BUFFER_KEYS), ("int", INT_KEYS)):
        if key in keys:
            return kind
    return "str"


# key -> "str" | "int" | "datetime" | "dict" | "buffers": what the key holds when not None.
KEY_KINDS = {key: _kind(key) for key in TASK_RECORD_KEYS}
PYTHON_TYPES = {"str": str, "int": int, "datetime": datetime, "dict": dict,
                "buffers": (list, tuple)}
KIND_NAMES = {"str": "a str", "int": "an int", "datetime": "a datetime", "dict": "a dict",
              "buffers": "a list of bytes"}


def suggest_key(key):
    """" (did you mean 'x'?)" for the TaskRecord key nearest to `key`, or "" if none is near."""
    close = difflib.get_close_matches(str(key), TASK_RECORD_KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_utc(when):
    """`when` as a timezone-aware UTC datetime; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def clean_value(key, value):
    """`value` checked against what `key` holds, with datetimes made UTC and buffers bytes."""
    if value is None:
        return None
    kind = KEY_KINDS[key]
    if not isinstance(value, PYTHON_TYPES[kind]) or isinstance(value, bool):
        raise TypeError(f"TaskRecord key {key!r} holds {KIND_NAMES[kind]}, "
                        f"not {type(value).__name__}")
    if kind == "datetime":
        return as_utc(value)
    if kind == "buffers":
        return [_as_bytes(key, buffer) for buffer in value]
    return value


def _as_bytes(key, buffer):
    if type(buffer) is bytes:
        return buffer
    try:
        return bytes(memoryview(buffer))
    except TypeError:
        raise TypeError(f"TaskRecord key {key!r} holds a list of bytes; "
                        f"one item is a {type(buffer).__name__}") from None


def _check_keys(record):
    if not isinstance(record, dict):
        raise TypeError(f"a TaskRecord is a dict, not {type(record).__name__}")
    for key in record:
        if key not in KEY_KINDS:
            raise ValueError(f"unknown TaskRecord key {key!r}{suggest_key(key)}")


def new_record(record):
    """A full TaskRecord from the dict `record`: keys checked, values cleaned, the rest None."""
    _check_keys(record)
    msg_id = record.get("msg_id")
    if not isinstance(msg_id, str) or not msg_id:
        raise ValueError(f"a TaskRecord needs a non-empty msg_id str, not {msg_id!r}")
    full = dict.fromkeys(TASK_RECORD_KEYS)
    full.update((key, clean_value(key, value)) for key, value in record.items())
    return full


def record_changes(msg_id, changes):
    """The dict `changes` to task `msg_id`, checked and cleaned; the msg_id cannot change."""
    _check_keys(changes)
    if changes.get("msg_id", msg_id) != msg_id:
        raise ValueError(f"cannot change the msg_id of task {msg_id!r} "
                         f"to {changes['msg_id']!r}")
    return {key: clean_value(key, value) for key, value in changes.items() if key != "msg_id"}


def check_new_ids(ids, existing):
    """Raise ValueError naming each of `ids` that is in `existing` or repeats within `ids`."""
    seen, clashes = set(), []
    for msg_id in ids:
        if msg_id in seen or msg_id in existing:
            clashes.append(msg_id)
        seen.add(msg_id)
    if clashes:
        names = ", ".join(map(repr, clashes))
        raise ValueError(f"already in the task database (or added twice): msg_id {names}")


class RecordRows(NamedTuple):
    """Records as a db_reply carries them (docs/messages.md): `keys`, then `json_parts`,
    pieces of UTF-8 that, joined, are the JSON text of a list with one row per record, each
    a list of the values of `keys` in order. Datetimes are ISO-8601 text with the UTC
    offset, dicts JSON objects, buffer keys the number of buffers (or null); the buffers
    themselves are `buffers`, in row order and then key order."""
    keys: tuple
    json_parts: list
    buffers: list

    @property
    def json(self):
        return b"".join(self.json_parts)


def _row_value(value):
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    raise TypeError(f"{type(value).__name__} {value!r:.60} in a TaskRecord is not JSON-able")


_encode_rows = json.JSONEncoder(separators=(",", ":"), default=_row_value).encode


def rows_of(keys, records):
    """The RecordRows of the record dicts `records`, which have the keys `keys` (a tuple)."""
    counted = [i for i, key in enumerate(keys) if key in BUFFER_KEYS]
    rows, buffers = [], []
    for record in records:
        row = [record[key] for key in keys]
        for i in counted:
            if row[i] is not None:
                buffers.extend(row[i])
                row[i] = len(row[i])
        rows.append(row)
    return RecordRows(keys, [_encode_rows(rows).encode()], buffers)


_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def submission_order(record):
    """Sort key for submission order: no `submitted` first (as SQL and Mongo sort None).

    sorted() is stable, so records submitted at the same time keep insertion order.
    """
    return record["submitted"] or _EARLIEST


def unknown_task(msg_id):
    return UnknownTaskError(f"no task with msg_id {msg_id!r} in the task database")


class TaskDB(ABC):
    """A store of TaskRecords, written by the hub and queried by clients.

    Not thread-safe: the hub uses one instance from one thread at a time. Records are
    returned as new dicts with the keys asked for; datetimes always come back UTC-aware.

    `deadline` (a time.monotonic() value, or None) is when a read must give up: the DB
    worker sets it around each query, and a backend that can stop a query midway raises
    TimeoutError (or SQLite's "interrupted") once it passes.
    """
    deadline = None

    def open(self):
        """Connect / create storage; return self. `make_db` calls it; constructors do no I/O."""
        return self

    @abstractmethod
    def add_records(self, records):
        """Add the record dicts `records` (each with a "msg_id"); missing keys are None.

        All or nothing: if any msg_id is already stored or repeats in `records`, raise
        ValueError naming them and add none. Bad keys or value types raise ValueError /
        TypeError, also before anything is added.
        """

    @abstractmethod
    def update_records(self, updates):
        """Apply (msg_id, changes) pairs in order; return the msg_ids not found (skipped).

        The hub may update a record that a client dropped meanwhile, so unknown ids are
        not an error here. Bad keys or value types raise before anything is changed.
        """

    @abstractmethod
    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        """Records matching `query`, as dicts of `keys`, in submission order or by `sort`.

        `keys` is None (every key but the buffers) or a list of keys; "msg_id" is always
        included; "buffers"/"result_buffers" only when named. Submission order is by
        `submitted`, then insertion order. `sort` (see `query.sort_spec`) orders by keys
        instead, ties in submission order (reversed when the last sort key is descending);
        None sorts before any value. Then `skip` records are left out and at most `limit`
        returned — a page, computed by the backend, not by fetching everything. A bad
        query, key, sort, limit or skip raises QueryError.
        """

    def find_rows(self, query, keys=None, sort=None, limit=None, skip=None, chunk=None):
        """What find_records finds, as the RecordRows of db_replies: an iterator of at least
        one RecordRows of at most `chunk` records each (one of all if None). The hub relays
        them to a client without decoding them, sending each as soon as it is made. Errors in
        the arguments are raised by the call, not by the iterator.

        This generic version encodes find_records' dicts; a backend that stores JSON text
        (SQLite) builds the text without decoding it."""
        from taskhub.controller.db.query import projection
        keys = projection(keys)
        records = self.find_records(query, keys, sort, limit, skip)
        size = chunk or max(len(records), 1)
        return (rows_of(keys, records[start:start + size])
                for start in range(0, max(len(records), 1), size))

    @abstractmethod
    def drop_matching_records(self, query):
        """Delete every record matching `query`; return how many were deleted."""

    def buffer_sizes(self, query):
        """(msg_id, bytes of its buffers and result buffers) of each record matching
        `query`, in submission order: what retention by size weighs. This generic version
        reads the buffers; backends that can ask their store for the sizes do so."""
        keys = ["msg_id", "buffers", "result_buffers"]
        return [(r["msg_id"], sum(len(b) for key in keys[1:] for b in r[key] or ()))
                for r in self.find_records(query, keys)]

    def commit(self):
        """Make the writes so far durable. The hub calls it once per event-loop turn."""

    def close(self):
        """Commit and release the storage; the instance is not used afterwards."""

    def add_record(self, msg_id, record):
        """Add one record; ValueError if `msg_id` is already stored."""
        if record.get("msg_id", msg_id) != msg_id:
            raise ValueError(f"add_record({msg_id!r}) given a record whose msg_id is "
                             f"{record['msg_id']!r}")
        self.add_records([{**record, "msg_id": msg_id}])

    def update_record(self, msg_id, changes):
        """Apply the dict `changes` to record `msg_id`; UnknownTaskError if there is none."""
        if self.update_records([(msg_id, changes)]):
            raise unknown_task(msg_id)

    def get_record(self, msg_id):
        """The record `msg_id` with every key (buffers too); UnknownTaskError if none."""
        if not isinstance(msg_id, str):
            raise unknown_task(msg_id)
        found = self.find_records({"msg_id": msg_id}, TASK_RECORD_KEYS)
        if not found:
            raise unknown_task(msg_id)
        return found[0]

    def drop_record(self, msg_id):
        """Delete record `msg_id`; UnknownTaskError if there is none."""
        if not isinstance(msg_id, str) or not self.drop_matching_records({"msg_id": msg_id}):
            raise unknown_task(msg_id)

    def get_history(self):
        """Every msg_id, in submission order."""
        return [record["msg_id"] for record in self.find_records({}, ["msg_id"])]

    def count(self, query=None):
        """How many records match `query` (all records if None)."""
        return len(self.find_records(query or {}, ["msg_id"]))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
