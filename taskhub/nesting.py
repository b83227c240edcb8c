"""Tasks that submit tasks: depth, the recursion limit, task groups, and a client from
inside a task.

    your client ─ depth 1 ─▶ task ─ engine_client() ─ depth 2 ─▶ task ─ … ─ depth 4 ─▶ task
                                                   depth 5 ✗ RecursionLimitExceeded at submit

Every request a client sends is stamped (`stamp`) with its task group and its depth: one
more than the depth of the task the client runs in (TASKHUB_DEPTH; 0 outside any task).
The engine puts both into the environment of the task while it runs (`TaskEnvironment`),
so a task's own submissions are one level deeper and join its group. A submission deeper
than TASKHUB_RECURSION_LIMIT (default 4) raises at once; a limit set in the submitter's
environment travels with its tasks, so setting it where the outermost client runs is
enough.
"""
import os
import threading
from contextlib import contextmanager

from .error import RecursionLimitExceeded, TaskhubError

DEPTH_ENV = "TASKHUB_DEPTH"
LIMIT_ENV = "TASKHUB_RECURSION_LIMIT"
GROUP_ENV = "TASKHUB_TASK_GROUP"
CLIENT_FILE_ENV = "TASKHUB_CLIENT_FILE"  # set by ipengine: the client file of its cluster
DEFAULT_RECURSION_LIMIT = 4


def _env_int(name, default, least):
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"{name} must be an integer ≥ {least}, not {text!r}")
    return value


def current_depth():
    """How deep the task running this code is (0: not in a task)."""
    return _env_int(DEPTH_ENV, 0, 0)


def recursion_limit():
    """The deepest level a task may be submitted at (TASKHUB_RECURSION_LIMIT, default 4)."""
    return _env_int(LIMIT_ENV, DEFAULT_RECURSION_LIMIT, 1)


def stamp(client, metadata):
    """A request's metadata with the client's task group and the depth it runs at.

    Keys already in `metadata` win, so an executor can name its own task group."""
    depth, limit = current_depth() + 1, recursion_limit()
    if depth > limit:
        raise RecursionLimitExceeded(
            f"this task would run at depth {depth} (a task submitted by a task, "
            f"{depth - 1} levels down from the first), beyond the recursion limit of {limit}; "
            f"set {LIMIT_ENV} to allow deeper nesting")
    md = {"task_group": client.task_group_id or os.environ.get(GROUP_ENV),
          **client.serializer.metadata}
    if depth > 1:  # absent means 1: a task submitted from outside
        md["depth"] = depth
    if os.environ.get(LIMIT_ENV):
        md["recursion_limit"] = limit
    md.update(metadata)
    return md


@contextmanager
def task_environment(metadata):
    """On an engine, while a task runs: its depth, group and recursion limit in os.environ."""
    values = _task_values(metadata, os.environ.get(LIMIT_ENV))
    saved = {k: os.environ.get(k) for k in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(saved)


class TaskEnvironment:
    """What an engine uses in place of `task_environment`: `enter(metadata)` sets a task's
    variables and nothing is restored after it, so tasks of one depth and group in a row
    cost no environment write at all (each is a putenv or unsetenv that scans the whole
    environment). Between tasks only the engine's own code runs, which reads none of them;
    the recursion limit a task does not carry is the engine's own, as with
    task_environment."""

    def __init__(self):
        self._saved = {k: os.environ.get(k) for k in (DEPTH_ENV, GROUP_ENV, LIMIT_ENV)}

    def enter(self, metadata):
        _set_env(_task_values(metadata, self._saved[LIMIT_ENV]))

    def restore(self):
        """The values from before the first task (when the engine stops serving)."""
        _set_env(self._saved)


def _task_values(metadata, default_limit):
    depth, group, limit = (metadata.get(k) for k in ("depth", "task_group", "recursion_limit"))
    return {DEPTH_ENV: str(depth) if _positive_int(depth) else "1",
            GROUP_ENV: group if isinstance(group, str) else None,
            LIMIT_ENV: str(limit) if _positive_int(limit) else default_limit}


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _set_env(values):
    environ = os.environ
    for key, value in values.items():
        if environ.get(key) == value:
            continue  # each write is a putenv/unsetenv: skip those that change nothing
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


# -- a client from inside a task ------------------------------------------------------------
_client = None
_client_lock = threading.Lock()


def engine_client():
    """A Client of the cluster this code runs on, for tasks that submit tasks.

    One per engine process, shared by its tasks (closing it is allowed: the next call makes
    a new one). What it submits joins the running task's task group, one level deeper. A
    task that waits for the tasks it submits holds its engine meanwhile: with fewer engines
    than levels of waiting, nothing is left to run the innermost tasks."""
    global _client
    path = os.environ.get(CLIENT_FILE_ENV)
    if not path:
        raise TaskhubError("engine_client() is for code running in a task on a taskhub engine "
                           f"({CLIENT_FILE_ENV} is not set); elsewhere use taskhub.Client()")
    with _client_lock:
        if _client is None or _client._closed:
            from .client import Client
            _client = Client(path)
            _client.task_group_id = None  # each submission takes the running task's group
        return _client
