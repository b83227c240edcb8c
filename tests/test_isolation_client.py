"""Issue 13, the client and cluster side: nothing waits forever on a controller that is gone,
no cluster outlives the script that started it, Ctrl-C stops what it interrupted.

The controller runs in its own process here (a `Cluster`), so it can be SIGKILLed or
SIGSTOPped. Waits on the client are bounded by generous test timeouts; nothing asserts on
how long anything took.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import wait_for_file, wait_until

from taskhub.client import Client
from taskhub.client.connection import LinkState, lost_error
from taskhub.cluster.cluster import Cluster
from taskhub.controller.db import make_db
from taskhub.error import ClientClosed, ControllerLost, TimeoutError

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent
LOST = r"lost the controller at tcp://127\.0\.0\.1:\d+ \(connection file .*taskhub-client\.json\): "


# -- the link state, event by event -------------------------------------------------------
def test_link_is_lost_once_after_the_grace_and_up_again_on_a_handshake():
    link = LinkState(grace=0.5)
    link.down(1.0)                       # before the first handshake: the connect's timeout
    assert link.state == "connecting" and not link.tick(100.0)
    link.up(2.0)
    assert link.wait_ms(2.0) is None     # up: the IO thread sleeps until a message
    link.down(3.0)
    assert link.state == "down" and link.wait_ms(3.0) == 501
    assert not link.tick(3.4)
    assert link.tick(3.5) and link.state == "lost"
    assert not link.tick(9.0)            # one verdict per loss
    link.down(9.5)                       # a later drop while lost changes nothing
    assert link.state == "lost" and link.deadline is None
    link.up(10.0)
    link.down(11.0)
    assert link.tick(11.5)


def test_a_drop_healed_within_the_grace_is_not_a_loss():
    link = LinkState(grace=0.5)
    link.up(0.0)
    link.down(1.0)
    link.up(1.2)
    assert not link.tick(5.0) and link.state == "up"


def test_controller_lost_names_the_profile_the_address_and_what_to_do(tmp_path):
    client = SimpleNamespace(
        connection_file=tmp_path / "profile_big" / "security" / "taskhub-client.json",
        _url=lambda channel: "tcp://10.0.0.5:4321")
    lost = lost_error(client, 10)("m-1")
    assert isinstance(lost, ControllerLost) and lost.task == "m-1"
    assert str(lost).startswith("ControllerLost: lost the controller at tcp://10.0.0.5:4321 "
                                "(profile 'big'): its connection closed, or it answered no "
                                "heartbeat for 10s")
    assert "Start the cluster again and connect a new Client" in str(lost)


# -- a controller in its own process ------------------------------------------------------
def gate_task(marker, gate):
    """Say we started (a file), then wait for the test to open `gate`."""
    open(marker, "w").close()
    return wait_for_file(gate, 120)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKHUB_DIR", str(tmp_path / "home"))
    c = Cluster(n=1, profile_dir=tmp_path / "p", timeout=60).start()
    c.close_client()
    yield c
    for pid in c.controller.pids():  # a stopped controller must go on, so stop() can end
        _signal(pid, signal.SIGCONT)
    c.stop()


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _controller_pid(cluster):
    return cluster.controller.pid


def _start_gated_task(rc, tmp_path):
    marker, gate = tmp_path / "started", tmp_path / "gate"
    ar = rc.load_balanced_view().apply_async(gate_task, str(marker), str(gate))
    wait_until(marker.exists, 60, what="the task to start on its engine")
    return ar


def _in_thread(call):
    """Run `call` on a thread; a dict that gets its "error" or "value" when it ends."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: B036 - the test inspects whatever it raised
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_result_waited_for_fails_with_controller_lost_when_the_controller_is_killed(
        cluster, tmp_path):
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=60)
    try:
        ar = _start_gated_task(rc, tmp_path)
        os.kill(_controller_pid(cluster), signal.SIGKILL)
        with pytest.raises(ControllerLost, match=LOST) as lost:
            ar.get(120)  # far longer than noticing a closed connection takes
        assert lost.value.task == ar.msg_ids[0]
        assert "Start the cluster again" in str(lost.value)
        with pytest.raises(ControllerLost, match=LOST):  # new work fails at once
            rc.load_balanced_view().apply_async(abs, -1)
    finally:
        rc.close()


