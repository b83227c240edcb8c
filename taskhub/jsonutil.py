"""Datetimes across JSON: messages carry them as ISO strings; queries tag them.

A query value that is a datetime travels as ``{"$datetime": "<iso>"}`` so the hub can tell
it from a string; task records travel with ISO strings under the keys in `DATE_KEYS`.
"""
import contextlib
import gc
from datetime import datetime, timezone

DATE_KEYS = ("submitted", "started", "completed", "received")
_TAG = "$datetime"


def parse_date(value):
    """An aware datetime from an ISO string (naive means UTC); None and datetimes pass."""
    if value is None or isinstance(value, datetime):
        return value
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def tag_dates(obj):
    """A query ready for JSON: datetimes tagged (a naive one is local time, as
    `datetime.now()` gives), and any other iterable — a set, a map object — made a list."""
    if isinstance(obj, datetime):
        return {_TAG: obj.astimezone(timezone.utc).isoformat()}
    if isinstance(obj, dict):
        return {k: tag_dates(v) for k, v in obj.items()}
    if isinstance(obj, (str, bytes)) or not hasattr(obj, "__iter__"):
        return obj
    return [tag_dates(v) for v in obj]


def untag_dates(obj):
    if isinstance(obj, dict):
        if len(obj) == 1 and _TAG in obj and isinstance(obj[_TAG], str):
            return parse_date(obj[_TAG])
        return {k: untag_dates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [untag_dates(v) for v in obj]
    return obj


BUFFER_KEYS = ("buffers", "result_buffers")


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside: while a big reply is decoded into hundreds of
    thousands of lists and dicts (none in a cycle), the collector would otherwise run again
    and again over all of them — half the decoding time of 20,000 records. Leaves it off
    if it was off; another thread's objects wait for the next collection, nothing more."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def records_from_rows(keys, rows, buffers=()):
    """The record dicts of a db_reply's `keys` and decoded `rows` (lists, changed in place):
    ISO text under date keys made aware datetimes, buffer counts replaced by that many of
    `buffers` (as bytes), taken in order."""
    with gc_paused():
        return _records_from_rows(keys, rows, buffers)


def _records_from_rows(keys, rows, buffers):
    fromiso = datetime.fromisoformat
    dates = [i for i, key in enumerate(keys) if key in DATE_KEYS]
    if dates:
        for row in rows:
            for i in dates:
                if row[i] is not None:
                    row[i] = fromiso(row[i])
    counted = [i for i, key in enumerate(keys) if key in BUFFER_KEYS]
    if counted:
        frames = iter(buffers)
        for row in rows:
            for i in counted:
                if row[i] is not None:
                    row[i] = [bytes(next(frames)) for _ in range(row[i])]
    return [dict(zip(keys, row)) for row in rows]


def dates_in_record(record):
    """Turn the ISO strings of a record's date keys into aware datetimes, in place."""
    for key in DATE_KEYS:
        if record.get(key) is not None:
            record[key] = parse_date(record[key])
    return record


class EncodedJSON(dict):
    """A dict that also carries its own JSON text (`json`, a str), as it came off the wire:
    a task DB that stores dicts as JSON writes that text instead of encoding the dict again.
    Treat it as read-only — the text is not kept in step with changes."""

    __slots__ = ("json",)

    def __init__(self, value, text):
        super().__init__(value)
        self.json = text


def with_text(value, raw):
    """`value` (decoded from the JSON bytes `raw`) as an EncodedJSON if it is a dict."""
    if type(value) is dict:
        try:
            return EncodedJSON(value, raw.decode() if isinstance(raw, bytes) else str(raw))
        except UnicodeDecodeError:
            return value
    return value
