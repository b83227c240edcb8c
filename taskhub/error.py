"""The exceptions a taskhub user can see.

Every error raised on behalf of the cluster derives from `TaskhubError`. Errors that
describe a task carry the task's msg_id as ``.task`` where one is known.
"""


class TaskhubError(Exception):
    """Base class for every taskhub error."""


class ConnectionFileError(TaskhubError, OSError):
    """A connection file is missing, unreadable or malformed."""


class ClusterStateError(TaskhubError):
    """A cluster was asked to do something its state forbids (start twice, stop none)."""


class NoEnginesRegistered(TaskhubError):
    """Work was requested but the controller has no engines."""


class TimeoutError(TaskhubError, TimeoutError):  # noqa: A001 - deliberate: also a builtin TimeoutError
    """A wait on the cluster ran out of time."""


class UnknownTaskError(TaskhubError, KeyError):
    """A msg_id the task database or the hub does not know."""

    def __str__(self):
        # KeyError quotes its argument; we want the plain sentence.
        return str(self.args[0]) if self.args else "unknown task"


class AmbiguousTaskId(TaskhubError, ValueError):
    """A msg_id prefix that more than one task's msg_id starts with."""


class QueryError(TaskhubError, ValueError):
    """A task-DB query that uses an unknown operator or key, or a bad value."""


class CorruptTaskDB(TaskhubError):
    """The task DB file failed its integrity check at start."""


class TaskDBWarning(UserWarning):
    """The task DB cannot be written now: a query may miss the latest records."""


class NoTaskDB(TaskhubError):
    """The controller runs without a task database, so there is nothing to read."""


class RecursionLimitExceeded(TaskhubError):
    """A task tried to submit a task nested deeper than TASKHUB_RECURSION_LIMIT allows."""


class TaskRef(str):
    """A task's msg_id (it is equal to that string) with ``.call``, a short description of
    the call that failed, such as ``"divide(1, 0)"`` ("" when none is known)."""

    def __new__(cls, msg_id, call=""):
        ref = super().__new__(cls, msg_id)
        ref.call = call or ""
        return ref

    @property
    def msg_id(self):
        return str(self)

    def __repr__(self):
        return f"TaskRef({str(self)!r}, call={self.call!r})"


class RemoteTraceback(Exception):
    """The `__cause__` of a RemoteError: printing the error shows the remote traceback."""

    def __str__(self):
        return self.args[0] if self.args else ""


class RemoteError(TaskhubError):
    """An exception raised by a task on an engine.

    Attributes: ``engine_id``, ``ename`` (exception class name), ``evalue`` (its str),
    ``traceback`` (the remote traceback text) and ``task`` (a `TaskRef`: the msg_id, with
    ``.task.call`` describing the call); ``engine_uuid`` once the AsyncResult it came to
    has read the reply's metadata.
    """

    engine_uuid = None

    def __init__(self, ename, evalue, traceback="", engine_id=None, task=None):
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_id = engine_id
        self.task = task if task is None or isinstance(task, TaskRef) else TaskRef(task)

    def __str__(self):
        where = f"[engine {self.engine_id}] " if self.engine_id is not None else ""
        call = getattr(self.task, "call", "")
        return f"{where}{self.ename}: {self.evalue}" + (f" (in {call})" if call else "")

    def render_traceback(self):
        """The remote traceback as a list of lines (what IPython shows for it)."""
        return (self.traceback or str(self)).splitlines()

    def _render_traceback_(self):  # IPython shows an exception with this by its lines
        return self.render_traceback()

    def print_traceback(self, *args):
        """Print render_traceback()'s lines."""
        print("\n".join(self.render_traceback(*args)))

    @property
    def method(self):
        """'execute' for code run by view.execute, 'apply' for a function call."""
        return "execute" if str(getattr(self.task, "call", "")).startswith("execute(") \
            else "apply"


class EngineError(RemoteError):
    """The engine running a task died or was lost before it replied."""


class TaskAborted(RemoteError):
    """A task was aborted: before it ran, or interrupted while running."""


class TaskTimeout(RemoteError):
    """A task ran longer than its `time_limit`; the engine interrupted it."""


class TaskLost(RemoteError):
    """The controller that accepted a task stopped before the task finished: it was waiting
    or running then, and its result will never come. Resubmit it (``rc.resubmit``)."""


class ControllerLost(TaskLost):
    """The client lost its controller: the connection closed (the controller died or shut
    down) or the controller stopped answering heartbeats (frozen host, cut network).

    Every result and hub request the client was waiting for fails with it; so does a new
    request until the connection is back. Results already finished are in the task DB."""


class ClientClosed(RemoteError):
    """The client was closed before this result or reply came. The task itself is not
    stopped: another Client can fetch its result with `get_result(msg_id)`."""


