"""A client-wide bound on outstanding tasks: sent, and not answered yet.

    user thread: _send_task ── admit(msg_id) ── room? ──yes──▶ outbox
                                   │ no: flush the outbox, then wait (or TimeoutError)
    IO thread:   reply ── release(msg_id) ── notify one waiting sender

With no limit (the default) admit only counts. Waiting flushes first: requests queued
without a flush (a map, a batch) must go out, or the replies that make room never come.
"""
import threading

from ..error import TimeoutError


class OutstandingLimit:
    """`limit`: most tasks outstanding at once (None: no bound); `timeout`: seconds a
    submit may wait for room before TimeoutError (None: wait as long as it takes)."""

    def __init__(self, limit=None, timeout=None):
        self.limit, self.timeout = limit, timeout
        self._ids = set()
        self._room = threading.Condition()

    @property
    def limit(self):
        return self._limit

    @limit.setter
    def limit(self, value):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"max_outstanding must be a positive integer or None, not {value!r}")
        self._limit = value

    @property
    def timeout(self):
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):
            raise ValueError(f"submit_timeout must be a number of seconds ≥ 0 or None, "
                             f"not {value!r}")
        self._timeout = value

    def __len__(self):
        return len(self._ids)

    def admit(self, msg_id, flush):
        """Count `msg_id` as outstanding, first waiting for room if the bound is reached."""
        with self._room:
            if self._limit is not None and len(self._ids) >= self._limit:
                flush()
                if not self._room.wait_for(self._has_room, self._timeout):
                    raise TimeoutError(
                        f"{len(self._ids)} tasks are outstanding, the client's "
                        f"max_outstanding, and none finished within {self._timeout}s")
            self._ids.add(msg_id)

    def _has_room(self):
        return self._limit is None or len(self._ids) < self._limit

    def release(self, msg_id):
        """`msg_id` was answered (called for every reply; ids never admitted are ignored)."""
        if msg_id in self._ids:
            with self._room:
                self._ids.discard(msg_id)
                self._room.notify()
