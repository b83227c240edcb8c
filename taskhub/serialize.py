"""Turning functions, arguments and results into frames and back.

Fast path: the C pickler (protocol 5). Functions and classes that cannot be found by import
on the engine — lambdas, closures, anything defined in `__main__` — are handed to dill,
which pickles them by value. Large bytes-like objects and objects exposing out-of-band
pickle buffers (numpy arrays) travel as frames of their own, never copied into the pickle.
"""
import io
import pickle
import types

import dill

BUFFER_THRESHOLD = 64 * 1024  # bytes-like objects at least this big get their own frame


def _by_value(obj):
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", "")
    return module == "__main__" or module is None or "<lambda>" in qualname \
        or "<locals>" in qualname


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, (types.FunctionType, type)) and _by_value(obj):
            return dill.loads, (dill.dumps(obj, recurse=True),)
        return NotImplemented


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


def _is_big(obj):
    return isinstance(obj, (bytes, bytearray)) and len(obj) >= BUFFER_THRESHOLD


def _lift(obj, depth=2):
    """Wrap large bytes found in `obj` and its containers, `depth` levels down."""
    if _is_big(obj):
        return _BigBytes(obj)
    if depth and type(obj) in (list, tuple):
        return type(obj)(_lift(o, depth - 1) for o in obj)
    if depth and type(obj) is dict:
        return {k: _lift(v, depth - 1) for k, v in obj.items()}
    return obj


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


def pack_apply(f, args, kwargs, fbytes=None):
    """Frames for a call: [function, args pickle, out-of-band buffers…]. `fbytes` reuses a
    function already serialized (a map sends the same function thousands of times)."""
    fbytes = fbytes if fbytes is not None else serialize_function(f)
    return [fbytes, *serialize((args, kwargs))]


def serialize_function(f):
    frames = serialize(f)
    if len(frames) != 1:  # a function closing over a huge buffer: keep it in-band
        return dill.dumps(f, recurse=True)
    return frames[0]


class FunctionCache:
    """Deserialized functions keyed by their pickled bytes, so a map pays dill once."""

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