class UnmetDependency(RemoteError):
    """A task's functional dependency does not hold on the engine it was sent to.

    Raised on an engine (by `taskhub.dependent`, or by hand: ``raise UnmetDependency("why")``),
    it sends the task to another engine instead of failing it."""

    def __init__(self, *args, **kwargs):
        if len(args) <= 1 and not kwargs:  # raised by hand, with at most a reason
            args = (type(self).__name__, args[0] if args else "a dependency is not met")
        super().__init__(*args, **kwargs)


class ImpossibleDependency(UnmetDependency):
    """A task's dependencies can never be met, so the scheduler failed it."""


class DependencyTimeout(ImpossibleDependency):
    """A task's dependencies were not met within its `timeout`."""


class InvalidDependency(ImpossibleDependency):
    """A task depends on a task the controller does not know."""


class ShellCommandFailed(RemoteError):
    """A shell task (`taskhub.ShellFunction`) exited with a non-zero returncode, or ran past
    its walltime (returncode 124). ``cmd``, ``returncode``, ``stdout`` and ``stderr`` (the
    last lines of each) are kept for inspection; the whole output is in the task record."""

    FIELDS = ("cmd", "returncode", "stdout", "stderr")

    @classmethod
    def of(cls, result, message):
        """The error for a ShellResult (raised on the engine)."""
        tail = result.stderr.strip().splitlines()[-3:]
        evalue = f"{message}: {result.cmd}" + (f" — stderr: {' | '.join(tail)}" if tail else "")
        err = cls(cls.__name__, evalue)
        err._set_fields(vars(result))
        return err

    def _set_fields(self, fields):
        for name in self.FIELDS:
            setattr(self, name, fields.get(name))

    def reply_fields(self):
        """What an engine's error reply carries besides ename/evalue/traceback."""
        return {"shell": {name: getattr(self, name, None) for name in self.FIELDS}}


class CompositeError(RemoteError):
    """Several tasks of one request failed; ``.errors`` holds each `RemoteError`.

    A RemoteError itself (ename 'CompositeError'), as in ipyparallel: ``elist`` lists
    (ename, evalue, traceback, engine_info) per error, ``raise_exception(i)`` raises the
    i-th, and ``render_traceback()`` shows the first `tb_limit` tracebacks."""

    tb_limit = 4

    def __init__(self, message, errors):
        super().__init__("CompositeError", message)
        self.args = (message,)
        self.errors = list(errors)

    @property
    def elist(self):
        return [(e.ename, e.evalue, e.traceback,
                 {"engine_id": e.engine_id, "engine_uuid": e.engine_uuid, "method": e.method})
                for e in self.errors]

    def raise_exception(self, excid=0):
        """Raise the `excid`-th error (IndexError if there are not so many)."""
        if not -len(self.errors) <= excid < len(self.errors):
            raise IndexError(f"an index in 0..{len(self.errors) - 1}, not {excid}")
        raise self.errors[excid]

    def render_traceback(self, excid=None):
        """Lines: the `excid`-th error's traceback, or those of the first tb_limit."""
        chosen = self.errors if excid is None else [self.errors[excid]]
        lines = []
        for e in chosen[:self.tb_limit] if excid is None else chosen:
            lines.append(f"[{e.engine_id}:{e.method}] {e.ename}: {e.evalue}")
            lines.extend(e.render_traceback())
        if excid is None and len(self.errors) > self.tb_limit:
            lines.append(f"... {len(self.errors) - self.tb_limit} more exceptions ...")
        return lines

    def __str__(self):
        lines = [self.args[0]]
        lines += [f"  {e}" for e in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ... and {len(self.errors) - 10} more")
        return "\n".join(lines)


# Names a reply may carry for errors raised by the controller rather than user code;
# the client turns them back into these classes.
CONTROLLER_ERRORS = {cls.__name__: cls for cls in (
    EngineError, TaskAborted, TaskTimeout, TaskLost, UnmetDependency, ImpossibleDependency,
    DependencyTimeout, InvalidDependency)}


def remote_error_from_content(content, engine_id=None, task=None):
    """Build the right RemoteError subclass from an error reply's content dict."""
    cls = CONTROLLER_ERRORS.get(content.get("ename"), RemoteError)
    shell = content.get("shell")
    if content.get("ename") == ShellCommandFailed.__name__ and isinstance(shell, dict):
        cls = ShellCommandFailed
    call = content.get("call") if isinstance(content.get("call"), str) else ""
    evalue = content.get("evalue", "")
    if "versions" in content:  # the engine could not deserialize the task: compare versions
        from . import versions
        evalue = versions.explain_unpack_failure(content, versions.local())
    err = cls(content.get("ename", "Error"), evalue,
              content.get("traceback", ""), engine_id=engine_id,
              task=None if task is None else TaskRef(task, call))
    if cls is ShellCommandFailed:
        err._set_fields(shell)
    if err.traceback:  # shown as "the direct cause" when the error is printed
        err.__cause__ = RemoteTraceback(err.traceback)
    return err
