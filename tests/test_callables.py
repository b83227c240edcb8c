"""Tier 1: callables by name, call descriptions, task depth, the outstanding-task bound and
what errors carry — with no cluster."""
import os
import pickle
import threading

import pytest

from taskhub.callables import (ByName, Registered, as_callable, describe_call, describe_failure,
                               function_id, resolve, run_map)
from taskhub.client.throttle import OutstandingLimit
from taskhub.error import (RecursionLimitExceeded, RemoteError, RemoteTraceback, TaskRef,
                           TimeoutError, remote_error_from_content)
from taskhub.nesting import TaskEnvironment, stamp, task_environment
from taskhub.strategies import Serializer


def test_names_and_ids_become_stand_ins_and_other_values_stay():
    assert isinstance(as_callable("os.path:join"), ByName)
    assert isinstance(as_callable("fn-" + "a" * 32), Registered)
    assert as_callable("plain") == "plain" and as_callable(len) is len
    assert as_callable("math:factorial")(5) == 120
    assert resolve("os.path:join") is os.path.join
    assert resolve("collections:OrderedDict.fromkeys")("ab") == {"a": None, "b": None}
    for bad in ("math:", ":f", "math:1f", "a b:f", "math:f:g"):
        with pytest.raises(ValueError, match="is not a callable's name"):
            ByName(bad)


def test_stand_ins_pickle_small_and_by_reference():
    frame = pickle.dumps(ByName("math:factorial"))
    assert len(frame) < 120 and pickle.loads(frame)(4) == 24
    assert len(pickle.dumps(Registered("fn-" + "0" * 32))) < 120
    assert function_id(b"abc") == function_id(b"abc") != function_id(b"abd")


def test_a_bad_name_is_a_clear_error_where_it_is_called():
    with pytest.raises(ImportError, match="cannot import module 'no_such_mod' for the "
                                          "callable 'no_such_mod:f'"):
        ByName("no_such_mod:f")()
    with pytest.raises(AttributeError, match="cannot find 'nope' in module 'math'"):
        ByName("math:nope")()
    with pytest.raises(TypeError, match="names a float, which is not callable"):
        ByName("math:pi")()


def test_call_descriptions_are_short():
    args = (7, 2)
    assert describe_call(divmod, args) == "divmod(7, 2)"
    by_name = ByName("math:factorial")
    one_arg = (5,)
    assert describe_call(by_name, one_arg) == "math:factorial(5)"
    text = describe_call(lambda *a, **k: 0, ("x" * 100, list(range(50)), 3, 4, 5), {"k": 1})
    assert text.startswith("<lambda>('xxxxxxxx") and len(text) < 120 and text.endswith(", …)")

    def inner():
        return None
    assert describe_call(inner) == "inner()"


def test_a_failing_map_item_is_named():
    with pytest.raises(ZeroDivisionError) as info:
        run_map(lambda a, b: a / b, ([1, 2, 3], [1, 0, 1]))
    described = describe_failure(info.value, None, None, None)
    assert described == "<lambda>(2, 0), item 2 of 3 in a map chunk"
    quotients = run_map(divmod, ([7, 9], [2, 4]))
    assert quotients == [(3, 1), (2, 1)]
    assert describe_failure(ValueError(), None, None, None) == ""
    assert describe_failure(ValueError(), divmod, (1, 0), {}) == "divmod(1, 0)"


class FakeClient:
    task_group_id = "group-a"
    serializer = Serializer()


def test_stamp_sets_group_and_depth_and_enforces_the_limit(monkeypatch):
    monkeypatch.delenv("TASKHUB_DEPTH", raising=False)
    monkeypatch.delenv("TASKHUB_RECURSION_LIMIT", raising=False)
    assert stamp(FakeClient(), {"label": "x"}) == {"task_group": "group-a", "label": "x"}
    assert stamp(FakeClient(), {"task_group": "mine"})["task_group"] == "mine"
    monkeypatch.setenv("TASKHUB_DEPTH", "3")
    assert stamp(FakeClient(), {})["depth"] == 4
    monkeypatch.setenv("TASKHUB_DEPTH", "4")
    with pytest.raises(RecursionLimitExceeded, match="depth 5.*recursion limit of 4"):
        stamp(FakeClient(), {})
    monkeypatch.setenv("TASKHUB_RECURSION_LIMIT", "5")
    assert stamp(FakeClient(), {}) == {"task_group": "group-a", "depth": 5,
                                       "recursion_limit": 5}
    monkeypatch.setenv("TASKHUB_RECURSION_LIMIT", "zero")
    with pytest.raises(ValueError, match="TASKHUB_RECURSION_LIMIT must be an integer ≥ 1"):
        stamp(FakeClient(), {})


