"""What the hub writes to the task database, in few, batched transactions.

The controller reports each step of a task's life (submitted, assigned, replied, failed);
the recorder turns it into TaskRecord fields and holds them until they are written: at the
end of each loop turn the controller calls `write_due()`, which writes what is due in one
transaction (one bulk insert, one bulk update, one commit), and before anything reads the
DB it calls `flush()`, which writes everything. An update to a record not yet written
merges into the pending insert.

A new record is held for up to `hold` seconds (HOLD, 0.25 s) so that a task that finishes
by then is written once, whole, instead of inserted and then updated: most tasks are
short. A finished task's record, and an update, wait at most `linger` seconds (LINGER,
5 ms) for others to share their commit: one at a time, tasks finishing every millisecond
would otherwise pay a commit each — most of what writing them costs. Records may so reach
the DB out of submission order, which no reader sees: the recorder makes `submitted`
strictly increasing (a timestamp equal to the one before moves on by a microsecond), and
records are ordered by it. Nothing reads the DB without a flush first, so queries see
every task; what a crash can lose is the last `linger` seconds of results (whose replies
may have reached their clients) and the last `hold` seconds of submissions that had not
finished (whose senders got no answer either).

Buffers (the function and arguments of a request, the result of a reply) are stored unless
the recorder was made with store=False or a request's metadata says "store": False: then
the record keeps everything else (status, timings, output, errors) and `resubmit` and
`get_result` say the data was not kept.

A task that failed an attempt and runs again (retries, UnmetDependency) keeps one record:
each failed attempt is listed in its ``result_metadata["failed_attempts"]`` (engine, error,
time), there as soon as it happens and kept once the task finishes.
"""
import time
from datetime import datetime, timedelta, timezone

from ..jsonutil import parse_date, with_text
from ..taskstatus import PENDING, QUEUED, RUNNING, final_status

HOLD = 0.25  # seconds a new record may wait to be written together with its result
LINGER = 0.005  # seconds a finished record or an update may wait for others to share a commit
LINGER_MAX = 512  # ... unless this many are waiting
_TICK = timedelta(microseconds=1)


def _raw(msg, i):
    raw = msg.get("raw")
    return raw[i] if raw is not None and len(raw) > i else None


def _keep_text(value, raw):
    """The decoded dict with its wire JSON kept, so the DB need not encode it again."""
    return value if raw is None else with_text(value, raw)


