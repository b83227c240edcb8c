"""Task groups that outlive their client: futures for a group's tasks, from the task DB.

Every task carries its client's (or executor's) `task_group_id` in its metadata, and the
hub records it as the TaskRecord key `task_group`. A new process — after the submitter
exited, or was killed — gets the group's tasks back:

    db_query({"task_group": g})  ─▶ msg_ids in submission order
    result_status_request        ─▶ which never finished (their controller stopped)
    result_request               ─▶ finished ones resolve now; the hub forwards the
                                    others' replies as they finish
"""
import difflib

from ..error import TaskLost, UnknownTaskError
from .asyncresult import new_metadata
from .taskfuture import TaskFuture


def reload_tasks(client, task_group_id, own=False):
    """A TaskFuture per task of `task_group_id`, in submission order. A task that was
    pending when its controller stopped fails with TaskLost. A group with no task is an
    UnknownTaskError naming the groups the task DB knows, unless it is the caller's `own`
    (which may not have sent anything yet)."""
    if not isinstance(task_group_id, str) or not task_group_id:
        raise TypeError(f"task_group_id must be a non-empty string, not {task_group_id!r}")
    records = client.db_query({"task_group": task_group_id},
                              keys=["submitted", "label", "metadata"])
    records.sort(key=lambda r: r["submitted"])
    ids = [r["msg_id"] for r in records]
    if not ids:
        if own or task_group_id == client.task_group_id:
            return []
        raise UnknownTaskError(unknown_group_message(client, task_group_id))
    futures = [_future(client, r) for r in records]
    lost = set(client._hub_request("result_status_request",
                                   {"msg_ids": ids})["never_finished"])
    live = [m for m in ids if m not in lost]
    if live:
        client.get_result(live)  # resolves our futures too: they wait on the same msg_ids
    for future in futures:
        if future.msg_ids[0] in lost:
            _fail_lost(future)
    return futures


RECENT_GROUPS = 20000  # records read to list the known groups: a bound on the query's cost
SHOWN_GROUPS = 5


def unknown_group_message(client, task_group_id):
    """Why reload_tasks found nothing: the groups of the newest tasks, the nearest first."""
    rows = client.db_query({"task_group": {"$ne": None}}, keys=["task_group"],
                           sort="-submitted", limit=RECENT_GROUPS)
    known = list(dict.fromkeys(r["task_group"] for r in rows))  # newest first
    text = f"no task in the task database has task group {task_group_id!r}"
    if not known:
        return text + " (it holds no task of any group)"
    near = difflib.get_close_matches(task_group_id, known, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    more = f", and {len(known) - SHOWN_GROUPS} more" if len(known) > SHOWN_GROUPS else ""
    return (f"{text}{hint}; known groups, newest first: "
            f"{', '.join(map(repr, known[:SHOWN_GROUPS]))}{more}")


def _future(client, record):
    future = client._track([record["msg_id"]], "single", record.get("label") or "",
                           cls=TaskFuture)
    future.may_retry = bool((record.get("metadata") or {}).get("retries"))
    return future


def _fail_lost(future):
    msg_id = future.msg_ids[0]
    md = new_metadata(msg_id)
    md["status"] = "error"
    with future._client._lock:
        future._client._pending.pop(msg_id, None)
    future._receive(msg_id, TaskLost("TaskLost", "the task never finished: it was pending "
                                     "when the controller that ran it stopped",
                                     task=msg_id), md)
