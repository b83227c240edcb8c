"""concurrent.futures on a cluster: Executor, and Batch for sending many calls at once.

    ex = rc.executor(retries=1)             or lview.executor, Executor(retries=1) (its own
                                            client of the default profile), Executor.connect()
    ex.submit(f, *args, **kwargs)           one apply_request, sent at once
    ex.submit_ext(f, args, kwargs, **opts)  the same, with options for this task
    ex.map(f, *iterables, chunksize=k)      one request per chunk, one wake for all
    ex.map(f, endless, buffersize=n)        reads the input as results go out: n in flight
    with ex.batch(label="x") as b:          requests are built as calls are made, held,
        b.submit(...); b.map(...)           and sent when the block exits: one wake of the
                                            client's IO thread, one burst on the socket

A task's options are the view's flags (targets, after, follow, timeout, retries, priority,
time_limit, label — `name` is another spelling of label). Weakest first they come from: the
view the executor was made from, the executor's keyword arguments, the batch's, the call's.
The view's flag machinery checks them, so a bad one raises at once. `fn` may be a
callable, 'package.module:function', or an id from `rc.register_function`.

Futures are TaskFutures (AsyncResults): `concurrent.futures.wait`, `as_completed`, `await`
and `asyncio.wrap_future` take them, and `cancel()` works until an engine starts the task.
"""
import collections
import os
import threading
import time
import uuid
import weakref
from concurrent import futures

from .. import nesting, shell
from ..callables import as_callable
from ..error import TimeoutError
from ..strategies import Serializer
from . import groups
from .counts import SubmissionCounts
from .taskfuture import PendingTaskFuture, TaskFuture, adopt, cancel_not_started
from .view import LoadBalancedView, _chunks


def _options(options):
    """Task options with `name` spelled `label`; TypeError for what no task takes."""
    options = dict(options)
    if "name" in options:
        if "label" in options:
            raise TypeError("give a task's label as label= or name=, not both")
        options["label"] = options.pop("name")
    if "block" in options:
        raise TypeError("block is not a task option: executor calls never block")
    return options


def _call_args(args, kwargs):
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"args must be a tuple or list, not {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    return tuple(args), kwargs or {}


def _flags_of(view):
    """The task options set on a LoadBalancedView."""
    return {n: view.__dict__[n] for n in view.flag_names()
            if n in view.__dict__ and n != "block"}


def _own_client(place):
    """A Client of the cluster `place` names (url_or_file, profile, profile_dir)."""
    from .client import Client
    return Client(place.get("url_or_file"), profile=place.get("profile") or "default",
                  profile_dir=place.get("profile_dir"))


