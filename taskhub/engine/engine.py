"""An engine: registers with the hub, runs tasks on its main thread, answers control at once.

    IO thread (owns every socket but the heart's)          main thread
      mux / task DEALER ── apply_request ──▶ work queue ──▶ execute: f(*args) with
      control DEALER ── abort, shutdown: handled here,      stdout/stderr captured
                        even while a task runs                      │
      iopub PUB ◀── output chunks, published as they come           │
      outbox PULL ◀──────────── replies ◀──── inproc PUSH ◀─────────┘
    heart: a C-level zmq device thread (ping SUB → pong DEALER) that needs no GIL, so a
    long task, even one holding the GIL in C code, never looks dead.

The engine's namespace is `__main__`'s: names pushed by a DirectView, and the globals of
functions shipped from a client's `__main__`, resolve there.
"""
import logging
import os
import queue
import socket
import sys
import threading
import time
import traceback
import uuid

import zmq
from zmq.devices import ThreadDevice

from .. import serialize
from ..session import Session, utcnow
from .capture import OutputRouter, TaskOutput

log = logging.getLogger("taskhub.engine")

_STOP = object()


class RegistrationFailed(RuntimeError):
    pass


def _url(info, port_name):
    return f"tcp://{info['ip']}:{info['ports'][port_name]}"


