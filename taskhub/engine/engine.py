"""An engine: registers with the hub, runs tasks on its main thread, answers control at once.

    main thread (task and mux sockets, while it is not running a task)
      poll task / mux (+ a wake pipe) ── apply_request ──▶ queue ──▶ execute: f(*args) with
                                                                    stdout/stderr captured
      send the reply itself ◀───────────────────────────────────────────────┘
    IO thread (every other socket; the task and mux sockets while a task runs)
      control DEALER ── abort, interrupt, shutdown: handled here, even while a task runs
      time limits: watched here ── SIGINT + a stop request ──▶ raised in the task
      iopub PUB ◀── output chunks, published as they come
    heart: a C-level zmq proxy thread (ping SUB → pong DEALER) that needs no GIL, so a
    long task, even one holding the GIL in C code, never looks dead.

The engine is three parts: what it knows and decides (the queue, aborts and give-backs,
the running task's time limit, start notices, held replies, the generation) is EngineState
(state.py), which does no I/O; which thread may use the task and mux sockets is
TaskSockets (sockets.py); this module is the loop around them, turning socket traffic into
calls and events and carrying out what they return. The main thread owns the task and
mux sockets while it waits for work, takes it and sends replies, so a request it is idle
for and the reply to it wake no other thread; while it runs a task the IO thread may use
them, to read what arrived behind the running task into the queue before it handles an
abort or a cancel (so those see every queued task), and to send replies the main thread
held back for a batch once they have waited state.BATCH_GATHER.

Rejoining: an engine the hub declared dead for its silence (the process was stopped, or
the network cut) and then heard from again gets a `rejoin_request` on control. The hub
has already failed or retried its tasks, so the IO thread drops them — the running one is
stopped, queued ones are skipped, late replies are not sent — stops the heart, takes a
new uuid and registers again: a new engine id, taking work at once. Work items carry the
generation (registration count) they arrived in; only the current one's replies go out.

Stopping a running task (its `time_limit` passed, or a control request aborted or
interrupted it): the IO thread queues a stop request naming the task, then sends the main
thread SIGINT. The engine's SIGINT handler raises the request's exception only if that task
is still the one running, so a request that arrives late is dropped and the engine carries
on with its next task; a SIGINT with no request behind it (Ctrl-C) goes to the handler
that was there before. Code stuck in C without returning to Python stops when it returns.
A stop the task's code swallowed (IPython catches everything while it makes its shell on a
first execute) is raised again every second while that task runs; an interrupt is not,
as code may catch KeyboardInterrupt and carry on by choice.

The engine's namespace is `__main__`'s: names pushed by a DirectView, and the globals of
functions shipped from a client's `__main__`, resolve there.
"""
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
import uuid

import zmq

from .. import callables, curve, nesting, serialize, strategies, versions
from ..error import RemoteError
from ..session import BATCH, Session, pack_frames, packable, utcnow
from ..zmqsocket import make_context
from . import reconnect, signals
from .capture import OUTPUT_LIMIT, OutputRouter, TaskOutput, iopub_message
from .sockets import TASK, TaskSockets
from .state import Abort, AbortQueued, EngineState, Interrupt, Rejoin, Stop, Tick

log = logging.getLogger("taskhub.engine")

_get = zmq.backend.Socket.get
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
IOPUB_HWM = 64  # output messages (of up to capture.CHUNK chars) queued towards the hub; a
# full queue makes the sender wait instead of dropping (XPUB_NODROP): backpressure
PUBLISH_PER_TURN = 2**20  # output chars the IO thread publishes per turn, so a flood never
# keeps it from the control socket and the controller's pings for long
FINAL_OUTPUT_WAIT = 10.0  # seconds a finished task's last output may wait for room on iopub


class RegistrationFailed(RuntimeError):
    """The hub refused this engine, or did not answer its registration in time."""


def _url(info, port_name):
    return f"tcp://{info['ip']}:{info['ports'][port_name]}"


