"""AsyncResult methods ipyparallel code calls: get_dict, item access to metadata,
wall_time / serial_time, split / join, wait(return_when=), display_outputs.

Mixed into AsyncResult, written from what it keeps: `_values` and `_metadata` per msg_id.
"""
import concurrent.futures
import sys
import time

import zmq

from ..error import RemoteError, TimeoutError

LATE_OUTPUT_WAIT = 10.0  # s wait_for_output() waits, once the tasks are done, for late ones
_WAIT_MODES = (concurrent.futures.FIRST_COMPLETED, concurrent.futures.FIRST_EXCEPTION,
               concurrent.futures.ALL_COMPLETED)


class AsyncResultCompat:

    # zmq's word on whether the requests' buffers have left (views with track=True set a
    # tracker of their own; untracked requests count as sent)
    _tracker = zmq.MessageTracker()

    @property
    def sent(self):
        """Whether zmq is done with the requests' buffers (always, unless sent with
        track=True): until then, changing an array that was sent would change the copy
        the engine gets."""
        return self._tracker.done

    def wait_for_send(self, timeout=-1):
        """Wait until `sent` (timeout < 0 or None: no limit; TimeoutError after it)."""
        try:
            self._tracker.wait(-1 if timeout is None or timeout < 0 else timeout)
        except zmq.NotDone:
            raise TimeoutError(f"the requests' buffers were still being sent after "
                               f"{timeout}s") from None

    def get_dict(self, timeout=None):
        """{engine_id: result}, one entry per task; ValueError when two ran on one engine."""
        self.get(timeout)
        engine_ids = [self._metadata[m]["engine_id"] for m in self.msg_ids]
        repeated = {e for e in engine_ids if engine_ids.count(e) > 1}
        if repeated:
            raise ValueError(f"cannot build a dict: several tasks ran on engine "
                             f"{sorted(repeated)[0]}")
        return {e: self._values[m] for e, m in zip(engine_ids, self.msg_ids)}

    def wait_for_output(self, timeout=-1):
        """Wait until the tasks are done and all their output has come; whether it did
        within `timeout` (< 0 or None: the tasks as long as they take, then the late
        messages LATE_OUTPUT_WAIT s at most). A task's output is complete when its reply is
        in — the engine publishes it first and the reply carries the record's copy — except
        output the record cut (--output-limit), whose end still comes on iopub after the
        reply, and display messages the reply counts, which may come after it (an engine
        whose iopub stayed full drops what it could not send, and says so in its log)."""
        timeout = None if timeout is None or timeout < 0 else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.wait(timeout):
            return False
        left = LATE_OUTPUT_WAIT if deadline is None else max(0.0, deadline - time.monotonic())
        with self._arrived:
            return self._arrived.wait_for(self._output_complete, left)

    def _output_complete(self):
        if self._streamed:
            self._join_streamed()
        return not self._tails and \
            not any(self._display_events_missing(m) for m in self.msg_ids)

    def __getitem__(self, key):
        """ar['engine_id'] (metadata by name) or ar[i] / ar[a:b] (results)."""
        if isinstance(key, str):
            if key not in self._metadata[self.msg_ids[0]]:
                raise KeyError(key)
            return getattr(self, key)
        return self.get()[key]

    def __dir__(self):
        return sorted({*super().__dir__(), *self._metadata[self.msg_ids[0]]} if self.msg_ids
                      else super().__dir__())

    def _all_metadata(self, what):
        if not self.done():
            raise TimeoutError(f"{what} is known once every task is done")
        return [self._metadata[m] for m in self.msg_ids]

    @property
    def wall_time(self):
        """Seconds from the first submission to the last reply (TimeoutError until done)."""
        mds = self._all_metadata("wall_time")
        return (max(md["received"] or md["completed"] for md in mds)
                - min(md["submitted"] for md in mds)).total_seconds()

    @property
    def serial_time(self):
        """Seconds the tasks ran, summed over tasks (TimeoutError until done)."""
        mds = self._all_metadata("serial_time")
        return sum((md["completed"] - md["started"]).total_seconds() for md in mds
                   if md["completed"] and md["started"])

    def split(self):
        """One AsyncResult per msg_id (the same results, without the map's flattening)."""
        if len(self.msg_ids) == 1 and self.kind != "map":
            return (self,)
        kind = "list" if self.kind == "map" else "single"
        return tuple(self._client._follow([m], kind, [self], _plain())
                     for m in self.msg_ids)

    @classmethod
    def join(cls, *results):
        """One AsyncResult (a list) over the msg_ids of `results`, all of one client."""
        if not results:
            raise ValueError("join needs at least one AsyncResult")
        client = results[0]._client
        ids = [m for ar in results for m in ar.msg_ids]
        return client._follow(ids, "list", results, _plain())

    def abort(self):
        """Abort the tasks not yet done (see Client.abort)."""
        self._client.abort([m for m in self.msg_ids if m not in self._values])

    def _wait_until(self, timeout, return_when):
        """concurrent.futures.wait over the split results: (done, not_done) sets."""
        if return_when not in _WAIT_MODES:
            raise ValueError(f"return_when must be one of {_WAIT_MODES}, not {return_when!r}")
        return concurrent.futures.wait(self.split(), timeout, return_when)

    def display_outputs(self, groupby="type"):
        """Print each task's captured stdout and stderr, labelled by engine when several."""
        streams = [("stdout", sys.stdout), ("stderr", sys.stderr)]
        self._join_streamed()
        mds = [self._metadata[m] for m in self.msg_ids]
        single = len(mds) == 1
        order = ([(md, s) for s in streams for md in mds] if groupby == "type"
                 else [(md, s) for md in mds for s in streams])
        for md, (name, stream) in order:
            text = md.get(name) or ""
            if not text:
                continue
            if not single:
                text = f"[{name}:{md['engine_id']}] " + text
            stream.write(text if text.endswith("\n") else text + "\n")

    def _with_exceptions(self):
        """The result with each failed task's RemoteError in its place."""
        values = [self._values[m] for m in self.msg_ids]
        if self.kind == "single":
            return values[0]
        if self.kind == "map":
            sizes = self._chunk_sizes or [1] * len(values)
            return [x for v, n in zip(values, sizes)
                    for x in (v if not isinstance(v, RemoteError) else [v] * n)]
        return values


def _plain():
    """The class a split or joined result takes: AsyncResult, not a subclass for maps."""
    from .asyncresult import AsyncResult
    return AsyncResult
