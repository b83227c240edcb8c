"""Issue 7, controller faults: a controller SIGKILLed mid-run and started again on its profile.

The end-to-end test runs the real `ipcluster start --daemonize` twice on one profile: the
second start (--no-resume) finds the first controller dead, stops its engines and starts
fresh ones. What
the first controller recorded must all still be in SQLite, and the tasks it left waiting or
running must come back failed with TaskLost naming it — never pending forever. The steps
behind that (`Controller.fail_lost_tasks`, `IPControllerApp.fail_lost_tasks`) are tested
on their own first, on a bare task DB.
"""
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from conftest import LoopbackCluster, wait_until

from taskhub.cluster.launcher import is_ours
from taskhub.controller import app as controller_app
from taskhub.controller import controller as controller_mod
from taskhub.controller.controller import Controller
from taskhub.controller.db import make_db
from taskhub.controller.db.base import TASK_RECORD_KEYS
from taskhub.error import TaskLost
from taskhub.session import Session, new_key

pytestmark = pytest.mark.timeout(180)

LOST = "the controller (pid 4242) stopped before this task finished; resubmit it"


# -- functions the engines run ---------------------------------------------------------
def wait_for_gate(marker, gate):
    """Say we started (a file), then block until the test creates `gate` (at most 60 s)."""
    open(marker, "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


# -- the lost-task step, on a bare task DB ---------------------------------------------
def _records(done, unfinished):
    now = datetime.now(timezone.utc)
    finished = [{"msg_id": f"done-{i}", "submitted": now, "completed": now, "status": "ok",
                 "result_content": {"status": "ok"}} for i in range(done)]
    pending = [{"msg_id": f"lost-{i}", "submitted": now, "engine_uuid": "e1",
                "engine_id": 1} for i in range(unfinished)]
    return finished + pending


def _controller(tmp_path, db="sqlite", records=()):
    options = {"filename": str(tmp_path / "tasks.db")} if db == "sqlite" else {}
    store = make_db(db, **options)
    if records:
        store.add_records(list(records))
        store.commit()
    return Controller(Session(new_key()), store)


def test_fail_lost_tasks_marks_every_unfinished_record_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(controller_mod, "LOST_BATCH", 3)  # several transactions
    c = _controller(tmp_path, records=_records(done=4, unfinished=7))
    before = {r["msg_id"]: r for r in c.db.find_records({}, list(TASK_RECORD_KEYS))}
    assert c.fail_lost_tasks(LOST) == 7
    after = {r["msg_id"]: r for r in c.db.find_records({}, list(TASK_RECORD_KEYS))}
    assert sorted(after) == sorted(before)
    for msg_id, rec in after.items():
        if msg_id.startswith("done-"):
            assert rec == before[msg_id]
            continue
        assert rec["status"] == "lost" and rec["completed"] is not None
        assert rec["result_content"] == rec["error"] == {
            "status": "error", "ename": "TaskLost", "evalue": LOST, "traceback": ""}
        assert (rec["engine_uuid"], rec["engine_id"]) == ("e1", 1)  # where it was running
    assert c.fail_lost_tasks(LOST) == 0
    c.db.close()


@pytest.mark.parametrize("db", ["memory", "none"])
def test_fail_lost_tasks_without_history_marks_nothing(tmp_path, db):
    assert _controller(tmp_path, db).fail_lost_tasks(LOST) == 0


def _app(tmp_path):
    app = controller_app.IPControllerApp()
    app.location = tmp_path
    (tmp_path / "pid").mkdir(exist_ok=True)
    return app


def test_the_app_names_the_dead_controller_from_its_pid_file(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    app = _app(tmp_path)
    (tmp_path / "pid" / controller_app.PID_FILE).write_text(f"{pid}\n")
    c = _controller(tmp_path, records=_records(done=1, unfinished=2))
    app.fail_lost_tasks(c)
    lost = c.db.find_records({"status": "lost"}, ["error"])
    assert [r["error"]["evalue"] for r in lost] == [
        f"the controller (pid {pid}) stopped before this task finished; resubmit it"] * 2
    c.db.close()


def test_the_app_leaves_a_live_controllers_tasks_alone(tmp_path):
    # a process whose command line names taskhub.controller stands in for a live one
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "taskhub.controller"])
    try:
        (tmp_path / "pid").mkdir()
        (tmp_path / "pid" / controller_app.PID_FILE).write_text(f"{live.pid}\n")
        c = _controller(tmp_path, records=_records(done=1, unfinished=2))
        _app(tmp_path).fail_lost_tasks(c)
        assert c.db.count({"completed": None}) == 2
        c.db.close()
    finally:
        live.kill()
        live.wait()


def test_a_clean_stop_fails_what_is_in_flight(tmp_path):
    """A controller stopped with work outstanding answers it with TaskLost and records it."""
    cluster = LoopbackCluster(tmp_path / "p", n=1, heartbeat_period=0.1).start()
    rc, gate = cluster.client(), tmp_path / "gate"
    try:
        ar = rc.load_balanced_view().apply_async(wait_for_gate, str(tmp_path / "m"), str(gate))
        wait_until(lambda: (tmp_path / "m").exists(), 30, what="the task to start")
    finally:
        _stop_controller_then_engines(cluster)
        gate.touch()
    try:
        with pytest.raises(TaskLost, match=rf"controller \(pid {os.getpid()}\) stopped"):
            ar.get(10)
    finally:
        rc.close()
    store = make_db("sqlite", filename=str(tmp_path / "p" / "tasks.db"))
    [rec] = store.find_records({"msg_id": ar.msg_ids[0]}, ["status", "error", "completed"])
    assert rec["status"] == "lost" and rec["error"]["ename"] == "TaskLost"
    store.close()


