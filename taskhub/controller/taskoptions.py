"""A load-balanced task's options, read from its request's metadata and checked.

    metadata key   wire form                                        scheduler gets
    targets        [engine uuid, ...]                               targets (tuple)
    after, follow  {"msg_ids": [...], "all", "success", "failure"}  Dep (None if empty)
                   (a bare list of msg_ids means all/success-only)
    timeout        seconds ≥ 0 to wait for dependencies (0: forever)  timeout
    retries        int ≥ 0                                          retries
    priority       number; higher goes first                        priority
    time_limit     seconds > 0 a run may take (the engine enforces it)  —
    label          str, recorded in the task DB                      —

The client checks the same things before sending; the hub checks again because any peer
holding the key may send anything, and a bad option must fail one task, not the hub.
"""
from numbers import Real

from .scheduler import Dep


def task_options(md):
    """The TaskSubmitted keyword arguments for metadata `md`; TypeError/ValueError if bad."""
    targets = md.get("targets")
    if targets is not None and not _str_list(targets):
        raise TypeError("targets must be a list of engine uuids")
    _number(md, "time_limit", positive=True)
    if not isinstance(md.get("label"), (str, type(None))):
        raise TypeError("label must be a string")
    retries = md.get("retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an integer ≥ 0, not {retries!r}")
    return {"targets": tuple(targets) if targets is not None else None,
            "after": _dep(md.get("after"), "after"), "follow": _dep(md.get("follow"), "follow"),
            "timeout": _number(md, "timeout") or None, "retries": retries,
            "priority": _number(md, "priority", default=0, signed=True)}


def _number(md, key, positive=False, default=None, signed=False):
    value = md.get(key)
    if value is None:
        return default
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{key} must be a number, not {type(value).__name__}")
    if (value < 0 and not signed) or (positive and value == 0):
        raise ValueError(f"{key} must be {'> 0' if positive else '≥ 0'}, not {value!r}")
    return value


def _dep(value, name):
    if value is None:
        return None
    if _str_list(value):
        return Dep(frozenset(value)) if value else None
    if not isinstance(value, dict) or not _str_list(value.get("msg_ids")):
        raise TypeError(f"{name} must be a list of msg_ids or a dependency dict")
    flags = {k: value.get(k, d) for k, d in (("all", True), ("success", True),
                                             ("failure", False))}
    if not all(isinstance(v, bool) for v in flags.values()):
        raise TypeError(f"{name}: all, success and failure must be booleans")
    if not (flags["success"] or flags["failure"]):
        raise ValueError(f"{name} accepts neither success nor failure, so it can never be met")
    return Dep(frozenset(value["msg_ids"]), **flags) if value["msg_ids"] else None


def _str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
