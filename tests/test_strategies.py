"""Tier 1: serialization strategies, with no cluster."""
import pickle

import pytest

from taskhub import Serializer, check_strategies
from taskhub.serialize import FunctionCache
from taskhub.strategies import (JSON, ResultSerializationError, dump_result, get_strategy, loads,
                                unpack_apply)


def greet(name, greeting="hello"):
    return f"{greeting} {name}"


def test_the_default_round_trips_lambdas_closures_and_what_json_cannot():
    k = 3
    fn, args, kwargs = check_strategies(lambda x, y=1: x * k + y, (1, 2), y={4})
    assert args == ((1, 2),) and kwargs == {"y": {4}}  # a tuple and a set, as they were
    assert fn(1, y=0) == 3 and fn(1) == 4  # k travelled in the closure
    fn, args, kwargs = check_strategies(greet, "world", greeting="hi")
    assert fn(*args, **kwargs) == greet("world", greeting="hi")


def test_json_data_is_what_the_engine_sees():
    fn, args, kwargs = Serializer(data="json").check_strategies(greet, ("a", 1), k={1: None})
    assert args == [["a", 1]] and kwargs == {"k": {"1": None}}  # tuples→lists, keys→str
    with pytest.raises(TypeError, match="json strategy carries only JSON types"):
        Serializer(data="json").check_strategies(greet, {1})
    with pytest.raises(ValueError, match="carries data only, not code"):
        Serializer(code="json")


def test_pickle_sends_functions_by_name_only():
    fn, args, _ = Serializer(code="pickle", data="pickle").check_strategies(greet, "x")
    assert fn is greet and args == ("x",)
    with pytest.raises(TypeError, match="pickle strategy sends functions by name"):
        Serializer(code="pickle").check_strategies(lambda: 1)


def test_unknown_strategies_are_named():
    with pytest.raises(ValueError, match=r"unknown serialization strategy 'yaml'; known: dill, "
                                         r"json, pickle"):
        Serializer(data="yaml")
    assert get_strategy("json").name == "json" and get_strategy(JSON()).name == "json"


def test_frames_say_their_own_format():
    big = bytes(200_000)
    for name in ("dill", "pickle", "json"):
        value = {"a": [1, 2]} if name == "json" else {"a": [1, 2], "big": big}
        frames = get_strategy(name).dumps(value)
        assert loads(frames) == value
    assert len(get_strategy("pickle").dumps(big)) == 2  # big buffers travel out of band
    frames = Serializer(data="json").pack_apply(greet, ("a",), {"greeting": "yo"})
    f, args, kwargs = unpack_apply(frames, FunctionCache())
    assert f(*args, **kwargs) == "yo a"


def test_result_serializers_in_order_and_every_failure_listed():
    content, frames = dump_result((1, 2), {"result_serializers": ["json", "pickle"]})
    assert content == {"status": "ok"} and loads(frames) == [1, 2]
    content, frames = dump_result({1}, {"result_serializers": ["json", "pickle"]})
    assert loads(frames) == {1} and frames[0][:1] == b"\x80"
    assert loads(dump_result({1}, {})[1]) == {1}  # no list: dill
    with pytest.raises(ResultSerializationError) as info:
        dump_result(lambda: 1, {"result_serializers": ["json", "pickle", "yaml"]})
    message = str(info.value)
    assert "json: TypeError" in message and "pickle: " in message
    assert "yaml: ValueError: unknown serialization strategy" in message


def test_serializer_metadata_only_when_results_are_not_the_default():
    assert Serializer().metadata == {}
    assert Serializer(result=["json", "dill"]).metadata == {"result_serializers":
                                                            ["json", "dill"]}
    assert Serializer(result="pickle").result == ["pickle"]
    assert Serializer() == Serializer() != Serializer(data="json")
    with pytest.raises(ValueError, match="at least one"):
        Serializer(result=[])
    assert pickle.loads(Serializer().serialize_function(greet))("x") == "hello x"
