"""The controller process's sockets and event loop: a thin shell around pure state.

    client ─ query ROUTER ───────────▶ hub requests (connect, db, results, resubmit, …)
    client ─ task ROUTER ─▶ SchedulerState ─▶ task ROUTER ─▶ engines (by uuid identity)
    client ─ mux ROUTER ─────────(relay)────▶ mux ROUTER ──▶ engines
    client ─ control ROUTER ─────(relay)────▶ control ROUTER ▶ engines
    client ◀ iopub PUB ◀──────────(relay)──── iopub SUB ◀─── engines
    client ◀ notification PUB (engine up/down)
    engines ◀ heartbeat PUB (ping) … heartbeat ROUTER ◀ pong (echoed by a C device)

One thread runs everything (see docs/architecture.md for why). Each loop turn drains the
ready sockets, runs due timers, then flushes the task-DB writes of that turn in one
transaction. The relays and the scheduler are in-process, so "monitoring" — the hub seeing
every request and reply — is a method call, not a socket hop. Decisions live in
`HubState` and `SchedulerState`; this module only decodes messages into their events and
carries out the instructions they return.
"""
import logging
import time

import zmq

from ..session import DELIM, utcnow
from . import hubstate as hs
from . import scheduler as sc
from .queries import QueryService
from .recorder import TaskRecorder

log = logging.getLogger("taskhub.controller")

CLIENT_CHANNELS = ("query", "task", "mux", "control", "iopub", "notification")
ENGINE_CHANNELS = ("query", "task", "mux", "control", "iopub", "hb_ping", "hb_pong")
MAX_PER_TURN = 512  # messages read from one socket per turn, so no socket starves the rest


