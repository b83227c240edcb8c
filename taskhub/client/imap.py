"""Streaming map with bounds: results as they come, at most N tasks in flight.

    iterable ──next()──▶ submit while fewer than max_outstanding are in flight
                          │ (a task counts until its result is given out)
    results  ◀──yield─── the next one done (ordered=False) or the oldest (ordered=True),
                          each within `timeout` of the one before

Items are read from the iterable only as room frees up, so an unbounded generator works
and the client holds at most `max_outstanding` tasks (of `chunksize` items each) and their
results at a time. Leaving the loop early (break, an error, the generator closed) cancels
the tasks no engine has started. Executor.map(..., buffersize=n) is this, ordered, with its
timeout counted from the call.
"""
import collections
import itertools
import queue
import time
from concurrent import futures

from ..error import TimeoutError
from .taskfuture import cancel_not_started

DEFAULT_MAX_OUTSTANDING = 100


def imap(executor, f, iterables, ordered=False, max_outstanding=DEFAULT_MAX_OUTSTANDING,
         timeout=None, return_exceptions=False, chunksize=1, deadline=None):
    """A generator of f(*items) over zip(*iterables); see the module docstring.

    chunksize: items per task (one task runs f over each of them; fewer, bigger messages
    for short calls, but a chunk's results come back together and an error in one item
    fails its whole chunk). return_exceptions: yield a task's exception (once per item of
    its chunk) instead of raising it (which ends the iteration). `deadline` (monotonic)
    bounds every wait too. Bad arguments raise here, before anything is submitted."""
    if not iterables:
        raise TypeError("imap needs at least one iterable")
    items = zip(*[iter(it) for it in iterables])
    _check_count("max_outstanding", max_outstanding)
    _check_count("chunksize", chunksize)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise ValueError(f"timeout must be a number of seconds ≥ 0 or None, not {timeout!r}")
    stream = _Ordered() if ordered else _AsCompleted()
    send = _chunk_sender(executor, f, chunksize)
    waits = _Waits(timeout, deadline)
    return _results(executor, send, items, chunksize, stream, max_outstanding, waits,
                    return_exceptions)


def _check_count(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _chunk_sender(executor, f, chunksize):
    """rows -> a future of the list of f(*row) for each row: one task per call."""
    if chunksize == 1:
        return lambda rows: executor.submit(f, *rows[0])
    return lambda rows: executor._submit_chunk(f, tuple(zip(*rows)))


class _Waits:
    """How long the next wait may take: `timeout` from the result before, and no later
    than `deadline`; what to say when it runs out."""

    def __init__(self, timeout, deadline):
        self.timeout, self.deadline = timeout, deadline

    def left(self):
        if self.deadline is None:
            return self.timeout
        left = max(0.0, self.deadline - time.monotonic())
        return left if self.timeout is None else min(left, self.timeout)

    def why(self, in_flight):
        what = f"within {self.timeout}s of the previous one" if self.timeout is not None \
            and (self.deadline is None or self.deadline > time.monotonic()) \
            else "within the map's timeout"
        return f"imap: no result {what} ({in_flight} tasks in flight)"


def _results(executor, send, items, chunksize, stream, limit, waits, return_exceptions):
    many = chunksize > 1
    try:
        while True:
            while len(stream) < limit:
                rows = list(itertools.islice(items, chunksize))
                if not rows:
                    break
                stream.add(send(rows), len(rows))
            if not len(stream):
                return
            future, n = stream.next_done(waits)
            error = future.exception()
            if error is None:
                yield from future.result() if many else (future.result(),)
            elif return_exceptions:
                yield from itertools.repeat(error, n)
            else:
                raise error
    finally:
        left = stream.in_flight()
        if left:
            cancel_not_started(executor.client, left)


class _Ordered:
    """In flight, given out oldest first, with the number of items each task holds."""

    def __init__(self):
        self._futures = collections.deque()

    def __len__(self):
        return len(self._futures)

    def add(self, future, n):
        self._futures.append((future, n))

    def next_done(self, waits):
        try:
            self._futures[0][0].exception(waits.left())
        except futures.TimeoutError:
            raise TimeoutError(waits.why(len(self._futures))) from None
        return self._futures.popleft()

    def in_flight(self):
        return [f for f, _ in self._futures if not f.done()]


class _AsCompleted:
    """In flight, given out as they finish, with the number of items each task holds."""

    def __init__(self):
        self._futures = {}
        self._done = queue.SimpleQueue()

    def __len__(self):
        return len(self._futures)

    def add(self, future, n):
        self._futures[future] = n
        future.add_done_callback(self._done.put)

    def next_done(self, waits):
        try:
            future = self._done.get(timeout=waits.left())
        except queue.Empty:
            raise TimeoutError(waits.why(len(self._futures))) from None
        return future, self._futures.pop(future)

    def in_flight(self):
        return [f for f in self._futures if not f.done()]


class LazyMapIterator:
    """What view.imap and Executor.map return: an iterator over a running imap whose
    `cancel()` (or `close()`) stops it, cancelling the tasks no engine started."""

    def __init__(self, results):
        self._results = results

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._results)

    def cancel(self):
        close = getattr(self._results, "close", None)
        if close is not None:
            close()

    close = cancel
