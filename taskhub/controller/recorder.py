"""What the hub writes to the task database, batched per event-loop turn.

The controller reports each step of a task's life (submitted, assigned, replied, failed);
the recorder turns it into TaskRecord fields and holds them until `flush()`, which the
controller calls once per loop turn: one bulk insert, one bulk update, one commit. An
update to a record not yet written merges into the pending insert, so a task submitted and
dispatched in the same turn costs a single row write.
"""
from ..jsonutil import parse_date


class TaskRecorder:
    def __init__(self, db):
        self.db = db
        self._adds = {}     # msg_id -> full record not yet written
        self._updates = {}  # msg_id -> changes to a written record

    def submitted(self, msg, queue, now, **extra):
        header, md = msg["header"], msg["metadata"]
        self._adds[header["msg_id"]] = {
            "msg_id": header["msg_id"], "header": header, "metadata": md,
            "content": msg["content"],
            "buffers": [bytes(b) for b in msg["buffers"]], "submitted": now,
            "client_uuid": header.get("session"), "queue": queue,
            "label": md.get("label"), **extra}

    def update(self, msg_id, **changes):
        pending = self._adds.get(msg_id)
        if pending is not None:
            pending.update(changes)
        else:
            self._updates.setdefault(msg_id, {}).update(changes)

    def replied(self, msg_id, reply, now):
        md = dict(reply["metadata"])
        content = reply["content"]
        error = content if content.get("status") == "error" else None
        self.update(msg_id, result_header=reply["header"], result_content=content,
                    result_metadata={k: v for k, v in md.items()
                                     if k not in ("stdout", "stderr")},
                    result_buffers=[bytes(b) for b in reply["buffers"]],
                    started=parse_date(md.get("started")),
                    completed=parse_date(md.get("completed")) or now, received=now,
                    stdout=md.get("stdout"), stderr=md.get("stderr"),
                    status=content.get("status"), error=error)

    def failed(self, msg_id, content, now):
        self.update(msg_id, result_content=content, completed=now, received=now,
                    status="error", error=content)

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