class Engine:
    """One engine process. `connect(timeout)` registers; `run()` serves until shut down."""

    def __init__(self, info, key, controller_timeout=30.0, context=None):
        self.info = info
        self.session = Session(key)
        self.uuid = uuid.uuid4().hex
        self.id = None
        self.controller_timeout = controller_timeout
        self.context = context
        self.work = queue.Queue()
        self.aborted = set()
        self.outputs = {}            # msg_id -> TaskOutput of the running task
        self.fcache = serialize.FunctionCache()
        self._stopping = threading.Event()
        self._outbox_url = f"inproc://taskhub-engine-out-{self.uuid}"
        self._io_thread = None
        self.user_ns = sys.modules["__main__"].__dict__

    # -- registration -----------------------------------------------------------------------
    def connect(self, timeout=30.0):
        """Register with the hub, then start the heart and the IO thread."""
        self.context = self.context or zmq.Context()
        reply = self._request("registration_request",
                              {"uuid": self.uuid, "hostname": socket.gethostname(),
                               "pid": os.getpid()}, timeout)
        if reply["content"].get("status") != "ok":
            raise RegistrationFailed(f"the controller refused registration: "
                                     f"{reply['content'].get('evalue')}")
        self.id = reply["content"]["id"]
        self.heartbeat_period = reply["content"].get("heartbeat_period", 1.0)
        self._start_heart()
        ready = threading.Event()
        self._io_thread = threading.Thread(target=self._io_loop, args=(ready,),
                                           name="taskhub-engine-io", daemon=True)
        self._io_thread.start()
        ready.wait()
        return self.id

    def _request(self, msg_type, content, timeout):
        """One request/reply on a fresh DEALER to the hub's query socket."""
        sock = self.context.socket(zmq.DEALER)
        sock.linger = 500
        try:
            sock.connect(_url(self.info, "query"))
            self.session.send(sock, msg_type, content)
            if not sock.poll(timeout * 1000):
                raise RegistrationFailed(
                    f"no answer from the controller at {_url(self.info, 'query')} "
                    f"within {timeout:g}s (is it running? is the address reachable?)")
            _, msg = self.session.feed(sock.recv_multipart())
            if msg is None:
                raise RegistrationFailed("the controller's reply failed the signature check "
                                         "(does this engine have the right connection file?)")
            return msg
        finally:
            sock.close()

    def _start_heart(self):
        heart = ThreadDevice(zmq.FORWARDER, zmq.SUB, zmq.DEALER)
        heart.context_factory = lambda: self.context
        heart.setsockopt_in(zmq.SUBSCRIBE, b"")
        heart.setsockopt_out(zmq.ROUTING_ID, self.uuid.encode())
        heart.setsockopt_in(zmq.LINGER, 0)
        heart.setsockopt_out(zmq.LINGER, 0)
        heart.connect_in(_url(self.info, "hb_ping"))
        heart.connect_out(_url(self.info, "hb_pong"))
        heart.daemon = True
        heart.start()

    # -- the IO thread ----------------------------------------------------------------------
    def _io_loop(self, ready):
        socks = self._io_sockets()
        outbox = self.context.socket(zmq.PULL)
        outbox.bind(self._outbox_url)
        ready.set()
        for name in ("mux", "task", "control"):
            self.session.send(socks[name], "engine_ready", {"id": self.id})
        poller = zmq.Poller()
        for sock in (socks["mux"], socks["task"], socks["control"], socks["ping"], outbox):
            poller.register(sock, zmq.POLLIN)
        last_ping = time.monotonic()
        while not self._stopping.is_set():
            for sock, _ in poller.poll(100 if self.outputs else 500):
                if sock is outbox:
                    self._io_outbox(socks, outbox.recv_multipart(copy=False))
                elif sock is socks["ping"]:
                    sock.recv()
                    last_ping = time.monotonic()
                elif sock is socks["control"]:
                    self._io_control(socks, sock.recv_multipart())
                else:
                    self._io_request("mux" if sock is socks["mux"] else "task",
                                     sock.recv_multipart())
            self._publish_output(socks["iopub"])
            if time.monotonic() - last_ping > self.controller_timeout:
                log.error("no heartbeat from the controller for %.0fs; shutting down",
                          self.controller_timeout)
                self._begin_shutdown()
        self._unregister_quietly()
        for sock in (*socks.values(), outbox):
            sock.close(linger=500)

    def _io_sockets(self):
        ident = self.uuid.encode()
        socks = {}
        for name in ("mux", "task", "control"):
            sock = socks[name] = self.context.socket(zmq.DEALER)
            sock.routing_id = ident
            sock.connect(_url(self.info, name))
        socks["iopub"] = self.context.socket(zmq.PUB)
        socks["iopub"].connect(_url(self.info, "iopub"))
        socks["ping"] = self.context.socket(zmq.SUB)
        socks["ping"].subscribe(b"")
        socks["ping"].connect(_url(self.info, "hb_ping"))
        return socks

    def _io_request(self, channel, frames):
        idents, msg = self.session.feed(frames)
        if msg is None or msg.msg_type != "apply_request":
            return
        self.work.put((channel, idents, msg))

    def _io_control(self, socks, frames):
        idents, msg = self.session.feed(frames)
        if msg is None:
            return
        kind = msg.msg_type
        if kind == "abort_request":
            ids = msg["content"].get("msg_ids")
            self.aborted.update(ids if isinstance(ids, list) else self._queued_ids())
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

    def _io_outbox(self, socks, frames):
        channel, msg_id = frames[0].bytes.decode(), frames[1].bytes.decode()
        output = self.outputs.pop(msg_id, None)
        if output is not None:
            self._publish_chunks(socks["iopub"], output)
        socks[channel].send_multipart(frames[2:], copy=False)

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
        out.connect(self._outbox_url)
        try:
            while True:
                item = self.work.get()
                if item is _STOP:
                    break
                channel, idents, msg = item
                frames = self._execute(router, msg)
                out.send_multipart([channel.encode(), msg.msg_id.encode(),
                                    *self._reply_frames(idents, msg, *frames)], copy=False)
        finally:
            out.close(linger=1000)
            router.uninstall()
            if self._io_thread is not None:
                self._io_thread.join(5)

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
        md = {"status": content["status"], "started": started.isoformat(),
              "completed": utcnow().isoformat(), "stdout": output.text("stdout"),
              "stderr": output.text("stderr")}
        return content, md, buffers

    def _call(self, msg):
        try:
            f, args, kwargs = serialize.unpack_apply(msg["buffers"], self.fcache)
            if msg["content"].get("map"):
                result = [f(*xs) for xs in zip(*args)]
            else:
                result = f(*args, **kwargs)
        except BaseException as e:  # noqa: B902 - user code may raise anything, even SystemExit
            return _error_content(e, skip=1), []
        try:
            return {"status": "ok"}, serialize.serialize(result)
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


def _error_content(exc, skip=0, note=None):
    tb = exc.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    evalue = str(exc) if note is None else f"{note}: {exc}"
    return {"status": "error", "ename": type(exc).__name__, "evalue": evalue,
            "traceback": text}