class Executor(futures.Executor):
    """Runs calls as load-balanced tasks; keyword arguments are defaults for every task
    (see the module docstring), as in qbfutures' ``Executor(cpus=4, group='farm')``.

    Where the tasks go: `target` (positional) or `client=` a Client, or `view=` a
    LoadBalancedView (whose flags become defaults); with none of them, the executor
    connects a Client of its own to the cluster of `profile` (default 'default'),
    `profile_dir` or `url_or_file`, closed at shutdown. `task_group_id` (default: the
    client's) is recorded on every task; `serializer` and `result_serializers` (default:
    the client's) choose strategies (see taskhub.strategies)."""

    def __init__(self, target=None, *, client=None, view=None, profile=None,
                 profile_dir=None, url_or_file=None, task_group_id=None, serializer=None,
                 result_serializers=None, **task_options):
        place = {k: v for k, v in (("profile", profile), ("profile_dir", profile_dir),
                                   ("url_or_file", url_or_file)) if v is not None}
        target = self._target(target, client, view, place)
        self._owns_client = target is None
        if target is None:
            target = _own_client(place)
        try:
            self._setup(target, task_group_id, serializer, result_serializers, task_options)
        except BaseException:
            if self._owns_client:  # e.g. a bad default: do not leave the sockets open
                target.close()
            raise

    @staticmethod
    def _target(target, client, view, place):
        """The one Client or view the caller named, or None (connect to `place`)."""
        given = {n: v for n, v in (("target", target), ("client", client), ("view", view))
                 if v is not None}
        if len(given) > 1 or (given and place):
            raise TypeError(f"give an Executor one place to run: a Client, a view or a "
                            f"profile, not {' and '.join([*given, *place])}")
        target = next(iter(given.values()), None)
        if target is not None and not isinstance(target, LoadBalancedView) \
                and not hasattr(target, "load_balanced_view"):
            raise TypeError(f"an Executor runs on a Client or a LoadBalancedView, not "
                            f"{type(target).__name__}")
        return target

    def _setup(self, target, task_group_id, serializer, result_serializers, task_options):
        if isinstance(target, LoadBalancedView):
            self.client, base = target.client, _flags_of(target)
        else:
            self.client, base = target, {}
        self._defaults = {**base, **_options(task_options)}
        self._view = self._view_for({})  # checks the defaults now
        # the view it was given, or its own: ipyparallel code reads executor.view
        self.view = target if isinstance(target, LoadBalancedView) else self._view
        self._md = self._view._metadata()
        self.serializer = serializer or self.client.serializer
        if result_serializers is not None:
            s = self.serializer
            self.serializer = Serializer(s.code, s.data, result_serializers)
        self.task_group_id = task_group_id
        self._futures = weakref.WeakSet()  # a pending one is held by the client till done
        self._lock = threading.Lock()
        self._shutdown = False
        self._counts = SubmissionCounts(self.client)
        self.resource_specification = None  # for MPIFunctions submitted without their own

    @property
    def task_group_id(self):
        """Recorded on every task this executor submits (see reload_tasks); default: its
        client's, which in a task (engine_client()) is the running task's group."""
        return self._task_group_id or self.client.task_group_id or \
            os.environ.get(nesting.GROUP_ENV)

    @task_group_id.setter
    def task_group_id(self, value):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"task_group_id must be a string or None, not {value!r:.60}")
        self._task_group_id = value

    @classmethod
    def connect(cls, *client_args, **options):
        """An Executor with a Client of its own (Client's arguments: url_or_file, profile,
        profile_dir, timeout), closed when the executor shuts down and its tasks are done."""
        from .client import Client
        names = ("url_or_file", "profile", "profile_dir", "timeout")
        client = Client(*client_args, **{k: options.pop(k) for k in names if k in options})
        executor = cls(client, **options)
        executor._owns_client = True
        return executor

    # -- submitting -------------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs):
        """fn(*args, **kwargs) as a task, with the executor's options; a TaskFuture."""
        return self._send_one(fn, args, kwargs, self._view, self._md)

    def submit_ext(self, fn, args=(), kwargs=None, **task_options):
        """fn(*args, **kwargs) as a task with `task_options` on top of the defaults."""
        args, kwargs = _call_args(args, kwargs)
        view = self._view_for(_options(task_options)) if task_options else self._view
        return self._send_one(fn, args, kwargs, view, view._metadata())

    def map(self, fn, *iterables, timeout=None, chunksize=1, buffersize=None,
            max_outstanding=None, **task_options):
        """Results of fn over the iterables, in order; one task per `chunksize` items.
        `timeout` counts from this call; a task's error is raised where its result would
        be. Leaving the iteration early cancels the chunks no engine has started.
        `task_options` go on top of the executor's defaults, as in qbfutures' map.

        Like the standard library's, map reads the iterables whole before it returns,
        which never ends for an endless generator. `buffersize=n` (Python 3.14's name;
        `max_outstanding=n` is the same) reads them as results are given out instead, with
        at most n tasks in flight: bounded memory for any input (see imap)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bound = _bound(buffersize, max_outstanding)
        if task_options:
            return self._with(task_options).map(fn, *iterables, timeout=timeout,
                                                chunksize=chunksize, buffersize=bound)
        from .imap import LazyMapIterator, imap
        if bound is not None:
            return LazyMapIterator(imap(self, fn, iterables, ordered=True, max_outstanding=bound,
                                        chunksize=chunksize, deadline=deadline)
                                   if iterables else iter(()))
        sent = self._send_chunks(fn, iterables, chunksize, self._view, self._md)
        return LazyMapIterator(_in_order(self.client, sent, deadline))

    def _with(self, task_options):
        """An executor sharing this one's client, group and strategies, with more defaults;
        its futures count as this one's (shutdown waits for them)."""
        self._check_open()
        other = Executor(self.client, task_group_id=self._task_group_id,
                         serializer=self.serializer, **{**self._defaults,
                                                        **_options(task_options)})
        other._futures, other._lock = self._futures, self._lock
        return other

    def _submit_chunk(self, fn, columns):
        """One task running fn over a chunk: `columns` holds one sequence per argument;
        its future's result is the list of results."""
        msg_id, frames, fname = self._request(fn, columns, {}, self._md, self._view,
                                              {"map": True})
        self.client._send_prepared("task", frames, msg_id)
        return self._watch(self.client._track([msg_id], "single", fname, cls=TaskFuture),
                           self._md)

    def _view_for(self, options):
        view = LoadBalancedView(self.client)
        view.set_flags(**{**self._defaults, **options})
        return view

    def _check_open(self):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _request(self, fn, args, kwargs, md, view, content=None, fbytes=None):
        """(msg_id, signed frames, function name) of one call; nothing is sent."""
        self._check_open()
        f = shell.bind_resources(as_callable(fn), self.resource_specification)
        if not callable(f):
            raise TypeError(f"expected a callable, 'package.module:function' or a registered "
                            f"function id, got {type(fn).__name__} {fn!r:.60}")
        view._check_function(f)
        buffers = self.serializer.pack_apply(f, args, kwargs, fbytes)
        md = {**md, "task_group": self.task_group_id}
        if self.serializer is not self.client.serializer:
            md["result_serializers"] = self.serializer.result
        frames, header = self.client._prepare_task(buffers, md, content or {})
        return header["msg_id"], frames, getattr(f, "__name__", "")

    def _send_one(self, fn, args, kwargs, view, md):
        msg_id, frames, fname = self._request(fn, args, kwargs, md, view)
        self.client._send_prepared("task", frames, msg_id)
        return self._watch(self.client._track([msg_id], "single", fname, cls=TaskFuture), md)

    def _chunk_requests(self, fn, iterables, chunksize, view, md):
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        if not iterables:
            return []
        f = as_callable(fn)
        fbytes = self.serializer.serialize_function(f) if callable(f) else None
        return [self._request(f, chunk, {}, md, view, {"map": True}, fbytes)
                for chunk in _chunks(iterables, chunksize)]

    def _send_chunks(self, fn, iterables, chunksize, view, md):
        requests = self._chunk_requests(fn, iterables, chunksize, view, md)
        for msg_id, frames, _ in requests:
            self.client._send_prepared("task", frames, msg_id, flush=False)
        self.client._flush()
        return [self._watch(self.client._track([m], "single", name, cls=TaskFuture), md)
                for m, _, name in requests]

    def _watch(self, future, md, sent=True):
        future.may_retry = bool(md.get("retries"))
        self.view._note_history(future.msg_ids)
        with self._lock:
            self._futures.add(future)
        if sent:
            self._counts.sent(future)
        return future

    # -- counters ---------------------------------------------------------------------------
    @property
    def task_count_submitted(self):
        """How many of this executor's tasks the controller has received: a task counts once
        a request sent behind it on the same channel was answered, so a script may exit (or
        die) once this reaches the number it submitted and find its tasks in the task DB
        (reload_tasks). Reading it asks the controller when some are unconfirmed."""
        return self._counts.submitted()

    @property
    def task_count_pending(self):
        """Tasks submitted by this executor and not finished yet."""
        return self._counts.pending()

    @property
    def task_count_finished(self):
        """Tasks of this executor that finished (ok, failed or cancelled)."""
        return self._counts.finished

    # -- batches, groups, strategies ---------------------------------------------------------
    def batch(self, label=None, **task_options):
        """A Batch: `with ex.batch(label="x") as b:` sends b's calls when the block exits.
        `name=` is another spelling of the label, as in qbfutures' batch(name=...)."""
        options = _options(task_options)
        if "label" in options:
            if label is not None:
                raise TypeError("give a batch's label as label= or name=, not both")
            label = options.pop("label")
        return Batch(self, label, options)

    def reload_tasks(self):
        """Futures for every task of this executor's task group (see Client.reload_tasks)."""
        own = self._task_group_id is None  # the client's: it may have sent nothing yet
        return [self._watch(f, {"retries": f.may_retry}, sent=False)
                for f in groups.reload_tasks(self.client, self.task_group_id, own=own)]

    def check_strategies(self, fn, *args, **kwargs):
        """(fn, args, kwargs) as an engine would get them from this executor."""
        return self.serializer.check_strategies(as_callable(fn), *args, **kwargs)

    # -- ending -----------------------------------------------------------------------------
    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more submits. cancel_futures: cancel the tasks no engine has started. wait:
        return once every task of this executor is done."""
        with self._lock:
            self._shutdown = True
            pending = [f for f in list(self._futures) if not f.done()]
        if cancel_futures and pending:
            cancel_not_started(self.client, pending)
        if wait:
            futures.wait(pending)
        if self._owns_client:
            self._close_client_after(pending)

    def _close_client_after(self, pending):
        def close():
            futures.wait(pending)
            self.client.close()
        if all(f.done() for f in pending):
            close()
        else:  # shutdown(wait=False): the client must live until the replies are in
            threading.Thread(target=close, name="taskhub-executor-close", daemon=True).start()

    def __repr__(self):
        outstanding = sum(not f.done() for f in list(self._futures))
        state = "shut down" if self._shutdown else f"{outstanding} outstanding"
        return f"<Executor {state}, task group {self.task_group_id}>"


def _bound(buffersize, max_outstanding):
    """The one bound on tasks in flight of map's two spellings, or None."""
    if buffersize is not None and max_outstanding is not None and buffersize != max_outstanding:
        raise TypeError("give map's bound as buffersize= or max_outstanding=, not both")
    bound = buffersize if buffersize is not None else max_outstanding
    if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
        raise TypeError(f"buffersize must be an int, not {type(bound).__name__}")
    if bound is not None and bound < 1:
        raise ValueError(f"buffersize must be a positive integer, not {bound!r}")
    return bound


