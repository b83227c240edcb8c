"""taskhub.canning: ipyparallel's can/uncan layer and serialize_object frames (pure)."""
import functools
import pickle

import pytest

from taskhub import Dependency, Reference, interactive, require
from taskhub.canning import (CannedArray, CannedClass, CannedDependent, CannedFunction,
                             CannedObject, CannedPartial, can, can_map, deserialize_object,
                             pack_apply_message, serialize_object, uncan,
                             unpack_apply_message)


def roundtrip(obj, g=None):
    return uncan(pickle.loads(pickle.dumps(can(obj))), g)


def test_an_interactive_function_is_rebuilt_in_the_namespace_given():
    @interactive
    def scaled(x):
        return factor * x  # noqa: F821 - the namespace's name

    canned = can(scaled)
    assert isinstance(canned, CannedFunction)
    f = uncan(pickle.loads(pickle.dumps(canned)), {"factor": 3})
    assert f(2) == 6 and f.__name__ == "scaled"


def test_closures_defaults_keyword_only_and_annotations_survive():
    base = 10

    def add(x: int, y=1, *, z=100) -> int:
        return base + x + y + z

    f = roundtrip(add)
    assert f(1) == 112 and f(1, 2, z=0) == 13
    assert f.__annotations__ == add.__annotations__


def test_a_module_function_keeps_its_module_globals():
    f = roundtrip(_module_level)
    assert f() is pytest


def _module_level():
    return pytest


def test_a_partial_carries_its_buffers_outside_the_pickle():
    big = b"x" * 5000

    def join(a, b, sep=b""):
        return bytes(sep).join([a, b])

    p = functools.partial(join, big, sep=memoryview(b"--"))
    canned = can(p)
    assert isinstance(canned, CannedPartial) and len(canned.buffers) == 2
    buffers, canned.buffers = canned.buffers, []
    loaded = pickle.loads(pickle.dumps(canned))
    loaded.buffers = buffers
    assert uncan(loaded)(b"y") == big + b"--y"


def test_serialize_object_sends_big_buffers_as_frames_and_reads_back():
    frames = serialize_object([b"a" * 2000, 1, b"small"])
    assert len(frames) == 2  # the pickle, then the one buffer over 1 KiB
    canned = pickle.loads(frames[0])  # plain pickle reads the first frame
    assert canned[1] == 1 and canned[0].buffers == [None]
    obj, rest = deserialize_object([memoryview(f) for f in frames])
    assert obj == [b"a" * 2000, 1, b"small"] and rest == []


def test_numpy_arrays_are_canned_with_their_data_a_buffer():
    numpy = pytest.importorskip("numpy")
    a = numpy.arange(1000, dtype="float64").reshape(10, 100)
    frames = serialize_object({"a": a, "n": 1})
    assert isinstance(pickle.loads(frames[0])["a"], CannedArray) and len(frames) == 2
    d, _ = deserialize_object(frames)
    assert (d["a"] == a).all() and d["n"] == 1
    small = serialize_object(numpy.ones(3), buffer_threshold=1024)
    assert len(small) == 1 and (deserialize_object(small)[0] == 1).all()


def test_classes_from_main_travel_by_value_others_by_reference():
    @interactive
    class Base:
        a = 1

    @interactive
    class Child(Base):
        b = 2

    assert isinstance(can(Child), CannedClass) and can(int) is int
    rebuilt = roundtrip(Child)
    assert (rebuilt.a, rebuilt.b) == (1, 2)


def test_require_binds_names_where_the_uncanned_task_looks_them_up():
    @require("base64")
    @interactive
    def encode(data):
        return base64.b64encode(data)  # noqa: F821 - bound by require

    namespace = {}
    canned = can(encode)
    assert isinstance(canned, CannedDependent)
    f = uncan(pickle.loads(pickle.dumps(canned)), namespace)
    assert f(b"foo") == b"Zm9v" and "base64" in namespace


def test_reference_is_a_canned_object_resolved_in_the_namespace():
    ref = Reference("data[1]")
    assert isinstance(ref, CannedObject) and can(ref) is ref
    assert uncan(ref, {"data": [5, 6]}) == 6


def test_can_map_takes_new_types_by_name():
    class Point:
        def __init__(self, x):
            self.x = x

    key = f"{Point.__module__}.{Point.__qualname__}"
    can_map[key] = lambda p: CannedObject(p, keys=("x",))
    try:
        p = Point(lambda: 7)
        canned = can(p)
        assert isinstance(canned, CannedObject) and isinstance(canned.obj.x, CannedFunction)
        assert uncan(canned).x() == 7
    finally:
        del can_map[key]


def test_pack_and_unpack_apply_message():
    frames = pack_apply_message(lambda a, b=0: a + b, (b"x" * 3000,), {"b": b"y"})
    f, args, kwargs = unpack_apply_message(frames)
    assert f(*args, **kwargs) == b"x" * 3000 + b"y"


def test_dependency_check_and_unreachable():
    succeeded, failed = {"a", "b"}, {"c"}
    dep = Dependency(["a", "c"])
    assert not dep.check(succeeded, failed) and dep.unreachable(succeeded, failed)
    dep.all = False
    assert dep.check(succeeded, failed) and not dep.unreachable(succeeded, failed)
    on_failure = Dependency(["c"], success=False, failure=True)
    assert on_failure.check(succeeded, failed)
    assert Dependency([]).check(set(), set()) and not Dependency([]).unreachable(set(), set())
    assert not Dependency(["d"]).check(succeeded, failed)
    assert not Dependency(["d"]).unreachable(succeeded, failed)
