"""What the hub writes to the task database, batched per event-loop turn.

The controller reports each step of a task's life (submitted, assigned, replied, failed);
the recorder turns it into TaskRecord fields and holds them until `flush()`, which the
controller calls once per loop turn: one bulk insert, one bulk update, one commit. An
update to a record not yet written merges into the pending insert, so a task submitted and
dispatched in the same turn costs a single row write.

A task that failed an attempt and runs again (retries, UnmetDependency) keeps one record:
each failed attempt is listed in its ``result_metadata["failed_attempts"]`` (engine, error,
time), there as soon as it happens and kept once the task finishes.
"""
from ..jsonutil import parse_date, with_text


def _raw(msg, i):
    raw = msg.get("raw")
    return raw[i] if raw is not None and len(raw) > i else None


def _keep_text(value, raw):
    """The decoded dict with its wire JSON kept, so the DB need not encode it again."""
    return value if raw is None else with_text(value, raw)


class TaskRecorder:
    def __init__(self, db):
        self.db = db
        self._adds = {}     # msg_id -> full record not yet written
        self._updates = {}  # msg_id -> changes to a written record
        self._failures = {}  # msg_id -> failed attempts of a task that is running again

    def submitted(self, msg, queue, now, **extra):
        header, md = msg["header"], msg["metadata"]
        self._adds[header["msg_id"]] = {
            "msg_id": header["msg_id"], "header": _keep_text(header, _raw(msg, 1)),
            "metadata": _keep_text(md, _raw(msg, 3)),
            "content": _keep_text(msg["content"], _raw(msg, 4)),
            "buffers": [bytes(b) for b in msg["buffers"]], "submitted": now,
            "client_uuid": header.get("session"), "queue": queue,
            "label": md.get("label"), "task_group": md.get("task_group"), **extra}

    def update(self, msg_id, **changes):
        pending = self._adds.get(msg_id)
        if pending is not None:
            pending.update(changes)
        else:
            self._updates.setdefault(msg_id, {}).update(changes)

    def retried(self, msg_id, engine_uuid, engine_id, ename, evalue, now):
        """An attempt on `engine_uuid` failed; the task will run again elsewhere."""
        failures = self._failures.setdefault(msg_id, [])
        failures.append({"engine_uuid": engine_uuid, "engine_id": engine_id, "ename": ename,
                         "evalue": evalue, "at": now.isoformat()})
        self.update(msg_id, result_metadata={"failed_attempts": list(failures)})

    def replied(self, msg_id, reply, now):
        md = dict(reply["metadata"])
        content = reply["content"]
        error = content if content.get("status") == "error" else None
        self.update(msg_id, result_header=_keep_text(reply["header"], _raw(reply, 1)),
                    result_content=_keep_text(content, _raw(reply, 4)),
                    result_metadata=self._with_failures(msg_id, {
                        k: v for k, v in md.items() if k not in ("stdout", "stderr")}),
                    result_buffers=[bytes(b) for b in reply["buffers"]],
                    started=parse_date(md.get("started")),
                    completed=parse_date(md.get("completed")) or now, received=now,
                    stdout=md.get("stdout"), stderr=md.get("stderr"),
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
        return bool(self._adds or self._updates)

    def flush(self):
        if self._adds:
            self.db.add_records(list(self._adds.values()))
            self._adds.clear()
        if self._updates:
            self.db.update_records(list(self._updates.items()))
            self._updates.clear()
        self.db.commit()

