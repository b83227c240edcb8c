"""When an engine tells the hub a task started: the decision, apart from the sockets.

A task's reply carries the time it started, so a task that ends quickly needs no notice of
its own; one still running START_NOTICE_AFTER seconds after it started is announced once
(a `task_started` message on the channel it came in on), so the hub can show it running
and tell it from the tasks queued behind it. The main thread calls `begin` as a task
starts and `end` when it ends; the IO thread asks `wait_ms` how long it may sleep and
`take_due` for the notice to send now, if any. A tuple swap is atomic under the GIL, so
the two threads share it without a lock.
"""
import time

from ..session import utcnow
from ..taskstatus import START_NOTICE_AFTER


class StartNotices:
    def __init__(self, after=START_NOTICE_AFTER, clock=time.monotonic):
        self.after = after
        self.clock = clock
        self._current = None  # (due, channel, idents, request header, started ISO) or None

    def begin(self, channel, idents, header, started=None):
        """(main thread) A task from `channel` started (at `started`, ISO; None: now). The
        IO thread is not woken for it (a wake-up per task costs tiny tasks ~10% of their
        latency): it sleeps at most 100 ms, so a notice goes out between `after` and
        ~100 ms after the start."""
        self._current = (self.clock() + self.after, channel, idents, header,
                         started or utcnow().isoformat())

    def end(self):
        """(main thread) The running task ended: nothing to announce any more."""
        self._current = None

    def wait_ms(self, timeout_ms):
        """(IO thread) How long (ms) it may sleep, at most `timeout_ms`: less if a notice
        is due sooner."""
        current, now = self._current, self.clock()
        if current is not None:
            timeout_ms = min(timeout_ms, max(0, int((current[0] - now) * 1000) + 1))
        return timeout_ms

    def take_due(self):
        """(IO thread) (channel, idents, header, started ISO) to send now, once; or None."""
        current = self._current
        if current is None or self.clock() < current[0]:
            return None
        self._current = None if self._current is current else self._current
        return current[1:]