def test_apply_sync_fails_with_controller_lost_when_the_controller_is_killed(
        cluster, tmp_path):
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=60)
    marker, gate = tmp_path / "started", tmp_path / "gate"

    def kill_once_started():
        wait_until(marker.exists, 60, what="the task to start")
        os.kill(_controller_pid(cluster), signal.SIGKILL)

    killer = threading.Thread(target=kill_once_started, daemon=True)
    killer.start()
    try:
        with pytest.raises(ControllerLost, match=LOST):
            rc.load_balanced_view().apply_sync(gate_task, str(marker), str(gate))
    finally:
        killer.join(60)
        rc.close()


def test_waiting_for_engines_that_will_never_come_ends_with_controller_lost(cluster):
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=60)
    try:
        thread, outcome = _in_thread(lambda: rc.wait_for_engines(5))  # there is one
        os.kill(_controller_pid(cluster), signal.SIGKILL)
        thread.join(120)
        assert not thread.is_alive(), "wait_for_engines still waits"
        assert isinstance(outcome.get("error"), ControllerLost), outcome
    finally:
        rc.close()


HUB_CALLS = {
    "db_query": lambda rc: rc.db_query({"msg_id": {"$ne": None}}, keys=["msg_id"]),
    "db_count": lambda rc: rc.db_count(),
    "stats": lambda rc: rc.stats(),
}


@pytest.mark.parametrize("call", sorted(HUB_CALLS))
def test_a_hub_request_waited_for_fails_with_controller_lost_when_the_controller_is_killed(
        cluster, call):
    # Heartbeats would take 60 s to give up: what is noticed is the closed connection.
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=60, request_timeout=None)
    try:
        pid = _controller_pid(cluster)
        os.kill(pid, signal.SIGSTOP)  # the request waits for an answer that cannot come...
        thread, outcome = _in_thread(lambda: HUB_CALLS[call](rc))
        wait_until(lambda: rc._requests, 30, what=f"{call} to be waiting for its reply")
        os.kill(pid, signal.SIGKILL)  # ... and then never will
        thread.join(120)
        assert not thread.is_alive(), f"{call} still waits after the controller died"
        assert isinstance(outcome.get("error"), ControllerLost), outcome
        assert "lost the controller at tcp://127.0.0.1:" in str(outcome["error"])
    finally:
        rc.close()


def test_a_silent_controller_is_lost_after_controller_timeout_and_found_again(cluster):
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=1.0, request_timeout=None)
    pid = _controller_pid(cluster)
    try:
        os.kill(pid, signal.SIGSTOP)  # alive, connection open, answering nothing
        thread, outcome = _in_thread(rc.stats)
        thread.join(120)
        assert not thread.is_alive(), "stats still waits for a frozen controller"
        assert isinstance(outcome.get("error"), ControllerLost), outcome
        assert "answered no heartbeat for 1s" in str(outcome["error"])
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: rc._gone is None, 60, what="the client to reconnect")
        assert rc.db_count() >= 0  # the same client works again
    finally:
        _signal(pid, signal.SIGCONT)
        rc.close()


def test_a_hub_request_times_out_by_default_naming_the_request(cluster):
    # No heartbeats (controller_timeout=None): only the request's own timeout can end it.
    rc = Client(profile_dir=cluster.profile_dir, controller_timeout=None, request_timeout=1.0)
    pid = _controller_pid(cluster)
    try:
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(TimeoutError, match=r"db_count_request got no reply from "
                                               r"tcp://127\.0\.0\.1:\d+ within 1s"):
            rc.db_count()
    finally:
        os.kill(pid, signal.SIGCONT)
        rc.close()


