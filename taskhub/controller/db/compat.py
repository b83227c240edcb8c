"""The task-DB classes ipyparallel code constructs directly, as thin constructors over ours.

    DictDB(record_limit=, size_limit=, cull_fraction=)   MemoryDB that culls old records
    SQLiteDB(location=, filename=, table=)               SQLiteDB, opened at once
    MongoDB(database=, _connection=)                     MongoDB on an existing MongoClient
    init_record(msg)                                     a record from a request message
    disable_session_extract_dates()                      as ipyparallel.util's

ipyparallel's constructors open their storage at once, so these do (ours leave it to
`make_db`). The methods are taskhub's (see base.TaskDB); where they differ from
ipyparallel's, docs/compatibility.md says how.
"""
import copy
import os

from .memory import MemoryDB
from .mongodb import MongoDB as _MongoDB
from .sqlite import SQLiteDB as _SQLiteDB

BUFFER_KEYS = ("buffers", "result_buffers")


class DictDB(MemoryDB):
    """MemoryDB bounded like ipyparallel's DictDB: past `record_limit` records it drops the
    oldest cull_fraction * record_limit of them; past `size_limit` bytes of buffers, the
    oldest records until the buffers fill at most (1 - cull_fraction) * size_limit.
    Records are returned as deep copies: changing one never changes the DB."""

    def __init__(self, record_limit=1024, size_limit=1024 ** 3, cull_fraction=0.1, **_log):
        super().__init__()
        self.record_limit, self.size_limit, self.cull_fraction = \
            record_limit, size_limit, cull_fraction
        self._sizes = {}  # msg_id -> bytes of its buffers

    def add_records(self, records):
        super().add_records(records)
        for record in records:
            self._sizes[record["msg_id"]] = _buffer_size(self._records[record["msg_id"]])
        self._cull()

    def update_records(self, updates):
        unknown = super().update_records(updates)
        for msg_id, changes in updates:
            if msg_id in self._records and any(k in changes for k in BUFFER_KEYS):
                self._sizes[msg_id] = _buffer_size(self._records[msg_id])
        self._cull()
        return unknown

    def drop_matching_records(self, query):
        dropped = super().drop_matching_records(query)
        for msg_id in [m for m in self._sizes if m not in self._records]:
            del self._sizes[msg_id]
        return dropped

    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        return copy.deepcopy(super().find_records(query, keys, sort, limit, skip))

    def _cull(self):
        if len(self._records) > self.record_limit:
            self._drop_oldest(max(1, int(self.cull_fraction * self.record_limit)))
        target = (1 - self.cull_fraction) * self.size_limit
        if sum(self._sizes.values()) > self.size_limit:
            total, n = sum(self._sizes.values()), 0
            for msg_id in list(self._records):
                if total <= target:
                    break
                total -= self._sizes[msg_id]
                n += 1
            self._drop_oldest(n)

    def _drop_oldest(self, n):
        for msg_id in list(self._records)[:n]:
            del self._records[msg_id]
            del self._sizes[msg_id]


def _buffer_size(record):
    return sum(len(b) for key in BUFFER_KEYS for b in record.get(key) or ())


class SQLiteDB(_SQLiteDB):
    """Our SQLiteDB, at `location`/`filename` (ipyparallel's arguments), opened at once."""

    def __init__(self, location="", filename="tasks.db", table="tasks", **_log):
        super().__init__(os.path.join(location, filename) if location else filename, table)
        self.open()


class MongoDB(_MongoDB):
    """Our MongoDB backend on database `database`, through an existing pymongo
    MongoClient (`_connection`, as ipyparallel takes it) or a fresh one to `url`."""

    def __init__(self, database="ipython-tasks", _connection=None, url=None, **options):
        if url is None:
            host, port = _connection.address if _connection is not None \
                else ("127.0.0.1", 27017)
            url = f"mongodb://{host}:{port}"
        options.setdefault("serverSelectionTimeoutMS", 2000)
        super().__init__(url, database, **options)
        self.open()
        self._client.admin.command("ping")  # no server: fail here, not at the first write


def init_record(msg):
    """The task record of a request message (a dict with header, metadata, content and
    buffers, as jupyter_client's Session.msg makes): submitted when its header is dated."""
    header = dict(msg["header"])
    if hasattr(header.get("date"), "isoformat"):  # a header as it travels: JSON
        header["date"] = header["date"].isoformat()
    return {
        "msg_id": header["msg_id"], "header": header, "content": msg.get("content"),
        "metadata": msg.get("metadata"), "buffers": list(msg.get("buffers") or []),
        "submitted": msg["header"].get("date"), "client_uuid": header.get("session"),
        "stdout": "", "stderr": "",
    }


def disable_session_extract_dates():
    """Stop jupyter_client's Session from parsing ISO date strings in the messages it
    reads, as ipyparallel's util._disable_session_extract_dates does (code that builds
    records from jupyter_client messages calls it; taskhub's own messages never go through
    jupyter_client). Nothing happens when jupyter_client is not installed."""
    try:
        from jupyter_client import session
    except ImportError:
        return
    session.extract_dates = _unchanged


def _unchanged(obj):
    return obj
