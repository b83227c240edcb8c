"""Canning: objects made ready for plain pickle, and made whole again in a chosen namespace.

    canned = can(obj)                      # a CannedObject, or obj itself if pickle copes
    obj = uncan(canned, namespace)         # functions from __main__ get `namespace` as globals
    frames = serialize_object(obj)         # [pickle of the canned object, big buffers...]
    obj, rest = deserialize_object(frames, namespace)

This is ipyparallel's canning layer (`ipyparallel.serialize`), for code written against it.
taskhub's task path (taskhub.serialize) reaches the same ends its own way — functions by
value through its Pickler, big buffers out of band with pickle protocol 5 — and the two
agree: a CannedObject pickles with that Pickler like any object, `serialize_object` writes
its first frame with it, and `taskhub.reference.Reference` is a CannedObject too.

What canning is for is the namespace: `uncan(can(f), ns)` rebuilds an interactive function
(one whose module is `__main__`, see `taskhub.reference.interactive`) with `ns` as its
globals, and a `dependent`/`require`-wrapped task keeps its check and its function in the
same namespace, so names that `require` binds are the ones the function looks up.

    can:   type(obj) (or "module.QualName") -> canner, from `can_map`
           FunctionType -> CannedFunction (code, defaults, closure cells, annotations)
           bytes/bytearray/memoryview -> CannedBytes/CannedMemoryView (the data as a buffer)
           numpy.ndarray -> CannedArray (shape, dtype; the data as a buffer)
           functools.partial -> CannedPartial, type from __main__ -> CannedClass
           taskhub.dependency.dependent -> CannedDependent (f, df and df's arguments)
    uncan: CannedObject -> .get_object(namespace); dict -> its values uncanned
"""
import copy
import functools
import marshal
import pickle
import sys
import types

MAX_BYTES = 1024  # serialize_object: buffers larger than this travel as frames of their own
MAX_ITEMS = 64  # serialize_object: sequences and dicts shorter than this are canned item-wise
SEQUENCE_TYPES = (list, tuple, set, frozenset)


class CannedObject:
    """`obj` with its attributes named in `keys` canned; `hook(obj, namespace)`, if given,
    runs on the rebuilt object. `buffers` holds data that may travel as frames of their own
    (a None in it is a buffer taken out, to be put back by `restore_buffers`)."""

    buffers = ()

    def __init__(self, obj, keys=(), hook=None):
        self.keys = tuple(keys)
        self.obj = copy.copy(obj)
        self.hook = can(hook)
        for key in self.keys:
            setattr(self.obj, key, can(getattr(obj, key)))
        self.buffers = []

    def get_object(self, g=None):
        g = {} if g is None else g
        for key in self.keys:
            setattr(self.obj, key, uncan(getattr(self.obj, key), g))
        if self.hook is not None:
            uncan(self.hook, g)(self.obj, g)
        return self.obj


class CannedCell(CannedObject):
    """A closure cell: its contents canned (an empty cell stays empty)."""

    def __init__(self, cell):
        try:
            self.cell_contents = can(cell.cell_contents)
            self.empty = False
        except ValueError:  # a cell not assigned yet (e.g. a recursive closure)
            self.cell_contents, self.empty = None, True
        self.buffers = []

    def get_object(self, g=None):
        if self.empty:
            return types.CellType()
        return types.CellType(uncan(self.cell_contents, g))


