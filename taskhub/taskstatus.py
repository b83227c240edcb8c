"""A task's status: one vocabulary for the task DB, `db_query`, AsyncResult metadata and
the web view.

    pending ──▶ queued ──▶ running ──▶ ok | error | aborted | lost
    (at the hub) (sent to    (the engine
                 an engine)   said it started)

`pending`: the hub holds it (waiting for dependencies, or for an engine to need it).
`queued`: sent to an engine, which has not started it. `running`: the engine started it
(an engine announces a task once it has run START_NOTICE_AFTER seconds; a shorter one goes
from queued to finished, its reply carrying the time it started). The final states:
`ok`; `error` (it raised, or the hub failed it: a dependency, a timeout, an engine death);
`aborted` (stopped before or while it ran); `lost` (its controller stopped before it
finished). A record's `completed` is set exactly when its status is final.
"""
PENDING, QUEUED, RUNNING = "pending", "queued", "running"
OK, ERROR, ABORTED, LOST = "ok", "error", "aborted", "lost"
UNFINISHED = (PENDING, QUEUED, RUNNING)
FINAL = (OK, ERROR, ABORTED, LOST)
STATUSES = UNFINISHED + FINAL

START_NOTICE_AFTER = 0.005  # seconds a task runs before its engine announces it


def final_status(content):
    """The final status of a task whose reply (or the hub's own answer) has `content`."""
    if content.get("status") == OK:
        return OK
    ename = content.get("ename")
    if ename == "TaskAborted":
        return ABORTED
    if ename == "TaskLost":
        return LOST
    return ERROR


def check_query(query):
    """Raise ValueError if `query` (a task-DB query dict) compares `status` with a value
    that is not a status: such a query would silently match nothing."""
    if not isinstance(query, dict):
        return
    for key, cond in query.items():
        if key in ("$and", "$or", "$nor") and isinstance(cond, list):
            for sub in cond:
                check_query(sub)
        elif key == "status":
            for value in _values(cond):
                if value is not None and value not in STATUSES:
                    raise ValueError(f"{value!r} is not a task status; a status is one of "
                                     f"{', '.join(STATUSES)}")


def _values(cond):
    """The literal values a condition on `status` compares with."""
    if isinstance(cond, dict):
        for op, value in cond.items():
            if op in ("$in", "$nin") and isinstance(value, (list, tuple)):
                yield from value
            elif op in ("$eq", "$ne"):
                yield value
    elif isinstance(cond, str):
        yield cond
