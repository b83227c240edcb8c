"""TaskFuture: the AsyncResult executors hand out, which can be cancelled like a stdlib one.

A `concurrent.futures` future can be cancelled until it starts running. A task has not
started while it waits in the scheduler or in an engine's queue; `cancel_not_started`
asks both, without racing the engine that might start it:

    client ── cancel_request ──▶ hub: aborts those still waiting for an engine  ─┐ taken
          ── abort_request {queued_only} ──▶ each engine: marks those still      ─┘ back
             in its queue, under the queue's lock, so none starts after being taken
    taken tasks answer "TaskAborted: aborted before it ran"; their futures end cancelled.

A task in flight between hub and engine when asked is found in neither place and runs: a
cancel that cannot be sure says no. Tasks with retries are not taken from engine queues:
the scheduler would retry them elsewhere (only the hub's own abort marks a task final).

Settling a future as cancelled after it was marked running uses the stdlib Future's
internal states (stable since Python 3.2), as its own executors' workers do.
"""
import threading
from concurrent.futures import _base

from ..error import RemoteError, TaskAborted, TaskhubError, TaskRef
from .asyncresult import AsyncResult

CANCEL_TIMEOUT = 10.0  # seconds to wait for the hub and for each engine to answer


class TaskFuture(AsyncResult):
    """An AsyncResult whose `cancel()` takes its task(s) back if no engine started them."""

    _cancelling = False  # a cancel is under way: an abort before running means cancelled
    may_retry = False    # has retries, so it is not taken from an engine's queue

    def cancel(self):
        """Cancel if no engine has started the task; True if it is cancelled."""
        if not self.running():  # pending (a batch not sent yet), or done
            return super().cancel() if not self.done() else self.cancelled()
        cancel_not_started(self._client, [self])
        return self.cancelled()

    def _receive(self, msg_id, value, metadata):
        if isinstance(value, RemoteError) and value.task is not None and not value.task.call \
                and self.fname:
            value.task = TaskRef(msg_id, f"{self.fname}(…)")
        super()._receive(msg_id, value, metadata)

    def _finish(self):
        if self._cancelling and all(map(_taken_back, self._values.values())):
            self._become_cancelled()
        elif not self.cancelled():
            super()._finish()

    def _become_cancelled(self):
        with self._condition:
            if self._state not in (_base.PENDING, _base.RUNNING):
                return
            self._state = _base.CANCELLED
            self._condition.notify_all()
        self._invoke_callbacks()
        self.set_running_or_notify_cancel()  # CANCELLED_AND_NOTIFIED: wakes wait/as_completed


class PendingTaskFuture(TaskFuture):
    """A batch's future: pending (not running) until the batch is sent."""

    starts_running = False


def _taken_back(value):
    return isinstance(value, TaskAborted) and value.evalue == "aborted before it ran"


def adopt(client, future):
    """Have `client` resolve `future` (made before its request was sent) as replies come."""
    return client._track(future.msg_ids, future.kind, future.fname, cls=lambda *_: future)


def cancel_not_started(client, futures, timeout=CANCEL_TIMEOUT):
    """Cancel those of `futures` whose tasks no engine has started; running and finished
    ones are left alone. Returns the futures now cancelled."""
    live = [f for f in futures if f.running()]
    if not live or threading.current_thread() is client._thread:
        return []  # in a done-callback, on the IO thread: it cannot wait for the replies
    for f in live:
        f._cancelling = True
    taken = set()
    try:
        taken.update(client._hub_request("cancel_request", {"msg_ids": _ids(live)},
                                         timeout)["cancelled"])
        queued = [m for m in _ids(f for f in live if not f.may_retry) if m not in taken]
        for uuid in list(client._engines.values()):
            if not queued:
                break
            taken.update(_take_back_queued(client, uuid, queued, timeout))
            queued = [m for m in queued if m not in taken]
    finally:
        for f in live:
            if taken.issuperset(f.msg_ids):
                f._become_cancelled()
            else:
                f._cancelling = False
    return [f for f in live if f.cancelled()]


def _ids(futures):
    return [m for f in futures for m in f.msg_ids]


def _take_back_queued(client, uuid, msg_ids, timeout):
    """Those of `msg_ids` waiting in engine `uuid`'s queue, now marked never to run."""
    try:
        reply = client._hub_request("abort_request", {"msg_ids": msg_ids, "queued_only": True},
                                    timeout, "control", [uuid.encode()])
    except TaskhubError:  # the engine is gone or silent: whatever it holds is not taken
        return []
    aborted = reply.get("aborted")
    return aborted if isinstance(aborted, list) else []
