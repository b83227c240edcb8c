"""Per-task stdout/stderr capture for an engine.

`OutputRouter` replaces sys.stdout/sys.stderr once; while a task runs, whatever any thread
writes goes to that task's `TaskOutput`, and otherwise to the real streams.

    task thread ── write ──▶ TaskOutput ──┬─ kept: the first `limit` chars per stream, for
                                          │  the reply's metadata (the task record)
                                          └─ unpublished ──▶ IO thread ──▶ iopub, in chunks
                                             of up to CHUNK chars (many writes, one message)
    display() ── display ──▶ TaskOutput ──┬─ outputs: what is displayed, for the reply's
    update_display(), clear_output()      │  metadata (taskhub.displays applies each call)
                                          └─ unpublished ──▶ IO thread ──▶ iopub, one
                                             display_data / update_display_data /
                                             clear_output message each, in order with the
                                             stream chunks around it

A task that prints faster than iopub drains waits in `write` once MAX_PENDING chars are
unpublished (backpressure): a flood slows its own task down, not the engine's memory or
the controller. Other threads never wait there (the IO thread may itself log while a task
runs), and `release()` ends every wait when the engine stops.
"""
import sys
import threading

from .. import datapub, displays

OUTPUT_LIMIT = 2**20  # chars per stream kept for the task record unless the hub says other
CHUNK = 64 * 2**10    # chars per iopub message at most: a flood of lines is a few messages
MAX_PENDING = 4 * 2**20  # unpublished chars before the task's own writes wait

_ROUTER = None  # the installed OutputRouter: where display() finds the running task


DISPLAY = displays.DISPLAY  # the name a display() call's chunk has among the stream chunks
STREAMS = ("stdout", "stderr")  # the other chunks are display messages (displays.KINDS)


def iopub_message(name, payload):
    """(msg_type, content, buffers) of the iopub message for one chunk of
    `take_unpublished` (no buffers today: published data travels pickled in the content)."""
    if name == datapub.MSG_TYPE:
        return name, {"data": payload}, []  # pickled when published: the values as they were
    if name not in STREAMS:
        return name, payload, []
    return "stream", {"name": name, "text": payload}, []


def _size(name, payload):
    """What a chunk counts for against MAX_PENDING: its chars (a display, its text data)."""
    if name in STREAMS:
        return len(payload)
    if name == datapub.MSG_TYPE:
        return 1 + len(payload)  # (its text)
    return 1 + sum(len(v) for v in (payload.get("data") or {}).values()
                   if isinstance(v, (str, bytes)))


def current_output():
    """The TaskOutput of the task running now, or None."""
    return _ROUTER.current if _ROUTER is not None else None


def truncation_marker(name, dropped, limit):
    """The line that ends a stream the record keeps only the start of."""
    return (f"\n[taskhub: {name} truncated: the record keeps its first {limit:,} characters; "
            f"{dropped:,} more were printed (subscribers to iopub got them all; the "
            f"controller's --output-limit sets the cap)]\n")


