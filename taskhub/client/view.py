"""Views build requests: a DirectView names its engines, a LoadBalancedView lets the
scheduler choose. Every call returns an AsyncResult (or, with block=True, its value)."""
from itertools import islice

from .. import serialize
from ..engine import ops


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


class View:
    block = False

    def __init__(self, client, block=False):
        self.client = client
        self.block = block

    def apply(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs, self.block)

    def apply_async(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs, False)

    def apply_sync(self, f, *args, **kwargs):
        return self._apply(f, args, kwargs, True)

    def map(self, f, *sequences, block=None, chunksize=None):
        """Like the builtin map, in parallel; results in order."""
        _check_callable(f, "map")
        if not sequences:
            raise TypeError("map needs at least one sequence")
        for s in sequences:
            if not hasattr(s, "__iter__"):
                raise TypeError(f"map arguments must be iterable, got {type(s).__name__}")
        ar = self._map(f, sequences, chunksize)
        return ar.get() if (self.block if block is None else block) else ar

    def map_async(self, f, *sequences, chunksize=None):
        return self.map(f, *sequences, block=False, chunksize=chunksize)

    def map_sync(self, f, *sequences, chunksize=None):
        return self.map(f, *sequences, block=True, chunksize=chunksize)

    def _apply(self, f, args, kwargs, block):
        _check_callable(f, "apply")
        ar = self._submit(f, args, kwargs)
        return ar.get() if block else ar


class LoadBalancedView(View):
    """Tasks go to whichever engine the scheduler picks (optionally among `targets`)."""

    def __init__(self, client, targets=None, block=False):
        super().__init__(client, block)
        self.targets = targets

    def _metadata(self):
        md = {}
        if self.targets is not None:
            md["targets"] = self.client._uuids(self.targets)
        return md

    def _submit(self, f, args, kwargs):
        buffers = serialize.pack_apply(f, args, kwargs)
        msg_id = self.client._send_task(buffers, self._metadata(), {})
        return self.client._track([msg_id], "single", getattr(f, "__name__", ""))

    def _map(self, f, sequences, chunksize):
        chunksize = 1 if chunksize is None else chunksize
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        fbytes = serialize.serialize_function(f)
        md, chunks, msg_ids = self._metadata(), _chunks(sequences, chunksize), []
        for chunk in chunks:
            buffers = serialize.pack_apply(f, chunk, {}, fbytes=fbytes)
            msg_ids.append(self.client._send_task(buffers, md, {"map": True}, flush=False))
        self.client._flush()
        return self.client._track(msg_ids, "map", getattr(f, "__name__", ""),
                                  chunk_sizes=[len(c[0]) for c in chunks])

    def __repr__(self):
        return f"<LoadBalancedView targets={self.targets or 'all'}>"


class DirectView(View):
    """Runs each call on every engine in `targets` (an id, or a list of ids)."""

    def __init__(self, client, targets, block=False):
        super().__init__(client, block)
        self.targets = targets
        self._single = isinstance(targets, int)

    @property
    def _ids(self):
        return [self.targets] if self._single else list(self.targets)

    def _submit(self, f, args, kwargs):
        fbytes = serialize.serialize_function(f)
        buffers = serialize.pack_apply(f, args, kwargs, fbytes=fbytes)
        msg_ids = [self.client._send_direct(u, buffers, {}) for u in self.client._uuids(self._ids)]
        return self.client._track(msg_ids, "single" if self._single else "list",
                                  getattr(f, "__name__", ""))

    def _map(self, f, sequences, chunksize):
        fbytes = serialize.serialize_function(f)
        lists = [list(s) for s in sequences]
        parts = [_partition(s, len(self._ids)) for s in lists]
        msg_ids, sizes = [], []
        for i, uuid in enumerate(self.client._uuids(self._ids)):
            chunk = tuple(p[i] for p in parts)
            buffers = serialize.pack_apply(f, chunk, {}, fbytes=fbytes)
            msg_ids.append(self.client._send_direct(uuid, buffers, {"map": True}))
            sizes.append(min(len(c) for c in chunk))
        return self.client._track(msg_ids, "map", getattr(f, "__name__", ""), chunk_sizes=sizes)

    # -- the engines' namespaces ------------------------------------------------------------
    def execute(self, code, block=None):
        if not isinstance(code, str):
            raise TypeError(f"execute expects a string of code, got {type(code).__name__}")
        return self._apply(ops.execute, (code,), {}, self.block if block is None else block)

    def push(self, namespace, block=None):
        if not isinstance(namespace, dict):
            raise TypeError(f"push expects a dict, got {type(namespace).__name__}")
        return self._apply(ops.push, (namespace,), {}, self.block if block is None else block)

    def pull(self, names, block=None):
        if not (isinstance(names, str) or all(isinstance(n, str) for n in names)):
            raise TypeError("pull expects a name or a list of names")
        return self._apply(ops.pull, (names,), {}, self.block if block is None else block)

    def scatter(self, name, seq, block=None):
        """Split `seq` into one contiguous piece per engine, bound to `name` there."""
        block = self.block if block is None else block
        msg_ids = []
        for i, piece in zip(self._ids, _partition(seq, len(self._ids))):
            buffers = serialize.pack_apply(ops.push, ({name: piece},), {})
            msg_ids.append(self.client._send_direct(self.client._uuids([i])[0], buffers, {}))
        ar = self.client._track(msg_ids, "list", "scatter")
        return ar.get() if block else ar

    def gather(self, name, block=None):
        """The pieces of `name` from every engine, concatenated in engine order."""
        ar = self._apply(ops.pull, (name,), {}, True)
        pieces = [ar] if self._single else ar
        return [x for piece in pieces for x in piece]

    def __getitem__(self, name):
        return self.pull(name, block=True)

    def __setitem__(self, name, value):
        self.push({name: value}, block=True)

    def __repr__(self):
        return f"<DirectView {self.targets}>"
