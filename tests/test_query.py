"""Pure tests of the task-DB query language (taskhub.controller.db.query)."""
import fnmatch
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, strategies as st

from taskhub.controller.db.query import (
    ALL_BUT_BUFFERS, compile_query, glob_to_regex, glob_tokens, match, projection, validate,
)
from taskhub.error import QueryError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=1)
T2 = T0 + timedelta(minutes=2)


# (record, query, matches?) -- one record value against one condition at a time
CASES = [
    ({"engine_uuid": "e1"}, {"engine_uuid": "e1"}, True),
    ({"engine_uuid": "e2"}, {"engine_uuid": "e1"}, False),
    ({"engine_uuid": None}, {"engine_uuid": None}, True),
    ({"engine_uuid": "e1"}, {"engine_uuid": None}, False),
    ({}, {"engine_uuid": None}, True),  # a missing key is not set
    ({"engine_id": 0}, {"engine_id": {"$eq": 0}}, True),
    ({"engine_id": None}, {"engine_id": {"$eq": 0}}, False),
    ({"engine_uuid": "e2"}, {"engine_uuid": {"$ne": "e1"}}, True),
    ({"engine_uuid": None}, {"engine_uuid": {"$ne": "e1"}}, True),
    ({"engine_uuid": "e1"}, {"engine_uuid": {"$ne": "e1"}}, False),
    ({"engine_uuid": None}, {"engine_uuid": {"$ne": None}}, False),
    ({"engine_uuid": "e1"}, {"engine_uuid": {"$in": ["e1", "e2"]}}, True),
    ({"engine_uuid": "e3"}, {"engine_uuid": {"$in": ("e1", "e2")}}, False),
    ({"engine_uuid": None}, {"engine_uuid": {"$in": {"e1"}}}, False),
    ({"engine_uuid": None}, {"engine_uuid": {"$in": ["e1", None]}}, True),
    ({"engine_uuid": "e1"}, {"engine_uuid": {"$in": []}}, False),
    ({"engine_uuid": "e3"}, {"engine_uuid": {"$nin": ["e1", "e2"]}}, True),
    ({"engine_uuid": "e1"}, {"engine_uuid": {"$nin": ["e1", "e2"]}}, False),
    ({"engine_uuid": None}, {"engine_uuid": {"$nin": ["e1"]}}, True),
    ({"engine_uuid": None}, {"engine_uuid": {"$nin": ["e1", None]}}, False),
    # $gt: the record's value is greater than the operand (ipyparallel had it reversed)
    ({"completed": T2}, {"completed": {"$gt": T1}}, True),
    ({"completed": T0}, {"completed": {"$gt": T1}}, False),
    ({"completed": T1}, {"completed": {"$gt": T1}}, False),
    ({"completed": T1}, {"completed": {"$gte": T1}}, True),
    ({"completed": T0}, {"completed": {"$gte": T1}}, False),
    ({"completed": T0}, {"completed": {"$lt": T1}}, True),
    ({"completed": T2}, {"completed": {"$lt": T1}}, False),
    ({"completed": T1}, {"completed": {"$lt": T1}}, False),
    ({"completed": T1}, {"completed": {"$lte": T1}}, True),
    ({"completed": T2}, {"completed": {"$lte": T1}}, False),
    ({"completed": T1}, {"completed": {"$ge": T1}}, True),
    ({"completed": T0}, {"completed": {"$ge": T1}}, False),
    ({"completed": T1}, {"completed": {"$le": T1}}, True),
    ({"completed": T2}, {"completed": {"$le": T1}}, False),
    ({"completed": None}, {"completed": {"$lt": T1}}, False),
    ({"completed": None}, {"completed": {"$gte": T1}}, False),
    ({"engine_id": 3}, {"engine_id": {"$gt": 2}}, True),
    ({"engine_id": 1}, {"engine_id": {"$gt": 2}}, False),
    ({"label": "b"}, {"label": {"$gt": "a"}}, True),
    ({"label": "B"}, {"label": {"$gt": "a"}}, False),
    ({"completed": T0}, {"completed": {"$exists": True}}, True),
    ({"completed": None}, {"completed": {"$exists": True}}, False),
    ({"completed": None}, {"completed": {"$exists": False}}, True),
    ({"header": {"a": 1}}, {"header": {"$exists": True}}, True),
    ({"buffers": []}, {"buffers": {"$exists": True}}, True),  # set, though empty
    ({"label": "alpha-1"}, {"label": {"$regex": r"a-\d"}}, True),
    ({"label": "alpha-1"}, {"label": {"$regex": "^lpha"}}, False),
    ({"label": "Alpha"}, {"label": {"$regex": "alpha"}}, False),
    ({"label": None}, {"label": {"$regex": ".*"}}, False),
    ({"label": "alpha-1"}, {"label": {"$glob": "alpha-*"}}, True),
    ({"label": "alpha-1"}, {"label": {"$glob": "alpha"}}, False),
    ({"label": "Alpha-1"}, {"label": {"$glob": "alpha-*"}}, False),
    ({"label": "alpha-1"}, {"label": {"$glob": "*a-?"}}, True),
    ({"label": "alpha-1"}, {"label": {"$glob": "[ab]lpha-[!2]"}}, True),
    ({"label": "alpha-2"}, {"label": {"$glob": "[ab]lpha-[!2]"}}, False),
    ({"stdout": "one\ntwo\n"}, {"stdout": {"$glob": "one*"}}, True),
    ({"label": None}, {"label": {"$glob": "*"}}, False),
]


