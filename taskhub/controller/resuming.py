"""The controller's side of resuming a dead predecessor's tasks: a thin shell that carries
out what `resume.ResumeBook` decides (see resume.py for the rules).

    start:    unfinished records ─▶ outstanding (+ rebuilt request frames for LB tasks)
    engine registers with resume={id, holding} ─▶ EngineBack ─▶ claims / Requeue / Lose
    a claimed task's reply ─▶ straight to its client (the scheduler never had it)
    engine down ─▶ EngineGone;  every heartbeat ─▶ Tick
    Requeue ─▶ the scheduler, as a retry;  Lose ─▶ TaskLost to the client and the record

The client of a resumed task is known by its session (`client_uuid`), which is its sockets'
routing id: replies reach the same client once it has reconnected (client/connection.py).
"""
import logging

from ..session import DELIM, utcnow
from . import resume as rs
from .taskoptions import task_options

log = logging.getLogger("taskhub.controller")

RECORD_KEYS = ["msg_id", "header", "metadata", "content", "buffers", "queue", "engine_uuid",
               "engine_id", "client_uuid", "result_metadata"]


class Resumer:
    def __init__(self, controller, records, now, wait):
        self.c = controller
        self.msgs = {}     # msg_id -> the rebuilt request of a load-balanced task
        self.options = {}  # msg_id -> its TaskSubmitted options
        self.book = rs.ResumeBook(records, now, wait, pure=controller.pure)
        self.requeued = self.lost = self.claimed = 0
        for rec in records:
            self._take_in(rec)

    def _take_in(self, rec):
        c, msg_id = self.c, rec["msg_id"]
        client = str(rec.get("client_uuid") or "").encode()
        header = rec.get("header") or {"msg_id": msg_id}
        c.outstanding[msg_id] = (client, header, rec.get("queue") or "task")
        if rec.get("engine_uuid") is not None:
            c.engine_ids.setdefault(rec["engine_uuid"], rec.get("engine_id"))
        failures = (rec.get("result_metadata") or {}).get("failed_attempts")
        c.recorder.carry_failures(msg_id, failures)
        if rec.get("queue") != "task" or c.pure or not rec.get("buffers"):
            return
        try:
            self.options[msg_id] = task_options(rec.get("metadata") or {})
        except (TypeError, ValueError):  # it was refused at first; it cannot run now
            return
        fresh = c.session.header("apply_request", msg_id=msg_id)
        frames, _ = c.session.serialize(
            "apply_request", rec.get("content") or {}, metadata=rec.get("metadata"),
            buffers=list(rec["buffers"]), header=rs.requeue_header(header, fresh))
        msg = self.msgs[msg_id] = c.session.decode(frames[1:])
        c.queued[msg_id] = (client, msg["raw"])

    # -- events -----------------------------------------------------------------------------
    def start(self):
        self._apply(self.book.start())

    def engine_back(self, uuid, holding):
        held = frozenset(m for m in holding if isinstance(m, str)) \
            if isinstance(holding, list) else frozenset()
        before = self.book.pending
        self._apply(self.book.handle(rs.EngineBack(uuid, held)))
        self.claimed += sum(1 for m in held if self.book.claimed_by(m) == uuid)
        log.info("engine %s reconnected holding %d tasks (%d resumed tasks still wait)",
                 uuid, len(held), before)

    def engine_gone(self, uuid):
        self._apply(self.book.handle(rs.EngineGone(uuid)))

    def tick(self, now):
        self._apply(self.book.handle(rs.Tick(now)))

    def answered(self, msg_id):
        self._apply(self.book.handle(rs.Answered(msg_id)))

    def took_reply(self, msg_id, engine, msg):
        """A reply to a claimed task: its answer, delivered here; whether it was one."""
        if self.book.claimed_by(msg_id) is None:
            return False
        self.answered(msg_id)
        c = self.c
        c.queued.pop(msg_id, None)
        entry = c.outstanding.pop(msg_id, None)
        if entry is not None:
            c._to_client("task", entry[0], [DELIM, *msg["raw"]])
            c._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
            c.recorder.replied(msg_id, msg, utcnow())
            c._direct_finished(msg_id, engine, msg["content"].get("status") == "ok")
        return True

    # -- instructions -----------------------------------------------------------------------
    def _apply(self, instructions):
        c = self.c
        for ins in instructions:
            if isinstance(ins, rs.Requeue) and ins.msg_id in self.msgs:
                self.requeued += 1
                if ins.engine is not None:
                    c.recorder.retried(ins.msg_id, ins.engine, c.engine_ids.get(ins.engine),
                                       "ControllerRestart", rs.INTERRUPTED, utcnow())
                c._schedule_with_deps(self.msgs.pop(ins.msg_id),
                                      self.options.pop(ins.msg_id))
            else:
                self.lost += 1
                reason = ins.reason if isinstance(ins, rs.Lose) else (
                    "the controller stopped before this task finished and its request "
                    "could not be queued again; resubmit it")
                c._fail_task(ins.msg_id, "TaskLost", reason)
                c._direct_finished(ins.msg_id, None, False)  # tasks waiting for it
        if not self.book.pending and c.resumer is self:
            log.warning("resumed the dead controller's tasks: %d claimed by engines that "
                        "reconnected, %d queued again, %d lost", self.claimed,
                        self.requeued, self.lost)
            c.resumer = None
