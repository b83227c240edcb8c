"""The task recorder, event by event: what reaches the task DB, when, and in what order.

A new record is held for `hold` seconds so a task that finishes by then is written once;
the clock is a plain variable here, so every step is exact (no waiting).
"""
import json
from datetime import datetime, timedelta, timezone

import pytest

from taskhub.controller.db.base import TASK_RECORD_KEYS
from taskhub.controller.db.memory import MemoryDB
from taskhub.controller.recorder import LINGER_MAX, TaskRecorder
from taskhub.jsonutil import EncodedJSON

T0 = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)


class CountingDB(MemoryDB):
    """A memory DB that lists each write it was asked for."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def add_records(self, records):
        self.writes.append(("add", [r["msg_id"] for r in records]))
        super().add_records(records)

    def update_records(self, updates):
        self.writes.append(("update", [m for m, _ in updates]))
        return super().update_records(updates)

    def commit(self):
        self.writes.append(("commit",))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def rec():
    db, clock = CountingDB(), Clock()
    recorder = TaskRecorder(db, hold=0.25, linger=0, clock=clock)
    recorder.clock = clock
    return recorder


def request(msg_id):
    return {"header": {"msg_id": msg_id, "session": "client-1", "msg_type": "apply_request"},
            "metadata": {"label": "job"}, "content": {}, "buffers": [b"f", b"args"]}


def reply(msg_id, status="ok"):
    content = {"status": status} if status == "ok" else {
        "status": "error", "ename": "ZeroDivisionError", "evalue": "division by zero"}
    return {"header": {"msg_id": "r-" + msg_id}, "content": content, "buffers": [b"42"],
            "metadata": {"started": (T0 + timedelta(seconds=1)).isoformat(),
                         "completed": (T0 + timedelta(seconds=2)).isoformat(),
                         "stdout": "hi\n", "stderr": ""}}


def stored(recorder, msg_id):
    [record] = recorder.db.find_records({"msg_id": msg_id}, list(TASK_RECORD_KEYS))
    return record


def test_a_task_that_finishes_within_the_hold_is_written_once_whole(rec):
    rec.submitted(request("a"), "task", T0)
    rec.update("a", engine_uuid="e1", engine_id=0)
    rec.write_due()
    assert rec.db.writes == [] and rec.dirty
    rec.clock.now += 0.1
    rec.replied("a", reply("a"), T0 + timedelta(seconds=3))
    rec.write_due()
    assert rec.db.writes == [("add", ["a"]), ("commit",)]
    record = stored(rec, "a")
    assert (record["engine_uuid"], record["status"], record["stdout"], record["buffers"],
            record["result_buffers"], record["label"]) == ("e1", "ok", "hi\n", [b"f", b"args"],
                                                           [b"42"], "job")
    assert record["submitted"] == T0 and record["completed"] == T0 + timedelta(seconds=2)
    assert not rec.dirty and rec.next_due is None


def test_an_unfinished_task_is_written_when_its_hold_ends_then_updated(rec):
    rec.submitted(request("a"), "task", T0)
    assert rec.next_due == 100.25
    rec.clock.now = 100.2499
    rec.write_due()
    assert rec.db.writes == []
    rec.clock.now = 100.25
    rec.write_due()
    assert rec.db.writes == [("add", ["a"]), ("commit",)]
    assert stored(rec, "a")["completed"] is None  # pending, and visible as such
    rec.replied("a", reply("a", "error"), T0 + timedelta(seconds=3))
    rec.write_due()
    assert rec.db.writes[2:] == [("update", ["a"]), ("commit",)]
    assert stored(rec, "a")["error"]["ename"] == "ZeroDivisionError"


def test_a_finished_task_is_written_at_once_even_behind_unfinished_ones(rec):
    for msg_id in "abc":
        rec.submitted(request(msg_id), "task", T0 + timedelta(seconds=ord(msg_id)))
        rec.clock.now += 0.1  # a is held until 100.25, b until 100.35, c until 100.45
    rec.clock.now = 100.2
    rec.replied("b", reply("b"), T0)
    rec.write_due()
    assert rec.db.writes == [("add", ["b"]), ("commit",)]
    rec.clock.now = 100.25  # a's hold is over, c's is not
    rec.write_due()
    assert rec.db.writes[2:] == [("add", ["a"]), ("commit",)]
    rec.flush()
    # written b, a, c; read in submission order
    assert [r["msg_id"] for r in rec.db.find_records({})] == ["a", "b", "c"]


def test_submission_times_are_unique_and_increasing(rec):
    for msg_id in "abc":
        rec.submitted(request(msg_id), "task", T0)  # one microsecond for all three
    rec.submitted(request("d"), "task", T0 - timedelta(seconds=1))  # the clock stepped back
    rec.flush()
    times = [r["submitted"] for r in rec.db.find_records({}, ["submitted"])]
    tick = timedelta(microseconds=1)
    assert times == [T0, T0 + tick, T0 + 2 * tick, T0 + 3 * tick]


def test_flush_writes_everything_at_once_for_a_reader(rec):
    rec.submitted(request("a"), "task", T0)
    rec.submitted(request("b"), "task", T0)
    rec.replied("b", reply("b"), T0)
    rec.flush()
    assert rec.db.writes == [("add", ["a", "b"]), ("commit",)]
    assert rec.db.count({"completed": None}) == 1 and rec.next_due is None
    rec.failed("a", {"status": "error", "ename": "TaskAborted", "evalue": "x"}, T0)
    rec.flush()
    assert stored(rec, "a")["status"] == "aborted" and not rec.dirty


def test_a_failed_attempt_is_kept_in_the_record_written_once(rec):
    rec.submitted(request("a"), "task", T0)
    rec.retried("a", "e1", 0, "EngineError", "engine 0 died", T0)
    rec.replied("a", reply("a"), T0)
    rec.write_due()
    assert rec.db.writes == [("add", ["a"]), ("commit",)]
    [attempt] = stored(rec, "a")["result_metadata"]["failed_attempts"]
    assert (attempt["engine_id"], attempt["ename"]) == (0, "EngineError")


def test_a_reply_without_output_keeps_its_metadata_json_and_records_empty_output(rec):
    md = {"engine_uuid": "e1", "started": T0.isoformat(), "completed": T0.isoformat()}
    raw = [b"sig", b'{"msg_id":"r-a"}', b"{}", json.dumps(md).encode(), b'{"status":"ok"}']
    rec.submitted(request("a"), "task", T0)
    rec.replied("a", {"header": {"msg_id": "r-a"}, "metadata": md, "buffers": [],
                      "content": {"status": "ok"}, "raw": raw}, T0)
    written = rec._adds["a"]["result_metadata"]
    assert type(written) is EncodedJSON and written.json == raw[3].decode()
    rec.flush()
    record = stored(rec, "a")
    assert (record["result_metadata"], record["stdout"], record["stderr"]) == (md, "", "")


def test_finished_records_and_updates_linger_to_share_a_commit(rec):
    rec.linger = 0.005
    rec.submitted(request("old"), "task", T0)
    rec.flush()
    rec.db.writes.clear()
    rec.submitted(request("a"), "task", T0)
    rec.replied("a", reply("a"), T0)  # at 100.0: may wait until 100.005
    rec.update("old", label="relabelled")
    assert rec.next_due == 100.005
    rec.clock.now = 100.004
    rec.submitted(request("b"), "task", T0)
    rec.replied("b", reply("b"), T0)
    rec.write_due()
    assert rec.db.writes == []
    rec.clock.now = 100.005
    rec.write_due()
    assert rec.db.writes == [("add", ["a", "b"]), ("update", ["old"]), ("commit",)]
    assert rec.next_due is None and not rec.dirty


def test_many_finished_records_do_not_wait_for_the_linger(rec):
    rec.linger = 10.0
    for i in range(LINGER_MAX):
        rec.submitted(request(f"t{i}"), "task", T0)
        rec.replied(f"t{i}", reply(f"t{i}"), T0)
    rec.write_due()
    assert [w[0] for w in rec.db.writes] == ["add", "commit"]
    assert len(rec.db.writes[0][1]) == LINGER_MAX
