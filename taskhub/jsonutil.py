"""Datetimes across JSON: messages carry them as ISO strings; queries tag them.

A query value that is a datetime travels as ``{"$datetime": "<iso>"}`` so the hub can tell
it from a string; task records travel with ISO strings under the keys in `DATE_KEYS`.
"""
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