def test_close_fails_pending_results_and_leaves_their_tasks_running(cluster, tmp_path):
    rc = Client(profile_dir=cluster.profile_dir)
    ar = _start_gated_task(rc, tmp_path)
    rc.close()
    with pytest.raises(ClientClosed, match="was closed before this reply came"):
        ar.get(60)
    assert ar.done() and not ar.successful()
    (tmp_path / "gate").touch()
    with Client(profile_dir=cluster.profile_dir) as other:  # the task itself went on
        assert other.get_result(ar.msg_ids[0]).get(60) == cluster_engine_pid(other)
    with pytest.raises(ClientClosed, match="this client of .* is closed: connect a new one"):
        rc.load_balanced_view().apply_async(abs, -1)


def cluster_engine_pid(rc):
    return rc[rc.ids[0]].apply_sync(os.getpid)


# -- clusters started from a script that ends without stop() ------------------------------
SCRIPT = textwrap.dedent("""
    import json, sys, time
    from taskhub.cluster.cluster import Cluster
    keep = sys.argv[2] == "keep"
    c = Cluster(n=1, timeout=60, shutdown_atexit=not keep).start()
    print(json.dumps({"pids": c.pids(), "dir": str(c.profile_dir)}), flush=True)
    mode = sys.argv[1]
    if mode == "raise":
        raise RuntimeError("the script failed")
    if mode == "wait":
        time.sleep(600)
    if mode == "fork":  # a forked child inherits the atexit handler: it must not stop it
        import os
        child = os.fork()
        if child == 0:
            sys.exit(0)
        os.waitpid(child, 0)
        from taskhub.cluster.cluster import record_path
        print(json.dumps({"running": c.any_running() and c.client.ids == [0],
                          "recorded": record_path(c.profile_dir).exists()}), flush=True)
""")


def _env(tmp_path):
    return {**os.environ, "TASKHUB_DIR": str(tmp_path / "home"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")]))}


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""  # empty for a zombie
    except OSError:
        return False


def _run_script(tmp_path, mode, keep="stop"):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), mode, keep], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = json.loads(proc.stdout.readline() or "null")
    assert started, f"the script did not start its cluster: {proc.communicate()[1]}"
    return proc, started


def _ipcluster(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "taskhub.cluster", *args],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["exit", "raise"])
def test_a_script_that_ends_without_stop_stops_its_cluster(tmp_path, mode):
    proc, started = _run_script(tmp_path, mode)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (1 if mode == "raise" else 0), err
    assert ("RuntimeError: the script failed" in err) == (mode == "raise")
    assert len(started["pids"]) == 2  # the controller and its engine
    assert not [p for p in started["pids"] if _alive(p)]  # stopped before the script ended
    assert not Path(started["dir"]).exists()  # its temporary profile too


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_script_does_not_leave_its_cluster_running(tmp_path, sig):
    proc, started = _run_script(tmp_path, "wait")
    try:
        listing = _ipcluster(tmp_path, "list").stdout
        assert started["dir"] in listing and "running" in listing  # ipcluster list shows it
        proc.send_signal(sig)
        proc.wait(60)
        wait_until(lambda: not [p for p in started["pids"] if _alive(p)], 60,
                   what=f"the cluster of the killed script to stop: {started['pids']}")
        wait_until(lambda: not Path(started["dir"]).exists(), 30,
                   what="its temporary profile to be removed")
        assert "no clusters recorded" in _ipcluster(tmp_path, "list").stdout
    finally:
        proc.kill()
        proc.wait()
        for pid in started["pids"]:
            _signal(pid, signal.SIGKILL)


def test_a_forked_child_that_exits_leaves_the_cluster_to_its_owner(tmp_path):
    proc, started = _run_script(tmp_path, "fork")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"running": True, "recorded": True}  # after the child's exit
    assert not [p for p in started["pids"] if _alive(p)]  # and stopped at the owner's


