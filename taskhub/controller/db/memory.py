"""In-memory task database: a dict of records, lost when the controller exits.

For tests and short sessions; memory grows with every task, so long-running controllers
should use the SQLite backend. Records are stored and returned as shallow copies: the
dicts and buffer lists inside them are shared, so callers must not mutate them.
"""
import time

from taskhub.controller.db.base import (
    TaskDB, check_new_ids, new_record, record_changes, submission_order,
)
from taskhub.controller.db.query import compile_query, page_bounds, projection, sort_spec


class MemoryDB(TaskDB):
    """TaskDB backed by a dict msg_id -> record, in insertion order."""

    def __init__(self):
        self._records = {}

    def add_records(self, records):
        records = [new_record(record) for record in records]
        check_new_ids([record["msg_id"] for record in records], self._records)
        for record in records:
            self._records[record["msg_id"]] = record

    def update_records(self, updates):
        updates = [(msg_id, record_changes(msg_id, changes)) for msg_id, changes in updates]
        unknown = [msg_id for msg_id, _ in updates if msg_id not in self._records]
        for msg_id, changes in updates:
            self._records.get(msg_id, {}).update(changes)
        return unknown

    def find_records(self, query, keys=None, sort=None, limit=None, skip=None):
        test, keys, order = compile_query(query), projection(keys), sort_spec(sort)
        limit, skip = page_bounds(limit, skip)
        found = _in_order(filter(test, self._watched(self._records.values())), order)
        end = None if limit is None else skip + limit
        return [{key: record[key] for key in keys} for record in found[skip:end]]

    def drop_matching_records(self, query):
        test = compile_query(query)
        doomed = [r["msg_id"] for r in self._watched(list(self._records.values())) if test(r)]
        for msg_id in doomed:
            del self._records[msg_id]
        return len(doomed)

    def _watched(self, records):
        """`records`, raising TimeoutError once `deadline` passes (looked at every 256)."""
        if self.deadline is None:
            return records
        return _until(self.deadline, records)


def _until(deadline, records):
    for i, record in enumerate(records):
        if not i & 255 and time.monotonic() > deadline:
            raise TimeoutError("the query ran past its deadline")
        yield record


def _in_order(records, order):
    """`records` (in insertion order) sorted by the normal-form sort `order`."""
    records = sorted(records, key=submission_order)
    if order and order[-1][1] < 0:  # ties in reverse; list.sort is stable both ways
        records.reverse()
    for key, direction in reversed(order):  # least significant key first
        records.sort(key=lambda record: _nones_first(record[key]), reverse=direction < 0)
    return records


def _nones_first(value):
    return (value is not None, value)
