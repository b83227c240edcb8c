"""The Client: one object holding the sockets to a controller.

    user threads                       IO thread (owns every socket)
      views build + sign frames ──▶ outbox deque ── wake ──▶ send on task/mux/control/query
      AsyncResult.get() waits  ◀── _receive() ◀── replies from task/mux (pushed as they come)
      hub requests wait        ◀── query/control replies, by parent msg_id
      rc.ids                   ◀── notification (engine up/down); iopub streams → metadata
"""
import collections
import concurrent.futures as futures
import logging
import threading
import time
import warnings
from concurrent.futures import Future, TimeoutError as _FutureTimeout
from pathlib import Path

import zmq

from .. import callables, curve, error, filemodes, nesting, paths, strategies, versions
from ..cluster.profiles import read_client_file
from ..displays import KINDS as DISPLAY_KINDS
from ..jsonutil import dates_in_record, parse_date, records_from_rows, tag_dates
from ..session import (BATCH, TASK_CHANNEL_REQUESTS, Session, new_id, pack_frames, packable)
from ..zmqsocket import recv_head_copied, shared_context
from . import prefixes
from .compat import ClientCompat
from .asyncresult import AsyncHubResult, AsyncResult, utcnow
from .connection import (LOST_GRACE, ControllerWatch, LinkState, resubscribe,
                         closed_error, fail_pending, lost_error,
                         seconds_or_none)
from .throttle import OutstandingLimit
from .view import DirectView, LoadBalancedView

log = logging.getLogger("taskhub.client")

_HUB_ERRORS = {"QueryError": error.QueryError, "UnknownTaskError": error.UnknownTaskError,
               "NoTaskDB": error.NoTaskDB, "ValueError": ValueError, "TypeError": TypeError,
               "KeyError": error.UnknownTaskError}
BATCH_MAX = 256  # most requests in one batch message
GOODBYE_LINGER = 200  # ms a closing client waits for its goodbye to leave
MAX_TAILS = 64  # tasks whose cut output may still be arriving after their reply
_get = zmq.backend.Socket.get
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_SOCKETS = {"query": zmq.DEALER, "task": zmq.DEALER, "mux": zmq.DEALER,
            "control": zmq.DEALER, "iopub": zmq.SUB, "notification": zmq.SUB}