class CannedFunction(CannedObject):
    """A function by value: code (marshalled), defaults, closure, annotations, attributes.

    Rebuilt with its module's globals when that module imports where it is rebuilt (and is
    not `__main__`), else with the namespace given to `uncan`."""

    def __init__(self, f):
        if not isinstance(f, types.FunctionType):
            raise TypeError(f"CannedFunction takes a function, not {type(f).__name__}")
        self.code = marshal.dumps(f.__code__)
        self.defaults = can_sequence(f.__defaults__) if f.__defaults__ else None
        self.kwdefaults = can_dict(f.__kwdefaults__) if f.__kwdefaults__ else None
        self.annotations = can_dict(f.__annotations__) if f.__annotations__ else None
        self.closure = tuple(CannedCell(c) for c in f.__closure__) if f.__closure__ else None
        self.attributes = can_dict(f.__dict__) if f.__dict__ else None
        self.module = f.__module__ or "__main__"
        self.__name__, self.qualname = f.__name__, f.__qualname__
        self.buffers = []

    def _globals(self, g):
        if not self.module.startswith("__"):
            try:
                __import__(self.module)
                return sys.modules[self.module].__dict__
            except ImportError:
                pass  # not importable here: the namespace given stands in for it
        return {} if g is None else g

    def get_object(self, g=None):
        g = self._globals(g)
        closure = tuple(c.get_object(g) for c in self.closure) if self.closure else None
        defaults = uncan_sequence(self.defaults, g) if self.defaults else None
        f = types.FunctionType(marshal.loads(self.code), g, self.__name__, defaults, closure)
        f.__kwdefaults__ = uncan_dict(self.kwdefaults, g) if self.kwdefaults else None
        f.__annotations__ = uncan_dict(self.annotations, g) if self.annotations else {}
        f.__dict__.update(uncan_dict(self.attributes, g) if self.attributes else {})
        f.__qualname__, f.__module__ = self.qualname, self.module
        return f


class CannedPartial(CannedObject):
    """A functools.partial: its function, arguments and keywords canned; the buffers of
    the canned arguments are gathered in `self.buffers`, in order."""

    def __init__(self, p):
        if not isinstance(p, functools.partial):
            raise TypeError(f"CannedPartial takes a functools.partial, not {type(p).__name__}")
        self.func = can(p.func)
        self.args = [can(a) for a in p.args]
        self.keywords = {k: can(v) for k, v in p.keywords.items()}
        self.buffers = []
        for canned in self._parts():
            self.buffers.extend(canned.buffers)
            canned.buffers = [None] * len(canned.buffers)

    def _parts(self):
        return [c for c in (*self.args, *self.keywords.values()) if isinstance(c, CannedObject)]

    def get_object(self, g=None):
        rest = list(self.buffers)
        for canned in self._parts():
            restore_buffers(canned, rest)
        args = [uncan(a, g) for a in self.args]
        keywords = {k: uncan(v, g) for k, v in self.keywords.items()}
        return functools.partial(uncan(self.func, g), *args, **keywords)


class CannedClass(CannedObject):
    """A class defined in `__main__`, by value: name, bases and namespace canned."""

    def __init__(self, cls):
        if not isinstance(cls, type):
            raise TypeError(f"CannedClass takes a class, not {type(cls).__name__}")
        self.name = cls.__name__
        self.parents = [can(base) for base in cls.__bases__]
        self.namespace = {k: can(v) for k, v in vars(cls).items()
                          if k not in ("__dict__", "__weakref__")}
        self.buffers = []

    def get_object(self, g=None):
        bases = tuple(uncan(base, g) for base in self.parents)
        return type(self.name, bases, {k: uncan(v, g) for k, v in self.namespace.items()})


class CannedArray(CannedObject):
    """A numpy array: shape and dtype, its data one buffer (arrays of Python objects are
    pickled whole instead)."""

    def __init__(self, a):
        import numpy

        self.shape = a.shape
        self.dtype = a.dtype.descr if a.dtype.fields else a.dtype.str
        self.pickled = a.dtype.hasobject
        if self.pickled:
            self.buffers = [pickle.dumps(a, protocol=pickle.HIGHEST_PROTOCOL)]
        else:
            self.buffers = [memoryview(numpy.ascontiguousarray(a).ravel().view(numpy.uint8))]

    def get_object(self, g=None):
        import numpy

        data = self.buffers[0]
        if self.pickled:
            return pickle.loads(data)
        return numpy.frombuffer(data, dtype=numpy.dtype(self.dtype)).reshape(self.shape)