# the logical operators: $or, $and, $nor over queries, $not on a key or a whole query
CASES += [
    ({"engine_id": 1}, {"$or": [{"engine_id": 1}, {"label": "x"}]}, True),
    ({"label": "x"}, {"$or": [{"engine_id": 1}, {"label": "x"}]}, True),
    ({"engine_id": 2}, {"$or": [{"engine_id": 1}, {"label": "x"}]}, False),
    ({"engine_id": 1, "label": "x"}, {"$and": [{"engine_id": 1}, {"label": "x"}]}, True),
    ({"engine_id": 1}, {"$and": [{"engine_id": 1}, {"label": "x"}]}, False),
    ({"engine_id": 2}, {"$nor": [{"engine_id": 1}, {"label": "x"}]}, True),
    ({"label": "x"}, {"$nor": [{"engine_id": 1}, {"label": "x"}]}, False),
    ({"engine_id": 3}, {"engine_id": {"$not": {"$lt": 2}}}, True),
    ({"engine_id": 1}, {"engine_id": {"$not": {"$lt": 2}}}, False),
    ({"engine_id": None}, {"engine_id": {"$not": {"$lt": 2}}}, True),  # not set: as MongoDB
    ({"label": "beta"}, {"label": {"$not": {"$glob": "alpha*"}}}, True),
    ({"label": "alpha"}, {"label": {"$not": {"$glob": "alpha*"}}}, False),
    ({"engine_id": 3}, {"engine_id": {"$not": {"$gt": 1, "$lt": 5}}}, False),
    ({"engine_id": 7}, {"engine_id": {"$not": {"$gt": 1, "$lt": 5}, "$gt": 6}}, True),
    ({"label": "x"}, {"$not": {"label": "x"}}, False),
    ({"label": "y"}, {"$not": {"label": "x"}}, True),
    ({"engine_id": 1}, {"engine_id": 1, "$or": [{"$and": [{"label": None}]}, {"label": "x"}]},
     True),
]


@pytest.mark.parametrize("record, query, expected", CASES)
def test_match(record, query, expected):
    assert match(record, query) is expected


def test_several_operators_on_one_key_all_hold():
    between = {"submitted": {"$gte": T1, "$lt": T2}}
    assert [match({"submitted": t}, between) for t in (T0, T1, T2)] == [False, True, False]


def test_several_keys_all_hold():
    query = {"engine_uuid": "e1", "status": {"$ne": "ok"}}
    assert match({"engine_uuid": "e1", "status": "error"}, query)
    assert not match({"engine_uuid": "e1", "status": "ok"}, query)
    assert not match({"engine_uuid": "e2", "status": "error"}, query)


def test_empty_query_matches_everything():
    assert match({}, {}) and match({"msg_id": "a"}, {})


def test_naive_and_other_zone_datetimes_are_taken_as_utc():
    naive = T1.replace(tzinfo=None)
    elsewhere = T1.astimezone(timezone(timedelta(hours=5)))
    assert match({"completed": T1}, {"completed": naive})
    assert match({"completed": T1}, {"completed": {"$lte": elsewhere}})
    assert validate({"completed": naive}) == {"completed": {"$eq": T1}}
    assert validate({"completed": naive})["completed"]["$eq"].tzinfo is timezone.utc


def test_validate_gives_the_normal_form():
    query = {"engine_uuid": "e1", "completed": {"$ge": T0, "$le": T1},
             "msg_id": {"$in": ("a",)}}
    assert validate(query) == {"engine_uuid": {"$eq": "e1"},
                               "completed": {"$gte": T0, "$lte": T1},
                               "msg_id": {"$in": ["a"]}}


def test_compiled_query_is_reusable():
    test = compile_query({"engine_id": {"$in": [1, 2]}})
    assert [test({"engine_id": i}) for i in range(4)] == [False, True, True, False]


