"""Issue 14, limits before trust: a keyless peer cannot make the controller allocate much.

A real `python -m taskhub.controller` (its own process, so its peak RSS is its own) on
loopback, CurveZMQ off as by default there; a raw socket without the key sends one 500 MB
frame to the query port. The controller disconnects it having read the length only: its
peak RSS grows by less than 200 MB, and it keeps answering a client with the key.
"""
import json
import subprocess
import sys

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from conftest import wait_until
from taskhub.client import Client
from taskhub.controller import msglimits
from taskhub.paths import ensure_profile_dir, security_file

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("channel, size", [
    ("query", 64 << 20), ("control", 64 << 20), ("iopub", 64 << 20),
    ("hb_pong", 64 << 20), ("e_control", 64 << 20), ("e_iopub", 64 << 20),
    ("task", 4 << 30), ("mux", 4 << 30), ("e_task", 4 << 30), ("e_mux", 4 << 30)])
def test_task_channels_take_big_frames_the_others_small(channel, size):
    assert msglimits.max_frame_size(channel) == size


def test_a_size_of_zero_means_no_limit():
    assert msglimits.max_frame_size("query", control=0) == -1
    assert msglimits.max_frame_size("task", data=0) == -1


def peak_rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def controller(tmp_path):
    profile = ensure_profile_dir(tmp_path / "profile")
    proc = subprocess.Popen([sys.executable, "-m", "taskhub.controller", "--profile-dir",
                             str(profile), "--web-port", "-1", "--log-level", "WARN"])
    path = security_file(profile, "client")
    wait_until(path.exists, 30, what="the connection file")
    with Client(str(path), timeout=30) as rc:
        rc.db_query({"msg_id": "none"})  # settled in: its steady memory is the baseline
    yield proc, path
    proc.terminate()
    proc.wait(30)


def test_a_keyless_500_mb_frame_costs_the_controller_little(controller):
    proc, path = controller
    info = json.loads(path.read_text())
    before = peak_rss(proc.pid)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(f"tcp://127.0.0.1:{info['ports']['query']}")
    sock.send(bytes(500 << 20), copy=False)
    assert monitor.poll(60_000), "the controller did not disconnect the sender"
    assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
    sock.disable_monitor()
    monitor.close()
    sock.close(linger=0)
    assert peak_rss(proc.pid) - before < 200 << 20
    with Client(str(path), timeout=30) as rc:  # and it keeps answering
        assert rc.db_query({"msg_id": "none"}) == []
    assert proc.poll() is None
