"""Turning functions, arguments and results into frames and back.

Fast path: the C pickler (protocol 5). User code travels by value, since an engine cannot
import a client's script, notebook or test file: functions from `__main__` or from any
module outside the Python installation (stdlib, site-packages) are rebuilt on the other side
from their code, the globals they name, their defaults and closure. Their globals are the
engine's `__main__` namespace for `__main__` functions (so names a DirectView pushed
resolve), else one namespace per shipped module. Classes defined in `__main__` go through
dill. Large bytes-like objects and out-of-band pickle buffers (numpy arrays) travel as
frames of their own, never copied into the pickle.
"""
import builtins
import functools
import importlib
import io
import marshal
import os
import pickle
import site
import sys
import sysconfig
import types

import dill

BUFFER_THRESHOLD = 64 * 1024  # bytes-like objects at least this big get their own frame

# -- what travels by reference --------------------------------------------------------------
_BY_REFERENCE = {"taskhub"}  # top-level packages every engine can import


def by_reference(package):
    """Declare that engines can import `package`, so its functions travel by name."""
    _BY_REFERENCE.add(package.partition(".")[0])
    _importable_everywhere.cache_clear()


def _install_dirs():
    dirs = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


@functools.lru_cache(maxsize=None)
def _importable_everywhere(module):
    top = module.partition(".")[0]
    if top in _BY_REFERENCE or top in sys.builtin_module_names:
        return True
    if top not in sys.modules:  # e.g. a function that was itself shipped here by value
        return False
    path = getattr(sys.modules[top], "__file__", None)
    return path is None or os.path.realpath(path).startswith(_install_dirs())


def _travels_by_value(obj):
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", "")
    return module in (None, "__main__") or "<locals>" in qualname or "<lambda>" in qualname \
        or not _importable_everywhere(module)


# -- functions by value ---------------------------------------------------------------------
_namespaces = {}  # module name -> globals shared by the functions shipped from it


def _namespace(module):
    if module == "__main__":
        return sys.modules["__main__"].__dict__
    return _namespaces.setdefault(module, {"__builtins__": builtins, "__name__": module})


def _global_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _function_skeleton(code, name, qualname, module, ncells):
    cells = tuple(types.CellType() for _ in range(ncells))
    f = types.FunctionType(marshal.loads(code), _namespace(module), name, None, cells or None)
    f.__qualname__, f.__module__ = qualname, module
    return f


def _set_function_state(f, state):
    shipped, defaults, kwdefaults, cells, attrs = state
    f.__globals__.update(shipped)
    f.__defaults__, f.__kwdefaults__ = defaults, kwdefaults
    for cell, value in zip(f.__closure__ or (), cells):
        if value is not _EMPTY:
            cell.cell_contents = value
    f.__dict__.update(attrs)


class _Empty:
    def __reduce__(self):
        return "_EMPTY"


_EMPTY = _Empty()


def _cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # a cell not assigned yet
        return _EMPTY


def _reduce_function(f):
    code, g = f.__code__, f.__globals__
    shipped = {n: g[n] for n in _global_names(code) if n in g}
    cells = [_cell_value(c) for c in f.__closure__ or ()]
    state = (shipped, f.__defaults__, f.__kwdefaults__, cells, dict(f.__dict__))
    args = (marshal.dumps(code), f.__name__, f.__qualname__, f.__module__, len(cells))
    # the state comes after the skeleton is memoized, so recursion and cycles work
    return _function_skeleton, args, state, None, None, _set_function_state


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, types.FunctionType) and _travels_by_value(obj):
            return _reduce_function(obj)
        if isinstance(obj, type) and _travels_by_value(obj):
            return dill.loads, (dill.dumps(obj, recurse=True),)
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        return NotImplemented


# -- big buffers ----------------------------------------------------------------------------
class _BigBytes:
    """Stands in for a large bytes object so it leaves the pickle as a frame of its own.

    The C pickler writes bytes, lists, tuples and dicts before it consults
    `reducer_override`, so big bytes are wrapped beforehand (see `_lift`)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return _rebuild_bytes, (pickle.PickleBuffer(self.data), type(self.data) is bytearray)


def _rebuild_bytes(buf, mutable):
    return bytearray(buf) if mutable else bytes(buf)


def _lift(obj, depth=2):
    """Wrap large bytes found in `obj` and its containers, `depth` levels down."""
    if isinstance(obj, (bytes, bytearray)) and len(obj) >= BUFFER_THRESHOLD:
        return _BigBytes(obj)
    if depth and type(obj) in (list, tuple):
        return type(obj)(_lift(o, depth - 1) for o in obj)
    if depth and type(obj) is dict:
        return {k: _lift(v, depth - 1) for k, v in obj.items()}
    return obj


# -- the API --------------------------------------------------------------------------------
def serialize(obj):
    """A list of frames: the pickle first, then out-of-band buffers."""
    out_of_band = []
    stream = io.BytesIO()
    _Pickler(stream, protocol=5, buffer_callback=out_of_band.append).dump(_lift(obj))
    return [stream.getvalue(), *(b.raw() for b in out_of_band)]


def deserialize(frames):
    """Inverse of `serialize`; frames may be bytes, memoryviews or zmq Frames."""
    frames = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    return pickle.loads(frames[0], buffers=frames[1:])


def serialize_function(f):
    """One frame holding `f`; a function closing over big buffers keeps them in-band."""
    out = io.BytesIO()
    _Pickler(out, protocol=5).dump(f)
    return out.getvalue()


def pack_apply(f, args, kwargs, fbytes=None):
    """Frames for a call: [function, args pickle, out-of-band buffers…]. `fbytes` reuses a
    function already serialized (a map sends the same function thousands of times)."""
    fbytes = fbytes if fbytes is not None else serialize_function(f)
    return [fbytes, *serialize((args, kwargs))]


class FunctionCache:
    """Deserialized functions keyed by their pickled bytes, so a map pays for loading once."""

    def __init__(self, size=256):
        self.size = size
        self._cache = {}

    def load(self, fbytes):
        key = bytes(fbytes)
        f = self._cache.get(key)
        if f is None:
            f = pickle.loads(key)
            if len(self._cache) >= self.size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = f
        return f


def unpack_apply(frames, cache=None):
    """(f, args, kwargs) from `pack_apply` frames."""
    f = cache.load(frames[0]) if cache is not None else deserialize(frames[:1])
    args, kwargs = deserialize(frames[1:])
    return f, args, kwargs
