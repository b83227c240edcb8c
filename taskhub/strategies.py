"""Serialization strategies: how a task's code, arguments and result become frames.

    client                                          engine
    code  ─ Serializer.code.dumps_code(f) ─▶ frame 0 ──▶ pickle.loads (cached by bytes)
    data  ─ Serializer.data.dumps((args, kwargs)) ─▶ frames 1… ──▶ loads(frames)
    value ◀─ loads(frames) ◀── the first of the task's result_serializers that can dump it

    strategy  code  data  what it is
    dill      yes   yes   the default: code by value (lambdas, closures, __main__ functions
                          and classes) as dill does it, through taskhub's pickler (the C
                          pickler, with dill for what it cannot do); big buffers out of band
    pickle    yes   yes   the standard library's pickle: functions travel by name, so they
                          must be importable on the engines; big buffers out of band
    json      no    yes   JSON types only: tuples arrive as lists, dict keys as strings

Every data frame says its own format in its first byte (a pickle starts with 0x80, JSON
never does), so whoever reads frames — engine, client, a client reading the task DB years
later — needs no word about which strategy wrote them. The one thing that travels in a
request's metadata is `result_serializers`, the names the engine tries in order on the
result (absent: ["dill"]).
"""
import io
import json
import pickle

from . import serialize
from .error import TaskhubError

DEFAULT = "dill"


class ResultSerializationError(TaskhubError, TypeError):
    """None of a task's result_serializers could serialize its result (raised on engines)."""


class Strategy:
    """How one format turns objects into frames. `code`: whether it can carry functions."""

    name = ""
    code = True

    def dumps(self, obj):
        """A list of frames holding `obj` (the first frame says the format)."""
        raise NotImplementedError

    def dumps_code(self, f):
        """One frame holding the function `f`, for `pickle.loads` on the engine."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} strategy {self.name!r}>"


class Dill(Strategy):
    name = "dill"

    def dumps(self, obj):
        return serialize.serialize(obj)

    def dumps_code(self, f):
        return serialize.serialize_function(f)


class Pickle(Strategy):
    name = "pickle"

    def dumps(self, obj):
        out_of_band, stream = [], io.BytesIO()
        pickle.Pickler(stream, protocol=5, buffer_callback=out_of_band.append).dump(
            serialize._lift(obj))
        return [stream.getvalue(), *(b.raw() for b in out_of_band)]

    def dumps_code(self, f):
        try:
            return pickle.dumps(f, protocol=5)
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise TypeError(f"the pickle strategy sends functions by name, so {f!r:.80} must "
                            f"be importable on the engines ({e}); the dill strategy sends "
                            "lambdas, closures and __main__ functions by value") from None


class JSON(Strategy):
    name = "json"
    code = False

    def dumps(self, obj):
        try:
            return [json.dumps(obj, separators=(",", ":")).encode()]
        except (TypeError, ValueError) as e:
            raise TypeError(f"the json strategy carries only JSON types: {e}") from None


STRATEGIES = {s.name: s for s in (Dill(), Pickle(), JSON())}


def get_strategy(which):
    """The strategy named `which` (or `which` itself if it is a Strategy)."""
    if isinstance(which, Strategy):
        return which
    try:
        return STRATEGIES[which]
    except (KeyError, TypeError):
        raise ValueError(f"unknown serialization strategy {which!r}; known: "
                         f"{', '.join(sorted(STRATEGIES))}") from None


def loads(frames):
    """The object in `frames` from any strategy (bytes, memoryviews or zmq Frames)."""
    frames = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    if bytes(frames[0][:1]) == b"\x80":
        return pickle.loads(frames[0], buffers=frames[1:])
    return json.loads(bytes(frames[0]))


class Serializer:
    """The strategies for one client or executor: `code` for functions, `data` for
    arguments, `result` the names the engine tries in order on each result."""

    def __init__(self, code=DEFAULT, data=DEFAULT, result=(DEFAULT,)):
        self.code, self.data = get_strategy(code), get_strategy(data)
        if not self.code.code:
            raise ValueError(f"the {self.code.name} strategy carries data only, not code; "
                             "use dill or pickle for code")
        if isinstance(result, (str, Strategy)):
            result = [result]
        self.result = [get_strategy(r).name for r in result]
        if not self.result:
            raise ValueError("result needs at least one strategy")
        self.metadata = {} if self.result == [DEFAULT] else {"result_serializers": self.result}

    def serialize_function(self, f):
        return self.code.dumps_code(f)

    def pack_apply(self, f, args, kwargs, fbytes=None):
        """Frames of a call: [function, arguments…] (`fbytes` reuses a serialized `f`)."""
        if fbytes is None:
            fbytes = self.serialize_function(f)
        return [fbytes, *self.data.dumps((args, kwargs))]

    def check_strategies(self, fn, *args, **kwargs):
        """(fn, args, kwargs) as an engine would get them: serialized with these strategies
        and read back here. Raises what submitting the call would raise."""
        frames = self.pack_apply(fn, args, kwargs)
        args, kwargs = loads(frames[1:])
        return pickle.loads(frames[0]), args, kwargs

    def __eq__(self, other):
        return isinstance(other, Serializer) and (self.code.name, self.data.name, self.result) \
            == (other.code.name, other.data.name, other.result)

    def __repr__(self):
        return f"Serializer(code={self.code.name!r}, data={self.data.name!r}, " \
               f"result={self.result!r})"


def check_strategies(fn, *args, **kwargs):
    """`Serializer().check_strategies`: the call as an engine would see it by default."""
    return Serializer().check_strategies(fn, *args, **kwargs)


# -- on the engine ------------------------------------------------------------------------
def unpack_apply(frames, cache):
    """(f, args, kwargs) from a request's buffers, whatever strategies wrote them."""
    f = cache.load(frames[0])
    args, kwargs = loads(frames[1:])
    return f, args, kwargs


def dump_result(result, metadata):
    """(reply content, frames) of a result, with the first of the request's
    result_serializers that can; ResultSerializationError listing each failure if none can."""
    names = metadata.get("result_serializers") or [DEFAULT]
    failures = []
    for name in names if isinstance(names, list) else [names]:
        try:
            return {"status": "ok"}, get_strategy(name).dumps(result)
        except Exception as e:  # noqa: B902 - a result's __reduce__ may raise anything
            failures.append(f"{name}: {type(e).__name__}: {e}")
    raise ResultSerializationError(f"every result serializer failed — {'; '.join(failures)}")