def _in_order(client, sent, deadline):
    """A generator of the flattened results of map chunk futures, in order, waiting until
    `deadline` (monotonic; None: forever) at most; on leaving early, cancels the chunks no
    engine started."""
    sent.reverse()  # popped as they are given out, so results given out are not kept

    def results():
        try:
            while sent:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    chunk = sent[-1].result(left)
                except futures.TimeoutError:
                    raise TimeoutError(f"a map result was not ready within its timeout "
                                       f"({len(sent)} chunks still to come)") from None
                sent.pop()
                yield from chunk
        finally:
            if sent:
                cancel_not_started(client, [f for f in sent if not f.done()])
    return results()


class _BatchMapResults:
    """The iterator Batch.map returns: readable once the batch is sent."""

    def __init__(self, batch, held, timeout):
        self._batch, self._held, self._timeout, self._results = batch, held, timeout, None

    def __iter__(self):
        return self

    def __next__(self):
        if self._results is None:
            sent_at = self._batch._sent_at
            if sent_at is None:
                raise RuntimeError("batch.map results can be read once the batch is sent, "
                                   "after its with block")
            deadline = None if self._timeout is None else sent_at + self._timeout
            self._results = _in_order(self._batch.executor.client, self._held, deadline)
        return next(self._results)


class Batch:
    """Calls collected in ``with executor.batch(label=...) as batch:`` and sent as one
    submission when the block exits. Each call is its own task (its own record, placed on
    its own by the scheduler) labelled with the batch's `label` (made up if not given).
    Futures are pending until the block exits; if the block raises, nothing is sent and
    they are cancelled. A function is serialized once per batch."""

    def __init__(self, executor, label, options):
        self.executor = executor
        self.label = label if label is not None else f"batch-{uuid.uuid4().hex[:12]}"
        self._view = executor._view_for({**options, "label": self.label})
        self._md = self._view._metadata()
        self.futures = []   # in the order the calls were made
        self._held = []     # (future, signed frames) to send at the end of the block
        self._fbytes = {}   # id(fn) -> (fn, its bytes): fn is kept so its id stays its own
        self._open = False
        self._sent_at = None

    def __enter__(self):
        if self._open or self._sent_at is not None:
            raise RuntimeError("a batch is used in one with block, once")
        self._open = True
        return self

    def __exit__(self, exc_type, exc, tb):
        self._open = False
        if exc_type is None:
            self._send()
        else:
            self._discard()
        return False

    # -- collecting -------------------------------------------------------------------------
    def submit(self, fn, /, *args, **kwargs):
        """Like Executor.submit; the task is sent when the block exits."""
        return self._hold(fn, args, kwargs, self._view, self._md)

    def submit_ext(self, fn, args=(), kwargs=None, **task_options):
        """Like Executor.submit_ext (options on top of the batch's)."""
        args, kwargs = _call_args(args, kwargs)
        view = self.executor._view_for({**_flags_of(self._view), **_options(task_options)}) \
            if task_options else self._view
        return self._hold(fn, args, kwargs, view, view._metadata())

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """Like Executor.map; iterate the results after the block (`timeout` counts from
        when the batch is sent)."""
        self._check_open()
        requests = self.executor._chunk_requests(fn, iterables, chunksize, self._view,
                                                 self._md)
        held = [self._keep(m, frames, name, self._md) for m, frames, name in requests]
        return _BatchMapResults(self, held, timeout)

    def _check_open(self):
        if not self._open:
            raise RuntimeError("use a batch inside its with block: "
                               "with executor.batch() as batch: ...")

    def _hold(self, fn, args, kwargs, view, md):
        self._check_open()
        msg_id, frames, name = self.executor._request(fn, args, kwargs, md, view,
                                                      fbytes=self._function_bytes(fn))
        return self._keep(msg_id, frames, name, md)

    def _function_bytes(self, fn):
        if isinstance(fn, str) or not callable(fn):
            return None
        known = self._fbytes.get(id(fn))
        if known is None:
            known = self._fbytes[id(fn)] = (fn, self.executor.serializer.serialize_function(fn))
        return known[1]

    def _keep(self, msg_id, frames, name, md):
        future = PendingTaskFuture(self.executor.client, [msg_id], "single", name)
        future.may_retry = bool(md.get("retries"))
        self._held.append((future, frames))
        self.futures.append(future)
        return future

    # -- sending ----------------------------------------------------------------------------
    def _send(self):
        client, executor = self.executor.client, self.executor
        held, self._held = collections.deque(self._held), []
        try:
            executor._check_open()
            while held:
                future, frames = held[0]
                if future.set_running_or_notify_cancel():  # False: cancelled in the block
                    client._send_prepared("task", frames, future.msg_ids[0], flush=False)
                    executor._watch(adopt(client, future), {"retries": future.may_retry})
                held.popleft()
        except BaseException:  # noqa: B902 - e.g. the client's bound timed out
            self._held = list(held)  # the calls not sent are cancelled
            self._discard()
            raise
        finally:
            client._flush()
            self._sent_at = time.monotonic()
            self._fbytes.clear()

    def _discard(self):
        for future, _ in self._held:
            if future.running():  # marked running, but its request never went out
                future._become_cancelled()
            elif future.cancel():
                future.set_running_or_notify_cancel()
        self._held.clear()
        self._fbytes.clear()

    def __repr__(self):
        state = "sent" if self._sent_at is not None else f"{len(self._held)} calls held"
        return f"<Batch {self.label!r}: {state}>"