class CannedBytes(CannedObject):
    """bytes or a bytearray, its data one buffer."""

    wrap = bytes

    def __init__(self, data):
        self.buffers = [data]
        self.mutable = isinstance(data, bytearray)

    def get_object(self, g=None):
        data = self.buffers[0]
        return bytearray(data) if getattr(self, "mutable", False) else self.wrap(data)


class CannedMemoryView(CannedBytes):
    """A memoryview, rebuilt as a memoryview of its bytes."""

    def __init__(self, view):
        self.buffers = [view.cast("B") if view.ndim != 1 or view.format != "B" else view]
        self.mutable = False

    @staticmethod
    def wrap(data):
        return memoryview(bytes(data)) if not isinstance(data, memoryview) else data


# -- can / uncan ----------------------------------------------------------------------------
def can_class(cls):
    """A class from `__main__` by value (CannedClass); any other travels by reference."""
    return CannedClass(cls) if cls.__module__ == "__main__" else cls


class CannedDependent(CannedObject):
    """A `dependent`: its task, its check and the check's arguments canned, so that all of
    them are rebuilt in one namespace (the names `require` binds are the ones the task
    looks up)."""

    def __init__(self, dep):
        self.obj = copy.copy(dep)
        self.obj.f, self.obj.df = can(dep.f), can(dep.df)
        self.obj.dargs, self.obj.dkwargs = can_sequence(dep.dargs), can_dict(dep.dkwargs)
        self.keys, self.hook, self.buffers = (), None, []

    def get_object(self, g=None):
        g = {} if g is None else g
        dep = self.obj
        dep.f, dep.df = uncan(dep.f, g), uncan(dep.df, g)
        dep.dargs, dep.dkwargs = uncan_sequence(dep.dargs, g), uncan_dict(dep.dkwargs, g)
        return dep


# Keys are types, or "module.QualName" strings for types whose module need not be imported
# (an object of such a type exists only once its module is).
can_map = {
    types.FunctionType: CannedFunction,
    functools.partial: CannedPartial,
    bytes: CannedBytes,
    bytearray: CannedBytes,
    memoryview: CannedMemoryView,
    types.CellType: CannedCell,
    type: can_class,
    "numpy.ndarray": CannedArray,
    "taskhub.dependency.dependent": CannedDependent,
}
uncan_map = {
    CannedObject: lambda obj, g: obj.get_object(g),
    dict: lambda obj, g: uncan_dict(obj, g),
}


def istype(obj, check):
    """`type(obj) is check` (or one of them, for a tuple): subclasses do not count."""
    if isinstance(check, tuple):
        return type(obj) in check
    return type(obj) is check


def can(obj):
    """`obj` ready for pickle: the canner `can_map` has for its exact type, else obj."""
    kind = type(obj)
    canner = can_map.get(kind) or can_map.get(f"{kind.__module__}.{kind.__qualname__}")
    return canner(obj) if canner is not None else obj


def uncan(obj, g=None):
    """The object `can` made `obj` from, rebuilt with `g` as the namespace of interactive
    functions; anything not canned is returned as it is."""
    for kind, uncanner in uncan_map.items():
        if isinstance(obj, kind):
            return uncanner(obj, g)
    return obj


def can_dict(obj):
    return {k: can(v) for k, v in obj.items()} if istype(obj, dict) else obj


def uncan_dict(obj, g=None):
    return {k: uncan(v, g) for k, v in obj.items()} if istype(obj, dict) else obj


def can_sequence(obj):
    return type(obj)(can(o) for o in obj) if istype(obj, SEQUENCE_TYPES) else obj


def uncan_sequence(obj, g=None):
    return type(obj)(uncan(o, g) for o in obj) if istype(obj, SEQUENCE_TYPES) else obj