@pytest.mark.parametrize("query, message", [
    ({"complete": None}, "unknown TaskRecord key 'complete' (did you mean 'completed'?)"),
    ({"zzz": 1}, "unknown TaskRecord key 'zzz'"),
    ({"engine_uuid": {"$foo": 1}}, "operator '$foo' is not supported (supported: $eq, $ne, "
                                   "$in, $nin, $gt"),
    ({"label": {"$size": 2}}, "operator '$size' is not supported (supported: $eq, $ne, $in, "
                              "$nin, $gt, $gte, $lt, $lte, $exists, $regex, $glob, $ge, $le, "
                              "$not, $and, $or, $nor) in the condition on key 'label'"),
    ({"label": {"$elemMatch": {"$eq": "a"}}}, "operator '$elemMatch' is not supported"),
    ({"$where": "this.a > 1"}, "operator '$where' is not supported (supported: $eq"),
    ({"$or": {"label": "a"}}, "$or takes a non-empty list of queries"),
    ({"$or": []}, "$or takes a non-empty list of queries"),
    ({"$and": ["label"]}, "$and takes a query (a dict), not str"),
    ({"$or": [{"engine_id": "3"}]}, "$eq on key 'engine_id' needs an int, not str"),
    ({"$nor": [{"complete": None}]}, "unknown TaskRecord key 'complete' (did you mean"),
    ({"label": {"$not": "a"}}, "$not on key 'label' takes a dict of operators"),
    ({"label": {"$not": {"$not": {"$eq": "a"}}}}, "$not on key 'label' takes a dict of operators"),
    ({"label": {"$not": {"$gt": 3}}}, "$gt on key 'label' needs a str, not int"),
    ({"$not": ["label"]}, "$not takes a query (a dict), not list"),
    ({"engine_uuid": {"$in": "e1"}}, "$in on key 'engine_uuid' needs a list, tuple or set"),
    ({"engine_uuid": {"$nin": None}}, "$nin on key 'engine_uuid' needs a list"),
    ({"completed": {"$exists": 1}}, "$exists on key 'completed' needs True or False"),
    ({"label": {"$regex": 5}}, "$regex on key 'label' needs a pattern str, not int"),
    ({"label": {"$regex": "("}}, "invalid $regex pattern '(' on key 'label'"),
    ({"label": {"$glob": "[z-a]"}}, "invalid $glob pattern '[z-a]'"),
    ({"engine_id": {"$regex": "1"}}, "$regex works on keys holding a str; 'engine_id' holds an int"),
    ({"completed": {"$lt": "yesterday"}}, "$lt on key 'completed' needs a datetime, not str"),
    ({"completed": {"$lt": None}}, "$lt on key 'completed' needs a value, not None"),
    ({"engine_id": True}, "$eq on key 'engine_id' needs an int, not bool"),
    ({"engine_id": {"$in": [1, "2"]}}, "$in on key 'engine_id' needs an int, not str"),
    ({"header": {"$eq": {"a": 1}}}, "key 'header' holds a dict: a query can only test"),
    ({"header": {"a": 1}}, "operator 'a' is not supported"),
    ({"completed": {}}, "empty condition on key 'completed'"),
    ({"completed": {"$ge": T0, "$gte": T1}}, "'$gte' repeats '$gte' on key 'completed'"),
    (["completed"], "a query is a dict of {key: condition}, not list"),
])
def test_bad_queries_say_what_is_wrong(query, message):
    with pytest.raises(QueryError) as raised:
        validate(query)
    assert message in str(raised.value)


def test_query_errors_are_value_errors():
    with pytest.raises(ValueError):
        match({}, {"nope": 1})


def test_projection_defaults_to_everything_but_buffers():
    keys = projection(None)
    assert keys == ALL_BUT_BUFFERS and keys[0] == "msg_id"
    assert "buffers" not in keys and "result_buffers" not in keys and "stdout" in keys


@pytest.mark.parametrize("keys, expected", [
    (["engine_uuid"], ("msg_id", "engine_uuid")),
    ("result_header", ("msg_id", "result_header")),
    (["buffers", "msg_id", "buffers"], ("msg_id", "buffers")),
    ([], ("msg_id",)),
])
def test_projection_always_has_msg_id_first(keys, expected):
    assert projection(keys) == expected


@pytest.mark.parametrize("keys, message", [
    (["completd"], "unknown TaskRecord key 'completd' in keys (did you mean 'completed'?)"),
    ([3], "unknown TaskRecord key 3 in keys"),
    (7, "keys must be None or a list of TaskRecord keys, not int"),
])
def test_projection_rejects_bad_keys(keys, message):
    with pytest.raises(QueryError) as raised:
        projection(keys)
    assert message in str(raised.value)


@pytest.mark.parametrize("pattern, tokens", [
    ("a*", [("text", "a", False), ("star", "*", False)]),
    ("[!]x]", [("set", "]x", True)]),
    ("[]]", [("set", "]", False)]),
    ("[ab", [("text", "[", False), ("text", "a", False), ("text", "b", False)]),
    ("?[a-c]", [("one", "?", False), ("set", "a-c", False)]),
])
def test_glob_tokens(pattern, tokens):
    assert glob_tokens(pattern) == tokens


def test_glob_regex_is_anchored_at_both_ends():
    assert re.search(glob_to_regex("b"), "abc") is None
    assert re.search(glob_to_regex("a*"), "abc\n")
    assert re.search(glob_to_regex("a"), "a\n") is None


@given(st.text("ab*?[]!-^\\\n", max_size=8), st.text("ab[]!-^\\\n", max_size=8))
def test_glob_agrees_with_fnmatch(pattern, text):
    try:
        regex = re.compile(glob_to_regex(pattern))
    except re.error:
        regex = None  # validate() rejects such patterns ([b-a] ranges)
    assume(regex is not None)
    assert bool(regex.search(text)) == fnmatch.fnmatchcase(text, pattern)
