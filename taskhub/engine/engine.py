"""An engine: registers with the hub, runs tasks on its main thread, answers control at once.

    IO thread (owns every socket but the heart's)          main thread
      mux / task DEALER ── apply_request ──▶ work queue ──▶ execute: f(*args) with
      control DEALER ── abort, interrupt, shutdown:         stdout/stderr captured
                        handled here, even while a task runs        │
      time limits: watched here ── SIGINT + a stop request ──▶ raised in the task
      iopub PUB ◀── output chunks, published as they come           │
      replies deque ◀── (one inproc wake per idle IO thread) ◀──────┘
    heart: a C-level zmq proxy thread (ping SUB → pong DEALER) that needs no GIL, so a
    long task, even one holding the GIL in C code, never looks dead.

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

The engine's namespace is `__main__`'s: names pushed by a DirectView, and the globals of
functions shipped from a client's `__main__`, resolve there.
"""
import collections
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

from .. import callables, nesting, serialize, strategies
from ..error import RemoteError
from ..session import BATCH, Session, pack_frames, packable, unpack_frames, utcnow
from ..zmqsocket import make_context
from .capture import OutputRouter, TaskOutput

log = logging.getLogger("taskhub.engine")

_STOP = object()
BATCH_GATHER = 0.0005  # see Engine._io_outbox
BATCH_GATHER_MAX = 64


class RegistrationFailed(RuntimeError):
    pass


class _Stop(BaseException):
    """Raised in a running task to stop it; a BaseException so `except Exception` in user
    code does not swallow it."""

    def __init__(self, ename, evalue):
        super().__init__(evalue)
        self.ename, self.evalue = ename, evalue


def _url(info, port_name):
    return f"tcp://{info['ip']}:{info['ports'][port_name]}"


