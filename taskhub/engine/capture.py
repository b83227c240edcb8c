"""Per-task stdout/stderr capture for an engine.

`OutputRouter` replaces sys.stdout/sys.stderr once; while a task runs, whatever any thread
writes goes to that task's `TaskOutput`, and otherwise to the real streams. The IO thread
takes unpublished chunks (under the output's lock) to publish them on iopub as they come.
"""
import sys
import threading
from contextlib import contextmanager


_ROUTER = None  # the installed OutputRouter: where display() finds the running task


def current_output():
    """The TaskOutput of the task running now, or None."""
    return _ROUTER.current if _ROUTER is not None else None


class TaskOutput:
    def __init__(self, parent):
        self.parent = parent
        self._lock = threading.Lock()
        self._chunks = {"stdout": [], "stderr": []}
        self._unpublished = []
        self.outputs = []            # display() calls: {"data": mimebundle, "metadata": ...}
        self.execute_result = None   # the value of an execute()'s last expression, formatted

    def rich_metadata(self):
        """What a reply's metadata carries besides stdout/stderr: display outputs and an
        execute result (left out when empty, as stdout/stderr are)."""
        md = {}
        if self.outputs:
            md["outputs"] = list(self.outputs)
        if self.execute_result is not None:
            md["execute_result"] = self.execute_result
        return md

    def write(self, name, text):
        with self._lock:
            self._chunks[name].append(text)
            self._unpublished.append((name, text))

    def take_unpublished(self):
        with self._lock:
            taken, self._unpublished = self._unpublished, []
        return taken

    def text(self, name):
        with self._lock:
            return "".join(self._chunks[name])


class _Stream:
    """A text stream that writes to the router's current task output, if any."""

    def __init__(self, router, name, fallback):
        self._router, self.name, self._fallback = router, name, fallback
        self.encoding = getattr(fallback, "encoding", "utf-8")

    def write(self, text):
        output = self._router.current
        if output is None:
            return self._fallback.write(text)
        output.write(self.name, str(text))
        return len(text)

    def flush(self):
        if self._router.current is None:
            self._fallback.flush()

    def isatty(self):
        return False

    def fileno(self):
        return self._fallback.fileno()


class OutputRouter:
    def __init__(self):
        self.current = None
        self._saved = (sys.stdout, sys.stderr)

    @classmethod
    def install(cls):
        global _ROUTER
        router = _ROUTER = cls()
        sys.stdout = _Stream(router, "stdout", router._saved[0])
        sys.stderr = _Stream(router, "stderr", router._saved[1])
        return router

    def uninstall(self):
        sys.stdout, sys.stderr = self._saved

    @contextmanager
    def capturing(self, output):
        self.current = output
        try:
            yield output
        finally:
            self.current = None
