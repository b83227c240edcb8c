"""MongoDB task database: one document per task in a collection of a MongoDB server.

The document is the TaskRecord plus `_id` (= msg_id, so the server enforces uniqueness),
`_us` (`submitted` in whole microseconds since the epoch) and `_seq` (a counter kept by this
writer, for insertion order among tasks submitted at the same time); all three are stripped
from results. Dicts are sub-documents, buffers lists of BSON binary, datetimes BSON dates
(millisecond precision: microseconds are dropped on write). Submission order is by `_us`:
by the dates alone, tasks submitted in the same millisecond would tie, and the hub writes
records as tasks finish, not as they are submitted, so `_seq` alone would not do either.

Queries go to the server after `validate`, with the few places where Mongo means something
else translated (`mongo_filter`): $exists (Mongo: key present, even if null; ours: not None)
and $glob (not a Mongo operator: sent as an anchored $regex); $or/$and/$nor go as they
are, a key's $not as a $nor of that key's condition. Mongo's null equality already
matches ours: {key: None} and $in [None] match None, $ne/$nin match it unless listed.
"""
import time
from datetime import datetime, timedelta, timezone

from taskhub.controller.db.base import (
    TaskDB, as_utc, check_new_ids, new_record, record_changes,
)
from taskhub.controller.db.query import (
    LOGICAL, glob_to_regex, page_bounds, projection, sort_spec, validate,
)

try:
    import pymongo
except ImportError as error:  # pymongo is the optional "mongo" extra
    raise ImportError("the mongodb task database needs pymongo: "
                      "pip install 'taskhub[mongo]'") from error

_ORDER = [("_us", pymongo.ASCENDING), ("_seq", pymongo.ASCENDING)]
_INDEXED = ("_seq", "submitted", "completed", "engine_uuid", "client_uuid", "label", "task_group")
_WITH_SUBMITTED = ("status", "engine_id", "label")


def mongo_filter(query):
    """The pymongo filter for the task-DB `query`: one $and clause per (key, operator)."""
    return _filter(validate(query))


def _filter(normal):
    """The pymongo filter of a query in normal form. A key's $not goes as $nor of that key's
    condition: the same documents, and $nor takes every operator (Mongo's $not does not
    take a $regex given as a string before 4.0.7) and our $exists translations."""
    clauses = []
    for key, condition in normal.items():
        if key in LOGICAL:
            clauses.append({key: [_filter(q) for q in condition]})
            continue
        for op, operand in condition.items():
            clauses.append({"$nor": [_filter({key: operand})]} if op == "$not"
                           else {key: _mongo_condition(op, operand)})
    return {"$and": clauses} if clauses else {}


def mongo_sort(sort):
    """The pymongo sort for find_records' `sort`: ties go in submission order, and
    `submitted` sorts by its microseconds (`_us`), which the stored date has lost."""
    order = [("_us" if key == "submitted" else key, way) for key, way in sort_spec(sort)]
    if not order:
        return _ORDER
    last = order[-1][1]
    ties = [(key, last) for key, _ in _ORDER if key not in dict(order)]
    return [*order, *ties]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _microseconds(when):
    """`when` (a datetime or None) as whole microseconds since the epoch; None sorts first."""
    return None if when is None else (as_utc(when) - _EPOCH) // timedelta(microseconds=1)


def _with_us(changes):
    if "submitted" not in changes:
        return changes
    return {**changes, "_us": _microseconds(changes["submitted"])}


def _mongo_condition(op, operand):
    if op == "$exists":
        return {"$ne" if operand else "$eq": None}
    if op == "$glob":
        return {"$regex": glob_to_regex(operand, end=r"\z")}
    return {op: operand}


