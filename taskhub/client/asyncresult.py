"""AsyncResult: a `concurrent.futures.Future` for the replies to one or more messages.

The client's IO thread calls `_receive` as each reply arrives (pushed, never polled); when
the last one is in, the future resolves: with the value (one task), a list (several), or
the flattened chunks of a map. Iterating over a map yields results in order as they come.
"""
import asyncio
import threading
import time
from datetime import datetime, timezone
from concurrent.futures import Future, InvalidStateError, TimeoutError as _FutureTimeout

from .. import datapub, displays
from ..error import CompositeError, RemoteError, TimeoutError
from .arcompat import AsyncResultCompat
from .interrupt import still_running_text

METADATA_KEYS = ("msg_id", "engine_id", "engine_uuid", "submitted", "started", "completed",
                 "received", "stdout", "stderr", "status", "outputs", "execute_result",
                 "data")


def utcnow():
    """Now, as the tz-aware UTC datetime every timestamp in metadata is."""
    return datetime.now(timezone.utc)


def new_metadata(msg_id, submitted=None):
    md = dict.fromkeys(METADATA_KEYS)
    md.update(msg_id=msg_id, submitted=submitted, stdout="", stderr="", status="pending",
              outputs=[], data={})
    return md


class AsyncResult(AsyncResultCompat, Future):
    """The pending result of `msg_ids`. `kind` is 'single', 'list' or 'map'."""

    starts_running = True  # sent already; False: pending until sent (a batch's futures)
    _ordered = True  # iteration in submission order; False: as the replies come
    _return_exceptions = False  # get() and iteration give errors in place of values

    def __init__(self, client, msg_ids, kind="single", fname="", chunk_sizes=None):
        super().__init__()
        if self.starts_running:
            self.set_running_or_notify_cancel()
        self._client = client
        self.msg_ids = list(msg_ids)
        self.kind = kind
        self.fname = fname
        self._chunk_sizes = chunk_sizes
        self._values = {}
        self._arrived = threading.Condition()
        now = utcnow()
        self._metadata = {m: new_metadata(m, now) for m in self.msg_ids}
        self._streamed = {}  # (msg_id, stream name) -> texts from iopub not yet in _metadata
        self._tails = {}  # (msg_id, stream name) -> chars printed, of output cut in the
        # record whose end may come after the reply
        if not self.msg_ids:
            self.set_result([])

    # -- fed by the client's IO thread ------------------------------------------------------
    def _receive(self, msg_id, value, metadata):
        with self._arrived:
            if msg_id in self._values:
                return
            self._values[msg_id] = value
            if self._streamed:
                self._join_streamed()
            md = self._metadata[msg_id]
            md.update(_keep_streamed(md, metadata))
            if "data_pub" in md:  # what the task published with publish_data, in all
                md["data"] = datapub.loads(md.pop("data_pub"))
            for name, printed in (metadata.get("output_truncated") or {}).items():
                kept_streamed = md.get(name) != metadata.get(name)
                if kept_streamed and len(md[name]) < printed:
                    self._tails[(msg_id, name)] = printed
            done = len(self._values) == len(self.msg_ids)
            self._arrived.notify_all()
        if done:
            self._finish()

    def _stream(self, msg_id, name, text):
        md = self._metadata.get(msg_id)
        if md is None:
            return
        with self._arrived:
            came = self.__dict__.setdefault("_iopub_chars", {})  # where display messages
            came[(msg_id, name)] = came.get((msg_id, name), 0) + len(text)  # fall in it
            if md["status"] != "pending" and (msg_id, name) not in self._tails:
                return
            self._streamed.setdefault((msg_id, name), []).append(text)
            if (msg_id, name) in self._tails:  # wait_for_output waits for these
                self._arrived.notify_all()

    def _displayed(self, msg_id, content, kind=displays.DISPLAY):
        """A display message of a running task, from iopub (display_data, and
        update_display_data / clear_output): `outputs` follows them as they come (the
        reply's metadata then replaces it with the same list). Each is kept too, with how
        much stdout/stderr had come before it, for a streaming cell to show in order."""
        md = self._metadata.get(msg_id)
        if md is None:
            return
        with self._arrived:
            events = self.__dict__.setdefault("_display_log", {}).setdefault(msg_id, [])
            if md["status"] == "pending":
                self._join_streamed()
                clear_pending = self.__dict__.setdefault("_clear_pending", {})
                md["outputs"], clear_pending[msg_id] = displays.apply(
                    md["outputs"], kind, content, clear_pending.get(msg_id, False))
            elif self._display_got(msg_id) >= md.get("display_messages", 0):
                return  # not one the reply says is still to come
            # (one that came after the reply: the reply's outputs are final already)
            came = self.__dict__.get("_iopub_chars", {})  # (not the reply's: it may be in)
            counts = self.__dict__.setdefault("_display_count", {})
            counts[msg_id] = counts.get(msg_id, 0) + 1
            displays.log_event(events, kind, content, counts[msg_id],
                               came.get((msg_id, "stdout"), 0), came.get((msg_id, "stderr"), 0))
            self._arrived.notify_all()  # wait_for_output may wait for it

    def _data_published(self, msg_id, content):
        """publish_data() of a running task, from iopub: `data` is updated with it."""
        md = self._metadata.get(msg_id)
        if md is None:
            return
        data = datapub.loads(content["data"])
        with self._arrived:
            if md["status"] == "pending":
                md["data"] = {**(md["data"] or {}), **data}

    def _display_got(self, msg_id):
        """How many display messages of task `msg_id` came on iopub."""
        return self.__dict__.get("_display_count", {}).get(msg_id, 0)

    def _display_events_missing(self, msg_id):
        """Whether display messages the reply of `msg_id` counts have not come yet."""
        with self._arrived:
            return self._display_got(msg_id) < \
                (self._metadata[msg_id].get("display_messages") or 0)

    def _display_events(self, msg_id):
        """(how many display messages of task `msg_id` came on iopub, those a streaming
        cell replays: (seq, kind, content, stdout chars before it, stderr chars before
        it) in seq order — taskhub.displays.log_event keeps them few)."""
        with self._arrived:
            return (self._display_got(msg_id),
                    list(self.__dict__.get("_display_log", {}).get(msg_id, ())))

    def _join_streamed(self):
        """Add the output that came on iopub to the metadata: when it is read, or the reply
        comes (joining each piece as it came would copy a flood's text once per piece)."""
        with self._arrived:
            streamed, self._streamed = self._streamed, {}
            for (msg_id, name), texts in streamed.items():
                md = self._metadata[msg_id]
                md[name] = (md[name] or "") + "".join(texts)
                if len(md[name]) >= self._tails.get((msg_id, name), 0):
                    self._tails.pop((msg_id, name), None)

    def _abandon(self, error_for):
        """Settle every reply not yet in with `error_for(msg_id)` (the client closed or lost
        its controller): the result raises the first of them, not a CompositeError, since
        it says why all the rest will never come. Returns how many were settled."""
        with self._arrived:
            missing = [m for m in self.msg_ids if m not in self._values]
            for msg_id in missing:
                self._values[msg_id] = error_for(msg_id)
                self._metadata[msg_id]["status"] = "error"
            self._arrived.notify_all()
        if missing and not self.done():
            try:
                self.set_exception(self._values[missing[0]])
            except InvalidStateError:  # the last reply resolved it meanwhile
                pass
        return len(missing)

    def _finish(self):
        errors = []
        for msg_id in self.msg_ids:
            value = self._values[msg_id]
            if isinstance(value, RemoteError):
                if value.engine_uuid is None:  # the reply's metadata says where it ran
                    value.engine_uuid = self._metadata[msg_id].get("engine_uuid")
                errors.append(value)
        if errors and self.kind == "single":
            self.set_exception(errors[0])
        elif errors:
            self.set_exception(CompositeError(
                f"{len(errors)} of {len(self.msg_ids)} tasks raised an exception", errors))
        else:
            self.set_result(self._assemble())

    def _assemble(self):
        values = [self._values[m] for m in self.msg_ids]
        if self.kind == "single":
            return values[0]
        if self.kind == "map":
            return [x for chunk in values for x in chunk]
        return values

    # -- the ipyparallel-style API ----------------------------------------------------------
    def get(self, timeout=None, return_exceptions=None):
        """The result, waiting up to `timeout` seconds; a remote error is raised here, or
        with return_exceptions=True put in the result in place of its task's value."""
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        try:
            if return_exceptions:
                self.exception(timeout)
                return self._with_exceptions()
            return self.result(timeout)
        except _FutureTimeout:
            raise TimeoutError(f"{self._progress_text()} after waiting {timeout}s") from None
        except KeyboardInterrupt:  # its tasks go on: say how to stop them (interrupt.py)
            raise KeyboardInterrupt(still_running_text(self)) from None

    def wait(self, timeout=None, return_when=None):
        """Wait until every reply is in (or `timeout`); True if it is. With `return_when`
        (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED of concurrent.futures): the
        (done, not_done) sets of the one-task results of `split()`."""
        if return_when is not None:
            return self._wait_until(timeout, return_when)
        try:
            self.exception(timeout)
        except _FutureTimeout:
            return False
        except KeyboardInterrupt:
            raise KeyboardInterrupt(still_running_text(self)) from None
        return True

    def wait_interactive(self, interval=0.1, timeout=None, widget=None, return_when=None):
        """Wait like `wait`, showing a progress bar: tasks done / total, rate, elapsed.

        On a terminal one line of stderr is redrawn; in Jupyter an ipywidgets bar is shown
        when ipywidgets is importable (widget=False insists on text). Returns True when
        every task is done, False if `timeout` seconds passed first."""
        from .progress import progress_bar
        bar = progress_bar(len(self), self.fname, widget)
        deadline = None if timeout is None else time.monotonic() + timeout
        done = False
        try:
            while not done and (deadline is None or time.monotonic() < deadline):
                left = interval if deadline is None else min(interval, deadline - time.monotonic())
                done = self.wait(max(0.0, left))
                if not done and return_when is not None:
                    done = bool(self.wait(0, return_when)[0])
                bar.update(self._items_done(), self.elapsed)
        finally:
            bar.close(self._items_done(), self._wall_time())
        return done

    def stream_output(self):
        """A context manager: while it is open, the tasks' stdout/stderr and display()
        outputs are shown as they come, under per-engine headers as %px shows them."""
        from ..magics import stream_output
        return stream_output(self)

    def _wall_time(self):
        """Seconds from the first submission to the last reply (or to now, if not all in)."""
        mds = self._metadata.values()
        received = [md["received"] for md in mds if md.get("received")]
        submitted = [md["submitted"] for md in mds if md["submitted"]]
        if not self.done() or len(received) < len(mds) or not submitted:
            return self.elapsed
        return (max(received) - min(submitted)).total_seconds()

    def _items_done(self):
        """Tasks done, counting each element of a map's chunks."""
        sizes = self._chunk_sizes or [1] * len(self.msg_ids)
        with self._arrived:
            return sum(n for m, n in zip(self.msg_ids, sizes) if m in self._values)

    def ready(self):
        return self.done()

    def successful(self):
        if not self.done():
            raise ValueError(f"{self._progress_text()}: not ready yet")
        return self.exception() is None

    @property
    def progress(self):
        """Items done: tasks, or a map's elements."""
        return self._items_done()

    def _progress_text(self):
        return f"{self._items_done()} of {len(self)} tasks done"

    @property
    def metadata(self):
        self._join_streamed()
        mds = [self._metadata[m] for m in self.msg_ids]
        return mds[0] if self.kind == "single" else mds

    def __getattr__(self, key):
        if key in METADATA_KEYS:
            if self._streamed:
                self._join_streamed()
            values = [self._metadata[m][key] for m in self.msg_ids]
            return values[0] if self.kind == "single" else values
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    @property
    def elapsed(self):
        """Seconds since the first submission (until done: then the wall time)."""
        started = [md["submitted"] for md in self._metadata.values() if md["submitted"]]
        if not started:
            return 0.0
        if self.done() and all(md.get("received") for md in self._metadata.values()):
            return self._wall_time()
        return (utcnow() - min(started)).total_seconds()

    def __len__(self):
        return sum(self._chunk_sizes) if self._chunk_sizes is not None else len(self.msg_ids)

    def __iter__(self):
        """Results in order, each as soon as it (and those before it) arrived."""
        if self.kind == "single":
            yield from self.get()
            return
        sizes = dict(zip(self.msg_ids, self._chunk_sizes or [1] * len(self.msg_ids)))
        for msg_id in self.msg_ids if self._ordered else self._arrivals():
            value = self._wait_for(msg_id)
            if isinstance(value, RemoteError) and not self._return_exceptions:
                raise value
            if isinstance(value, RemoteError) and self.kind == "map":
                yield from [value] * sizes[msg_id]
            elif self.kind == "map":
                yield from value
            else:
                yield value

    def _arrivals(self):
        """msg_ids in the order their replies came, each once it has."""
        for k in range(len(self.msg_ids)):
            with self._arrived:
                self._arrived.wait_for(lambda: len(self._values) > k)
                yield list(self._values)[k]

    def _wait_for(self, msg_id):
        with self._arrived:
            self._arrived.wait_for(lambda: msg_id in self._values)
            return self._values[msg_id]

    def __await__(self):
        return asyncio.wrap_future(self).__await__()

    def __repr__(self):
        state = "done" if self.done() else "pending"
        return f"<{type(self).__name__} {self.fname or ''}: {self._progress_text()}, {state}>"


class AsyncHubResult(AsyncResult):
    """Results of tasks fetched from the hub (possibly submitted by another client)."""


def _keep_streamed(md, reply_md):
    """The reply's metadata, except that a stream the task record cut short
    (`output_truncated`) keeps the longer text that came on iopub as the task ran."""
    cut = reply_md.get("output_truncated")
    if not cut:
        return reply_md
    reply_md = dict(reply_md)
    for name in cut:
        if len(md.get(name) or "") > len(reply_md.get(name) or ""):
            del reply_md[name]
    return reply_md
