"""`ipcluster tasks`: the task history of a running cluster, from the shell.

    ipcluster tasks [--profile P] [--query JSON] [--keys k1,k2] [--limit N] [--json]
    ipcluster tasks --purge [--keep N] [--keep-bytes SIZE] [--older-than AGE] [--buffers-only]

The query is the Mongo-style dict of `Client.db_query`, as JSON. Datetime keys (submitted,
started, completed, received) accept ISO strings: '{"completed": {"$gte": "2026-11-21"}}'.
"""
import json
import sys
from argparse import ArgumentTypeError
from datetime import datetime

from ..error import TaskhubError
from ..jsonutil import DATE_KEYS, parse_date

DEFAULT_KEYS = ["msg_id", "engine_id", "status", "label", "submitted", "completed"]


def add_parser(commands, add_profile_options, run):
    """Add the `tasks` command; `run(args)` carries it out (it knows the profile)."""
    tasks = commands.add_parser("tasks", help="print the task history of a running cluster")
    add_profile_options(tasks)
    tasks.add_argument("--query", default="{}", help="Mongo-style query as JSON (default: all)")
    tasks.add_argument("--keys", help=f"comma-separated TaskRecord keys "
                       f"(default: {','.join(DEFAULT_KEYS)})")
    tasks.add_argument("--limit", type=int, default=20,
                       help="show the last N matching tasks (default 20; 0: all)")
    tasks.add_argument("--json", action="store_true", help="print JSON records, one per line")
    purge = tasks.add_argument_group("culling the history (with --purge)")
    purge.add_argument("--purge", action="store_true", help="drop the oldest finished tasks "
                       "beyond the bounds below, once (the controller's retain_* options do "
                       "it on a schedule); unfinished tasks are never dropped")
    purge.add_argument("--keep", type=int, default=0, metavar="N",
                       help="keep the newest N finished tasks")
    purge.add_argument("--keep-bytes", type=parse_size, default=0, metavar="SIZE",
                       help="keep at most SIZE of arguments and results (e.g. 500M, 2G)")
    purge.add_argument("--older-than", type=parse_age, default=0, metavar="AGE",
                       help="drop tasks finished longer ago than AGE (e.g. 90s, 30m, 12h, 7d)")
    purge.add_argument("--buffers-only", action="store_true", help="drop only the arguments "
                       "and results, keeping each record's status, timings and output")
    tasks.set_defaults(func=run)


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text):
    """Bytes from '500M', '2G', '1024' (binary units, optional trailing B)."""
    number, unit = _split_unit(text.lower().removesuffix("b"))
    if unit not in _UNITS:
        raise ArgumentTypeError(f"{text!r} is not a size: use e.g. 500M or 2G")
    return int(number * _UNITS[unit])


def parse_age(text):
    """Seconds from '90s', '30m', '12h', '7d' (a bare number is seconds)."""
    number, unit = _split_unit(text.lower())
    if unit not in _SECONDS and unit:
        raise ArgumentTypeError(f"{text!r} is not an age: use e.g. 30m, 12h or 7d")
    return number * _SECONDS.get(unit, 1)


def _split_unit(text):
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        number = float(digits)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} does not start with a number") from None
    if number < 0:
        raise ArgumentTypeError(f"{text!r} is negative")
    return number, text[len(digits):]


def parse_query(text):
    """The query dict from JSON text; ISO strings under datetime keys become datetimes."""
    try:
        query = json.loads(text)
    except ValueError as e:
        raise ValueError(f"--query is not valid JSON: {e}") from None
    if not isinstance(query, dict):
        raise ValueError("--query must be a JSON object, e.g. '{\"status\": \"error\"}'")
    return _query_dates(query)


def _query_dates(query):
    """`query` with ISO strings under datetime keys as datetimes, in $or/$and/$nor/$not too."""
    if not isinstance(query, dict):
        return query  # the query language says what is wrong with it
    return {k: _dates(v) if k in DATE_KEYS
            else [_query_dates(q) for q in v] if k in ("$or", "$and", "$nor") and
            isinstance(v, list)
            else _query_dates(v) if k == "$not"
            else v for k, v in query.items()}


def _dates(value):
    if isinstance(value, str):
        try:
            return parse_date(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date") from None
    if isinstance(value, dict):
        return {op: _dates(v) for op, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    return value


def cmd_tasks(args, profile_dir):
    if args.purge:
        return cmd_purge(args, profile_dir)
    from ..client import Client
    query = parse_query(args.query)
    keys = args.keys.split(",") if args.keys else DEFAULT_KEYS
    try:
        with Client(profile_dir=profile_dir, timeout=5) as rc:
            records = rc.db_query(query, keys=keys)
    except TaskhubError as e:
        raise ValueError(str(e)) from None
    if args.limit:
        records = records[-args.limit:]
    out = sys.stdout
    if args.json:
        for rec in records:
            out.write(json.dumps(rec, default=_json_default) + "\n")
    else:
        out.write(format_table(records, ["msg_id", *[k for k in keys if k != "msg_id"]]))
    return 0


def cmd_purge(args, profile_dir):
    from ..client import Client
    if not (args.keep or args.keep_bytes or args.older_than):
        raise ValueError("--purge needs a bound: --keep N, --keep-bytes SIZE or "
                         "--older-than AGE")
    try:
        with Client(profile_dir=profile_dir, timeout=5) as rc:
            culled = rc.cull_results(max_records=args.keep, max_bytes=args.keep_bytes,
                                     max_age=args.older_than,
                                     what="buffers" if args.buffers_only else "records")
    except TaskhubError as e:
        raise ValueError(str(e)) from None
    what = "stripped of their arguments and results" if args.buffers_only else "dropped"
    sys.stdout.write(f"{culled} finished task{'' if culled == 1 else 's'} {what}\n")
    return 0


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(value)} bytes>"
    return repr(value)


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, list):
        return f"[{len(value)} buffers]" if value and isinstance(value[0], bytes) else str(value)
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= 40 else text[:39] + "…"


def format_table(records, keys):
    """A plain-text table, one row per record; '(no tasks)' when there are none."""
    if not records:
        return "(no tasks)\n"
    rows = [[_cell(rec.get(k)) for k in keys] for rec in records]
    header = [k.upper() for k in keys]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(keys))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines) + f"\n({len(records)} tasks)\n"