class Controller:
    """Routes and records. Construct, `bind()`, then `run()` (blocks until `stop()`)."""

    def __init__(self, session, db, ip="127.0.0.1", scheme="leastload", hwm=0,
                 heartbeat_period=1.0, heartbeat_misses=10, context=None):
        self.session = session
        self.db = db
        self.recorder = TaskRecorder(db)
        self.ip = ip
        self.scheduler = sc.SchedulerState(scheme, hwm)
        self.hub = hs.HubState(heartbeat_period * heartbeat_misses)
        self.heartbeat_period = heartbeat_period
        self.context = context
        self.ports = {}
        self.queued = {}       # msg_id -> (client ident, raw frames) not yet sent to an engine
        self.outstanding = {}  # msg_id -> (client ident, header, queue) until the reply
        self.watchers = {}     # msg_id -> client idents that asked for it via get_result
        self.queries = QueryService(self)
        self._running = False
        self._wake_url = f"inproc://taskhub-controller-{id(self)}"

    # -- set-up -----------------------------------------------------------------------------
    def bind(self):
        """Create and bind every socket on random ports of `ip`; returns self."""
        ctx = self.context = self.context or zmq.Context()
        kinds = {"query": zmq.ROUTER, "task": zmq.ROUTER, "mux": zmq.ROUTER,
                 "control": zmq.ROUTER, "iopub": zmq.PUB, "notification": zmq.PUB,
                 "e_task": zmq.ROUTER, "e_mux": zmq.ROUTER, "e_control": zmq.ROUTER,
                 "e_iopub": zmq.SUB, "hb_ping": zmq.PUB, "hb_pong": zmq.ROUTER}
        self.sockets = {}
        for name, kind in kinds.items():
            sock = ctx.socket(kind)
            sock.linger = 1000
            if kind == zmq.ROUTER:
                sock.router_handover = 1  # a re-registering engine may reuse its identity
            self.ports[name] = sock.bind_to_random_port(f"tcp://{self.ip}")
            self.sockets[name] = sock
        self.sockets["e_iopub"].subscribe(b"")
        self._wake = ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_url)
        return self

    def connection_info(self, which):
        """The dict written to the client or engine connection file (without the key)."""
        p = self.ports
        if which == "client":
            ports = {k: p[k] for k in CLIENT_CHANNELS}
        else:
            ports = {"query": p["query"], "task": p["e_task"], "mux": p["e_mux"],
                     "control": p["e_control"], "iopub": p["e_iopub"],
                     "hb_ping": p["hb_ping"], "hb_pong": p["hb_pong"]}
        return {"ip": self.ip, "ports": ports, "signature_scheme": "hmac-sha256"}

    # -- the loop ---------------------------------------------------------------------------
    def run(self):
        handlers = {self.sockets[n]: h for n, h in (
            ("query", self._on_query), ("task", self._on_task_request),
            ("mux", self._on_mux_request), ("control", self._on_control_request),
            ("e_task", self._on_task_reply), ("e_mux", self._on_mux_reply),
            ("e_control", self._on_control_reply), ("e_iopub", self._on_iopub),
            ("hb_pong", self._on_pong))}
        handlers[self._wake] = lambda frames: None
        poller = zmq.Poller()
        for sock in handlers:
            poller.register(sock, zmq.POLLIN)
        self._running = True
        next_beat = time.monotonic()
        try:
            while self._running:
                timeout = max(0.0, next_beat - time.monotonic())
                for sock, _ in poller.poll(timeout * 1000):
                    self._drain(sock, handlers[sock])
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + self.heartbeat_period
                if self.recorder.dirty:
                    self.recorder.flush()
        finally:
            self.recorder.flush()

    def _drain(self, sock, handler):
        for _ in range(MAX_PER_TURN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handler(frames)
            except Exception:  # a bad message must never take the controller down
                self.session.dropped["handler error"] += 1
                log.exception("error handling a message; dropped it")

    def stop(self):
        """Ask the loop to end; safe from any thread."""
        self._running = False
        waker = self.context.socket(zmq.PUSH)
        waker.linger = 0
        waker.connect(self._wake_url)
        waker.send(b"")
        waker.close()

    def close(self):
        for sock in [*self.sockets.values(), self._wake]:
            sock.close(linger=0)
        self.db.close()

    def _heartbeat(self):
        self.sockets["hb_ping"].send(str(time.monotonic()).encode())
        self._apply(self.hub.handle(hs.Tick(time.monotonic())))

    # -- carrying out instructions -----------------------------------------------------------
    def _apply(self, instructions):
        for ins in instructions:
            if isinstance(ins, sc.SendTask):
                self._send_task(ins.msg_id, ins.engine)
            elif isinstance(ins, sc.FailTask):
                self._fail_task(ins.msg_id, ins.ename, ins.evalue)
            elif isinstance(ins, hs.EngineIsUp):
                self._notify("engine_up", {"id": ins.id, "uuid": ins.uuid})
                self._apply(self.scheduler.handle(sc.EngineUp(ins.uuid)))
            elif isinstance(ins, hs.EngineIsDown):
                log.warning("engine %s is down: %s", ins.id, ins.reason)
                self._notify("engine_down", {"id": ins.id, "uuid": ins.uuid,
                                             "reason": ins.reason})
                self._apply(self.scheduler.handle(sc.EngineDown(ins.uuid, ins.reason)))

    def _send_task(self, msg_id, engine):
        client, raw = self.queued.pop(msg_id)
        self.sockets["e_task"].send_multipart([engine.encode(), client, DELIM, *raw],
                                              copy=False)
        self.recorder.update(msg_id, engine_uuid=engine, engine_id=self.hub.id_of(engine))

    def _fail_task(self, msg_id, ename, evalue):
        """Answer a task the controller itself gave up on, as an engine would have."""
        self.queued.pop(msg_id, None)
        entry = self.outstanding.pop(msg_id, None)
        if entry is None:
            return
        client, header, queue = entry
        content = {"status": "error", "ename": ename, "evalue": evalue, "traceback": ""}
        now = utcnow()
        frames, _ = self.session.serialize(
            "apply_reply", content, parent=header,
            metadata={"status": "error", "completed": now.isoformat()}, idents=[client])
        sock = self.sockets["task" if queue == "task" else "mux"]
        sock.send_multipart(frames)
        self._forward_to_watchers(msg_id, frames[1:])
        self.recorder.failed(msg_id, content, now)

    def _notify(self, kind, content):
        self.session.send(self.sockets["notification"], kind, content)

    # -- client requests --------------------------------------------------------------------
    def _on_task_request(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or not idents or msg.msg_type != "apply_request":
            return
        targets = msg["metadata"].get("targets")
        if targets is not None and not _is_str_list(targets):
            return self._reject(idents[0], msg, "task", "ValueError",
                                "targets must be a list of engine uuids")
        self._accept(idents[0], msg, "task")
        self._apply(self.scheduler.handle(
            sc.TaskSubmitted(msg.msg_id, tuple(targets) if targets is not None else None)))

    def _accept(self, client, msg, queue, **extra):
        msg_id = msg.msg_id
        self.outstanding[msg_id] = (client, msg["header"], queue)
        if queue == "task":
            self.queued[msg_id] = (client, msg["raw"])
        self.recorder.submitted(msg, queue, utcnow(), **extra)

    def _reject(self, client, msg, queue, ename, evalue):
        self._accept(client, msg, queue)
        self._fail_task(msg.msg_id, ename, evalue)

    def _on_mux_request(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or len(idents) != 2 or msg.msg_type != "apply_request":
            return
        client, target = idents
        engine = target.decode("utf8", "replace")
        rec = self.hub.by_uuid.get(engine)
        if rec is None or not rec.up:
            return self._reject(client, msg, "mux", "EngineError",
                                f"no registered engine has uuid {engine!r}")
        self._accept(client, msg, "mux", engine_uuid=engine, engine_id=rec.id)
        self.sockets["e_mux"].send_multipart([target, client, DELIM, *msg["raw"]], copy=False)
        self._apply(self.hub.handle(hs.DirectSent(msg.msg_id, engine)))

    def _on_control_request(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or len(idents) != 2:
            return
        client, target = idents
        rec = self.hub.by_uuid.get(target.decode("utf8", "replace"))
        if rec is None:
            self.session.send(self.sockets["control"], msg.msg_type.replace("request", "reply"),
                              {"status": "error", "ename": "EngineError",
                               "evalue": f"no registered engine has uuid {target!r}"},
                              parent=msg["header"], idents=[client])
            return
        self.sockets["e_control"].send_multipart([target, client, DELIM, *msg["raw"]])

    # -- engine traffic ---------------------------------------------------------------------
    def _engine_message(self, frames, channel):
        """(engine uuid, client ident, reply) for a reply; handles channel hellos itself."""
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return None, None, None
        engine = idents[0].decode("utf8", "replace")
        if msg.msg_type == "engine_ready":
            self._apply(self.hub.handle(hs.ChannelReady(engine, channel)))
            return None, None, None
        if len(idents) != 2 or engine not in self.hub.by_uuid:
            self.session.dropped["reply from unknown engine"] += 1
            return None, None, None
        return engine, idents[1], msg

    def _on_task_reply(self, frames):
        engine, client, msg = self._engine_message(frames, "task")
        if msg is None:
            return
        msg_id = msg.parent_id
        if self.outstanding.pop(msg_id, None) is None:
            return  # already failed (engine declared dead) — the late reply is dropped
        self.sockets["task"].send_multipart([client, DELIM, *msg["raw"]], copy=False)
        self._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
        self.recorder.replied(msg_id, msg, utcnow())
        self.hub.by_uuid[engine].completed += 1
        self._apply(self.scheduler.handle(sc.TaskFinished(msg_id, engine)))

    def _on_mux_reply(self, frames):
        engine, client, msg = self._engine_message(frames, "mux")
        if msg is None:
            return
        msg_id = msg.parent_id
        if self.outstanding.pop(msg_id, None) is None:
            return
        self.sockets["mux"].send_multipart([client, DELIM, *msg["raw"]], copy=False)
        self._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
        self.recorder.replied(msg_id, msg, utcnow())
        self.hub.by_uuid[engine].completed += 1
        self._apply(self.hub.handle(hs.DirectDone(msg_id)))

    def _on_control_reply(self, frames):
        engine, client, msg = self._engine_message(frames, "control")
        if msg is not None:
            self.sockets["control"].send_multipart([client, DELIM, *msg["raw"]])

    def _on_iopub(self, frames):
        self.sockets["iopub"].send_multipart(frames, copy=False)

    def _on_pong(self, frames):
        if len(frames) == 2:
            self.hub.handle(hs.Pong(frames[0].decode("utf8", "replace"), time.monotonic()))

    def _forward_to_watchers(self, msg_id, msg_frames):
        for client in self.watchers.pop(msg_id, ()):
            self.sockets["task"].send_multipart([client, *msg_frames], copy=False)

    # -- the query socket: registration and hub requests ------------------------------------
    def _on_query(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return
        content, buffers = self.queries.handle(msg, idents[0])
        reply_type = msg.msg_type.replace("_request", "_reply")
        self.session.send(self.sockets["query"], reply_type, content, parent=msg["header"],
                          buffers=buffers, idents=idents)
        if msg.msg_type == "shutdown_request" and content.get("status") == "ok":
            self.stop()

    def resubmit(self, rec, client):
        """Submit a recorded request again as a new task for `client`; its new msg_id."""
        header = self.session.header("apply_request")
        header["session"] = rec["header"].get("session")
        frames, header = self.session.serialize(
            "apply_request", rec["content"], metadata=rec["metadata"],
            buffers=rec["buffers"] or [], header=header)
        msg = self.session.decode(frames[1:])
        self._accept(client, msg, "task")
        self.recorder.update(rec["msg_id"], resubmitted=header["msg_id"])
        targets = rec["metadata"].get("targets")
        self._apply(self.scheduler.handle(sc.TaskSubmitted(
            header["msg_id"], tuple(targets) if targets else None)))
        return header["msg_id"]


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