class Client(ClientCompat):
    """Connect to the cluster of a profile (default 'default') or of a connection file.

    `Client()` reads ``$TASKHUB_DIR/profile_default/security/taskhub-client.json``;
    ``Client(profile="x")``, ``Client(profile_dir=path)`` or ``Client(path_to_file)`` pick
    another. Connecting waits up to `timeout` seconds for the controller to answer.

    A controller that dies or goes silent (no answer to the connection's heartbeats for
    `controller_timeout` seconds; None: only a closed connection counts) fails every
    pending result and hub request with ControllerLost — after `reconnect_timeout`
    seconds, during which a controller started again on the profile (`ipcluster start`
    after a crash) may come back: the client reconnects and its pending results resolve
    (docs/taskdb.md, "Restart"); meanwhile the client keeps each unanswered request's
    frames, to send again any the dead controller never recorded. A hub request
    (db_query, stats…) raises TimeoutError after `request_timeout` seconds (None: waits as
    long as it takes).
    """

    def __new__(cls, *args, **kwargs):
        # a __new__ of its own: code that patches Client.__new__ for a while (joblib's
        # tests, through unittest.mock) then finds one to put back; without it, deleting
        # the patched attribute leaves object.__new__, which refuses arguments
        return super().__new__(cls)

    def __init__(self, url_or_file=None, profile="default", profile_dir=None, timeout=10.0,
                 context=None, request_timeout=30.0, controller_timeout=10.0,
                 reconnect_timeout=0.0):
        self.request_timeout = seconds_or_none("request_timeout", request_timeout)
        # seconds a dropped controller has to come back (started again on its profile)
        # before pending results fail: see client/connection.py
        self.reconnect_timeout = seconds_or_none("reconnect_timeout",
                                                 reconnect_timeout or None) or 0.0
        # msg_id -> (channel, frames) of each task sent and not answered, kept only with a
        # reconnect window: what a controller that died before recording it never had
        self._unanswered = {} if self.reconnect_timeout else None
        self.controller_timeout = seconds_or_none("controller_timeout", controller_timeout)
        if url_or_file is not None:
            path = Path(url_or_file)
        else:
            location = Path(profile_dir) if profile_dir else paths.profile_dir(profile)
            path = paths.security_file(location, "client")
        self.connection_file = path
        # errors that list the profiles, or say the recorded controller is gone
        self._info = read_client_file(path, None if url_or_file or profile_dir else profile)
        filemodes.warn_if_exposed(path, path.parent.parent if path.parent.name == "security"
                                  else None)
        self.session = Session(self._info["key"].encode())
        self._task_channel_requests = TASK_CHANNEL_REQUESTS \
            if self._info.get("task_scheme") != "pure" else frozenset()
        # requests queued together go as one batch, once the hub says it reads batches
        # (see _connect), and not into the pure scheme's device
        self._batch_tasks = False
        self._context = context or shared_context()
        self._outbox = collections.deque()
        self._wake_lock = threading.Lock()
        self._waker = None
        self._pending = {}        # msg_id -> [AsyncResult, ...] awaiting that reply
        self._early = {}          # replies that came before their AsyncResult was tracked
        self._tails = collections.OrderedDict()  # msg_id -> [AsyncResult] whose output
        # the record cut: the end of it may still come on iopub after the reply
        self._abandoned = set()   # msg_ids failed by a loss: a late reply is not kept
        self._lock = threading.Lock()  # guards _pending and _early together
        self._requests = {}       # msg_id of a hub/control request -> Future of its reply
        self._partial = {}        # msg_id of a db_request -> its replies so far (IO thread)
        self._engines = {}        # id -> uuid
        self._engines_changed = threading.Condition()
        self._closed = False
        self._gone = None  # msg_id -> error, while the controller is lost or the client closed
        self.task_group_id = new_id()  # recorded on every task it sends: see reload_tasks
        self.serializer = strategies.Serializer()  # how views send code and arguments
        self._throttle = OutstandingLimit()
        self._versions = versions.Checker()  # warns when an engine runs other versions
        self._connect(timeout)
        from ..magics import activate_first_client
        activate_first_client(self)  # in IPython, the first client gets %px (as ipyparallel)

    # -- connection and the IO thread -------------------------------------------------------
    def _url(self, name):
        return f"tcp://{self._info['ip']}:{self._info['ports'][name]}"

    def _connect(self, timeout):
        self._wake_url = f"inproc://taskhub-client-{self.session.session_id}"
        started = threading.Event()
        self._thread = threading.Thread(target=self._io_loop, args=(started,),
                                        name="taskhub-client-io", daemon=True)
        self._thread.start()
        started.wait()
        try:
            reply = self._hub_request("connection_request", {
                "batches": True, "versions": self._versions.mine}, timeout=timeout)
        except error.TimeoutError:
            self.close()
            raise error.TimeoutError(
                f"no answer from the controller at {self._url('query')} within {timeout:g}s "
                f"(connection file {self.connection_file}; is the cluster running?)") from None
        self._batch_tasks = reply.get("batches") is True \
            and self._info.get("task_scheme") != "pure"
        for group in reply.get("engine_versions", ()):
            self._versions.check(group.get("versions"), f"engines {group.get('ids')}")
        snapshot = {int(i): u for i, u in reply["engines"].items()}
        self._set_engines({**snapshot, **self._engines})  # notifications may have overtaken it

    def _io_loop(self, started):
        socks = {}
        for name, kind in _SOCKETS.items():
            sock = socks[name] = self._context.socket(kind)
            sock.linger = 0
            if kind == zmq.DEALER:
                sock.routing_id = self.session.bsession
            else:  # iopub: only the output of its own tasks (an engine's topic is the session)
                sock.subscribe(b"" if name == "notification" else self.session.bsession)
            curve.secure_client(sock, self._info)
            if name == "query":  # heartbeats and monitor are set before connecting
                watch = ControllerWatch(sock, self.controller_timeout, LinkState(
                    max(LOST_GRACE, self.reconnect_timeout)))
            sock.connect(self._url(name))
        wake = self._context.socket(zmq.PULL)
        wake.bind(self._wake_url)
        started.set()
        poller = zmq.Poller()
        for sock in (*socks.values(), wake, watch.socket):
            poller.register(sock, zmq.POLLIN)
        handlers = {socks["task"]: self._on_reply, socks["mux"]: self._on_reply,
                    socks["query"]: self._on_request_reply,
                    socks["control"]: self._on_request_reply,
                    socks["notification"]: self._on_notification, socks["iopub"]: self._on_iopub}
        link = watch.state
        try:
            while not self._closed:
                wait = None if link.deadline is None else link.wait_ms(time.monotonic())
                for sock, _ in poller.poll(wait):
                    if sock is wake:
                        self._io_send(wake, socks)
                    elif sock is watch.socket:
                        self._on_link_event(watch)
                    else:
                        self._io_recv(sock, handlers[sock])
                if link.deadline is not None and link.tick(time.monotonic()):
                    fail_pending(self, lost_error(self, self.controller_timeout))
        finally:
            watch.close()
            self._say_goodbye(socks["query"])
            for sock in (*socks.values(), wake):  # the query socket's own: see _say_goodbye
                sock.close(linger=None if sock is socks["query"] else 0)

    def _say_goodbye(self, query):
        """Tell the hub this client is gone, so it forgets what it kept for it (its batch
        flag, the tasks it watched); up to GOODBYE_LINGER to send it, none if the hub is."""
        frames, _ = self.session.serialize("goodbye_request", {})
        try:
            query.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:  # not connected: nobody to tell
            return
        query.linger = GOODBYE_LINGER

    def _on_link_event(self, watch):
        was = watch.state.state
        watch.read_events()
        if was == "down" and watch.state.state == "up" and self._pending:
            threading.Thread(target=resubscribe, args=(self, list(self._pending)),
                             name="taskhub-client-resubscribe", daemon=True).start()
        if watch.state.state == "up" and self._gone is not None and not self._closed:
            self._gone = None  # connected again: new requests may go

    def _io_send(self, wake, socks):
        while _get(wake, _EVENTS) & _POLLIN:  # (Socket.poll would build a Poller each time)
            wake.recv(zmq.NOBLOCK)
        outbox, batch = self._outbox, []
        while outbox:
            name, frames = outbox.popleft()
            if name == "task" and self._batch_tasks and packable(frames):
                batch.append(frames)  # a map's requests: sent together, below
                if len(batch) >= BATCH_MAX:
                    self._send_batch(socks["task"], batch)
                continue
            self._send_batch(socks["task"], batch)  # first, to keep the order
            socks[name].send_multipart(frames, copy=False)
        self._send_batch(socks["task"], batch)

    def _send_batch(self, sock, batch):
        """Send the task-channel messages gathered in `batch` (and empty it): a lone one as
        itself, more as one batch message (docs/messages.md)."""
        if len(batch) == 1:
            sock.send_multipart(batch[0], copy=False)
        elif batch:
            self.session.send(sock, BATCH, {"n": len(batch)},
                              buffers=[pack_frames(frames) for frames in batch])
        batch.clear()

    def _io_recv(self, sock, handler):
        # the client's sockets get no routing ids: DELIM, signature and the four dict frames
        # come first, as bytes; buffers stay zero-copy Frames. iopub's messages have a topic
        # in front (the session whose output they are)
        head = 7 if handler == self._on_iopub else 6
        for _ in range(1000):
            if not _get(sock, _EVENTS) & _POLLIN:  # (no zmq.Again to raise and catch)
                return
            frames = recv_head_copied(sock, zmq.NOBLOCK, head)
            _, msg = self.session.feed(frames)
            if msg is None:
                continue
            if msg.msg_type == BATCH:  # replies the hub sent together: each as if alone
                for frames in self.session.batch_parts(msg):
                    _, sub = self.session.feed(frames)
                    if sub is not None and sub.msg_type != BATCH:
                        self._handle(handler, sub)
            else:
                self._handle(handler, msg)

    @staticmethod
    def _handle(handler, msg):
        try:
            handler(msg)
        except Exception:  # garbage from a peer must not kill the IO thread
            log.exception("dropped a message the client could not handle")

    def _send(self, name, frames, flush=True):
        if self._gone is not None:  # lost or closed: it would wait for a reply in vain
            raise self._gone(None)
        self._outbox.append((name, frames))
        if flush:
            self._flush()

    def _flush(self):
        if self._closed:
            raise error.TaskhubError("this client is closed")
        with self._wake_lock:
            if self._waker is None:
                self._waker = self._context.socket(zmq.PUSH)
                self._waker.linger = 0
                self._waker.connect(self._wake_url)
            self._waker.send(b"")

    # -- replies (IO thread) ----------------------------------------------------------------
    def _on_reply(self, msg):
        if msg.msg_type != "apply_reply":
            return self._on_request_reply(msg)  # a hub request sent on the task channel
        msg_id = msg.parent_id
        md = dict(msg["metadata"])
        for key in ("started", "completed"):
            md[key] = parse_date(md.get(key))
        md["received"] = utcnow()
        content = msg["content"]
        if content.get("status") == "ok":
            try:
                value = strategies.loads(msg["buffers"])
            except Exception as e:
                value = error.RemoteError(type(e).__name__, f"could not deserialize the "
                                          f"result: {e}", engine_id=md.get("engine_id"),
                                          task=msg_id)
        else:
            value = error.remote_error_from_content(content, md.get("engine_id"), msg_id)
        md["status"] = "ok" if content.get("status") == "ok" else "error"
        self._deliver(msg_id, value, md)

    def _deliver(self, msg_id, value, md):
        self._throttle.release(msg_id)
        if self._unanswered is not None:
            self._unanswered.pop(msg_id, None)
        with self._lock:
            waiting = self._pending.pop(msg_id, None)
            if waiting is None:
                if msg_id not in self._abandoned:
                    self._early[msg_id] = (value, md)
                return
        if md.get("output_truncated") or md.get("display_messages"):
            self._tails[msg_id] = waiting  # its last iopub messages may come after it
            while len(self._tails) > MAX_TAILS:
                self._tails.popitem(last=False)
        for ar in waiting:  # outside the lock: resolving runs the futures' callbacks
            ar._receive(msg_id, value, md)

    def _on_request_reply(self, msg):
        content = msg["content"]
        if isinstance(content, dict) and "rows" in content:  # a db_reply: maybe one of many
            msg = self._gather_rows(msg)
            if msg is None:
                return
        elif self._partial:
            self._partial.pop(msg.parent_id, None)  # an error ended a db_reply's rows
        future = self._requests.pop(msg.parent_id, None)
        if future is not None:
            future.set_result(msg)

    def _gather_rows(self, msg):
        """The db_replies of one request joined in the first, once the last (no `more`) has
        come; None till then. Each is decoded as it comes, while the hub makes the next."""
        first = self._partial.get(msg.parent_id)
        if first is None:
            first = msg
        else:
            first["content"]["rows"].extend(msg["content"]["rows"])
            first["buffers"].extend(msg["buffers"])
        if msg["content"].get("more") is True:
            self._partial[msg.parent_id] = first
            return None
        self._partial.pop(msg.parent_id, None)
        return first

    def _on_notification(self, msg):
        content = msg["content"]
        engines = dict(self._engines)
        if msg.msg_type == "engine_up":
            engines[content["id"]] = content["uuid"]
            self._versions.check(content.get("versions"), f"engine {content['id']}")
        elif msg.msg_type == "engine_down":
            engines.pop(content["id"], None)
        self._set_engines(engines)

    def _on_iopub(self, msg):
        if msg.msg_type == "stream":
            for ar in self._pending.get(msg.parent_id) or self._tails.get(msg.parent_id, ()):
                ar._stream(msg.parent_id, msg["content"].get("name"), msg["content"].get("text"))
        elif msg.msg_type in DISPLAY_KINDS:  # the reply has the outputs they leave
            for ar in self._pending.get(msg.parent_id) or self._tails.get(msg.parent_id, ()):
                ar._displayed(msg.parent_id, msg["content"], msg.msg_type)
        elif msg.msg_type == "data_message":  # publish_data: the reply has it all too
            for ar in self._pending.get(msg.parent_id, ()):
                ar._data_published(msg.parent_id, msg["content"])

    def _set_engines(self, engines):
        with self._engines_changed:
            self._engines = engines
            self._engines_changed.notify_all()

    # -- sending requests (user threads) ----------------------------------------------------
    def _send_task(self, buffers, metadata, content, flush=True):
        frames, header = self._prepare_task(buffers, metadata, content)
        self._send_prepared("task", frames, header["msg_id"], flush)
        return header["msg_id"]

    def _send_direct(self, uuid, buffers, content, flush=True, metadata=None):
        frames, header = self._prepare_task(buffers, dict(metadata or {}), content,
                                            idents=[uuid.encode()])
        self._send_prepared("mux", frames, header["msg_id"], flush)
        return header["msg_id"]

    def _prepare_task(self, buffers, metadata, content, idents=()):
        """(signed frames, header) of an apply_request stamped with this client's task
        group and its depth (see taskhub.nesting); nothing is sent yet."""
        return self.session.serialize("apply_request", content, buffers=buffers,
                                      metadata=nesting.stamp(self, metadata), idents=idents)

    def _send_prepared(self, channel, frames, msg_id, flush=True):
        """Queue a prepared request, once the bound on outstanding tasks leaves room."""
        self._throttle.admit(msg_id, self._flush)
        self._note_sent(msg_id)
        if self._unanswered is not None:
            self._unanswered[msg_id] = (channel, frames)
        self._send(channel, frames, flush)

    def _track(self, msg_ids, kind, fname="", chunk_sizes=None, cls=AsyncResult):
        ar = cls(self, msg_ids, kind, fname, chunk_sizes)
        arrived = []
        with self._lock:
            if self._gone is not None:  # lost or closed since the request was sent
                ar._abandon(self._gone)
                return ar
            for msg_id in msg_ids:
                early = self._early.pop(msg_id, None)
                if early is None:
                    self._pending.setdefault(msg_id, []).append(ar)
                else:
                    arrived.append((msg_id, *early))
        for msg_id, value, md in arrived:
            ar._receive(msg_id, value, md)
        return ar

    def _hub_request(self, msg_type, content, timeout=None, channel="query", idents=(),
                     buffers=()):
        """Send a request to the hub (or an engine's control) and return the reply content."""
        frames, header = self.session.serialize(msg_type, content, idents=idents,
                                                buffers=list(buffers))
        if channel == "query" and msg_type in self._task_channel_requests:
            channel = "task"  # behind the tasks it names (see the controller's note)
        timeout = self.request_timeout if timeout is None else timeout
        future = self._requests[header["msg_id"]] = Future()
        self._send(channel, frames)
        try:
            reply = future.result(timeout)
        except _FutureTimeout:
            self._requests.pop(header["msg_id"], None)
            who = "the engine" if idents else "the controller"
            raise error.TimeoutError(
                f"{msg_type} got no reply from {self._url(channel)} within {timeout:g}s: "
                f"{who} is busy or stuck (a longer wait: Client(request_timeout=…))") from None
        content = reply["content"]
        if content.get("status") == "error":
            cls = _HUB_ERRORS.get(content.get("ename"), error.TaskhubError)
            raise cls(content.get("evalue", "the controller reported an error"))
        content["_buffers"] = reply["buffers"]
        return content

    # -- engines ----------------------------------------------------------------------------
    @property
    def ids(self):
        """Ids of the engines registered now, in order."""
        return sorted(self._engines)

    def wait_for_engines(self, n, timeout=None, block=True):
        """Block until at least `n` engines are registered (TimeoutError after `timeout`);
        their ids. block=False: a Future of that instead."""
        if not block:
            return self._in_background(self.wait_for_engines, n, timeout)
        with self._engines_changed:
            if not self._engines_changed.wait_for(
                    lambda: len(self._engines) >= n or self._gone is not None, timeout):
                raise error.TimeoutError(f"{len(self._engines)} engines registered, not {n}, "
                                         f"after {timeout}s")
        gone = self._gone
        if gone is not None and len(self._engines) < n:  # lost the controller, or closed
            raise gone(None)
        return self.ids

    def _uuids(self, ids):
        engines = self._engines
        missing = [i for i in ids if i not in engines]
        if missing:
            raise IndexError(f"no engine with id {missing[0]!r}; registered ids: {self.ids}")
        return [engines[i] for i in ids]

    def __getitem__(self, key):
        """rc[i] (one engine; negative counts from the end), rc[[i, j]], rc[:] or rc[a:b]:
        a DirectView (made by direct_view)."""
        if isinstance(key, slice):
            return self.direct_view(self.ids[key])
        if isinstance(key, (int, list, tuple)) and not isinstance(key, bool):
            return self.direct_view(key)
        raise TypeError(f"engines are indexed by int, list of ints or slice, not {key!r}")

    def activate(self, targets="all", suffix=""):
        """Register the %px magics (px<suffix>, autopx<suffix>, pxresult<suffix>,
        pxconfig<suffix>) in the running IPython, on a blocking DirectView of `targets`;
        returns the view."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    def become_dask(self, *args, **kwargs):
        """Not carried: see docs/notebook.md ("dask on the engines")."""
        raise NotImplementedError(
            "taskhub does not turn its engines into dask workers: start dask's own cluster "
            "(dask.distributed.LocalCluster, or dask-jobqueue on Slurm/PBS/SGE) beside it; "
            "see docs/notebook.md")

    stop_distributed = become_dask

    def direct_view(self, targets="all"):
        """A DirectView of `targets` (an id or a list of ids; negative ones count from the
        end); "all" (or None) stays "all": engines that register later are used too."""
        return self._direct_view(targets)

    def _direct_view(self, targets):
        if targets in ("all", None):
            return DirectView(self, "all", self.block)
        if isinstance(targets, int) and not isinstance(targets, bool):
            key = self._engine_id(targets)
            self._uuids([key])
            return DirectView(self, key, self.block)
        if isinstance(targets, (list, tuple)) and all(
                isinstance(k, int) and not isinstance(k, bool) for k in targets):
            keys = [self._engine_id(k) for k in targets]
            self._uuids(keys)
            return DirectView(self, keys, self.block)
        raise TypeError(f"engines are indexed by int, list of ints or slice, not {targets!r}")

    def load_balanced_view(self, targets=None):
        if targets == "all":
            targets = None
        if targets is not None:
            targets = [targets] if isinstance(targets, int) else list(targets)
            targets = [self._engine_id(t) for t in targets]
            self._uuids(targets)
        return LoadBalancedView(self, targets, self.block)

    # -- executors, task groups, registered functions ---------------------------------------
    def executor(self, **defaults):
        """A concurrent.futures Executor of load-balanced tasks; `defaults` are task options
        for every task it submits (see taskhub.client.executor)."""
        from .executor import Executor
        return Executor(self, **defaults)

    def reload_tasks(self, task_group_id=None):
        """A future per task of `task_group_id` (default: this client's), in submission
        order, from any process: finished ones resolved from the task DB, pending ones
        resolving as they finish."""
        from .groups import reload_tasks
        return reload_tasks(self, self.task_group_id if task_group_id is None
                            else task_group_id)

    def create_batch(self, task_group_id=None, **task_options):
        """An empty TaskBatch of `task_group_id` (default: this client's): `batch.add(fn,
        args=..., kwargs=...)` calls, then `batch_run(batch)` sends them all at once."""
        from .taskbatch import TaskBatch
        return TaskBatch(task_group_id or self.task_group_id, **task_options)

    def batch_run(self, batch):
        """Send a TaskBatch's calls as one burst; their msg_ids, once the controller holds
        every one (collect results later, from any process, with reload_tasks)."""
        from .taskbatch import run
        return run(self, batch)

    def register_function(self, f):
        """Send `f` to the hub once; returns an id that apply, map and submit take in place
        of `f`, sending only the id. Registrations last as long as the controller runs."""
        return callables.register(self, f)

    @property
    def max_outstanding(self):
        """Most tasks this client may have sent and not yet had answered (None: no bound);
        a submit beyond it waits for room, up to `submit_timeout` seconds."""
        return self._throttle.limit

    @max_outstanding.setter
    def max_outstanding(self, value):
        self._throttle.limit = value

    @property
    def submit_timeout(self):
        """Seconds a submit waits for room under max_outstanding before TimeoutError."""
        return self._throttle.timeout

    @submit_timeout.setter
    def submit_timeout(self, value):
        self._throttle.timeout = value

    # -- waiting ----------------------------------------------------------------------------
    @property
    def outstanding(self):
        return set(self._pending)

    def wait(self, jobs=None, timeout=None):
        """Wait for `jobs` (AsyncResults, other concurrent.futures Futures, or msg_ids;
        default: everything outstanding); True if all are done within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ars = [j for j in (jobs or []) if isinstance(j, Future)]
        ids = [j for j in (jobs or []) if isinstance(j, str)] if jobs else list(self._pending)
        ars += [ar for m in ids for ar in self._pending.get(m, [])]
        for ar in ars:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not futures.wait([ar], left).done:
                return False
        return True

    # -- the hub's services -----------------------------------------------------------------
    def db_query(self, query, keys=None, sort=None, limit=None, skip=None):
        """Task records matching a Mongo-style `query`; `keys` limits the fields returned.

        In submission order, or by `sort`: a key ("completed", "-completed" for newest
        first) or a list of keys and (key, 1 | -1) pairs. `skip` and `limit` cut out one
        page, done by the task DB (`db_count(query)` gives the total to page through)."""
        if not isinstance(query, dict):
            raise TypeError(f"query must be a dict, not {type(query).__name__}")
        if isinstance(keys, str):
            keys = [keys]
        if keys is not None and not all(isinstance(k, str) for k in keys):
            raise TypeError("keys must be a string or a list of strings")
        content = self._hub_request("db_request", {"query": tag_dates(query), "keys": keys,
                                                   "sort": sort, "limit": limit, "skip": skip,
                                                   "rows": True})
        if content.get("db_warning"):  # the task DB is failing: the answer may lack records
            warnings.warn(content["db_warning"], error.TaskDBWarning, stacklevel=2)
        if "rows" in content:
            return records_from_rows(content["keys"], content["rows"], content["_buffers"])
        buffers = iter(content["_buffers"])  # a controller from before rows: record dicts
        lens = iter(content["buffer_lens"])
        records = []
        for rec in content["records"]:
            for _ in range(2):
                key, n = next(lens)
                if n is not None:
                    rec[key] = [bytes(next(buffers)) for _ in range(n)]
            records.append(dates_in_record(rec))
        return records

    def db_count(self, query=None):
        """How many task records match `query` (all of them if None)."""
        query = {} if query is None else query
        if not isinstance(query, dict):
            raise TypeError(f"query must be a dict, not {type(query).__name__}")
        return self._hub_request("db_count_request", {"query": tag_dates(query)})["count"]

    def hub_history(self):
        """Every msg_id the task DB holds, in submission order."""
        return self._hub_request("history_request", {})["history"]

    def queue_status(self, targets="all", verbose=False):
        """Per engine id: {'queue': direct tasks waiting, 'tasks': load-balanced tasks on it,
        'completed': finished}, plus 'unassigned' (tasks waiting for an engine). Counts, or
        lists of msg_ids with verbose=True. A single int target returns just its dict."""
        ids = None if targets == "all" else self._target_ids(targets)
        content = self._hub_request("queue_request", {"targets": ids, "verbose": bool(verbose)})
        status = {(int(k) if k.isdigit() else k): v for k, v in content["queue"].items()}
        return status[targets] if isinstance(targets, int) else status

    def _target_ids(self, targets):
        ids = [targets] if isinstance(targets, int) else list(targets)
        self._uuids(ids)
        return ids

    def result_status(self, msg_ids, status_only=True):
        """{'pending': [...], 'completed': [...]} for msg_ids; with status_only=False, also
        each completed task's result (or its RemoteError) under its msg_id."""
        ids = self._msg_id_list(msg_ids, "result_status")
        content = self._hub_request("result_status_request", {"msg_ids": ids})
        status = {"pending": content["pending"], "completed": content["completed"]}
        if not status_only and content["completed"]:
            ar = self.get_result(content["completed"])
            ar.wait()
            status.update((m, ar._values[m]) for m in ar.msg_ids)
        return status

    def purge_results(self, jobs=(), targets=()):
        """Drop finished records from the task DB: by msg_id (or AsyncResult), by engine id,
        or everything finished with jobs='all'. Returns how many records were dropped."""
        if jobs == "all":
            return self._hub_request("purge_request", {"msg_ids": "all"})["dropped"]
        ids = self._msg_id_list(jobs, "purge_results") if jobs else []
        engine_ids = self._target_ids(targets) if targets != () else None
        return self._hub_request("purge_request", {"msg_ids": ids, "targets": engine_ids}
                                 )["dropped"]

    def cull_results(self, max_records=0, max_bytes=0, max_age=0, what="records"):
        """Apply retention bounds to the task DB now: keep at most `max_records` finished
        records, `max_bytes` bytes of their buffers, none finished more than `max_age`
        seconds ago (0: no bound); the oldest finished go first, whole (what="records") or
        only their arguments and results (what="buffers"). Unfinished tasks are never
        culled. Returns how many records were culled. The controller's retain_* options
        apply the same bounds on a schedule (docs/taskdb.md)."""
        return self._hub_request("cull_request", {
            "max_records": max_records, "max_bytes": max_bytes, "max_age": max_age,
            "what": what})["culled"]

    def _msg_id_list(self, jobs, method):
        jobs = [jobs] if isinstance(jobs, (str, AsyncResult)) else list(jobs)
        ids = []
        for job in jobs:
            if isinstance(job, AsyncResult):
                ids.extend(job.msg_ids)
            elif isinstance(job, str):
                ids.append(job)
            else:
                raise TypeError(f"{method} takes msg_ids or AsyncResults, not {job!r}")
        return prefixes.full_ids(self, ids)  # a unique prefix names its task

    def get_result(self, msg_ids, block=None, owner=True):
        """An AsyncResult for tasks by msg_id (or AsyncResult), whoever submitted them;
        an AsyncHubResult with owner=False. block=True: once they are all done."""
        single = isinstance(msg_ids, str) or getattr(msg_ids, "kind", None) == "single"
        ids = [m for job in ([msg_ids] if isinstance(msg_ids, (str, AsyncResult)) else msg_ids)
               for m in (job.msg_ids if isinstance(job, AsyncResult) else [job])]
        if not all(isinstance(m, str) for m in ids):
            raise TypeError("get_result takes a msg_id or a list of msg_ids (strings)")
        ids = prefixes.full_ids(self, ids)  # "9f3c" names the one task whose id starts so
        ar = self._track(ids, "single" if single else "list",
                         cls=AsyncResult if owner else AsyncHubResult)
        try:
            content = self._hub_request("result_request", {"msg_ids": ids})
        except Exception:
            for m in ids:
                self._pending.pop(m, None)
            raise
        buffers = iter(content["_buffers"])
        for msg_id, done in content["completed"].items():
            frames = [next(buffers) for _ in range(done["nbuffers"])]
            self._deliver_stored(msg_id, done, frames)
        if block:
            ar.wait()
        return ar

    def _deliver_stored(self, msg_id, done, frames):
        content, md = done["content"] or {}, dict(done["metadata"] or {})
        for key in ("started", "completed", "submitted", "received"):
            if key in md:
                md[key] = parse_date(md.get(key))
        if content.get("status") == "ok":
            value = strategies.loads(frames)
        else:
            value = error.remote_error_from_content(content, md.get("engine_id"), msg_id)
        md["status"] = "ok" if content.get("status") == "ok" else "error"
        self._deliver(msg_id, value, md)

    def resubmit(self, msg_ids, args=None, kwargs=None):
        """Run finished tasks again as new tasks; an AsyncHubResult of the new results.

        The same function runs with the recorded arguments, or with `args` and/or `kwargs`
        in their place (the one not given is kept from each record)."""
        single = isinstance(msg_ids, str)
        ids = [msg_ids] if single else list(msg_ids)
        if not ids or not all(isinstance(m, str) for m in ids):
            raise TypeError("resubmit takes a msg_id or a non-empty list of msg_ids")
        ids = prefixes.full_ids(self, ids)
        content, buffers = {"msg_ids": ids}, []
        if args is not None or kwargs is not None:
            frames = self._new_arguments(ids, args, kwargs)
            content["arg_frames"] = [len(f) for f in frames]
            buffers = [b for f in frames for b in f]
        mapping = self._hub_request("resubmit_request", content, buffers=buffers)["resubmitted"]
        return self._track([mapping[m] for m in ids], "single" if single else "list",
                           "resubmit", cls=AsyncHubResult)

    def _new_arguments(self, ids, args, kwargs):
        """Per msg_id, the frames of (args, kwargs) for a resubmit with new arguments."""
        if args is not None and not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, not {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
        old = {}
        if args is None or kwargs is None:  # keep the other half from each record
            records = self.db_query({"msg_id": {"$in": ids}}, keys=["buffers"])
            old = {r["msg_id"]: strategies.loads(r["buffers"][1:]) for r in records}
            missing = [m for m in ids if m not in old]
            if missing:
                raise error.UnknownTaskError(f"no task has msg_id {missing[0]!r}")
        return [self.serializer.data.dumps((tuple(args) if args is not None else old[m][0],
                                            kwargs if kwargs is not None else old[m][1]))
                for m in ids]

    def abort(self, jobs=None):
        """Abort tasks (msg_ids or AsyncResults; default: all this client has outstanding).

        One still waiting for an engine fails at once with TaskAborted; one queued or
        running on an engine is stopped there (TaskAborted too). Finished ones are left
        alone; an id the hub never saw raises UnknownTaskError."""
        ids = self._msg_id_list(jobs, "abort") if jobs is not None else sorted(self._pending)
        if ids:
            self._hub_request("abort_request", {"msg_ids": ids})

    def interrupt(self, jobs):
        """Interrupt running tasks (msg_ids or AsyncResults): KeyboardInterrupt is raised in
        them on their engine, which then carries on. Tasks not running are left alone."""
        ids = self._msg_id_list(jobs, "interrupt")
        if ids:
            self._hub_request("interrupt_request", {"msg_ids": ids})

    def stats(self):
        """The controller's counters: dropped messages by reason, engines, outstanding."""
        content = self._hub_request("stats_request", {})
        content.pop("_buffers", None)
        content.pop("status", None)
        return content

    # -- ending -----------------------------------------------------------------------------
    def shutdown(self, targets="all", hub=False, timeout=10.0, block=None):
        """Shut engines down (all by default); with hub=True, the controller too. Each
        engine's reply is waited for; block=True waits until they have unregistered too."""
        ids = self.ids if targets in ("all", None) else (
            [self._engine_id(targets)] if isinstance(targets, int) else list(targets))
        for uuid in self._uuids(ids):
            try:
                self._hub_request("shutdown_request", {}, timeout, "control", [uuid.encode()])
            except error.TimeoutError:
                log.warning("engine %s did not answer the shutdown request", uuid)
        if block:
            self._wait_unregistered(ids, timeout)
        if hub:
            self._hub_request("shutdown_request", {}, timeout)

    def close(self):
        """Close the sockets and stop the IO thread (idempotent). Results and replies still
        pending fail with ClientClosed (their tasks go on running on the cluster)."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        with self._wake_lock:
            try:  # the IO thread may already have seen _closed and gone: never wait for it
                self._waker.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass
            self._waker.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)
        fail_pending(self, closed_error(self))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<Client {self.connection_file}: {len(self._engines)} engines>"
