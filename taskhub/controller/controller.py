"""The controller process's sockets and event loop: a thin shell around pure state.

    client ─ query ROUTER ───────────▶ hub requests (connect, db, results, resubmit, …)
    client ─ task ROUTER ─▶ SchedulerState ─▶ task ROUTER ─▶ engines (by uuid identity)
    client ─ mux ROUTER ─────────(relay)────▶ mux ROUTER ──▶ engines
    client ─ control ROUTER ─────(relay)────▶ control ROUTER ▶ engines
    client ◀ iopub PUB ◀──────────(relay)──── iopub SUB ◀─── engines
    client ◀ notification PUB (engine up/down)
    engines ◀ heartbeat PUB (ping) … heartbeat ROUTER ◀ pong (echoed by a C device)
      on a thread of their own (heartbeat.py): pings go out however long a turn takes

One thread routes (see docs/architecture.md for why); heartbeats have a thread of their
own (heartbeat.py). Each loop turn drains the ready sockets, runs due timers, then hands the
task-DB changes that are due, as one transaction, to the DB worker (dbworker.py: a new
record may wait a moment for its result, recorder.py), whose writer and reader threads
write them and answer queries: the loop never waits on the DB. The relays and
the scheduler are in-process, so "monitoring" — the hub seeing every request and reply —
is a method call, not a socket hop. Decisions live in
`HubState` and `SchedulerState`; this module only decodes messages into their events and
carries out the instructions they return. A load-balanced request's frames are kept until
the task is finished, so a retry resends exactly what the client signed.

Under the pure scheme (`pure.py`) the task ROUTERs belong to a C-level device on its own
thread; the hub sees copies of its traffic on the `capture` socket and answers clients
(watchers, resubmits, failures) through the mux ROUTER, whose replies clients treat alike.
"""
import logging
import os
import time

import zmq

from .. import curve as _curve
from ..error import NoTaskDB
from ..jsonutil import parse_date
from ..taskstatus import PENDING, final_status
from ..session import (BATCH, DELIM, TASK_CHANNEL_REQUESTS, pack_frames, packable,
                       utcnow)
from ..zmqsocket import make_context
from . import hubstate as hs
from . import limits, malloc, msglimits
from . import scheduler as sc
from .backlog import WriteBacklog
from .dbworker import QUERY_TIMEOUT, DBWorker, blob_dir_for, reader_for, spill_path_for
from .heartbeat import HeartMonitor, bind_port
from .peers import PeerWatch
from .pure import PureDevice
from .queries import Deferred, QueryService, cull_once
from .recentids import RecentIds
from .recorder import TaskRecorder
from .schemes import PURE
from .taskoptions import task_options

log = logging.getLogger("taskhub.controller")

CLIENT_CHANNELS = ("query", "task", "mux", "control", "iopub", "notification")
ENGINE_CHANNELS = ("query", "task", "mux", "control", "iopub", "hb_ping", "hb_pong")
IOPUB_IN_HWM = 64  # output messages (up to 64 KiB each) waiting per engine: more wait in
# the engine, and then its task waits (engine/capture.py): the hub's memory stays bounded
IOPUB_OUT_HWM = 256  # output messages queued per client: a client that reads its output
# slower than its tasks print loses some of it (the record keeps the start); the hub never
# waits for it
MAX_PER_TURN = 512  # messages read from one socket per turn, so no socket starves the rest
MAX_BYTES_PER_TURN = 4 * 2**20  # frame bytes read from one socket per turn: bounds the data
# a turn holds (and the DB writes it flushes) when messages are big; see _drain
ENGINE_RCVHWM = 16  # replies waiting in the controller per engine connection; more wait in
# the engine (its sends never block), so a burst of big results is not all held here at once
RELEASE_AFTER = 32 * 2**20  # frame bytes taken in before an idle loop gives memory back
IDLE = 0.05  # seconds without a message that make the loop idle (see _release_memory)
HUB_IDENT = b"taskhub-hub"  # the routing id of requests the hub itself sends
LOST_BATCH = 5000  # unfinished records marked lost per transaction (bounds memory, not time)
DB_MAX_VALUE_BYTES = 500 * 2**20  # a value bigger than this is stored beside the task DB