def test_task_environment_sets_and_restores(monkeypatch):
    monkeypatch.setenv("TASKHUB_DEPTH", "outer")
    monkeypatch.delenv("TASKHUB_TASK_GROUP", raising=False)
    with task_environment({"depth": 3, "task_group": "g", "recursion_limit": 7}):
        assert (os.environ["TASKHUB_DEPTH"], os.environ["TASKHUB_TASK_GROUP"],
                os.environ["TASKHUB_RECURSION_LIMIT"]) == ("3", "g", "7")
    assert os.environ["TASKHUB_DEPTH"] == "outer" and "TASKHUB_TASK_GROUP" not in os.environ
    with pytest.raises(KeyError):
        with task_environment({"depth": "garbage"}):
            assert os.environ["TASKHUB_DEPTH"] == "1"
            raise KeyError("raised inside")
    assert os.environ["TASKHUB_DEPTH"] == "outer"


def test_an_engines_task_environment_is_set_per_task_and_restored_when_it_stops(monkeypatch):
    monkeypatch.setenv("TASKHUB_DEPTH", "outer")
    monkeypatch.setenv("TASKHUB_RECURSION_LIMIT", "5")
    monkeypatch.delenv("TASKHUB_TASK_GROUP", raising=False)
    env = TaskEnvironment()
    env.enter({"depth": 3, "task_group": "g", "recursion_limit": 7})
    assert (os.environ["TASKHUB_DEPTH"], os.environ["TASKHUB_TASK_GROUP"],
            os.environ["TASKHUB_RECURSION_LIMIT"]) == ("3", "g", "7")
    env.enter({})  # the next task: its own values, the engine's limit, no group
    assert (os.environ["TASKHUB_DEPTH"], os.environ["TASKHUB_RECURSION_LIMIT"]) == ("1", "5")
    assert "TASKHUB_TASK_GROUP" not in os.environ
    env.restore()
    assert (os.environ["TASKHUB_DEPTH"], os.environ["TASKHUB_RECURSION_LIMIT"]) == \
        ("outer", "5")


def test_the_bound_waits_for_room_flushing_first():
    flushed = []
    bound = OutstandingLimit(limit=2, timeout=0.05)
    bound.admit("a", lambda: flushed.append(1))
    bound.admit("b", lambda: flushed.append(1))
    assert flushed == [] and len(bound) == 2
    with pytest.raises(TimeoutError, match="2 tasks are outstanding"):
        bound.admit("c", lambda: flushed.append(1))
    assert flushed == [1]
    bound.timeout = None
    waiter = threading.Thread(target=bound.admit, args=("d", lambda: None))
    waiter.start()
    bound.release("never-admitted")
    bound.release("a")
    waiter.join(10)
    assert not waiter.is_alive() and len(bound) == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            bound.limit = bad


def test_errors_carry_the_task_and_chain_the_remote_traceback():
    ref = TaskRef("abc", "f(1)")
    assert ref == "abc" and ref.msg_id == "abc" and ref.call == "f(1)"
    assert pickle.loads(pickle.dumps(ref)).call == "f(1)"
    err = remote_error_from_content({"status": "error", "ename": "KeyError", "evalue": "'x'",
                                     "traceback": "Traceback …\nKeyError: 'x'\n",
                                     "call": "lookup('x')"}, engine_id=3, task="abc")
    assert str(err) == "[engine 3] KeyError: 'x' (in lookup('x'))"
    assert err.task == "abc" and err.task.call == "lookup('x')"
    assert isinstance(err.__cause__, RemoteTraceback) and "KeyError" in str(err.__cause__)
    plain = RemoteError("E", "v", task="m1")
    assert plain.task == "m1" and plain.task.call == "" and str(plain) == "E: v"
