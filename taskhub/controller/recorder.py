"""What the hub writes to the task database, batched per event-loop turn.

The controller reports each step of a task's life (submitted, assigned, replied, failed);
the recorder turns it into TaskRecord fields and holds them until they are written: at the
end of each loop turn the controller calls `write_due()` — one bulk insert, one bulk
update, one commit — and before anything reads the DB it calls `flush()`, which writes
everything. An update to a record not yet written merges into the pending insert.

A new record is held for up to `hold` seconds (HOLD) so that a task that finishes by then
is written once, whole, instead of inserted and then updated: most tasks are short. It is
written as soon as its task finishes, or when its hold ends. Records may so reach the DB
out of submission order, which no reader sees: the recorder makes `submitted` strictly
increasing (a timestamp equal to the one before is moved on by a microsecond), and records
are ordered by it. Nothing reads a held record from the DB without a flush first, so
queries see every task; what a crash can lose is the last `hold` seconds of submissions
that had not finished (their senders got no answer either).

A task that failed an attempt and runs again (retries, UnmetDependency) keeps one record:
each failed attempt is listed in its ``result_metadata["failed_attempts"]`` (engine, error,
time), there as soon as it happens and kept once the task finishes.
"""
import time
from datetime import datetime, timedelta, timezone

from ..jsonutil import parse_date, with_text

HOLD = 0.25  # seconds a new record may wait to be written together with its result
_TICK = timedelta(microseconds=1)


def _raw(msg, i):
    raw = msg.get("raw")
    return raw[i] if raw is not None and len(raw) > i else None


def _keep_text(value, raw):
    """The decoded dict with its wire JSON kept, so the DB need not encode it again."""
    return value if raw is None else with_text(value, raw)


class TaskRecorder:
    def __init__(self, db, hold=HOLD, clock=time.monotonic):
        self.db = db
        self.hold = hold
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
        self._adds[header["msg_id"]] = {
            "msg_id": header["msg_id"], "header": _keep_text(header, _raw(msg, 1)),
            "metadata": _keep_text(md, _raw(msg, 3)),
            "content": _keep_text(msg["content"], _raw(msg, 4)),
            "buffers": [bytes(b) for b in msg["buffers"]], "submitted": now,
            "client_uuid": header.get("session"), "queue": queue,
            "label": md.get("label"), "task_group": md.get("task_group"), **extra}
        self._due[header["msg_id"]] = self._clock() + self.hold

    def update(self, msg_id, **changes):
        pending = self._adds.get(msg_id)
        if pending is not None:
            pending.update(changes)
            if changes.get("completed") is not None:
                self._finished.append(msg_id)
        else:
            self._updates.setdefault(msg_id, {}).update(changes)

    def retried(self, msg_id, engine_uuid, engine_id, ename, evalue, now):
        """An attempt on `engine_uuid` failed; the task will run again elsewhere."""
        failures = self._failures.setdefault(msg_id, [])
        failures.append({"engine_uuid": engine_uuid, "engine_id": engine_id, "ename": ename,
                         "evalue": evalue, "at": now.isoformat()})
        self.update(msg_id, result_metadata={"failed_attempts": list(failures)})

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
                    result_buffers=[bytes(b) for b in reply["buffers"]],
                    started=parse_date(md.get("started")),
                    completed=parse_date(md.get("completed")) or now, received=now,
                    stdout=md.get("stdout", ""), stderr=md.get("stderr", ""),
                    status=content.get("status"), error=error)

    def failed(self, msg_id, content, now):
        self.update(msg_id, result_content=content, completed=now, received=now,
                    status="error", error=content)
        if msg_id in self._failures:
            self.update(msg_id, result_metadata=self._with_failures(msg_id, {}))

    def _with_failures(self, msg_id, md):
        failures = self._failures.pop(msg_id, None)
        return {**md, "failed_attempts": failures} if failures else md

    @property
    def dirty(self):
        """Whether anything reported is not written yet."""
        return bool(self._adds or self._updates)

    @property
    def next_due(self):
        """The clock time by which the oldest held record must be written, or None."""
        return next(iter(self._due.values()), None)

    def write_due(self):
        """Write what must not wait: every update, the new records of finished tasks, and
        those held for `hold` seconds already. Commits if it wrote anything."""
        now, ids = self._clock(), dict.fromkeys(self._finished)
        self._finished.clear()
        for msg_id, due in self._due.items():  # oldest first
            if due > now:
                break
            ids[msg_id] = None
        for msg_id in ids:
            del self._due[msg_id]
        adds = [self._adds.pop(msg_id) for msg_id in ids]
        if adds or self._updates:
            self._write(adds)

    def flush(self):
        """Write and commit everything reported so far: before anything reads the DB."""
        adds = list(self._adds.values())
        self._adds.clear()
        self._due.clear()
        self._finished.clear()
        self._write(adds)

    def _write(self, adds):
        if adds:
            self.db.add_records(adds)
        if self._updates:
            self.db.update_records(list(self._updates.items()))
            self._updates.clear()
        self.db.commit()
