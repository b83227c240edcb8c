"""Views build requests: a DirectView names its engines, a LoadBalancedView lets the
scheduler choose. Every call returns an AsyncResult (or, with block=True, its value).

A view's options are flags, checked when set (a bad value raises TypeError or ValueError
at once, naming the flag) and sent with every request the view makes:

    lview.retries = 2                                   # from now on
    lview.set_flags(priority=5, time_limit=60)          # several at once
    with lview.temp_flags(after=[ar], timeout=30): ...  # inside the block only
    lview.apply_with_flags(f, (1,), {}, retries=1)      # one call

LoadBalancedView flags (see taskhub.dependency for after/follow):
    targets     engine id(s) the task may run on (None: any)
    after       run only once these tasks are done (msg_ids, AsyncResults, a Dependency)
    follow      run where these tasks ran
    timeout     seconds to wait for after/follow before DependencyTimeout (None: forever)
    retries     times to run again after a failure or engine death (prefers other engines)
    priority    higher runs first among tasks waiting for an engine
    time_limit  seconds a run may take before the engine stops it with TaskTimeout
    label       a name for the task, recorded in the task DB
    store       False: the task DB keeps the record (status, timings, output) but not the
                function, arguments or result (resubmit and get_result then say so)
"""
from contextlib import contextmanager
from itertools import islice
from numbers import Real

import zmq

from ..callables import as_callable
from ..dependency import Dependency, dependent, msg_ids_of
from ..engine import ops
from .interrupt import wait_or_abort
from .viewcompat import DirectViewCompat, ViewCompat

PURE = "pure"  # the scheme with no Python scheduler (taskhub.controller.schemes.PURE)


def _check_callable(f, method):
    if not callable(f):
        raise TypeError(f"{method} expects a callable as its first argument, "
                        f"got {type(f).__name__} {f!r:.60}")


def _chunks(seqs, size):
    """Split parallel sequences into [(seq0[i:j], seq1[i:j], ...)] of at most `size` items."""
    lists = [list(s) for s in seqs]
    n = min(len(s) for s in lists)
    return [tuple(s[i:i + size] for s in lists) for i in range(0, n, size)]


def _partition(seq, parts):
    """`seq` in `parts` contiguous pieces as even as can be."""
    seq = list(seq)
    q, r = divmod(len(seq), parts)
    it = iter(seq)
    return [list(islice(it, q + (i < r))) for i in range(parts)]


# -- flags ----------------------------------------------------------------------------------
class _Flag:
    """A view option whose value `check(view, name, value)` vets and normalizes when set."""

    def __init__(self, check, default=None):
        self.check, self.default = check, default

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, view, owner=None):
        if view is None:
            return self
        return view.__dict__.get(self.name, self.default)

    def __set__(self, view, value):
        view.__dict__[self.name] = self.check(view, self.name, value)


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _bool(view, name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def _seconds(positive):
    def check(view, name, value):
        if value is None:
            return None
        if not _is_number(value):
            raise TypeError(f"{name} must be a number of seconds or None, not {value!r:.60}")
        if value < 0 or (positive and value == 0):
            raise ValueError(f"{name} must be {'> 0' if positive else '≥ 0'} seconds, "
                             f"not {value!r}")
        return _not_pure(view, f"{name}=", value) if name == "timeout" and value else value
    return check


def _retries(view, name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"retries must be an integer, not {value!r:.60}")
    if value < 0:
        raise ValueError(f"retries must be ≥ 0, not {value}")
    return _not_pure(view, f"{name}=", value) if value else value


def _priority(view, name, value):
    if not _is_number(value):
        raise TypeError(f"priority must be a number, not {value!r:.60}")
    return _not_pure(view, f"{name}=", value) if value else value


def _label(view, name, value):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"label must be a string or None, not {value!r:.60}")
    return value


def _dependency(view, name, value):
    return _not_pure(view, f"{name}=", Dependency.coerce(value, name))