class MongoDB(TaskDB):
    """TaskDB in `collection` of `database` on the server at `url`.

    `client_options` go to pymongo.MongoClient (e.g. serverSelectionTimeoutMS). One writer
    per collection: the `_seq` counter is read once, on open.
    """

    def __init__(self, url="mongodb://127.0.0.1:27017", database="taskhub",
                 collection="tasks", **client_options):
        self.url, self.database, self.collection = url, database, collection
        self.client_options = client_options
        self._client = self._tasks = None
        self._seq = 0

    def open(self):
        self._client = pymongo.MongoClient(self.url, tz_aware=True, tzinfo=timezone.utc,
                                           **self.client_options)
        self._tasks = self._client[self.database][self.collection]
        self._tasks.create_index(_ORDER)
        for key in _INDEXED:
            self._tasks.create_index(key)
        for key in _WITH_SUBMITTED:  # a filtered page in submission order reads in order
            self._tasks.create_index([(key, pymongo.ASCENDING), *_ORDER])
        self._tasks.create_index("resubmitted")  # finds the task a resubmission came from
        # documents written before `_us` existed: their dates to the millisecond
        self._tasks.update_many({"_us": {"$exists": False}}, [{"$set": {"_us": {
            "$multiply": [{"$toLong": "$submitted"}, 1000]}}}])
        last = self._tasks.find_one({}, {"_seq": 1}, sort=[("_seq", pymongo.DESCENDING)])
        self._seq = last["_seq"] if last else 0
        return self

    def _existing(self, ids):
        return {doc["_id"] for doc in self._tasks.find({"_id": {"$in": ids}}, {"_id": 1})}

    def add_records(self, records):
        documents = [new_record(record) for record in records]
        ids = [document["msg_id"] for document in documents]
        check_new_ids(ids, self._existing(ids))
        for document in documents:
            self._seq += 1
            document.update(_id=document["msg_id"], _seq=self._seq,
                             _us=_microseconds(document["submitted"]))
        if documents:
            self._tasks.insert_many(documents)

    def update_records(self, updates):
        updates = [(msg_id, record_changes(msg_id, changes)) for msg_id, changes in updates]
        known = self._existing([msg_id for msg_id, _ in updates])
        writes = [pymongo.UpdateOne({"_id": msg_id}, {"$set": _with_us(changes)})
                  for msg_id, changes in updates if msg_id in known and changes]
        if writes:
            self._tasks.bulk_write(writes)
        return [msg_id for msg_id, _ in updates if msg_id not in known]

    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        keys = projection(keys)
        fields = {key: 1 for key in keys}
        fields["_id"] = 0
        order, (limit, skip) = mongo_sort(sort), page_bounds(limit, skip)
        found = self._tasks.find(mongo_filter(query), fields).sort(order).skip(skip)
        if self._budget_ms() is not None:  # the server stops it: ExecutionTimeout
            found = found.max_time_ms(self._budget_ms())
        if limit == 0:  # pymongo's limit(0) means no limit
            return []
        if limit is not None:
            found = found.limit(limit)
        # .get: documents written before a key existed lack it
        return [{key: document.get(key) for key in keys} for document in found]

    def drop_matching_records(self, query):
        return self._tasks.delete_many(mongo_filter(query)).deleted_count

    def buffer_sizes(self, query):
        def total(key):  # the bytes of the binaries in the list `key` (none if null)
            return {"$reduce": {"input": {"$ifNull": [f"${key}", []]}, "initialValue": 0,
                                "in": {"$add": ["$$value", {"$binarySize": "$$this"}]}}}
        found = self._tasks.aggregate([
            {"$match": mongo_filter(query)}, {"$sort": dict(_ORDER)},
            {"$project": {"_id": 1, "size": {"$add": [total("buffers"),
                                                      total("result_buffers")]}}}])
        return [(document["_id"], document["size"]) for document in found]

    def count(self, query=None):
        budget = self._budget_ms()
        return self._tasks.count_documents(mongo_filter(query or {}),
                                           **({"maxTimeMS": budget} if budget else {}))

    def _budget_ms(self):
        """Milliseconds left before `deadline` (at least 1), or None without one."""
        if self.deadline is None:
            return None
        return max(1, int((self.deadline - time.monotonic()) * 1000))

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = self._tasks = None