def test_shutdown_atexit_false_lets_the_cluster_outlive_the_script(tmp_path):
    proc, started = _run_script(tmp_path, "exit", keep="keep")
    try:
        proc.communicate(timeout=120)
        assert all(_alive(p) for p in started["pids"])
        stopped = _ipcluster(tmp_path, "stop", "--profile-dir", started["dir"])
        assert stopped.returncode == 0, stopped.stderr
        wait_until(lambda: not [p for p in started["pids"] if _alive(p)], 60,
                   what="ipcluster stop to stop it")
    finally:
        for pid in started["pids"]:
            _signal(pid, signal.SIGKILL)


# -- Ctrl-C during a blocking call ---------------------------------------------------------
CTRL_C = textwrap.dedent("""
    import json, os, signal, sys, time
    from taskhub.cluster.cluster import Cluster
    signal.signal(signal.SIGINT, signal.default_int_handler)
    profile, markers, how = sys.argv[1], sys.argv[2], sys.argv[3]

    def nap(i, seconds=3):
        open(os.path.join(markers, str(i)), "w").close()
        time.sleep(seconds)
        return i

    with Cluster(n=2, profile_dir=profile, timeout=60) as rc:
        view = rc.load_balanced_view()
        print("ready", flush=True)
        ar = None
        try:
            if how == "map_sync":
                # long enough that the abort stops even the running ones on a busy machine
                view.map_sync(nap, range(12), [60] * 12, chunksize=1)
            else:
                ar = view.map_async(nap, range(4), chunksize=1)
                ar.get()
        except KeyboardInterrupt as e:
            print(json.dumps({"interrupt": str(e)}), flush=True)
        if ar is not None:  # its tasks went on: they finish
            print(json.dumps({"after": ar.get(120)}), flush=True)
        deadline = time.monotonic() + 60
        while rc.db_count({"completed": None}) and time.monotonic() < deadline:
            time.sleep(0.1)
""")


def _interrupt_script(tmp_path, how):
    script, markers = tmp_path / "ctrl_c.py", tmp_path / "markers"
    script.write_text(CTRL_C)
    markers.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "p"), str(markers),
                             how], env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        wait_until(lambda: any(markers.iterdir()), 60, what="a task to start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _records(tmp_path):
    db = make_db("sqlite", filename=str(tmp_path / "p" / "tasks.db"))
    try:
        return db.find_records({}, ["msg_id", "status", "error", "completed"])
    finally:
        db.close()


def test_ctrl_c_during_map_sync_aborts_the_tasks_it_submitted(tmp_path):
    [said] = _interrupt_script(tmp_path, "map_sync")
    assert said["interrupt"].startswith("interrupted: aborted the ")
    assert "of the call's 12 tasks not done yet" in said["interrupt"]
    records = _records(tmp_path)
    assert len(records) == 12 and all(r["completed"] is not None for r in records)
    aborted = [r for r in records if r["status"] == "error"]
    assert aborted and {r["error"]["ename"] for r in aborted} == {"TaskAborted"}
    ran = [r for r in records if r["status"] == "ok"]
    assert len(ran) + len(aborted) == 12
    assert f"aborted the {len(aborted)} of" in said["interrupt"]


def test_ctrl_c_during_ar_get_keeps_the_tasks_and_says_how_to_abort_them(tmp_path):
    interrupt, after = _interrupt_script(tmp_path, "get")
    assert "go on running on the cluster: rc.abort(ar) stops them" in interrupt["interrupt"]
    assert after["after"] == [0, 1, 2, 3]
    assert {r["status"] for r in _records(tmp_path)} == {"ok"}


@pytest.mark.parametrize("option, value, error", [
    ("request_timeout", "30", TypeError), ("request_timeout", 0, ValueError),
    ("controller_timeout", True, TypeError), ("controller_timeout", -1, ValueError)])
def test_bad_timeouts_are_refused_before_connecting(tmp_path, option, value, error):
    with pytest.raises(error, match=option):
        Client(tmp_path / "no-such-file.json", **{option: value})
