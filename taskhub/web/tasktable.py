"""The task table's filters, as the web view's URL carries them, turned into a task-DB page.

    ?status=error&engine=3&label=fit-*&group=…&since=2026-01-01T10:00Z&msg_id=4f2a&sort=-completed
        │ table_request(args)
        ▼
    TableRequest(query={"status": {"$in": [...]}, "engine_id": 3, ...},
                 sort=[("completed", -1)], limit=50, skip=0)
        │ rc.db_count(query), rc.db_query(query, ROW_KEYS, sort, limit, skip)
        ▼
    {"total": n, "tasks": [row(record), ...]}

Every filter becomes a condition of the query language the task DB already speaks, so
the page is cut by the backend (SQL ORDER BY/LIMIT/OFFSET, Mongo sort/skip/limit), never
by fetching every record. `q` adds a raw Mongo-style query (JSON) to the form's filters.
Bad input raises ValueError with a message fit to show the user.
"""
import json
import re
from dataclasses import dataclass

from .. import taskstatus
from ..cluster.tasks import parse_query

# status filter -> condition: each task status (taskhub/taskstatus.py), and two groups
STATUSES = {"unfinished": {"completed": None}, "finished": {"completed": {"$ne": None}},
            **{s: {"status": s} for s in taskstatus.STATUSES}}
# Columns the table sorts by; each has an index in SQLite and MongoDB, so a sorted page
# reads a few index entries instead of sorting the whole table.
SORT_KEYS = ("submitted", "completed", "engine_id", "status", "label", "msg_id")
DEFAULT_SORT = "-submitted"
PAGE_SIZES = range(1, 501)
DEFAULT_LIMIT = 50
# What one table row shows (error: for the exception's name).
ROW_KEYS = ["msg_id", "submitted", "started", "completed", "engine_id", "status", "label",
            "queue", "error", "resubmitted"]
_MSG_ID = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class TableRequest:
    query: dict
    sort: list
    limit: int
    skip: int


def table_request(args):
    """The TableRequest for the dict `args` of URL parameters (str -> str; blanks ignored)."""
    args = {k: v.strip() for k, v in args.items() if isinstance(v, str) and v.strip()}
    query = {}
    for name, condition in _filters(args):
        query.update(condition)
    for key, condition in _raw_query(args.get("q")).items():
        if key in query:
            raise ValueError(f"{key!r} is filtered both by the form and by the query; "
                             "use one of them")
        query[key] = condition
    return TableRequest(query, _sort(args.get("sort", DEFAULT_SORT)),
                        _int(args, "limit", DEFAULT_LIMIT, PAGE_SIZES),
                        _int(args, "skip", 0, range(0, 2**31)))


def _filters(args):
    if "status" in args and args["status"] != "all":
        if args["status"] not in STATUSES:
            raise ValueError(f"status must be one of all, {', '.join(STATUSES)}; "
                             f"not {args['status']!r}")
        yield "status", STATUSES[args["status"]]
    if "engine" in args:
        yield "engine", {"engine_id": _int(args, "engine", None, range(0, 2**31))}
    if "label" in args:  # equality reads the (label, submitted) index in order
        label = args["label"]
        yield "label", {"label": {"$glob": label} if set("*?[") & set(label) else label}
    if "group" in args:
        yield "group", {"task_group": args["group"]}
    if "msg_id" in args:
        yield "msg_id", {"msg_id": _msg_id_prefix(args["msg_id"])}
    window = {op: _date(args[name], name) for name, op in (("since", "$gte"), ("until", "$lt"))
              if name in args}
    if window:
        yield "time", {"submitted": window}


def _msg_id_prefix(text):
    if not _MSG_ID.fullmatch(text):
        raise ValueError(f"msg_id: letters, digits and - _ . : only, not {text!r}")
    return {"$glob": text + "*"}  # a prefix GLOB reads the msg_id index


def _date(text, name):
    try:
        return parse_query(json.dumps({"submitted": text}))["submitted"]
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an ISO date-time "
                         "(e.g. 2026-01-31T14:00 or 2026-01-31T14:00:00+01:00)") from None


def _raw_query(text):
    if not text:
        return {}
    try:
        return parse_query(text)
    except ValueError as e:
        raise ValueError(f"q: {e}".replace("--query", "the query")) from None


def _sort(text):
    order = []
    for item in text.split(","):
        key = item.strip().lstrip("-")
        if key not in SORT_KEYS:
            raise ValueError(f"sort by one of {', '.join(SORT_KEYS)} (with - for "
                             f"descending), not {item.strip()!r}")
        order.append((key, -1 if item.strip().startswith("-") else 1))
    return order


def _int(args, name, default, allowed):
    text = args.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value not in allowed:  # (`None in range` would scan the range)
        raise ValueError(f"{name} must be a whole number from {allowed.start} to "
                         f"{allowed.stop - 1}, not {text!r}")
    return value


def row(record):
    """A task record as one JSON-able table row: dates as ISO strings, the error's name."""
    out = {key: _jsonable(record.get(key)) for key in ROW_KEYS if key != "error"}
    error = record.get("error") or {}
    out["ename"] = error.get("ename")
    out["evalue"] = error.get("evalue")
    return out


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def jsonable_record(record):
    """A whole task record (no buffers) for the task page: dates as ISO strings."""
    return {key: _jsonable(value) for key, value in record.items()}
