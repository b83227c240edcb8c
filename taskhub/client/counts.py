"""An executor's submission counters: submitted (received by the controller), pending,
finished.

"Submitted" means the controller has the task, not that it left this process: requests go
out through the client's IO thread and zmq's queues, which a killed process loses. A
request on the task channel is answered only after everything sent before it on that
channel was received (one ordered connection), so a `result_status_request` naming the
unconfirmed tasks confirms them all at once — one round trip, and only when asked.
"""
import threading


class SubmissionCounts:
    def __init__(self, client):
        self._client = client
        self._lock = threading.Lock()
        self._unconfirmed = []   # msg_ids sent, not yet known to be at the controller
        self._confirmed = 0
        self._sent = 0
        self.finished = 0

    def sent(self, future):
        with self._lock:
            self._sent += 1
            self._unconfirmed.extend(future.msg_ids)
        future.add_done_callback(self._done)

    def _done(self, _future):
        with self._lock:
            self.finished += 1

    def pending(self):
        with self._lock:
            return self._sent - self.finished

    def submitted(self):
        with self._lock:
            asking, self._unconfirmed = self._unconfirmed, []
        if asking:
            try:
                self._client._hub_request("result_status_request", {"msg_ids": asking},
                                          timeout=10)
            except BaseException:
                with self._lock:  # not confirmed: ask again next time
                    self._unconfirmed[:0] = asking
                raise
            with self._lock:
                self._confirmed += len(asking)
        return self._confirmed