def _connect(sock, info, port_name):
    """Connect `sock` to the controller's `port_name`, with the cluster's CurveZMQ keys."""
    curve.secure_client(sock, info)
    sock.connect(_url(info, port_name))


class Engine:
    """One engine process. `connect(timeout)` registers; `run()` serves until shut down."""

    def __init__(self, info, key, controller_timeout=30.0, context=None, tag=None,
                 extra_info=None, reconnect_grace=0.0):
        self.info = info
        self.reconnect_grace = reconnect_grace  # see reconnect.py
        self.incarnation = None  # the hub's, from the registration reply
        self.reply_log = reconnect.ReplyLog()
        # requests reach an engine in the scheduler's order, not their senders': a wide window
        self.session = Session(key, replay_window=1 << 22)
        # A launcher's tag in front lets it name this engine to the hub when its process
        # or job ends (taskhub/cluster/watch.py).
        self.tag = tag
        self.uuid = self._new_uuid()
        self.extra_info = dict(extra_info or {})  # e.g. {"mpi": {"rank": r, "size": s}}
        self.id = None
        self._heart = None
        self._poller = None          # the IO thread's, over its current sockets
        self._registration_timeout = 30.0
        self.output_limit = OUTPUT_LIMIT  # chars per stream the reply carries (the hub's)
        self._output_full = False    # iopub refused output: back off a little (IO thread)
        self.controller_timeout = controller_timeout
        self.context = context
        # the queue, aborts, the running task, held replies, the generation (state.py);
        # changed under _cond, but for the running task (see EngineState)
        self.state = EngineState()
        self.outputs = {}            # msg_id -> TaskOutput of the running task
        self._stops = queue.SimpleQueue()  # (msg_id, exception) for the SIGINT handler
        self._previous_sigint = signal.SIG_DFL
        self._main_ident = None
        self.fcache = serialize.FunctionCache()
        self._task_env = nesting.TaskEnvironment()
        self._stopping = threading.Event()
        # pipes that wake a thread blocked in poll; any thread may write them
        self._main_wake = _pipe()
        self._io_wake = _pipe()
        # the task and mux sockets and whose they are (sockets.py); their condition also
        # guards `state`
        self.sockets = TaskSockets(self._stopping, lambda: _poke(self._main_wake[1]))
        self._cond = self.sockets.cond
        self._iopub = None
        self._iopub_lock = threading.Lock()  # iopub is used by both threads
        # channels whose replies may go back together as one batch message: under the pure
        # scheme a C device, which forwards messages one by one, owns the task channel
        self._batch_channels = {"mux"} if info.get("task_scheme") == "pure" \
            else {"task", "mux"}
        self._io_thread = None
        self.user_ns = sys.modules["__main__"].__dict__

    @property
    def generation(self):
        """Registrations so far, less one (see _rejoin)."""
        return self.state.generation

    # -- registration -----------------------------------------------------------------------
    def connect(self, timeout=30.0):
        """Register with the hub, then start the heart and the IO thread."""
        self.context = self.context or make_context()
        self._registration_timeout = timeout
        self._register()
        ready = threading.Event()
        self._io_thread = threading.Thread(target=self._io_loop, args=(ready,),
                                           name="taskhub-engine-io", daemon=True)
        self._io_thread.start()
        ready.wait()
        return self.id

    def _new_uuid(self):
        return f"{self.tag}.{uuid.uuid4().hex}" if self.tag else uuid.uuid4().hex

    def _register(self):
        """Register as `self.uuid` and start a heart for it (raises RegistrationFailed)."""
        reply = self._request("registration_request",
                              {"uuid": self.uuid, "hostname": socket.gethostname(),
                               "pid": os.getpid(), "batches": True,
                               "versions": versions.local(), **self.extra_info},
                              self._registration_timeout)
        if reply["content"].get("status") != "ok":
            raise RegistrationFailed(f"the controller refused registration: "
                                     f"{reply['content'].get('evalue')}")
        self.id = reply["content"]["id"]
        self.heartbeat_period = reply["content"].get("heartbeat_period", 1.0)
        self.output_limit = reply["content"].get("output_limit", OUTPUT_LIMIT)
        self.incarnation = reply["content"].get("incarnation")  # see reconnect.py
        if reply["content"].get("batches") is not True:  # a hub that reads no batches
            self._batch_channels = set()
        self._heart = Heart(self.context, _url(self.info, "hb_ping"),
                            _url(self.info, "hb_pong"), self.uuid.encode(),
                            secure=lambda sock: curve.secure_client(sock, self.info)).start()

    def _request(self, msg_type, content, timeout):
        """One request/reply on a fresh DEALER to the hub's query socket."""
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 500
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
        try:
            _connect(sock, self.info, "query")
            self.session.send(sock, msg_type, content)
            if not sock.poll(timeout * 1000):
                raise RegistrationFailed(_no_answer(_url(self.info, "query"), timeout,
                                                    connected=bool(monitor.poll(0))))
            _, msg = self.session.feed(sock.recv_multipart())
            if msg is None:
                raise RegistrationFailed("the controller's reply failed the signature check "
                                         "(does this engine have the right connection file?)")
            return msg
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close()

    # -- the IO thread ----------------------------------------------------------------------
    def _io_loop(self, ready):
        socks = self._io_sockets()
        ready.set()
        clock = reconnect.ControllerClock(self.controller_timeout, self.reconnect_grace,
                                          time.monotonic(), self.incarnation)
        while not self._stopping.is_set():
            ping = self._io_turn(socks)
            if ping is not None:
                reconnect.on_ping(self, clock, ping, socks)
            if self.state.rejoin_asked and not self._stopping.is_set():
                socks = self._rejoin(socks)
                clock.last_ping = time.monotonic()
            elif clock.silent_too_long(time.monotonic()):
                log.error("no heartbeat from the controller for %.0fs, or no answer to "
                          "registering again; shutting down",
                          self.controller_timeout + self.reconnect_grace)
                self._begin_shutdown()
        self._unregister_quietly()
        owned = self.sockets.take(timeout=5.0)
        with self._cond, self._iopub_lock:
            self.sockets.close(socks, owned)
        os.close(self._io_wake[0])

    def _io_turn(self, socks):
        """Serve what is ready on the sockets, publish output, enforce time limits, send
        replies held back too long; the heartbeat that came from the controller, or None."""
        pinged = None
        for sock, _ in self._poller.poll(self._poll_timeout()):
            if sock is socks["ping"]:
                pinged = sock.recv()
            elif sock is socks["control"]:
                self._io_control(socks, sock.recv_multipart())
            else:  # the wake pipe: a time limit to watch, or replies held back
                _drain_pipe(self._io_wake[0])
        with self._iopub_lock:
            self._publish_output(socks["iopub"])
        self._carry_out(self.state.handle(Tick(time.monotonic())))
        notice = self.state.notices.take_due()
        if notice is not None:
            self._send_start_notice(*notice)
        if self.state.held and time.monotonic() >= self.state.held_until:
            with self._cond:  # only while the main thread runs a task (else it sends them)
                if self.sockets.shared():
                    self._send_held()
        return pinged

    def _io_sockets(self):
        """Connect the sockets of the current uuid, poll those of the IO thread from now on,
        say hello on the task channels; the task and mux sockets go to `sockets`."""
        ident = self.uuid.encode()
        socks = {}
        for name in ("mux", "task", "control"):
            sock = socks[name] = self.context.socket(zmq.DEALER)
            sock.routing_id = ident
            _connect(sock, self.info, name)
        socks["ping"] = self.context.socket(zmq.SUB)
        socks["ping"].subscribe(b"")
        _connect(socks["ping"], self.info, "hb_ping")
        socks["iopub"] = self.context.socket(zmq.XPUB)  # XPUB: it can refuse, not drop
        socks["iopub"].sndhwm = IOPUB_HWM
        socks["iopub"].setsockopt(zmq.XPUB_NODROP, 1)
        _connect(socks["iopub"], self.info, "iopub")
        self._poller = zmq.Poller()
        for sock in (socks["control"], socks["ping"]):
            self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._io_wake[0], zmq.POLLIN)
        for name in ("mux", "task", "control"):
            self.session.send(socks[name], "engine_ready", {"id": self.id})
        self._iopub = socks["iopub"]
        self.sockets.replace({"task": socks["task"], "mux": socks["mux"]})
        return socks

    def _rejoin(self, socks):
        """Register again, as a new engine, after the hub declared this one dead: what it
        was given to do has been failed or retried by now, so none of it may answer."""
        if not self.sockets.take(timeout=10.0):
            log.error("the main thread did not let go of the task sockets; shutting down")
            self._begin_shutdown()
            return socks
        try:
            return self._rejoin_with(socks)
        finally:
            self.sockets.give_back()

    def _rejoin_with(self, socks):
        with self._cond:
            stop = self.state.handle(Rejoin())
        self._carry_out(stop)
        self._heart.stop()
        with self._iopub_lock:
            for sock in socks.values():
                sock.close(linger=0)
            self._iopub = None
            self.sockets.replace({})
        old, self.uuid = self.id, self._new_uuid()
        try:
            self._register()
        except RegistrationFailed as e:
            log.error("could not rejoin the controller: %s; shutting down", e)
            self._begin_shutdown()
            return {}
        log.warning("the hub declared engine %s dead; rejoined as engine %s", old, self.id)
        with self._iopub_lock:
            return self._io_sockets()

    def _read_requests(self):
        """Read every request that has arrived into the queue (by whoever owns the task
        sockets: the main thread, or the IO thread under `_cond` while a task runs)."""
        for channel, sock in self.sockets.socks.items():
            while _get(sock, _EVENTS) & _POLLIN:  # no zmq.Again raised when nothing is there
                self._queue_request(channel, sock.recv_multipart(zmq.NOBLOCK))

    def _queue_request(self, channel, frames, in_batch=False):
        idents, msg = self.session.feed(frames)
        if msg is None:
            return
        if msg.msg_type == BATCH and not in_batch:  # tasks the hub sent together
            for sub in self.session.batch_parts(msg):
                self._queue_request(channel, sub, in_batch=True)
            return
        if msg.msg_type != "apply_request":
            return
        self.state.arrived(channel, idents, msg)

    def _io_control(self, socks, frames):
        idents, msg = self.session.feed(frames)
        if msg is None:
            return
        kind = msg.msg_type
        if kind == "rejoin_request":  # no reply: these sockets are about to go
            self.state.rejoin_asked = True
            return
        ids = msg["content"].get("msg_ids")
        ids = [m for m in ids if isinstance(m, str)] if isinstance(ids, list) else None
        if kind == "abort_request" and msg["content"].get("queued_only"):
            gave_back = self._control(AbortQueued(ids or []))[0]
            content = {"status": "ok", "aborted": gave_back.msg_ids}
        elif kind == "abort_request":  # no msg_ids: everything queued, but not what runs
            self._carry_out(self._control(Abort(ids)))
            content = {"status": "ok"}
        elif kind == "interrupt_request":
            self._carry_out(self.state.handle(Interrupt(ids)))
            content = {"status": "ok"}
        elif kind == "shutdown_request":
            content = {"status": "ok"}
        elif kind == "signal_request":
            content = signals.deliver(msg["content"].get("sig"), lambda exc: self._carry_out(
                self.state.handle(Interrupt(None))))  # SIGINT: as an interrupt_request
        else:
            content = {"status": "error", "ename": "ValueError",
                       "evalue": f"unknown control request {kind!r}"}
        reply_type = kind.replace("_request", "_reply")
        self.session.send(socks["control"], reply_type, content, parent=msg["header"],
                          idents=idents)
        if kind == "shutdown_request":
            self._begin_shutdown()

    def _control(self, event):
        """(IO thread) An abort, seen against every task queued here: while a task runs
        the requests behind it are still in the sockets, so they are read into the queue
        first; under `_cond`, so none is taken off the queue meanwhile."""
        with self._cond:
            if self.sockets.shared():
                self._read_requests()
            return self.state.handle(event)

    # -- stopping the running task (IO thread) ----------------------------------------------
    def _poll_timeout(self):
        """ms to wait for sockets (EngineState.io_wait_ms)."""
        pending = any(output.pending for output in list(self.outputs.values()))
        return self.state.io_wait_ms(time.monotonic(), pending, self._output_full)

    def _send_start_notice(self, channel, idents, header, started):
        """(IO thread) Tell the hub the running task started (startnotice.py)."""
        with self._cond:
            sock = self.sockets.socks.get(channel)
            if self.sockets.owner == TASK and not self.sockets.closed and sock is not None:
                self.session.send(sock, "task_started", {"started": started}, parent=header,
                                  idents=idents)

    def _carry_out(self, instructions):
        """(IO thread) Stop the running task as told: a stop request for the SIGINT
        handler, then the signal (none when run() is not on the main thread)."""
        for stop in instructions:
            if self._main_ident is not None:
                self._stops.put((stop.msg_id, stop.exception()))
                signal.pthread_kill(self._main_ident, signal.SIGINT)

    # -- replies (whoever owns the task sockets) --------------------------------------------
    def _send_held(self):
        """Send the replies held back, on their channels; those of an earlier generation
        are dropped (the hub gave up on them when it declared this engine dead)."""
        ready, dropped = self.state.take_replies(self.reply_log, time.monotonic())
        for msg_id in dropped:
            log.warning("dropped the reply to task %s: the hub gave up on it when it "
                        "declared this engine dead", msg_id)
        for channel, batch in ready.items():
            sock = self.sockets.socks.get(channel)
            if sock is None:
                continue
            if channel in self._batch_channels:
                self._send_replies(sock, batch)
            else:
                for frames in batch:
                    sock.send_multipart(frames, copy=False)

    def _send_replies(self, sock, replies):
        """Replies that are ready together go as one batch message; a lone one, or a big
        one, as itself — so a reply is never held back waiting for others."""
        if len(replies) > 1:
            small = []
            for frames in replies:
                if packable(frames):
                    small.append(frames)
                else:
                    sock.send_multipart(frames, copy=False)
            replies = small
        if len(replies) > 1:
            self.session.send(sock, BATCH, {"n": len(replies)},
                              buffers=[pack_frames(frames) for frames in replies])
        elif replies:
            sock.send_multipart(replies[0], copy=False)

    def _publish_output(self, iopub):
        full = False
        for output in list(self.outputs.values()):
            full |= not self._publish_chunks(iopub, output, PUBLISH_PER_TURN)
        self._output_full = full

    def _publish_chunks(self, iopub, output, max_chars=None):
        """Send what `output` has not published, up to `max_chars`, without waiting: what
        iopub has no room for goes back to `output`. Whether iopub took all it was given.
        The topic is the asking client's session, so the hub's iopub sends it to that
        client only (publisher-side filtering)."""
        chunks = output.take_unpublished(max_chars)
        topic = str(output.parent.get("session", "")).encode()
        for i, (name, text) in enumerate(chunks):
            msg_type, content, buffers = iopub_message(name, text)
            frames, _ = self.session.serialize(
                msg_type, content, parent=output.parent, metadata={"engine_id": self.id},
                idents=[topic], buffers=buffers)
            try:
                iopub.send_multipart(frames, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                output.unpublish(chunks[i:])
                return False
        return True

    def _publish_last(self, output):
        """(main thread) The rest of a finished task's output, before its reply; waits up to
        FINAL_OUTPUT_WAIT for room on iopub (the hub relays it meanwhile), then drops what
        is left: the reply's metadata still has the start of it."""
        output.release()
        if not output.pending:  # most tasks: the IO thread published it all, or none came
            return
        deadline = time.monotonic() + FINAL_OUTPUT_WAIT
        while True:
            with self._iopub_lock:
                if self.sockets.closed or self._iopub is None or \
                        self._publish_chunks(self._iopub, output):  # (None: rejoining)
                    return
            if time.monotonic() >= deadline:
                log.warning("dropped %d chars of output of task %s: iopub stayed full",
                            output.pending, output.parent.get("msg_id"))
                return
            if self._stopping.wait(0.005):  # room comes as the hub reads: no wake-up to
                return                         # wait on

    def _unregister_quietly(self):
        try:
            self._request("unregistration_request", {"uuid": self.uuid}, timeout=1.0)
        except Exception:  # the controller may be gone: that is why we are stopping
            pass

    def _begin_shutdown(self):
        self._stopping.set()
        for output in list(self.outputs.values()):
            output.release()  # a task waiting for room on iopub would wait for ever
        _poke(self._main_wake[1])
        self.sockets.notify()

    # -- the main thread: running tasks -----------------------------------------------------
    def run(self):
        """Execute requests until shut down (call on the main thread)."""
        router = OutputRouter.install()
        self._install_sigint()
        try:
            if self.sockets.serve():
                self._serve(router)
        finally:
            # what is done goes out; what is queued is not run
            self.sockets.stop_serving(self._send_held)
            router.uninstall()
            self._task_env.restore()
            if self._main_ident is not None:
                self._main_ident = None
                signal.signal(signal.SIGINT, self._previous_sigint)
            if self._io_thread is not None:
                self._io_thread.join(5)
            os.close(self._main_wake[0])

    def _serve(self, router):
        """The main loop: the main thread owns the task sockets here, except while it runs a
        task or lends them to the IO thread."""
        poller, version = None, None
        state, sockets = self.state, self.sockets
        queue_ = state.queue
        while not self._stopping.is_set():
            if sockets.io_wants and not sockets.lend():
                return
            if version != sockets.version:
                poller, version = self._main_poller(), sockets.version
            self._read_requests()
            if not queue_:
                if state.held:
                    self._send_held()  # nothing queued behind them: they go at once
                for sock, _ in poller.poll(state.main_wait_ms(time.monotonic())):
                    if sock is self._main_wake[0]:
                        _drain_pipe(sock)
                continue
            if state.held and state.replies_due(time.monotonic()):
                self._send_held()
            with self._cond:
                task = state.take()
            if task is None:
                continue  # a cancel came between, or the hub gave up on them (see _rejoin)
            channel, idents, msg, generation, aborted = task
            frames = _aborted() if aborted else self._execute(router, channel, idents, msg)
            if frames is None:  # the IO thread closed the sockets while the task ran
                return
            frames = self._reply_frames(idents, msg, *frames)
            output = self.outputs.get(msg.msg_id)
            if output is not None:  # the last of its output goes before the reply
                self._publish_last(output)
                self.outputs.pop(msg.msg_id, None)
            state.hold(channel, msg.msg_id, generation, frames, time.monotonic())
            if not queue_:
                self._send_held()  # nothing queued behind it: no reason to wait

    def _main_poller(self):
        poller = zmq.Poller()
        for sock in self.sockets.socks.values():
            poller.register(sock, zmq.POLLIN)
        poller.register(self._main_wake[0], zmq.POLLIN)
        return poller

    def _install_sigint(self):
        """Route SIGINT through `_on_sigint` (only possible on the main thread; elsewhere
        running tasks cannot be stopped)."""
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            self._main_ident = threading.get_ident()

    def _on_sigint(self, signum, frame):
        requests = []
        while True:
            try:
                requests.append(self._stops.get_nowait())
            except queue.Empty:
                break
        if not requests:  # not ours: Ctrl-C, or the launcher stopping us
            previous = self._previous_sigint
            if callable(previous):
                return previous(signum, frame)
            if previous == signal.SIG_DFL:
                raise KeyboardInterrupt
            return None
        running = self.state.running
        for msg_id, exc in requests:
            if running is not None and msg_id == running[0]:
                raise exc
        return None

    def _execute(self, router, channel, idents, msg):
        """(content, metadata, buffers) of the reply to one apply_request; None if the task
        sockets were closed while it ran (the engine is stopping)."""
        output = TaskOutput(msg["header"], self.output_limit)
        self.outputs[msg.msg_id] = output
        started = utcnow().isoformat()
        limit = _time_limit(msg["metadata"])
        self.state.notices.begin(channel, idents, msg["header"], started)
        self.sockets.release()  # the IO thread may use them while the task runs; it is woken
        if self.state.wants_io(limit):  # for a time limit to enforce, or held replies
            _poke(self._io_wake[1])
        router.current = output  # (not router.capturing(): a generator's cost, per task)
        try:
            content, buffers = self._call(msg, limit)
        finally:
            router.current = None
            self.state.notices.end()
            owned = self.sockets.reclaim()
        if not owned:
            return None
        if self.state.aborted:  # (seen empty, an abort can only come after: not under _cond)
            with self._cond:
                self.state.finished(msg.msg_id)  # an abort that came while it ran
        md = {"status": content["status"], "started": started,
              "completed": utcnow().isoformat()}
        for name in ("stdout", "stderr"):  # left out when empty: the hub then records the
            text = output.text(name)       # metadata's JSON as it comes (no re-encoding)
            if text:
                md[name] = text
        md.update(output.rich_metadata())
        if output.truncated():
            md["output_truncated"] = output.truncated()
        return content, md, buffers

    def _call(self, msg, limit):
        f = args = kwargs = None
        state = self.state
        try:
            try:  # begun inside: a stop raised as it begins still ends it
                state.begin(msg.msg_id, limit, time.monotonic())
                f, args, kwargs = strategies.unpack_apply(msg["buffers"], self.fcache)
                if state.aborted:  # an abort between take and begin found no task to stop
                    with self._cond:
                        if state.aborted_as_it_began(msg.msg_id):
                            raise Stop("TaskAborted", "aborted as it started")
                self._task_env.enter(msg["metadata"])  # TASKHUB_DEPTH, its group, …
                if msg["content"].get("map"):
                    result = callables.run_map(f, args)
                else:
                    result = f(*args, **kwargs)
            finally:
                state.end()
        except BaseException as e:  # noqa: B902 - user code may raise anything, even SystemExit
            if f is None:  # the request itself could not be read: say what this engine runs
                content = _error_content(e, skip=1, note=versions.UNPACK_NOTE)
                content["versions"] = versions.local()
                return content, []
            content = _error_content(e, skip=1)
            content["call"] = callables.describe_failure(e, f, args, kwargs)
            return content, []
        try:
            return strategies.dump_result(result, msg["metadata"])
        except Exception as e:
            return _error_content(e, note="the task's result could not be serialized"), []

    def _reply_frames(self, idents, msg, content, md, buffers):
        md.update(engine_id=self.id, engine_uuid=self.uuid)
        header = msg["raw"][1]  # the request's header frame: sent back, not re-encoded
        frames, _ = self.session.serialize(
            "apply_reply", content, parent=header if header.__class__ is bytes else msg["header"],
            metadata=md, buffers=buffers, idents=idents)
        return frames

    def shutdown(self):
        """Stop serving (from any thread): the main loop ends after the current task."""
        self._begin_shutdown()


def _pipe():
    """A non-blocking pipe (read fd, write fd) that wakes a thread polling its read end."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _poke(fd):
    """Wake whoever polls the pipe whose write end is `fd` (from any thread, even a signal
    handler); a full pipe already wakes it, a closed one has nobody left to wake."""
    try:
        os.write(fd, b"\0")
    except (BlockingIOError, OSError):
        pass


def _drain_pipe(fd):
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _no_answer(url, timeout, connected):
    """Why registration got no answer: no TCP connection at all, or no reply on one."""
    if not connected:
        return (f"could not reach the controller at {url}: no TCP connection within "
                f"{timeout:g}s. Is the controller running, listening on that address (it binds "
                "127.0.0.1 unless started with --ip), and is the address reachable from "
                f"{socket.gethostname()}? (ipcluster --location sets the address engines use)")
    return (f"the controller at {url} accepted a connection but did not answer within "
            f"{timeout:g}s (are the connection file's key and CurveZMQ keys this "
            "controller's?)")


def _aborted():
    """(content, metadata, buffers) of the reply to a task aborted before it ran."""
    return ({"status": "error", "ename": "TaskAborted", "evalue": "aborted before it ran",
             "traceback": ""}, {"status": "aborted"}, [])


def _time_limit(md):
    """The request's time_limit in seconds, or None (the hub checked it; a direct request
    was not checked, so anything but a positive number means no limit)."""
    limit = md.get("time_limit")
    ok = isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0
    return limit if ok else None


def _error_content(exc, skip=0, note=None):
    tb = exc.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    ename, evalue = type(exc).__name__, str(exc)
    if isinstance(exc, (Stop, RemoteError)):  # already split into a name and a value
        ename, evalue = exc.ename, exc.evalue
    if isinstance(exc, Stop):  # show where the task was, under the name the user sees
        text = "".join(["Traceback (most recent call last):\n", *traceback.format_tb(tb),
                        f"{ename}: {evalue}\n"])
    else:
        text = getattr(exc, "taskhub_traceback", None) or \
            "".join(traceback.format_exception(type(exc), exc, tb))
    if note is not None:
        evalue = f"{note}: {evalue}"
    content = {"status": "error", "ename": ename, "evalue": evalue, "traceback": text}
    if hasattr(exc, "reply_fields"):  # e.g. a shell task's returncode and output
        content.update(exc.reply_fields())
    return content


class Heart:
    """Echoes the hub's pings back as pongs, named by the engine's uuid: a zmq proxy in C
    on a thread of its own, needing no GIL, so even a task holding the GIL in C code never
    looks dead. `stop()` ends it (an engine that rejoins needs a heart for its new uuid)."""

    def __init__(self, context, ping_url, pong_url, identity, secure=lambda sock: None):
        self.context = context
        self.secure = secure  # (socket): the cluster's CurveZMQ keys, before connecting
        self.urls = (ping_url, pong_url)
        self.identity = identity
        self._control_url = f"inproc://taskhub-heart-{identity.decode()}"
        self._thread = None

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(ready,), daemon=True,
                                        name="taskhub-heart")
        self._thread.start()
        ready.wait()
        return self

    def _beat(self, ready):
        ping, pong, control = (self.context.socket(kind)
                               for kind in (zmq.SUB, zmq.DEALER, zmq.PAIR))
        ping.subscribe(b"")
        pong.routing_id = self.identity
        control.bind(self._control_url)
        self.secure(ping)
        self.secure(pong)
        ping.connect(self.urls[0])
        pong.connect(self.urls[1])
        ready.set()
        try:
            zmq.proxy_steerable(ping, pong, None, control)
        except zmq.ZMQError:  # the context ended under it: the process is exiting
            pass
        finally:
            for sock in (ping, pong, control):
                sock.close(linger=0)

    def stop(self, timeout=5.0):
        stopper = self.context.socket(zmq.PAIR)
        stopper.connect(self._control_url)
        stopper.send(b"TERMINATE")
        stopper.close(linger=1000)
        self._thread.join(timeout)