class TaskOutput:
    def __init__(self, parent, limit=OUTPUT_LIMIT, max_pending=MAX_PENDING):
        self.parent = parent
        self.limit = limit
        self.max_pending = max_pending
        self._cond = threading.Condition(threading.Lock())
        self._kept = {"stdout": [], "stderr": []}
        self._room = {"stdout": limit, "stderr": limit}  # chars the record may still take
        self._dropped = {"stdout": 0, "stderr": 0}
        self._unpublished = []       # (name, text) in the order written
        self._pending = 0            # chars in _unpublished
        self._owner = threading.get_ident()  # the task's thread: the one that may wait
        self._released = False
        self.outputs = []            # what is displayed: {"data": mimebundle, "metadata": ...}
        self._displayed = 0          # display messages sent (outputs may be cleared)
        self._clear_pending = False  # a clear_output(wait=True) waits for the next output
        self.data = {}               # publish_data() calls, merged (taskhub.datapub)
        self.execute_result = None   # the value of an execute()'s last expression, formatted

    def rich_metadata(self):
        """What a reply's metadata carries besides stdout/stderr: display outputs and an
        execute result (left out when empty, as stdout/stderr are)."""
        md = {}
        if self.outputs or self._displayed:
            md["outputs"] = list(self.outputs)
        if self._displayed:  # how many the client is to get on iopub (the reply may
            md["display_messages"] = self._displayed  # overtake the last ones)
        if self.execute_result is not None:
            md["execute_result"] = self.execute_result
        if self.data:
            md["data_pub"] = datapub.dumps(self.data)
        return md

    def write(self, name, text):
        with self._cond:
            if self._pending >= self.max_pending:
                self._wait_for_room()
            self._keep(name, text)
            self._unpublished.append((name, text))
            self._pending += len(text)

    def display(self, data, metadata=None, transient=None, update=False):
        """A display() call of the task (update=True: update_display() of the outputs with
        transient's display_id): kept for the reply and published as it comes (the
        client's copy follows while the task runs; the reply's list then replaces it)."""
        content = {"data": dict(data), "metadata": dict(metadata or {})}
        if transient:
            content["transient"] = dict(transient)
        self._display_message(displays.UPDATE if update else DISPLAY, content)

    def publish_data(self, data):
        """publish_data() in the task: merged into `data` and sent as it comes."""
        with self._cond:
            self._wait_for_room()
            self.data.update(data)
            self._unpublished.append((datapub.MSG_TYPE, datapub.dumps(data)))
            self._pending += _size(datapub.MSG_TYPE, data)

    def clear_output(self, wait=False):
        """clear_output() in the task: the outputs so far are no longer displayed."""
        self._display_message(displays.CLEAR, {"wait": bool(wait)})

    def _display_message(self, kind, content):
        with self._cond:
            self._wait_for_room()
            self.outputs, self._clear_pending = displays.apply(self.outputs, kind, content,
                                                               self._clear_pending)
            self._displayed += 1
            self._unpublished.append((kind, content))
            self._pending += _size(kind, content)

    def _wait_for_room(self):
        if self._pending >= self.max_pending and threading.get_ident() == self._owner:
            self._cond.wait_for(lambda: self._pending < self.max_pending or self._released)

    def _keep(self, name, text):
        room = self._room[name]
        if len(text) <= room:
            self._kept[name].append(text)
            self._room[name] = room - len(text)
            return
        if room:
            self._kept[name].append(text[:room])
            self._room[name] = 0
        self._dropped[name] += len(text) - room

    def take_unpublished(self, max_chars=None):
        """What was written and not yet published, as (name, text) chunks of up to CHUNK
        chars (consecutive writes to one stream joined) and (DISPLAY, content) of display()
        calls, at most `max_chars` in all (about: at least one chunk); what is left stays
        for the next call. `iopub_message` makes each a message."""
        with self._cond:
            taken, size, chunks = 0, 0, []
            for name, payload in self._unpublished:
                if max_chars is not None and size >= max_chars:
                    break
                n = _size(name, payload)
                if chunks and chunks[-1][0] == name and name in STREAMS and \
                        chunks[-1][2] + n <= CHUNK:
                    chunks[-1][1].append(payload)
                    chunks[-1][2] += n
                else:
                    chunks.append([name, [payload], n])
                size += n
                taken += 1
            del self._unpublished[:taken]
            self._pending -= size
            self._cond.notify_all()
        return [(name, "".join(parts) if name in STREAMS else parts[0])
                for name, parts, _ in chunks]

    def unpublish(self, chunks):
        """Put back chunks that could not be sent (iopub is full): they go first next time."""
        with self._cond:
            self._unpublished[:0] = chunks
            self._pending += sum(_size(name, payload) for name, payload in chunks)

    @property
    def pending(self):
        return self._pending

    def release(self):
        """No write waits any more (the engine is stopping, or the task is done)."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def text(self, name):
        """The stream as the record keeps it: its first `limit` chars, and a marker saying
        how much more there was."""
        with self._cond:
            kept = "".join(self._kept[name])
            dropped = self._dropped[name]
        return kept + truncation_marker(name, dropped, self.limit) if dropped else kept

    def truncated(self):
        """{name: chars printed in all} of the streams the record keeps only the start of."""
        return {k: self.limit + v for k, v in self._dropped.items() if v}


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
        self.current = None  # the running task's TaskOutput: set by the engine around it
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