class Engine:
    """One engine process. `connect(timeout)` registers; `run()` serves until shut down."""

    def __init__(self, info, key, controller_timeout=30.0, context=None, tag=None,
                 extra_info=None):
        self.info = info
        self.session = Session(key)
        # A launcher's tag in front lets it name this engine to the hub when its process
        # or job ends (taskhub/cluster/watch.py).
        self.tag = tag
        self.uuid = self._new_uuid()
        self.extra_info = dict(extra_info or {})  # e.g. {"mpi": {"rank": r, "size": s}}
        self.id = None
        self.generation = 0          # registrations so far, less one; see _rejoin
        self._rejoin_asked = False
        self._heart = None
        self._poller = None          # the IO thread's, over its current sockets
        self._registration_timeout = 30.0
        self.controller_timeout = controller_timeout
        self.context = context
        self.work = queue.Queue()
        self.aborted = set()
        self.outputs = {}            # msg_id -> TaskOutput of the running task
        self._running = None         # (msg_id, deadline, time_limit) of the task running now
        self._stops = queue.SimpleQueue()  # (msg_id, exception) for the SIGINT handler
        self._timed_out = None       # msg_id whose time limit was already enforced
        self._previous_sigint = signal.SIG_DFL
        self._main_ident = None
        self.fcache = serialize.FunctionCache()
        self._stopping = threading.Event()
        self._outbox_url = f"inproc://taskhub-engine-out-{self.uuid}"
        # Replies go from the main thread to the IO thread through a deque; the inproc
        # socket only wakes the IO thread, once per batch of replies it has not yet seen
        self._replies = collections.deque()
        # channels whose replies may go back together as one batch message: under the pure
        # scheme a C device, which forwards messages one by one, owns the task channel
        self._batch_channels = {"mux"} if info.get("task_scheme") == "pure" \
            else {"task", "mux"}
        self._wake_pending = False
        self._io_thread = None
        self.user_ns = sys.modules["__main__"].__dict__

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
                               "pid": os.getpid(), "batches": True, **self.extra_info},
                              self._registration_timeout)
        if reply["content"].get("status") != "ok":
            raise RegistrationFailed(f"the controller refused registration: "
                                     f"{reply['content'].get('evalue')}")
        self.id = reply["content"]["id"]
        self.heartbeat_period = reply["content"].get("heartbeat_period", 1.0)
        if reply["content"].get("batches") is not True:  # a hub that reads no batches
            self._batch_channels = set()
        self._heart = Heart(self.context, _url(self.info, "hb_ping"),
                            _url(self.info, "hb_pong"), self.uuid.encode()).start()

    def _request(self, msg_type, content, timeout):
        """One request/reply on a fresh DEALER to the hub's query socket."""
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 500
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
        try:
            sock.connect(_url(self.info, "query"))
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
        outbox = self.context.socket(zmq.PULL)
        outbox.bind(self._outbox_url)
        ready.set()
        socks = self._io_sockets(outbox)
        last_ping = time.monotonic()
        while not self._stopping.is_set():
            if self._io_turn(socks, outbox):
                last_ping = time.monotonic()
            if self._rejoin_asked and not self._stopping.is_set():
                socks = self._rejoin(socks, outbox)
                last_ping = time.monotonic()
            elif time.monotonic() - last_ping > self.controller_timeout:
                log.error("no heartbeat from the controller for %.0fs; shutting down",
                          self.controller_timeout)
                self._begin_shutdown()
        self._unregister_quietly()
        for sock in (*socks.values(), outbox):
            sock.close(linger=500)

    def _io_turn(self, socks, outbox):
        """Serve what is ready on the sockets, publish output, enforce time limits; whether
        a heartbeat came from the controller."""
        pinged = False
        for sock, _ in self._poller.poll(self._poll_timeout()):
            if sock is outbox:
                self._io_outbox(socks, outbox)
            elif sock is socks["ping"]:
                sock.recv()
                pinged = True
            elif sock is socks["control"]:
                self._io_control(socks, sock.recv_multipart())
            else:
                self._io_request("mux" if sock is socks["mux"] else "task",
                                 sock.recv_multipart())
        self._publish_output(socks["iopub"])
        self._enforce_time_limit()
        return pinged

    def _io_sockets(self, outbox):
        """Connect the sockets of the current uuid, poll them (and `outbox`) from now on,
        and say hello on the task channels."""
        ident = self.uuid.encode()
        socks = {}
        for name in ("mux", "task", "control"):
            sock = socks[name] = self.context.socket(zmq.DEALER)
            sock.routing_id = ident
            sock.connect(_url(self.info, name))
        socks["ping"] = self.context.socket(zmq.SUB)
        socks["ping"].subscribe(b"")
        socks["ping"].connect(_url(self.info, "hb_ping"))
        socks["iopub"] = self.context.socket(zmq.PUB)
        socks["iopub"].connect(_url(self.info, "iopub"))
        self._poller = zmq.Poller()
        for sock in (socks["mux"], socks["task"], socks["control"], socks["ping"], outbox):
            self._poller.register(sock, zmq.POLLIN)
        for name in ("mux", "task", "control"):
            self.session.send(socks[name], "engine_ready", {"id": self.id})
        return socks

    def _rejoin(self, socks, outbox):
        """Register again, as a new engine, after the hub declared this one dead: what it
        was given to do has been failed or retried by now, so none of it may answer."""
        self._rejoin_asked = False
        self.generation += 1  # queued work of earlier generations is skipped, replies dropped
        self.aborted.clear()
        self._stop_running(None, _Stop("EngineError", "the hub declared this engine dead "
                                       "while the task ran"))
        self._heart.stop()
        for sock in socks.values():
            sock.close(linger=0)
        old, self.uuid = self.id, self._new_uuid()
        try:
            self._register()
        except RegistrationFailed as e:
            log.error("could not rejoin the controller: %s; shutting down", e)
            self._begin_shutdown()
            return {}
        log.warning("the hub declared engine %s dead; rejoined as engine %s", old, self.id)
        return self._io_sockets(outbox)

    def _io_request(self, channel, frames, in_batch=False):
        idents, msg = self.session.feed(frames)
        if msg is None:
            return
        if msg.msg_type == BATCH and not in_batch:  # tasks the hub sent together
            for part in msg["buffers"]:
                try:
                    sub = unpack_frames(part)
                except ValueError:
                    self.session.dropped["undecodable"] += 1
                    continue
                self._io_request(channel, sub, in_batch=True)
            return
        if msg.msg_type != "apply_request":
            return
        self.work.put((channel, idents, msg, self.generation))

    def _io_control(self, socks, frames):
        idents, msg = self.session.feed(frames)
        if msg is None:
            return
        kind = msg.msg_type
        if kind == "rejoin_request":  # no reply: these sockets are about to go
            self._rejoin_asked = True
            return
        ids = msg["content"].get("msg_ids")
        ids = [m for m in ids if isinstance(m, str)] if isinstance(ids, list) else None
        if kind == "abort_request" and msg["content"].get("queued_only"):
            content = {"status": "ok", "aborted": self._abort_queued(ids or [])}
        elif kind == "abort_request":  # no msg_ids: everything queued, but not what runs
            if ids is not None:
                self._stop_running(ids, _Stop("TaskAborted", "aborted while it ran"))
            self.aborted.update(self._queued_ids() if ids is None else ids)
            content = {"status": "ok"}
        elif kind == "interrupt_request":
            self._stop_running(ids, KeyboardInterrupt())
            content = {"status": "ok"}
        elif kind == "shutdown_request":
            content = {"status": "ok"}
        else:
            content = {"status": "error", "ename": "ValueError",
                       "evalue": f"unknown control request {kind!r}"}
        reply_type = kind.replace("_request", "_reply")
        self.session.send(socks["control"], reply_type, content, parent=msg["header"],
                          idents=idents)
        if kind == "shutdown_request":
            self._begin_shutdown()

    def _queued_ids(self):
        with self.work.mutex:
            return [item[2].msg_id for item in self.work.queue if item is not _STOP]

    def _abort_queued(self, msg_ids):
        """Mark those of msg_ids still queued never to run (a cancel: the running task is
        left alone). Under the queue's lock, so none is taken off the queue meanwhile."""
        with self.work.mutex:
            queued = {item[2].msg_id for item in self.work.queue if item is not _STOP}
            taken = [m for m in msg_ids if m in queued]
            self.aborted.update(taken)
        return taken

    # -- stopping the running task (IO thread) ----------------------------------------------
    def _poll_timeout(self):
        """ms to wait for sockets: short while a task runs, to publish output and to stop
        it close to its time limit."""
        running = self._running
        if running is None:
            return 500
        deadline = running[1]
        if deadline is None or self._timed_out == running[0]:
            return 100
        return max(0, min(100, int((deadline - time.monotonic()) * 1000) + 1))

    def _enforce_time_limit(self):
        running = self._running
        if (running is not None and running[1] is not None
                and time.monotonic() >= running[1] and self._timed_out != running[0]):
            self._timed_out = running[0]
            self._stop_running([running[0]], _Stop(
                "TaskTimeout", f"the task ran longer than its time limit of {running[2]:g}s "
                "and was interrupted"))

    def _stop_running(self, msg_ids, exc):
        """Raise `exc` in the running task if it is one of `msg_ids` (None: any); whether
        a task was asked to stop."""
        running = self._running
        if running is None or self._main_ident is None or (
                msg_ids is not None and running[0] not in msg_ids):
            return False
        self._stops.put((running[0], exc))
        signal.pthread_kill(self._main_ident, signal.SIGINT)
        return True

    def _io_outbox(self, socks, outbox):
        """Send every reply the main thread has finished. The wake flag is cleared before
        the deque is read, so a reply appended after this read sends a wake of its own.

        While more tasks wait in the queue (a map's), replies come in quick succession:
        waiting BATCH_GATHER seconds first lets the next ones join this batch rather than
        cost a wake and a message each. A reply with nothing queued behind it goes at once."""
        if self.work.qsize() and len(self._replies) < BATCH_GATHER_MAX:
            time.sleep(BATCH_GATHER)
        while True:
            try:
                outbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        self._wake_pending = False
        replies = self._replies
        ready = {}  # channel -> frames of the replies to send now, in order
        while replies:
            channel, msg_id, generation, frames = replies.popleft()
            output = self.outputs.pop(msg_id, None)
            if generation != self.generation:
                log.warning("dropped the reply to task %s: the hub gave up on it when it "
                            "declared this engine dead", msg_id)
                continue
            if output is not None:
                self._publish_chunks(socks["iopub"], output)
            ready.setdefault(channel, []).append(frames)
        for channel, batch in ready.items():
            sock = socks.get(channel)
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
        for output in list(self.outputs.values()):
            self._publish_chunks(iopub, output)

    def _publish_chunks(self, iopub, output):
        for name, text in output.take_unpublished():
            self.session.send(iopub, "stream", {"name": name, "text": text},
                              parent=output.parent, metadata={"engine_id": self.id})

    def _unregister_quietly(self):
        try:
            self._request("unregistration_request", {"uuid": self.uuid}, timeout=1.0)
        except Exception:  # the controller may be gone: that is why we are stopping
            pass

    def _begin_shutdown(self):
        self._stopping.set()
        self.work.put(_STOP)

    # -- the main thread: running tasks -----------------------------------------------------
    def run(self):
        """Execute requests until shut down (call on the main thread)."""
        router = OutputRouter.install()
        out = self.context.socket(zmq.PUSH)
        out.sndtimeo = 100  # see _hand_over
        out.connect(self._outbox_url)
        self._install_sigint()
        try:
            while True:
                item = self.work.get()
                if item is _STOP or self._stopping.is_set():
                    break  # shutting down: what is still queued is not run
                channel, idents, msg, generation = item
                if generation != self.generation:
                    continue  # the hub gave up on it (see _rejoin)
                frames = self._execute(router, msg)
                self._replies.append((channel, msg.msg_id, generation,
                                      self._reply_frames(idents, msg, *frames)))
                if not self._wake_pending:
                    self._wake_pending = True
                    self._hand_over(out, [b""])
        finally:
            out.close(linger=1000)
            router.uninstall()
            if self._main_ident is not None:
                self._main_ident = None
                signal.signal(signal.SIGINT, self._previous_sigint)
            if self._io_thread is not None:
                self._io_thread.join(5)

    def _hand_over(self, out, frames):
        """Wake the IO thread to send the replies queued for it. Once it has stopped
        (shutting down) nobody reads the outbox, and a plain send could block forever; the
        replies are dropped instead, and the hub fails the tasks as it does for any engine
        that goes away."""
        while not self._stopping.is_set():
            try:
                return out.send_multipart(frames, copy=False)
            except zmq.Again:
                continue

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
        running = self._running
        for msg_id, exc in requests:
            if running is not None and msg_id == running[0]:
                raise exc
        return None

    def _execute(self, router, msg):
        """(content, metadata, buffers) of the reply to one apply_request."""
        if msg.msg_id in self.aborted:
            self.aborted.discard(msg.msg_id)
            return ({"status": "error", "ename": "TaskAborted", "evalue": "aborted before it ran",
                     "traceback": ""}, {"status": "aborted"}, [])
        output = TaskOutput(msg["header"])
        self.outputs[msg.msg_id] = output
        started = utcnow()
        with router.capturing(output):
            content, buffers = self._call(msg)
        self.aborted.discard(msg.msg_id)  # an abort that came while it ran
        md = {"status": content["status"], "started": started.isoformat(),
              "completed": utcnow().isoformat(), "stdout": output.text("stdout"),
              "stderr": output.text("stderr")}
        return content, md, buffers

    def _call(self, msg):
        limit = _time_limit(msg["metadata"])
        f = args = kwargs = None
        try:
            self._running = (msg.msg_id, time.monotonic() + limit if limit else None, limit)
            try:
                f, args, kwargs = strategies.unpack_apply(msg["buffers"], self.fcache)
                with nesting.task_environment(msg["metadata"]):  # TASKHUB_DEPTH and group
                    if msg["content"].get("map"):
                        result = callables.run_map(f, args)
                    else:
                        result = f(*args, **kwargs)
            finally:
                self._running = None
        except BaseException as e:  # noqa: B902 - user code may raise anything, even SystemExit
            content = _error_content(e, skip=1)
            content["call"] = callables.describe_failure(e, f, args, kwargs)
            return content, []
        try:
            return strategies.dump_result(result, msg["metadata"])
        except Exception as e:
            return _error_content(e, note="the task's result could not be serialized"), []

    def _reply_frames(self, idents, msg, content, md, buffers):
        md.update(engine_id=self.id, engine_uuid=self.uuid)
        frames, _ = self.session.serialize("apply_reply", content, parent=msg["header"],
                                           metadata=md, buffers=buffers, idents=idents)
        return frames

    def shutdown(self):
        """Stop serving (from any thread): the main loop ends after the current task."""
        self._begin_shutdown()