class TaskRecorder:
    def __init__(self, db, hold=HOLD, linger=LINGER, clock=time.monotonic, store=True):
        self.db = db
        self.store = store  # whether buffers are stored unless a task says otherwise
        self._unstored = set()  # msg_ids of unfinished tasks whose buffers are not stored
        self.hold = hold
        self.linger = linger
        self._ready_since = None  # clock time of the oldest change waiting only to be written
        self._clock = clock
        self._adds = {}     # msg_id -> full record not yet written, in submission order
        self._due = {}      # msg_id -> clock time by which its insert must be written
        self._finished = []  # msg_ids of held records whose task has finished
        self._last_submitted = datetime.min.replace(tzinfo=timezone.utc)
        self._updates = {}  # msg_id -> changes to a written record
        self._failures = {}  # msg_id -> failed attempts of a task that is running again

    def submitted(self, msg, queue, now, **extra):
        header, md = msg["header"], msg["metadata"]
        if now <= self._last_submitted:  # the same microsecond as the task before
            now = self._last_submitted + _TICK
        self._last_submitted = now
        store = md.get("store", self.store) is not False
        if not store:
            self._unstored.add(header["msg_id"])
        self._adds[header["msg_id"]] = {
            "msg_id": header["msg_id"], "header": _keep_text(header, _raw(msg, 1)),
            "metadata": _keep_text(md, _raw(msg, 3)),
            "content": _keep_text(msg["content"], _raw(msg, 4)),
            "buffers": [bytes(b) for b in msg["buffers"]] if store else None,
            "submitted": now,
            "client_uuid": header.get("session"), "queue": queue,
            "label": md.get("label"), "task_group": md.get("task_group"),
            "status": PENDING, **extra}
        self._due[header["msg_id"]] = self._clock() + self.hold

    def update(self, msg_id, **changes):
        pending = self._adds.get(msg_id)
        if pending is not None:
            pending.update(changes)
            if changes.get("completed") is None:
                return
            self._finished.append(msg_id)
        else:
            self._updates.setdefault(msg_id, {}).update(changes)
        if self._ready_since is None:
            self._ready_since = self._clock()

    def carry_failures(self, msg_id, failures):
        """Attempts that failed before this controller started (a record it resumes)."""
        if failures:
            self._failures[msg_id] = list(failures)

    def retried(self, msg_id, engine_uuid, engine_id, ename, evalue, now):
        """An attempt on `engine_uuid` failed; the task will run again elsewhere."""
        failures = self._failures.setdefault(msg_id, [])
        failures.append({"engine_uuid": engine_uuid, "engine_id": engine_id, "ename": ename,
                         "evalue": evalue, "at": now.isoformat()})
        self.update(msg_id, result_metadata={"failed_attempts": list(failures)},
                    status=PENDING, started=None)

    def queued(self, msg_id, **changes):
        """Sent to an engine (`changes`: which), which has not started it yet."""
        self.update(msg_id, status=QUEUED, **changes)

    def started(self, msg_id, started):
        """The engine said the task started running at `started` (a datetime)."""
        self.update(msg_id, status=RUNNING, started=started)

    def replied(self, msg_id, reply, now):
        md, content = reply["metadata"], reply["content"]
        error = content if content.get("status") == "error" else None
        if "stdout" in md or "stderr" in md:  # they have columns of their own
            result_md = {k: v for k, v in md.items() if k not in ("stdout", "stderr")}
        else:  # an engine leaves out empty output: the wire JSON is the record's as it is
            result_md = _keep_text(md, _raw(reply, 3))
        self.update(msg_id, result_header=_keep_text(reply["header"], _raw(reply, 1)),
                    result_content=_keep_text(content, _raw(reply, 4)),
                    result_metadata=self._with_failures(msg_id, result_md),
                    result_buffers=None if self._stored_not(msg_id) else
                    [bytes(b) for b in reply["buffers"]],
                    started=parse_date(md.get("started")),
                    completed=parse_date(md.get("completed")) or now, received=now,
                    stdout=md.get("stdout", ""), stderr=md.get("stderr", ""),
                    status=final_status(content), error=error)

    def _stored_not(self, msg_id):
        if msg_id in self._unstored:
            self._unstored.discard(msg_id)
            return True
        return False

    def failed(self, msg_id, content, now):
        self._unstored.discard(msg_id)
        self.update(msg_id, result_content=content, completed=now, received=now,
                    status=final_status(content), error=content)
        if msg_id in self._failures:
            self.update(msg_id, result_metadata=self._with_failures(msg_id, {}))

    def _with_failures(self, msg_id, md):
        failures = self._failures.pop(msg_id, None)
        return {**md, "failed_attempts": failures} if failures else md

    def holds(self, msg_id):
        """Whether task `msg_id` was submitted and is not written yet."""
        return msg_id in self._adds

    @property
    def dirty(self):
        """Whether anything reported is not written yet."""
        return bool(self._adds or self._updates)

    @property
    def next_due(self):
        """The clock time by which something must be written, or None."""
        held = next(iter(self._due.values()), None)
        if self._ready_since is None:
            return held
        ready = self._ready_since + self.linger
        return ready if held is None else min(held, ready)

    def write_due(self):
        """Write what must not wait any longer, in one transaction: the new records held
        for `hold` seconds, and — once the oldest has waited `linger` seconds, or
        LINGER_MAX are waiting — the records of finished tasks and the updates. So a commit
        serves several tasks even when they finish one at a time (a commit, not the rows,
        is most of what writing one task costs)."""
        now, ids = self._clock(), {}
        for msg_id, due in self._due.items():  # oldest first
            if due > now:
                break
            ids[msg_id] = None
        waiting = len(self._finished) + len(self._updates)
        if not ids and (self._ready_since is None or (
                now < self._ready_since + self.linger and waiting < LINGER_MAX)):
            return
        ids.update(dict.fromkeys(self._finished))
        self._finished.clear()
        for msg_id in ids:
            del self._due[msg_id]
        self._write([self._adds.pop(msg_id) for msg_id in ids])

    def flush(self):
        """Write and commit everything reported so far: before anything reads the DB."""
        adds = list(self._adds.values())
        self._adds.clear()
        self._due.clear()
        self._finished.clear()
        self._write(adds)

    def _write(self, adds):
        self._ready_since = None
        if adds:
            self.db.add_records(adds)
        if self._updates:
            self.db.update_records(list(self._updates.items()))
            self._updates.clear()
        self.db.commit()