class Controller:
    """Routes and records. Construct, `bind()`, then `run()` (blocks until `stop()`)."""

    def __init__(self, session, db, ip="127.0.0.1", scheme="leastload", hwm=0,
                 heartbeat_period=1.0, heartbeat_misses=10, context=None, max_engines=0,
                 curve=None, retention=None, store=True, query_timeout=QUERY_TIMEOUT,
                 db_max_value_bytes=DB_MAX_VALUE_BYTES, db_kept_bytes=None,
                 output_limit=2**20, prefetch="adaptive",
                 max_message_size=(msglimits.CONTROL_DEFAULT, msglimits.DATA_DEFAULT),
                 ports=None):
        self.session = session
        self.fixed_ports = dict(ports or {})  # name -> port: a controller started again
        self.resumer = None  # a resuming.Resumer while a dead predecessor's tasks settle
        # in front of every ping and in the registration reply: engines tell a controller
        # started again from this one by it (engine/reconnect.py)
        self.incarnation = os.urandom(6).hex()
        self.max_message_size = max_message_size  # (other sockets, task/mux): msglimits
        self.curve = curve  # a curve.ClusterKeys to encrypt every TCP socket, or None
        self.zap = None
        self.db = db
        backlog = WriteBacklog(spill_path=spill_path_for(db), **(
            {"memory_bytes": db_kept_bytes} if db_kept_bytes is not None else {}))
        self.dbworker = DBWorker(db, reader_for(db), query_timeout=query_timeout,
                                 backlog=backlog, max_value_bytes=db_max_value_bytes,
                                 blob_dir=blob_dir_for(db))
        self.retention = retention  # a retention.Retention bounding the history, or None
        self.recorder = TaskRecorder(self.dbworker.proxy, store=store)
        self.ip = ip
        self.scheme = scheme
        self.pure = scheme == PURE
        self.scheduler = sc.SchedulerState("leastload" if self.pure else scheme, hwm,
                                           prefetch=prefetch)
        limit, reason = limits.engine_capacity(max_engines)
        self.hub = hs.HubState(heartbeat_period * heartbeat_misses,
                               hs.CHANNELS - {"task"} if self.pure else hs.CHANNELS,
                               period=heartbeat_period, engine_limit=limit,
                               limit_reason=reason)
        self.heartbeat_period = heartbeat_period
        self.output_limit = output_limit  # chars of each stream a task record keeps
        self.context = context
        self.ports = {}
        self.queued = {}       # msg_id -> (client ident, raw frames) of unfinished LB tasks
        self.outstanding = {}  # msg_id -> (client ident, header, queue) until the reply
        self.watchers = {}     # msg_id -> client idents that asked for it via get_result
        self.recent_ids = RecentIds()  # msg_ids taken in lately: a reuse is refused
        self.engine_ids = {}   # uuid -> id of every engine that was ever up
        self._replies = {}     # msg_id -> engine reply the scheduler is deciding about
        self._steals = {}      # request msg_id -> (engine, msg_ids) of a steal unanswered
        self._held_replies = {}  # msg_id -> a reply kept until its steal is answered
        self._looked_up = {}   # msg_id -> [lookups, its Outcome if it finished meanwhile]
        # while the task DB is asked about it for tasks that depend on it (_looked_up_deps)
        self._engine_out = {}  # (socket name, engine ident) -> requests to send this turn
        self._client_out = {}  # (socket name, client ident) -> replies to send this turn
        self._in_batch = False  # handling the messages of a batch (batches do not nest)
        self.batch_peers = set()  # idents of engines and clients that said they read batches
        self._handled = 0  # messages handled so far (_drain's budget)
        self._taken_in = 0  # frame bytes received since the loop last gave memory back
        self._device = None
        self.heart = None  # the HeartMonitor: pings and pongs, on its own thread
        self.peers = None  # the query socket's PeerWatch (peers.py), once bound
        self.queries = QueryService(self)
        self._running = False
        self._wake_url = f"inproc://taskhub-controller-{id(self)}"

    # -- set-up -----------------------------------------------------------------------------
    def bind(self):
        """Create and bind every socket on random ports of `ip`; returns self."""
        ctx = self.context = self.context or make_context()
        kinds = {"query": zmq.ROUTER, "task": zmq.ROUTER, "mux": zmq.ROUTER,
                 "control": zmq.ROUTER, "iopub": zmq.PUB, "notification": zmq.PUB,
                 "e_task": zmq.ROUTER, "e_mux": zmq.ROUTER, "e_control": zmq.ROUTER,
                 "e_iopub": zmq.SUB}
        self.sockets = {}
        if self.curve is not None:  # before any bind: no handler would admit every key
            self.zap = _curve.ZapHandler(ctx, self.curve).start()
        self.heart = HeartMonitor(ctx, self.ip, self.heartbeat_period, self._secure,
                                  ports=self._fixed("hb_ping", "hb_pong"),
                                  incarnation=self.incarnation.encode() + b":").start()
        self.ports.update(self.heart.ports)
        if self.pure:
            del kinds["task"], kinds["e_task"]
            self._bind_pure(ctx)
        for name, kind in kinds.items():
            sock = ctx.socket(kind)
            sock.linger = 1000
            if kind == zmq.ROUTER:
                sock.router_handover = 1  # a re-registering engine may reuse its identity
            if name in ("e_task", "e_mux"):
                sock.rcvhwm = ENGINE_RCVHWM
            if name == "e_iopub":
                sock.rcvhwm = IOPUB_IN_HWM
            elif name == "iopub":
                sock.sndhwm = IOPUB_OUT_HWM
            self._secure(sock, name)
            self.ports[name] = bind_port(sock, self.ip, self.fixed_ports.get(name))
            self.sockets[name] = sock
        self.sockets["e_iopub"].subscribe(b"")
        self.peers = PeerWatch(self.sockets["query"], self.queries.forget_client)
        self._wake = ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_url)
        return self

    def _fixed(self, *names):
        return {n: self.fixed_ports[n] for n in names if n in self.fixed_ports}

    def _secure(self, sock, name):
        """What every socket the controller binds gets before it binds: a frame size limit,
        and CurveZMQ if on."""
        sock.maxmsgsize = msglimits.max_frame_size(name, *self.max_message_size)
        if self.curve is not None:
            _curve.secure_server(sock, self.curve, name)

    def _bind_pure(self, ctx):
        self._device = PureDevice(ctx, self.ip, secure=self._secure).start()
        self.ports.update(self._device.ports)
        capture = self.sockets["capture"] = ctx.socket(zmq.PULL)
        capture.rcvhwm = 0
        capture.connect(self._device.capture_url)
        submit = self.sockets["submit"] = ctx.socket(zmq.DEALER)  # the hub's own resubmits
        submit.routing_id = HUB_IDENT
        submit.connect(self._device.front_url)

    def connection_info(self, which):
        """The dict written to the client or engine connection file (without the key)."""
        p = self.ports
        if which == "client":
            ports = {k: p[k] for k in CLIENT_CHANNELS}
        else:
            ports = {"query": p["query"], "task": p["e_task"], "mux": p["e_mux"],
                     "control": p["e_control"], "iopub": p["e_iopub"],
                     "hb_ping": p["hb_ping"], "hb_pong": p["hb_pong"]}
        return {"ip": self.ip, "ports": ports, "signature_scheme": "hmac-sha256",
                "task_scheme": self.scheme,
                "curve": self.curve.connection_info(which) if self.curve else None}

    # -- the loop ---------------------------------------------------------------------------
    def run(self):
        handlers = {self.sockets[n]: h for n, h in (
            ("query", self._on_query), ("task", self._on_task_request),
            ("mux", self._on_mux_request), ("control", self._on_control_request),
            ("e_task", self._on_task_reply), ("e_mux", self._on_mux_reply),
            ("e_control", self._on_control_reply), ("e_iopub", self._on_iopub),
            ("capture", self._on_pure_copy),
            ("submit", lambda frames: None)) if n in self.sockets}
        handlers[self._wake] = lambda frames: self.dbworker.deliver()  # answers to send
        handlers[self.peers.monitor] = self.peers.on_event  # clients gone without goodbye
        poller = zmq.Poller()
        for sock in handlers:
            poller.register(sock, zmq.POLLIN)
        self._running = True
        self._seed_recent_ids()
        self.dbworker.start(self.context, self._wake_url)
        next_beat = time.monotonic()
        try:
            while self._running:
                wake = next_beat if self.recorder.next_due is None else \
                    min(next_beat, self.recorder.next_due)
                timeout = max(0.0, wake - time.monotonic())
                release = self._taken_in >= RELEASE_AFTER
                if release:
                    timeout = min(timeout, IDLE)
                ready = poller.poll(timeout * 1000)
                for sock, _ in ready:
                    self._drain(sock, handlers[sock])
                if release and not ready and timeout >= IDLE:
                    self._release_memory()
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + self.heartbeat_period
                if self.retention is not None and self.retention.due(time.monotonic()):
                    self.cull(self.retention)  # on the DB writer, in turn with writes
                if self._engine_out:
                    self._flush_to_engines()
                if self._client_out:
                    self._flush_to_clients()
                if self.recorder.dirty:
                    self.recorder.write_due()
        finally:
            self._flush_to_engines()
            self._flush_to_clients()
            self.recorder.flush()

    def _seed_recent_ids(self):
        try:
            self.recent_ids.seed(self.db)
        except Exception as error:  # a DB failing at start is the writer's to report
            log.warning("task DB: cannot read the newest msg_ids (%s); a request reusing an "
                        "older one is refused only by the DB's unique key", error)

    def cull(self, retention, then=None):
        """Apply `retention` to the task DB once (see retention.py), on the DB writer after
        the writes reported so far; then(ok, count or error) runs on the loop after."""
        self.recorder.flush()
        self.dbworker.on_writer(lambda db: cull_once(db, retention, self.dbworker.blob_dir),
                                then)

    def _drain(self, sock, handler):
        """Handle what `sock` has ready, up to MAX_PER_TURN messages — a batch counting as
        the messages in it, so that a turn stays short whoever sends batches — and up to
        MAX_BYTES_PER_TURN bytes of frames, so that a turn holds little data in flight
        when messages are big. At least one message is read; the rest waits in the socket
        for the next turn."""
        start, taken = self._handled, 0
        watched = self.peers is not None and sock is self.peers.sock
        recv = self.peers.recv if watched else sock.recv_multipart
        while self._handled - start < MAX_PER_TURN and taken < MAX_BYTES_PER_TURN:
            self._handled += 1
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            taken += sum(map(len, frames))
            try:
                handler(frames)
            except Exception:  # a bad message must never take the controller down
                self.session.dropped["handler error"] += 1
                log.exception("error handling a message; dropped it")
        self._taken_in += taken

    def _release_memory(self):
        """The loop went idle after taking in RELEASE_AFTER bytes: give the memory its
        messages used back to the system (glibc keeps freed memory otherwise; malloc.py)."""
        self._taken_in = 0
        malloc.release()

    def stop(self):
        """Ask the loop to end; safe from any thread."""
        self._running = False
        waker = self.context.socket(zmq.PUSH)
        waker.linger = 0
        waker.connect(self._wake_url)
        waker.send(b"")
        waker.close()

    def close(self):
        """Fail the tasks still unfinished (TaskLost: they will never be answered now), then
        close every socket and the task DB."""
        self.fail_outstanding(f"the controller (pid {os.getpid()}) stopped before this task "
                              "finished; resubmit it")
        if self._device is not None:
            self._device.stop()
        if self.heart is not None:
            self.heart.stop()
        if self.peers is not None:
            self.peers.close()
        for name, sock in self.sockets.items():  # let those TaskLost replies go out
            sock.close(linger=500 if name in ("task", "mux") else 0)
        self._wake.close(linger=0)
        if self.zap is not None:
            self.zap.stop()
        self.dbworker.stop()  # after the sockets: answers still due are not sent
        if self.dbworker.reader_db is not self.db:
            self.dbworker.reader_db.close()
        self.db.close()

    # -- tasks a controller leaves unfinished ----------------------------------------------
    def fail_lost_tasks(self, reason):
        """Fail with TaskLost(`reason`) every task the DB holds as unfinished: waiting or
        running when an earlier controller on this DB died. A client asking for one then
        gets that error instead of waiting forever, and can resubmit it. A step to run
        before serving, when nothing of this controller's own is unfinished; returns how
        many tasks it marked."""
        try:
            total = self.db.count({"completed": None})
        except NoTaskDB:
            return 0
        content = {"status": "error", "ename": "TaskLost", "evalue": reason, "traceback": ""}
        for _ in range(-(-total // LOST_BATCH)):
            lost = self.db.find_records({"completed": None}, ["msg_id"], limit=LOST_BATCH)
            now = utcnow()
            for rec in lost:
                self.recorder.failed(rec["msg_id"], content, now)
            self.recorder.flush()
        return total

    def fail_outstanding(self, reason):
        """Answer every task this controller has not finished with TaskLost(`reason`), and
        record that: for when it stops with work in flight."""
        for msg_id in list(self.outstanding):
            self._fail_task(msg_id, "TaskLost", reason)
        self._flush_to_clients()
        self.recorder.flush()

    def _heartbeat(self):
        """The pongs the heart thread timed since the last turn, then a Tick: an engine
        is judged by its last pong, not by when this loop got round to looking."""
        for uuid, when in self.heart.take_pongs().items():
            self._apply(self.hub.handle(hs.Pong(uuid, when)))
        for name in ("iopub", "notification"):
            # a PUB socket frees the connections of subscribers that left only when it
            # handles its commands, which sending does, or asking its EVENTS: quiet PUBs kept
            # ~30 KB for every client that ever connected
            self.sockets[name].getsockopt(zmq.EVENTS)
        now = time.monotonic()
        self._apply(self.hub.handle(hs.Tick(now)))
        self._apply(self.scheduler.handle(sc.Tick(now)))
        if self.resumer is not None:
            self.resumer.tick(now)

    # -- carrying out instructions -----------------------------------------------------------
    def _apply(self, instructions):
        for ins in instructions:
            if isinstance(ins, sc.SendTask):
                self._send_task(ins.msg_id, ins.engine)
            elif isinstance(ins, sc.DeliverReply):
                self._deliver_reply(ins.msg_id)
            elif isinstance(ins, sc.FailTask):
                self._fail_task(ins.msg_id, ins.ename, ins.evalue)
            elif isinstance(ins, sc.Requeued):
                self.recorder.retried(ins.msg_id, ins.engine, self.engine_ids.get(ins.engine),
                                      ins.ename, ins.evalue, utcnow())
            elif isinstance(ins, sc.SignalEngine):
                self._signal_engine(ins.engine, ins.action, [ins.msg_id])
            elif isinstance(ins, sc.StealTasks):
                header = self._signal_engine(ins.engine, "abort", list(ins.msg_ids),
                                             queued_only=True)
                self._steals[header["msg_id"]] = (ins.engine, ins.msg_ids)
            elif isinstance(ins, sc.HoldReply):
                self._held_replies[ins.msg_id] = self._replies[ins.msg_id]
            elif isinstance(ins, sc.Returned):
                self._held_replies.pop(ins.msg_id, None)
                self.recorder.update(ins.msg_id, status=PENDING, engine_uuid=None,
                                     engine_id=None)
            elif isinstance(ins, hs.EngineIsUp):
                self.engine_ids[ins.uuid] = ins.id
                self._notify("engine_up", {"id": ins.id, "uuid": ins.uuid, "versions":
                                           self.hub.engines[ins.id].info.get("versions")})
                self._apply(self.scheduler.handle(sc.EngineUp(ins.uuid)))
            elif isinstance(ins, hs.AskToRejoin):
                self._signal_engine(ins.uuid, "rejoin", [])
            elif isinstance(ins, hs.EngineIsDown):
                log.warning("engine %s is down: %s", ins.id, ins.reason)
                self._notify("engine_down", {"id": ins.id, "uuid": ins.uuid,
                                             "reason": ins.reason})
                self._apply(self.scheduler.handle(sc.EngineDown(ins.uuid, ins.reason)))
                if self.resumer is not None:
                    self.resumer.engine_gone(ins.uuid)

    def _send_task(self, msg_id, engine):
        client, raw = self.queued[msg_id]  # kept: a retry sends the same frames again
        self._to_engine("e_task", engine.encode(), [client, DELIM, *raw])
        self.recorder.queued(msg_id, engine_uuid=engine, engine_id=self.hub.id_of(engine))

    def _to_engine(self, name, engine, frames):
        """Queue a request for `engine` on socket `name`; the end of the loop turn sends
        each engine what it was given in that turn (_flush_to_engines)."""
        self._queue_out(self._engine_out, name, engine, frames)

    def _to_client(self, name, client, msg_frames):
        """Queue a reply (frames from DELIM on) for `client` on socket `name`; the end of
        the loop turn sends each client its replies of that turn (_flush_to_clients)."""
        self._queue_out(self._client_out, name, client, msg_frames)

    def _queue_out(self, out, name, ident, frames):
        """Queue `frames` for `ident`; one too big to pack goes at once, after what was
        queued for `ident` before it."""
        key = (name, ident)
        if packable(frames):
            out.setdefault(key, []).append(frames)
            return
        queued = out.pop(key, None)
        if queued:
            self._send_queued(name, ident, queued)
        self.sockets[name].send_multipart([ident, *frames], copy=False)

    def _flush_to_engines(self):
        """Send each engine the requests queued for it this turn: one as itself, more as one
        batch message (docs/messages.md). Before anything goes on an engine's control
        channel, so an abort never overtakes the task it names."""
        out, self._engine_out = self._engine_out, {}
        for (name, engine), queued in out.items():
            self._send_queued(name, engine, queued)

    def _flush_to_clients(self):
        """Send each client the replies queued for it this turn, as _flush_to_engines does;
        also before the hub answers a client directly, so that answer never overtakes a
        reply the hub has already dealt with."""
        out, self._client_out = self._client_out, {}
        for (name, client), queued in out.items():
            self._send_queued(name, client, queued)

    def _send_queued(self, name, ident, queued):
        if len(queued) == 1 or ident not in self.batch_peers:  # one by one, as they were
            for frames in queued:
                self.sockets[name].send_multipart([ident, *frames], copy=False)
            return
        frames, _ = self.session.serialize(BATCH, {"n": len(queued)}, idents=[ident],
                                           buffers=[pack_frames(f) for f in queued])
        self.sockets[name].send_multipart(frames, copy=False)

    def _deliver_reply(self, msg_id):
        """The engine's reply is the task's answer: pass it to the client and record it."""
        msg = self._replies.pop(msg_id, None) or self._held_replies.pop(msg_id)
        self._held_replies.pop(msg_id, None)
        self.queued.pop(msg_id, None)
        entry = self.outstanding.pop(msg_id, None)
        if entry is None:
            return
        self._to_client("task", entry[0], [DELIM, *msg["raw"]])
        self._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
        self.recorder.replied(msg_id, msg, utcnow())

    def _fail_task(self, msg_id, ename, evalue):
        """Answer a task the controller itself gave up on, as an engine would have."""
        self._held_replies.pop(msg_id, None)
        self.queued.pop(msg_id, None)
        entry = self.outstanding.pop(msg_id, None)
        if entry is None:
            return
        client, header, queue = entry
        content = {"status": "error", "ename": ename, "evalue": evalue, "traceback": ""}
        now = utcnow()
        frames, _ = self.session.serialize(
            "apply_reply", content, parent=header,
            metadata={"status": final_status(content), "completed": now.isoformat()},
            idents=[client])
        self._to_client(self._client_socket_name(queue), client, frames[1:])
        self._forward_to_watchers(msg_id, frames[1:])
        self.recorder.failed(msg_id, content, now)
        if queue == "mux":
            self._direct_finished(msg_id, None, False)

    def _client_socket_name(self, queue):
        """Where replies for `queue` go; under pure the device owns the task ROUTER."""
        return "mux" if queue == "mux" or self.pure else "task"

    def _signal_engine(self, engine, action, msg_ids, **extra):
        """Ask `engine` (on its control channel) to abort or interrupt `msg_ids`, or (action
        "rejoin") to register again as a new engine; the request's header."""
        frames, header = self.session.serialize(f"{action}_request",
                                                {"msg_ids": msg_ids, **extra},
                                                idents=[engine.encode(), HUB_IDENT])
        self._flush_to_engines()
        self.sockets["e_control"].send_multipart(frames)
        return header

    def _notify(self, kind, content):
        self.session.send(self.sockets["notification"], kind, content)

    # -- client requests --------------------------------------------------------------------
    def _on_task_request(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return
        if msg.msg_type == BATCH:  # a client's requests sent together (a map's)
            if not self._in_batch:
                self._split_batch(idents[0], msg, self._on_task_request)
            return
        if msg.msg_type in TASK_CHANNEL_REQUESTS:
            # behind the tasks before it on this socket; direct ones come on mux: take in
            # those already received too (an abort right after a direct apply names it)
            self._drain(self.sockets["mux"], self._on_mux_request)
            return self._answer(self.sockets["task"], msg, idents)
        if msg.msg_type != "apply_request":
            return
        try:
            options = task_options(msg["metadata"])
        except (TypeError, ValueError) as e:
            return self._reject(idents[0], msg, "task", type(e).__name__, str(e))
        self._submit(idents[0], msg, options)

    def _submit(self, client, msg, options):
        """Hand a load-balanced task to the scheduler."""
        if self._refuse_duplicate(client, msg, "task"):
            return
        self._accept(client, msg, "task")
        self.queued[msg.msg_id] = (client, msg["raw"])
        self._schedule_with_deps(msg, options)

    def _schedule_with_deps(self, msg, options):
        """Schedule a task taken in (its frames in `queued`), once the outcomes of the
        tasks it depends on are known."""
        deps = [m for d in (options["after"], options["follow"]) if d for m in d.msg_ids]
        unknown = [m for m in deps if not self.scheduler.knows(m)]
        external = frozenset(m for m in unknown if m in self.outstanding)
        old = sorted(set(unknown) - external)
        if not old:
            return self._schedule(msg.msg_id, options, {}, external)
        # tasks finished long ago: their outcomes come from the task DB, off this thread
        self.recorder.flush()
        for m in old:
            self._looked_up.setdefault(m, [0, None])[0] += 1
        self.dbworker.read(lambda db: _outcomes(db, old), lambda ok, outcomes: self._looked_up_deps(
            msg.msg_id, options, outcomes if ok else {}, external, old), key="dependencies")

    def _looked_up_deps(self, msg_id, options, outcomes, external, old):
        """A direct task sent just before this one is read after it (its socket comes later
        in a loop turn): by the time the task DB answers, it may be running (outstanding)
        or have finished (noted by _direct_finished), and the task DB had not seen it."""
        for m in old:
            entry = self._looked_up[m]
            if entry[1] is not None and m not in outcomes:
                outcomes[m] = entry[1]
            entry[0] -= 1
            if not entry[0]:
                del self._looked_up[m]
        running = {m for m in old if m in self.outstanding and m not in outcomes}
        self._schedule(msg_id, options, outcomes, external | running)

    def _schedule(self, msg_id, options, outcomes, external):
        if msg_id not in self.outstanding:  # aborted while its dependencies were looked up
            return
        self._apply(self.scheduler.handle(sc.TaskSubmitted(
            msg_id, **options, now=time.monotonic(), outcomes=outcomes, external=external)))

    def _refuse_duplicate(self, client, msg, queue):
        """A request reusing the msg_id of a task taken in lately (pending or finished:
        recentids.py) is a bad request: refused, not routed, not written."""
        msg_id = msg.msg_id
        if msg_id not in self.recent_ids and msg_id not in self.outstanding:
            return False
        self.session.dropped["duplicate msg_id"] += 1
        content = {"status": "error", "ename": "ValueError", "traceback": "",
                   "evalue": f"msg_id {msg_id!r} is already used by another task (pending or "
                             "finished); every request needs a new msg_id (this one was not "
                             "run, and the other task's record is unchanged)"}
        frames, _ = self.session.serialize("apply_reply", content, parent=msg["header"],
                                           metadata={"status": "error"}, idents=[client])
        self._to_client(self._client_socket_name(queue), client, frames[1:])
        return True

    def _accept(self, client, msg, queue, **extra):
        self.outstanding[msg.msg_id] = (client, msg["header"], queue)
        self.recent_ids.add(msg.msg_id)
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
        if self._refuse_duplicate(client, msg, "mux"):
            return
        rec = self.hub.by_uuid.get(engine)
        if rec is None or not rec.up:
            return self._reject(client, msg, "mux", "EngineError",
                                f"no registered engine has uuid {engine!r}")
        self._accept(client, msg, "mux", engine_uuid=engine, engine_id=rec.id)
        self._to_engine("e_mux", target, [client, DELIM, *msg["raw"]])
        self._apply(self.hub.handle(hs.DirectSent(msg.msg_id, engine)))
        self._apply(self.scheduler.handle(sc.DirectSubmitted(msg.msg_id)))

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
        self._flush_to_engines()
        self.sockets["e_control"].send_multipart([target, client, DELIM, *msg["raw"]])

    # -- engine traffic ---------------------------------------------------------------------
    def _engine_message(self, frames, channel):
        """(engine uuid, client ident, reply) for a reply; handles channel hellos itself."""
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return None, None, None
        engine = idents[0].decode("utf8", "replace")
        if msg.msg_type == BATCH and channel != "control":
            if not self._in_batch:
                self._split_batch(idents[0], msg, self._on_task_reply if channel == "task"
                                  else self._on_mux_reply)
            return None, None, None
        if msg.msg_type == "engine_ready":
            self._apply(self.hub.handle(hs.ChannelReady(engine, channel)))
            return None, None, None
        # a control reply may come after its engine unregistered (shutdown answers, then
        # leaves, on another socket); task replies from an engine that is gone are dropped
        known = self.engine_ids if channel == "control" else self.hub.by_uuid
        if len(idents) != 2 or engine not in known:
            self.session.dropped["reply from unknown engine"] += 1
            return None, None, None
        if msg.msg_type == "task_started":
            self._on_started(engine, msg, channel)
            return None, None, None
        return engine, idents[1], msg

    def _on_started(self, engine, msg, channel):
        """An engine says a task it was sent started running (taskhub/taskstatus.py)."""
        msg_id = msg.parent_id
        if channel == "task" and self.scheduler.assigned.get(msg_id) != engine:
            return  # not (or no longer) this engine's to run: a stale notice
        if msg_id in self.outstanding:
            self.recorder.started(msg_id, parse_date(msg["content"].get("started")) or utcnow())
            self._apply(self.scheduler.handle(sc.TaskStarted(msg_id, engine, time.monotonic())))

    def _split_batch(self, ident, batch, handler):
        """Handle each message of a batch as if it had come alone from `ident`."""
        self._in_batch = True
        self._handled += len(batch["buffers"])
        try:
            for frames in self.session.batch_parts(batch):
                try:
                    handler([ident, *frames])
                except Exception:  # one bad message must not lose the rest of the batch
                    self.session.dropped["handler error"] += 1
                    log.exception("error handling a message of a batch; dropped it")
        finally:
            self._in_batch = False

    def _on_task_reply(self, frames):
        """The scheduler decides whether a reply is the answer (DeliverReply) or an attempt
        to retry; a late reply from an engine declared dead is neither, and is dropped."""
        engine, client, msg = self._engine_message(frames, "task")
        if msg is None:
            return
        self.hub.by_uuid[engine].completed += 1
        msg_id, content = msg.parent_id, msg["content"]
        if self.resumer is not None and self.resumer.took_reply(msg_id, engine, msg):
            return
        self._replies[msg_id] = msg
        self._apply(self.scheduler.handle(sc.TaskFinished(
            msg_id, engine, content.get("status") == "ok", str(content.get("ename", "")),
            str(content.get("evalue", "")), time.monotonic())))
        self._replies.pop(msg_id, None)

    def _on_mux_reply(self, frames):
        engine, client, msg = self._engine_message(frames, "mux")
        if msg is None:
            return
        msg_id = msg.parent_id
        if self.outstanding.pop(msg_id, None) is None:
            return
        if self.resumer is not None:
            self.resumer.answered(msg_id)
        self._to_client("mux", client, [DELIM, *msg["raw"]])
        self._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
        self.recorder.replied(msg_id, msg, utcnow())
        self.hub.by_uuid[engine].completed += 1
        self._apply(self.hub.handle(hs.DirectDone(msg_id)))
        self._direct_finished(msg_id, engine, msg["content"].get("status") == "ok")

    def _direct_finished(self, msg_id, engine, ok):
        self._apply(self.scheduler.handle(sc.DirectFinished(msg_id, engine, ok)))
        if msg_id in self._looked_up:  # a dependency lookup in flight missed it
            self._looked_up[msg_id][1] = sc.Outcome(ok, engine)

    def _on_control_reply(self, frames):
        engine, client, msg = self._engine_message(frames, "control")
        if msg is not None and client != HUB_IDENT:
            self.sockets["control"].send_multipart([client, DELIM, *msg["raw"]])
        elif msg is not None and msg.parent_id in self._steals:  # work stealing's answer
            asked_engine, asked = self._steals.pop(msg.parent_id)
            taken = msg["content"].get("aborted")
            taken = tuple(m for m in taken if isinstance(m, str)) \
                if isinstance(taken, list) else ()
            self._apply(self.scheduler.handle(sc.GaveBack(asked_engine, asked, taken)))

    def _on_pure_copy(self, frames):
        """A copy of a message that passed the pure device: record it."""
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return
        if msg.msg_type == "apply_request" and msg.msg_id not in self.outstanding:
            self._accept(idents[0], msg, "task")
        elif msg.msg_type == "apply_reply":
            self._on_pure_reply(idents[0], msg)

    def _on_pure_reply(self, client, msg):
        msg_id = msg.parent_id
        entry = self.outstanding.pop(msg_id, None)
        if entry is None:
            return
        engine = msg["metadata"].get("engine_uuid")
        rec = self.hub.by_uuid.get(engine)
        if rec is not None:
            rec.completed += 1
        if client == HUB_IDENT:  # a resubmit by the hub: the answer goes to who asked
            self._to_client("mux", entry[0], [DELIM, *msg["raw"]])
        self._forward_to_watchers(msg_id, [DELIM, *msg["raw"]])
        self.recorder.update(msg_id, engine_uuid=engine, engine_id=self.engine_ids.get(engine))
        self.recorder.replied(msg_id, msg, utcnow())

    def _on_iopub(self, frames):
        self.sockets["iopub"].send_multipart(frames, copy=False)

    def _forward_to_watchers(self, msg_id, msg_frames):
        for client in self.watchers.pop(msg_id, ()):
            self._to_client(self._client_socket_name("task"), client, msg_frames)

    # -- the query socket: registration and hub requests ------------------------------------
    def _on_query(self, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or not idents:
            return
        self._catch_up()
        self._answer(self.sockets["query"], msg, idents)

    def _answer(self, sock, msg, idents):
        replies = self.queries.handle(msg, idents[0])
        if isinstance(replies, Deferred):  # the task DB answers later, off this thread
            return self.queries.run(replies, lambda r: self._send_answer(sock, msg, idents, r),
                                    key=idents[0])
        self._send_answer(sock, msg, idents, replies)

    def _send_answer(self, sock, msg, idents, replies):
        self._flush_to_clients()
        reply_type = msg.msg_type.replace("_request", "_reply")
        for content, buffers in replies:
            self.session.send(sock, reply_type, content, parent=msg["header"],
                              buffers=buffers, idents=idents)
        if msg.msg_type == "shutdown_request" and content.get("status") == "ok":
            self.stop()

    def _catch_up(self):
        """Take in the tasks already received before answering a query about them: a
        client that submits, then at once aborts or resubmits, sends the two on different
        sockets, and within one loop turn the query socket may be read first. Under pure,
        the device copies a message to the hub before forwarding it, so every copy of what
        the asker has seen is in the capture socket already."""
        for name, handler in (("task", self._on_task_request), ("mux", self._on_mux_request),
                              ("capture", self._on_pure_copy)):
            if name in self.sockets:
                self._drain(self.sockets[name], handler)

    def resubmit(self, records, client, new_args=None):
        """Submit recorded requests again as new tasks for `client`: {old msg_id: new}.

        `new_args`, if given, holds per record the frames of new (args, kwargs) that replace
        the recorded ones (the function stays). A direct task goes back to the engine that
        ran it; a load-balanced one through the scheduler. Every record is checked before
        any is submitted, so a refusal submits nothing."""
        new_args = new_args or [None] * len(records)
        plans = [self._resubmit_plan(rec, client, args) for rec, args in zip(records, new_args)]
        new_ids = {}
        for rec, (msg, frames, route) in zip(records, plans):
            route(msg, frames)
            self.recorder.update(rec["msg_id"], resubmitted=msg.msg_id)
            new_ids[rec["msg_id"]] = msg.msg_id
        return new_ids

    def _resubmit_plan(self, rec, client, args_frames):
        """(new message, its frames, how to send it) for a recorded request; raises if not."""
        if rec["buffers"] is None:
            raise ValueError(f"cannot resubmit task {rec['msg_id']!r}: its function and "
                             "arguments are no longer stored (culled by retention, or not "
                             "kept); its record remains in the task DB — submit it again")
        buffers = list(rec["buffers"])
        if args_frames is not None:
            buffers = buffers[:1] + list(args_frames)
        header = self.session.header("apply_request")
        header["session"] = rec["header"].get("session")
        frames, header = self.session.serialize(
            "apply_request", rec["content"], metadata=rec["metadata"], buffers=buffers,
            header=header)
        msg = self.session.decode(frames[1:])
        if rec.get("queue") == "mux":
            engine = self._resubmit_engine(rec)
            return msg, frames, lambda m, f: self._send_direct(client, m, engine)
        if self.pure:
            return msg, frames, lambda m, f: self._send_through_device(client, m, f)
        options = task_options(rec["metadata"])
        return msg, frames, lambda m, f: self._submit(client, m, options)

    def _resubmit_engine(self, rec):
        engine = rec.get("engine_uuid")
        hub_rec = self.hub.by_uuid.get(engine)
        if hub_rec is None or not hub_rec.up:
            raise ValueError(f"task {rec['msg_id']} ran directly on engine "
                             f"{rec.get('engine_id')}, which is gone; a direct task is "
                             "resubmitted only to the engine it ran on")
        return engine

    def _send_direct(self, client, msg, engine):
        self._accept(client, msg, "mux", engine_uuid=engine, engine_id=self.hub.id_of(engine))
        self._to_engine("e_mux", engine.encode(), [client, DELIM, *msg["raw"]])
        self._apply(self.hub.handle(hs.DirectSent(msg.msg_id, engine)))

    def _send_through_device(self, client, msg, frames):
        self._accept(client, msg, "task")
        self.sockets["submit"].send_multipart(frames, copy=False)

    # -- stopping tasks ---------------------------------------------------------------------
    def abort(self, msg_ids):
        """Abort unfinished tasks: waiting ones fail with TaskAborted at once, running ones
        are stopped by their engine. Finished ones are left alone (the query service checks
        that each id is known first)."""
        self._stop_tasks(msg_ids, "abort")

    def interrupt(self, msg_ids):
        """Interrupt running tasks (KeyboardInterrupt in them); others are left alone."""
        self._stop_tasks(msg_ids, "interrupt")

    def _stop_tasks(self, msg_ids, action):
        for m in msg_ids:
            if m in self.scheduler.tasks:
                event = sc.AbortTask(m) if action == "abort" else sc.InterruptTask(m)
                self._apply(self.scheduler.handle(event))
            elif m in self.hub.direct_owner:
                self._signal_engine(self.hub.direct_owner[m], action, [m])
            elif m in self.outstanding and self.pure:  # the device does not say where it went
                for i in self.hub.up_ids():
                    self._signal_engine(self.hub.engines[i].uuid, action, [m])


def _outcomes(db, msg_ids):
    """{msg_id: Outcome} of the recorded tasks among `msg_ids` (on the DB reader)."""
    try:
        found = db.find_records({"msg_id": {"$in": msg_ids}}, ["status", "engine_uuid"])
    except NoTaskDB:
        return {}
    # a record without a status was lost when its hub stopped: it counts as failed
    return {r["msg_id"]: sc.Outcome(r.get("status") == "ok", r.get("engine_uuid"))
            for r in found}
