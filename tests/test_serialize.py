"""Pure tests of function/argument serialization."""
import pickle

import numpy as np
import pytest

from taskhub import serialize


def test_lambda_and_closure_round_trip():
    k = 10

    def outer():
        z = 3
        return lambda q: q * z + k

    f, args, kwargs = serialize.unpack_apply(serialize.pack_apply(outer(), (2,), {"x": 1}))
    assert f(*args) == 16 and kwargs == {"x": 1}


def test_importable_functions_travel_by_name():
    frames = serialize.pack_apply(len, ([1, 2],), {})
    assert b"builtins" in frames[0] and len(frames[0]) < 40


def test_large_bytes_get_their_own_frame():
    big = b"x" * (serialize.BUFFER_THRESHOLD + 1)
    frames = serialize.serialize([big, 3])
    assert len(frames) == 2 and len(frames[0]) < 1000
    assert serialize.deserialize(frames) == [big, 3]
    frames = serialize.serialize(bytearray(big))
    assert isinstance(serialize.deserialize(frames), bytearray)


def test_numpy_arrays_travel_out_of_band():
    arr = np.arange(100_000, dtype=np.float64)
    frames = serialize.serialize({"a": arr})
    assert len(frames) == 2 and len(frames[1]) == arr.nbytes
    assert np.array_equal(serialize.deserialize(frames)["a"], arr)


def test_function_cache_loads_each_function_once():
    cache = serialize.FunctionCache(size=2)
    fbytes = serialize.serialize_function(lambda: 1)
    assert cache.load(fbytes) is cache.load(fbytes)
    for i in range(3):
        cache.load(serialize.serialize_function(lambda i=i: i))
    assert len(cache._cache) == 2


def test_unpicklable_raises():
    import threading
    with pytest.raises((TypeError, pickle.PicklingError)):
        serialize.serialize(threading.Lock())