def _targets(view, name, value):
    if value is None:
        return None
    ids = [value] if isinstance(value, int) else value
    if isinstance(ids, bool) or not isinstance(ids, (list, tuple, range)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise TypeError(f"targets must be an engine id, a list of engine ids or None, "
                        f"not {value!r:.60}")
    view.client._uuids(list(ids))  # an unknown id raises IndexError now, not later
    return _not_pure(view, f"{name}=", list(ids))


def _not_pure(view, what, value):
    if value is not None and view.client._info.get("task_scheme") == PURE:
        raise ValueError(f"{what} needs a Python scheduler, but this cluster's controller "
                         "uses the 'pure' scheme (a zmq device that only hands tasks out in "
                         "turn); start it with another scheme, e.g. --scheme leastload")
    return value


def _tracked(buffers, track):
    """(`buffers`, None), or with `track` (buffers as zmq Frames that know when zmq is done
    with their memory, their MessageTracker): the caller may then change, say, an array it
    sent once `ar.wait_for_send()` returns, not before."""
    if not track:
        return buffers, None
    frames = [zmq.Frame(b, copy=False, track=True) for b in buffers]
    return frames, zmq.MessageTracker(*frames)


def _with_tracker(ar, trackers):
    trackers = [t for t in trackers if t is not None]
    if trackers:
        ar._tracker = zmq.MessageTracker(*trackers)
    return ar


class View(ViewCompat):
    """What every view shares: blocking, flags, abort."""

    block = _Flag(_bool, False)
    track = _Flag(_bool, False)  # requests' buffers tracked until sent: ar.wait_for_send()

    def __init__(self, client, block=False):
        self.client = client
        self.block = block
        self.outstanding = set()  # msg_ids sent through this view and not answered yet

    # -- flags ------------------------------------------------------------------------------
    @classmethod
    def flag_names(cls):
        return sorted(n for c in cls.__mro__ for n, v in vars(c).items() if isinstance(v, _Flag))

    def set_flags(self, **flags):
        """Set several flags at once; if any value is bad, none is set."""
        names = self.flag_names()
        unknown = sorted(set(flags) - set(names))
        if unknown:
            raise TypeError(f"unknown flag {unknown[0]!r}; {type(self).__name__} flags are: "
                            f"{', '.join(names)}")
        checked = {n: getattr(type(self), n).check(self, n, v) for n, v in flags.items()}
        self.__dict__.update(checked)
        return self

    @contextmanager
    def temp_flags(self, **flags):
        """Flags set for the `with` block only."""
        saved = {n: self.__dict__[n] for n in flags if n in self.__dict__}
        self.set_flags(**flags)
        try:
            yield self
        finally:
            for name in flags:
                self.__dict__.pop(name, None)
            self.__dict__.update(saved)

    # -- calls ------------------------------------------------------------------------------
    def apply(self, f, /, *args, **kwargs):
        return self._apply(f, args, kwargs, self.block)

    def apply_async(self, f, /, *args, **kwargs):
        return self._apply(f, args, kwargs, False)

    def apply_sync(self, f, /, *args, **kwargs):
        return self._apply(f, args, kwargs, True)

    def apply_with_flags(self, f, args=(), kwargs=None, block=None, **flags):
        """`f(*args, **kwargs)` with `flags` for this call only."""
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple or list, not {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
        if block is not None:
            flags["block"] = block
        with self.temp_flags(**flags):
            return self._apply(f, tuple(args), kwargs or {}, self.block)

    def map(self, f, *sequences, block=None, chunksize=None, progress=False, ordered=True,
            return_exceptions=False):
        """Like the builtin map, in parallel; results in order. progress=True shows a
        progress bar while a blocking map waits (see AsyncResult.wait_interactive).
        ordered=False: iterating the result gives each task's results as they come;
        return_exceptions=True: a failed task's error is given in place of its results."""
        f = as_callable(f)  # 'module:function' or a registered function id
        _check_callable(f, "map")
        if not sequences:
            raise TypeError("map needs at least one sequence")
        for s in sequences:
            if not hasattr(s, "__iter__"):
                raise TypeError(f"map arguments must be iterable, got {type(s).__name__}")
        ar = self._watch(self._map(f, sequences, chunksize))
        ar._ordered, ar._return_exceptions = bool(ordered), bool(return_exceptions)
        if not (self.block if block is None else block):
            return ar
        return wait_or_abort(ar, progress)

    def map_async(self, f, *sequences, chunksize=None, **options):
        return self.map(f, *sequences, block=False, chunksize=chunksize, **options)

    def map_sync(self, f, *sequences, chunksize=None, progress=False, **options):
        return self.map(f, *sequences, block=True, chunksize=chunksize, progress=progress,
                        **options)

    def _apply(self, f, args, kwargs, block):
        f = as_callable(f)
        _check_callable(f, "apply")
        ar = self._watch(self._submit(f, args, kwargs))  # queued, not sent yet: the IO
        self.client._flush()  # thread is woken last, when this thread is about to wait
        return wait_or_abort(ar) if block else ar

    def _watch(self, ar):
        self._note_history(ar.msg_ids)
        self.outstanding.update(ar.msg_ids)
        ar.add_done_callback(lambda done: self.outstanding.difference_update(done.msg_ids))
        return ar

    def abort(self, jobs=None):
        """Abort tasks of this view (msg_ids or AsyncResults; default: all it has
        outstanding): waiting ones fail with TaskAborted, running ones are stopped."""
        ids = msg_ids_of(jobs, "jobs") if jobs is not None else sorted(self.outstanding)
        if ids:
            self.client.abort(ids)

    def register_joblib_backend(self, name="taskhub", make_default=False):
        """Make joblib's backend `name` run Parallel's batches as load-balanced tasks on
        this view's engines: `with joblib.parallel_config(backend=name): ...`."""
        from ..joblib_backend import register
        targets = getattr(self, "targets", None)
        view = self if isinstance(self, LoadBalancedView) else \
            self.client.load_balanced_view(None if targets == "all" else targets)
        register(view, name, make_default)


class LoadBalancedView(View):
    """Tasks go to whichever engine the scheduler picks (optionally among `targets`)."""

    targets = _Flag(_targets)
    after = _Flag(_dependency)
    follow = _Flag(_dependency)
    timeout = _Flag(_seconds(positive=False))
    retries = _Flag(_retries, 0)
    priority = _Flag(_priority, 0)
    time_limit = _Flag(_seconds(positive=True))
    label = _Flag(_label)
    store = _Flag(_bool, True)

    def __init__(self, client, targets=None, block=False):
        super().__init__(client, block)
        self.targets = targets

    def _metadata(self):
        md = {}
        if self.targets is not None:
            md["targets"] = self.client._uuids(self.targets)
        for name in ("after", "follow"):
            if getattr(self, name):
                md[name] = getattr(self, name).as_dict()
        for name in ("timeout", "retries", "priority", "time_limit", "label"):
            if getattr(self, name):
                md[name] = getattr(self, name)
        if not self.store:
            md["store"] = False
        return md

    def _check_function(self, f):
        if isinstance(f, dependent):
            _not_pure(self, "a functional dependency (dependent, @depend, @require)", f)

    def _submit(self, f, args, kwargs):
        self._check_function(f)
        buffers, tracker = _tracked(self.client.serializer.pack_apply(f, args, kwargs),
                                    self.track)
        msg_id = self.client._send_task(buffers, self._metadata(), {}, flush=False)
        return _with_tracker(self.client._track([msg_id], "single", getattr(f, "__name__", "")),
                             [tracker])

    def _map(self, f, sequences, chunksize):
        self._check_function(f)
        chunksize = 1 if chunksize is None else chunksize
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        fbytes = self.client.serializer.serialize_function(f)
        md, chunks, msg_ids, trackers = self._metadata(), _chunks(sequences, chunksize), [], []
        for chunk in chunks:
            buffers, tracker = _tracked(
                self.client.serializer.pack_apply(f, chunk, {}, fbytes=fbytes), self.track)
            trackers.append(tracker)
            msg_ids.append(self.client._send_task(buffers, md, {"map": True}, flush=False))
        self.client._flush()
        return _with_tracker(self.client._track(msg_ids, "map", getattr(f, "__name__", ""),
                                                chunk_sizes=[len(c[0]) for c in chunks]),
                             trackers)

    # -- futures ----------------------------------------------------------------------------
    @property
    def executor(self):
        """A concurrent.futures Executor whose tasks take this view's flags as defaults."""
        from .executor import Executor
        return Executor(self)

    def imap(self, f, *iterables, ordered=True, max_outstanding=100, timeout=None,
             return_exceptions=False, progress=False, chunksize=1):
        """f over the iterables, yielding results in order (or as they complete, with
        ordered=False), with at most `max_outstanding` tasks of `chunksize` items in
        flight; see taskhub.client.imap. `.cancel()` stops it. progress=True draws a bar of
        results given out (of how many, when the iterables have a len)."""
        from .imap import LazyMapIterator, imap
        results = LazyMapIterator(imap(self.executor, f, iterables, ordered, max_outstanding,
                                       timeout, return_exceptions, chunksize))
        if not progress:
            return results
        from .progress import iterate
        lengths = [len(it) for it in iterables if hasattr(it, "__len__")]
        total = min(lengths) if len(lengths) == len(iterables) else None
        return iterate(results, total, getattr(f, "__name__", ""))

    def __repr__(self):
        return f"<LoadBalancedView targets={self.targets or 'all'}>"


class DirectView(DirectViewCompat, View):
    """Runs each call on every engine in `targets` (an id, or a list of ids)."""

    label = _Flag(_label)

    def __init__(self, client, targets, block=False):
        super().__init__(client, block)
        self.targets = targets

    @property
    def _single(self):  # read each time: %pxconfig -t may set targets later
        return isinstance(self.targets, int)

    @property
    def _ids(self):
        if self.targets == "all":
            return self.client.ids
        return [self.targets] if self._single else list(self.targets)

    def _submit(self, f, args, kwargs):
        fbytes = self.client.serializer.serialize_function(f)
        buffers, tracker = _tracked(
            self.client.serializer.pack_apply(f, args, kwargs, fbytes=fbytes), self.track)
        md = {"label": self.label} if self.label else None
        msg_ids = [self.client._send_direct(u, buffers, {}, flush=False, metadata=md)
                   for u in self.client._uuids(self._ids)]
        return _with_tracker(self.client._track(msg_ids, "single" if self._single else "list",
                                                getattr(f, "__name__", "")), [tracker])

    def _map(self, f, sequences, chunksize):
        fbytes = self.client.serializer.serialize_function(f)
        lists = [list(s) for s in sequences]
        parts = [_partition(s, len(self._ids)) for s in lists]
        msg_ids, sizes, trackers = [], [], []
        md = {"label": self.label} if self.label else None
        for i, uuid in enumerate(self.client._uuids(self._ids)):
            chunk = tuple(p[i] for p in parts)
            buffers, tracker = _tracked(
                self.client.serializer.pack_apply(f, chunk, {}, fbytes=fbytes), self.track)
            trackers.append(tracker)
            msg_ids.append(self.client._send_direct(uuid, buffers, {"map": True}, metadata=md))
            sizes.append(min(len(c) for c in chunk))
        return _with_tracker(self.client._track(msg_ids, "map", getattr(f, "__name__", ""),
                                                chunk_sizes=sizes), trackers)

    def activate(self, suffix=""):
        """Register the %px magics for this view in the running IPython (taskhub.magics)."""
        from ..magics import activate
        activate(self, suffix)
        return self

    # -- the engines' namespaces ------------------------------------------------------------
    def execute(self, code, silent=True, block=None):
        """Run `code` in each engine's namespace — through IPython where the engine has it
        (magics, display(), an ExecuteReply per engine; silent=False keeps the value of the
        last expression as `execute_result`). Returns the AsyncResult, with block=True once
        it is done (an error is raised then)."""
        if not isinstance(code, str):
            raise TypeError(f"execute expects a string of code, got {type(code).__name__}")
        ar = self._apply(ops.execute, (code, bool(silent)), {}, False)
        if self.block if block is None else block:  # as ipyparallel: waited for, then
            wait_or_abort(ar)                       # the AsyncResult itself
        return ar

    def push(self, namespace, block=None, track=None):
        """Bind `namespace`'s names on the engines (track=True: see the `track` flag)."""
        if not isinstance(namespace, dict):
            raise TypeError(f"push expects a dict, got {type(namespace).__name__}")
        with self.temp_flags(track=self.track if track is None else track):
            return self._apply(ops.push, (namespace,), {},
                               self.block if block is None else block)

    def pull(self, names, block=None):
        if not (isinstance(names, str) or all(isinstance(n, str) for n in names)):
            raise TypeError("pull expects a name or a list of names")
        return self._apply(ops.pull, (names,), {}, self.block if block is None else block)

    def scatter(self, name, seq, block=None, flatten=False, track=None):
        """Split `seq` into one contiguous piece per engine, bound to `name` there; with
        flatten=True an engine whose piece has one item gets the item itself
        (track=True: see the `track` flag)."""
        block = self.block if block is None else block
        track = self.track if track is None else track
        msg_ids, trackers = [], []
        for i, piece in zip(self._ids, _partition(seq, len(self._ids))):
            if flatten and len(piece) == 1:
                piece = piece[0]
            buffers, tracker = _tracked(
                self.client.serializer.pack_apply(ops.push, ({name: piece},), {}), track)
            trackers.append(tracker)
            msg_ids.append(self.client._send_direct(self.client._uuids([i])[0], buffers, {}))
        ar = _with_tracker(self.client._track(msg_ids, "list", "scatter"), trackers)
        return wait_or_abort(ar) if block else ar

    def gather(self, name, block=None):
        """The pieces of `name` from every engine, concatenated in engine order (an
        AsyncResult of that list with block=False)."""
        block = self.block if block is None else block
        buffers = self.client.serializer.pack_apply(ops.pull, (name,), {})
        msg_ids = [self.client._send_direct(u, buffers, {})
                   for u in self.client._uuids(self._ids)]
        ar = self._watch(self.client._track(msg_ids, "map", "gather"))
        return wait_or_abort(ar) if block else ar

    def __getitem__(self, name):
        return self.pull(name, block=True)

    def __setitem__(self, name, value):
        self.push({name: value}, block=True)

    def __repr__(self):
        return f"<DirectView {self.targets}>"