def _no_answer(url, timeout, connected):
    """Why registration got no answer: no TCP connection at all, or no reply on one."""
    if not connected:
        return (f"could not reach the controller at {url}: no TCP connection within "
                f"{timeout:g}s. Is the controller running, listening on that address (it binds "
                "127.0.0.1 unless started with --ip), and is the address reachable from "
                f"{socket.gethostname()}? (ipcluster --location sets the address engines use)")
    return (f"the controller at {url} accepted a connection but did not answer within "
            f"{timeout:g}s (is the connection file's key this controller's?)")


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
    if isinstance(exc, (_Stop, RemoteError)):  # already split into a name and a value
        ename, evalue = exc.ename, exc.evalue
    if isinstance(exc, _Stop):  # show where the task was, under the name the user sees
        text = "".join(["Traceback (most recent call last):\n", *traceback.format_tb(tb),
                        f"{ename}: {evalue}\n"])
    else:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    if note is not None:
        evalue = f"{note}: {evalue}"
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": text}


class Heart:
    """Echoes the hub's pings back as pongs, named by the engine's uuid: a zmq proxy in C
    on a thread of its own, needing no GIL, so even a task holding the GIL in C code never
    looks dead. `stop()` ends it (an engine that rejoins needs a heart for its new uuid)."""

    def __init__(self, context, ping_url, pong_url, identity):
        self.context = context
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