def _stop_controller_then_engines(cluster):
    """LoopbackCluster.stop in the other order: engines that leave first fail their tasks."""
    cluster.controller.stop()
    cluster.thread.join(10)
    cluster.controller.close()
    for proc in cluster.engines:
        proc.terminate()
        proc.wait(10)


# -- end to end: SIGKILL the controller of `ipcluster start`, start it again -----------------
def _submit_a_run(rc, tmp_path):
    """Finished tasks, tasks running (blocked on a gate), tasks queued on engines behind
    them, tasks waiting in the scheduler for the running ones, and a direct one."""
    lview = rc.load_balanced_view()
    finished = [lview.apply_async(pow, 2, i) for i in range(30)]
    assert [ar.get(30) for ar in finished] == [2 ** i for i in range(30)]
    gate = tmp_path / "gate"
    running = [lview.apply_async(wait_for_gate, str(tmp_path / f"m{i}"), str(gate))
               for i in range(2)]
    wait_until(lambda: all((tmp_path / f"m{i}").exists() for i in range(2)), 30,
               what="both engines to be busy")
    # and their start notices recorded, so nothing changes their records before the kill
    ids = [m for ar in running for m in ar.msg_ids]
    wait_until(lambda: len(rc.db_query({"msg_id": {"$in": ids}, "status": "running"},
                                       keys=["msg_id"])) == 2, 30, what="both running")
    queued = [lview.apply_async(pow, 3, i) for i in range(4)]
    with lview.temp_flags(after=running):
        waiting = [lview.apply_async(pow, 5, i) for i in range(3)]
    direct = rc[rc.ids[0]].apply_async(pow, 7, 2)
    return finished, running + queued + waiting + [direct], gate


def _snapshot(profile):
    """Every record in the profile's SQLite file, read straight from the file."""
    store = make_db("sqlite", filename=str(profile.dir / "tasks.db"))
    try:
        return {r["msg_id"]: r for r in store.find_records({}, list(TASK_RECORD_KEYS))}
    finally:
        store.close()


def test_a_sigkilled_controller_loses_nothing_recorded_and_fails_what_was_in_flight(
        profile, tmp_path):
    profile.start("-n", "2")
    rc = profile.client()
    rc.wait_for_engines(2, timeout=60)
    finished, unfinished, gate = _submit_a_run(rc, tmp_path)
    history = rc.hub_history()  # also: the hub has flushed everything it received
    recorded = _snapshot(profile)
    old_pid, old_engines = profile.controller_pid(), profile.engine_pids()
    rc.close()

    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: not is_ours(old_pid), 10, what="the controller to die")
    gate.touch()  # the old engines may finish now: nobody is there to hear them
    on_disk = _snapshot(profile)
    assert on_disk == recorded  # nothing recorded before the kill is missing or changed
    assert sorted(on_disk) == sorted(history)
    unfinished_ids = [ar.msg_ids[0] for ar in unfinished]
    assert [m for m in unfinished_ids if on_disk[m]["completed"] is not None] == []

    # the same profile: a stale record, stale engines; --no-resume: they are stopped and
    # what was in flight is marked lost (resuming it instead: tests/test_restart.py)
    profile.start("-n", "2", "--no-resume")
    assert not any(is_ours(pid) for pid in old_engines)
    rc = profile.client()
    try:
        rc.wait_for_engines(2, timeout=60)
        _check_the_restarted_history(rc, history, recorded, finished, unfinished_ids, old_pid)
    finally:
        rc.close()


def _check_the_restarted_history(rc, history, recorded, finished, lost_ids, old_pid):
    assert rc.hub_history() == history
    keys = [k for k in TASK_RECORD_KEYS if k != "msg_id"]
    now = {r["msg_id"]: r for r in rc.db_query({"msg_id": {"$in": history}}, keys=keys)}
    done_ids = [ar.msg_ids[0] for ar in finished]
    assert [m for m in done_ids if now[m] != recorded[m]] == []  # the finished ones, intact
    reason = f"the controller (pid {old_pid}) stopped before this task finished; resubmit it"
    for m in lost_ids:
        assert (now[m]["status"], now[m]["error"]["ename"], now[m]["error"]["evalue"]) == \
            ("lost", "TaskLost", reason)
        assert now[m]["completed"] is not None and now[m]["submitted"] == recorded[m]["submitted"]
    assert rc.result_status(lost_ids) == {"pending": [], "completed": lost_ids}
    with pytest.raises(TaskLost, match=r"pid \d+\) stopped before this task finished"):
        rc.get_result(lost_ids[0]).get(10)
    # the running and queued ones run again (those that waited for them keep waiting for
    # the lost originals, so they would fail as ImpossibleDependency)
    again = rc.resubmit(lost_ids[:6]).get(60)
    assert again[2:] == [3 ** i for i in range(4)]
    with pytest.raises(ValueError, match="ran directly on engine 0, which is gone"):
        rc.resubmit(lost_ids[-1])
    assert rc.db_count({"completed": None}) == 0
    assert rc.db_count({"status": "ok"}) == len(finished) + 6
