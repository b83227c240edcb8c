"""Streaming map with bounds: results as they come, at most N tasks in flight.

    iterable ──next()──▶ submit while fewer than max_outstanding are in flight
                          │ (a task counts until its result is given out)
    results  ◀──yield─── the next one done (ordered=False) or the oldest (ordered=True),
                          each within `timeout` of the one before

Items are read from the iterable only as room frees up, so an unbounded generator works
and the client holds at most `max_outstanding` items, tasks and results at a time. Leaving
the loop early (break, an error, the generator closed) cancels the tasks no engine has
started.
"""
import collections
import queue
from concurrent import futures

from ..error import TimeoutError
from .taskfuture import cancel_not_started

DEFAULT_MAX_OUTSTANDING = 100


def imap(executor, f, iterables, ordered=False, max_outstanding=DEFAULT_MAX_OUTSTANDING,
         timeout=None, return_exceptions=False):
    """A generator of f(*items) over zip(*iterables); see the module docstring.

    return_exceptions: yield a task's exception instead of raising it (which ends the
    iteration). Bad arguments raise here, before anything is submitted."""
    if not iterables:
        raise TypeError("imap needs at least one iterable")
    items = zip(*[iter(it) for it in iterables])
    if not isinstance(max_outstanding, int) or isinstance(max_outstanding, bool) \
            or max_outstanding < 1:
        raise ValueError(f"max_outstanding must be a positive integer, not {max_outstanding!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise ValueError(f"timeout must be a number of seconds ≥ 0 or None, not {timeout!r}")
    stream = _Ordered() if ordered else _AsCompleted()
    return _results(executor, f, items, stream, max_outstanding, timeout, return_exceptions)


def _results(executor, f, items, stream, limit, timeout, return_exceptions):
    try:
        while True:
            while len(stream) < limit:
                args = next(items, None)
                if args is None:
                    break
                stream.add(executor.submit(f, *args))
            if not len(stream):
                return
            future = stream.next_done(timeout)
            error = future.exception()
            if error is None:
                yield future.result()
            elif return_exceptions:
                yield error
            else:
                raise error
    finally:
        left = stream.in_flight()
        if left:
            cancel_not_started(executor.client, left)


class _Ordered:
    """In flight, given out oldest first."""

    def __init__(self):
        self._futures = collections.deque()

    def __len__(self):
        return len(self._futures)

    def add(self, future):
        self._futures.append(future)

    def next_done(self, timeout):
        try:
            self._futures[0].exception(timeout)
        except futures.TimeoutError:
            raise TimeoutError(f"imap: no result within {timeout}s of the previous one "
                               f"({len(self._futures)} tasks in flight)") from None
        return self._futures.popleft()

    def in_flight(self):
        return [f for f in self._futures if not f.done()]


class _AsCompleted:
    """In flight, given out as they finish."""

    def __init__(self):
        self._futures = set()
        self._done = queue.SimpleQueue()

    def __len__(self):
        return len(self._futures)

    def add(self, future):
        self._futures.add(future)
        future.add_done_callback(self._done.put)

    def next_done(self, timeout):
        try:
            future = self._done.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"imap: no result within {timeout}s of the previous one "
                               f"({len(self._futures)} tasks in flight)") from None
        self._futures.discard(future)
        return future

    def in_flight(self):
        return [f for f in self._futures if not f.done()]