# -- frames ---------------------------------------------------------------------------------
def _nbytes(buf):
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def extract_buffers(canned, threshold=MAX_BYTES):
    """Take out of `canned` the buffers bigger than `threshold` (leaving None in their
    place) and return them; smaller ones stay inside as bytes."""
    if not isinstance(canned, CannedObject) or not canned.buffers:
        return []
    taken, kept = [], []
    for buf in canned.buffers:
        if buf is not None and _nbytes(buf) > threshold:
            taken.append(buf)
            buf = None
        elif buf is not None and not isinstance(buf, bytes):
            buf = bytes(buf)
        kept.append(buf)
    canned.buffers = kept
    return taken


def restore_buffers(canned, frames):
    """Fill the None slots of `canned.buffers` from the front of `frames` (consumed)."""
    if isinstance(canned, CannedObject) and canned.buffers:
        canned.buffers = [frames.pop(0) if b is None else b for b in canned.buffers]


def _parts(canned):
    if istype(canned, (list, tuple)):
        return canned
    return canned.values() if istype(canned, dict) else [canned]


def _dumps(canned):
    from .serialize import serialize_function  # taskhub's Pickler, all in one frame

    return serialize_function(canned)


def serialize_object(obj, buffer_threshold=MAX_BYTES, item_threshold=MAX_ITEMS):
    """[pickle of `obj` canned, then its buffers bigger than `buffer_threshold`]. Lists,
    tuples and dicts of fewer than `item_threshold` items are canned item by item."""
    if istype(obj, (list, tuple, dict)) and len(obj) < item_threshold:
        canned = can_dict(obj) if istype(obj, dict) else can_sequence(obj)
    else:
        canned = can(obj)
    frames = []
    for part in _parts(canned):
        frames.extend(extract_buffers(part, buffer_threshold))
    return [_dumps(canned), *frames]


def _as_buffer(frame):
    return frame.buffer if hasattr(frame, "buffer") else frame  # a zmq Frame


def deserialize_object(frames, g=None):
    """(object, the frames left over) from frames that start with `serialize_object`'s."""
    frames = [_as_buffer(f) for f in frames]
    canned = pickle.loads(frames.pop(0))
    for part in _parts(canned):
        restore_buffers(part, frames)
    if istype(canned, (list, tuple)):
        return uncan_sequence(canned, g), frames
    return uncan(canned, g), frames


def pack_apply_message(f, args, kwargs, buffer_threshold=MAX_BYTES, item_threshold=MAX_ITEMS):
    """ipyparallel's frames for a call: [f canned, layout, each argument's frames...]."""
    arg_frames = [serialize_object(a, buffer_threshold, item_threshold) for a in args]
    kw_keys = sorted(kwargs)
    kw_frames = [serialize_object(kwargs[k], buffer_threshold, item_threshold) for k in kw_keys]
    layout = {"nargs": len(args), "narg_bufs": sum(len(b) for b in arg_frames),
              "kw_keys": kw_keys}
    frames = [_dumps(can(f)), pickle.dumps(layout)]
    for part in (*arg_frames, *kw_frames):
        frames.extend(part)
    return frames


def unpack_apply_message(frames, g=None, copy=True):
    """(f, args, kwargs) from `pack_apply_message`'s frames, rebuilt in namespace `g`
    (`copy` is ipyparallel's: frames are read in place either way)."""
    frames = [_as_buffer(f) for f in frames]
    f = uncan(pickle.loads(frames[0]), g)
    layout = pickle.loads(frames[1])
    rest = frames[2:]
    args = []
    for _ in range(layout["nargs"]):
        arg, rest = deserialize_object(rest, g)
        args.append(arg)
    kwargs = {}
    for key in layout["kw_keys"]:
        kwargs[key], rest = deserialize_object(rest, g)
    return f, args, kwargs
