"""The task database: every task the controller routed, queryable by clients.

    db = make_db("sqlite", filename=profile / "tasks.db")   # opened, ready to use
    db.add_record(msg_id, {"submitted": now, "client_uuid": ...})
    db.find_records({"completed": {"$gte": an_hour_ago}}, keys=["msg_id", "engine_uuid"])

The interface is `TaskDB` (base.py), the query language query.py, and the backends
memory.py, sqlite.py (the default), mongodb.py and none.py. See docs/taskdb.md.
"""
import difflib
import importlib

from taskhub.controller.db.base import TASK_RECORD_KEYS, TaskDB

__all__ = ["BACKENDS", "TASK_RECORD_KEYS", "TaskDB", "make_db"]

# Imported only when chosen, so pymongo is needed only for "mongodb".
BACKENDS = {
    "memory": "taskhub.controller.db.memory:MemoryDB",
    "sqlite": "taskhub.controller.db.sqlite:SQLiteDB",
    "mongodb": "taskhub.controller.db.mongodb:MongoDB",
    "none": "taskhub.controller.db.none:NoDB",
}


def make_db(kind, **options):
    """An opened TaskDB: `kind` is a name in BACKENDS or a class path "package.module:Class".

    `options` go to the backend's constructor (e.g. filename= for sqlite, url= for mongodb).
    """
    path = BACKENDS.get(kind, kind)
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"unknown task database {kind!r}{_suggest(kind)}; choose one of: "
                         f"{', '.join(sorted(BACKENDS))}, or a class path 'package.module:Class'")
    cls = _load(kind, path)
    if not (isinstance(cls, type) and issubclass(cls, TaskDB)):
        raise TypeError(f"task database {kind!r} is not a TaskDB subclass")
    return cls(**options).open()


def _suggest(kind):
    close = difflib.get_close_matches(str(kind), BACKENDS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _load(kind, path):
    module_name, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load task database {kind!r}: {error}") from error
