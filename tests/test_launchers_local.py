"""Watching, restarting, growing and shrinking a cluster of local engines, end to end, and
the error an engine gives when it cannot reach its controller.

The hub here declares an engine dead after 10 s of missed heartbeats (the default); the
tests require the watcher to have it unregistered within 3 s of its process ending.
"""
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import pytest

from infra.clusters import IPCLUSTER, squares_on_all_engines, wait_engines
from infra.systems import wait_for
from taskhub.cluster.cluster import read_record

pytestmark = pytest.mark.timeout(180)

NOTICED_WITHIN = 3.0   # seconds from an engine's death to the hub forgetting it


def test_a_killed_engine_is_noticed_at_once_and_replaced(profile):
    profile.start("-n", "3", "--restart-engines")
    rc = profile.client()
    try:
        wait_engines(rc, 3, 30, "start")
        victim = profile.engine_pids()[0]
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        noticed = wait_engines(rc, 2, NOTICED_WITHIN, "the killed engine unregistered")
        replaced = wait_engines(rc, 3, 30, "a replacement registered")
        assert victim not in profile.engine_pids() and len(profile.engine_pids()) == 3
        assert rc.ids[-1] == 3   # a new engine, not the old one back
        assert len(squares_on_all_engines(rc, 3, tasks=60)) >= 2
        sys.stdout.write(f"noticed {noticed - killed:.2f}s, replaced {replaced - killed:.2f}s "
                         "after the kill\n")
    finally:
        rc.close()
    stopped = profile.ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "3 engines" in stopped.stdout
    profile.assert_nothing_left()


def test_foreground_start_unregisters_a_dead_engine_and_does_not_replace_it(profile):
    start = subprocess.Popen([*IPCLUSTER, "start", "-n", "2"], env=profile.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rc = None
    try:
        ready = read_line_with(start.stdout, "engines ready", 60)
        assert "engines ready" in ready, ready + start.stderr.read()
        rc = profile.client()
        wait_engines(rc, 2, 30, "start")
        survivor, victim = profile.engine_pids()
        os.kill(victim, signal.SIGKILL)
        wait_engines(rc, 1, NOTICED_WITHIN, "the killed engine unregistered")
        # the watcher has decided: it recorded the set without the dead engine, and no
        # replacement (a restart would have recorded the new engine's pid instead)
        wait_for(lambda: profile.engine_pids() == [survivor], NOTICED_WITHIN,
                 "the record to list the survivor alone")
        assert len(rc.ids) == 1
        engines_used = squares_on_all_engines(rc, 1, tasks=10)
        assert engines_used == {rc.ids[0]}
    finally:
        if rc is not None:
            rc.close()
        start.send_signal(signal.SIGINT)
        assert start.wait(timeout=60) == 0, start.stderr.read()
    assert "cluster stopped" in start.stdout.read()
    profile.assert_nothing_left()


def read_line_with(stream, text, timeout):
    """Lines of `stream` up to one containing `text` (or EOF, or `timeout`)."""
    seen, deadline = [], time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            seen.append(stream.readline())
            if text in seen[-1] or not seen[-1]:
                break
    return "".join(seen)


def test_engines_add_and_remove_on_a_running_cluster(profile):
    profile.start("-n", "2")
    added = profile.ipcluster("engines", "add", "-n", "2")
    assert added.returncode == 0, added.stderr
    assert "added 2 engines" in added.stdout
    rc = profile.client()
    try:
        wait_engines(rc, 4, 10, "after engines add")
        assert len(squares_on_all_engines(rc, 4, tasks=80)) >= 2
        listed = profile.ipcluster("engines", "list").stdout.splitlines()
        assert len(listed) == 5 and all(" running " in row for row in listed[1:]), listed
        removed = profile.ipcluster("engines", "remove", "-n", "3")
        assert removed.returncode == 0, removed.stderr
        wait_engines(rc, 1, NOTICED_WITHIN, "after engines remove")
        assert len(profile.engine_pids()) == 1
        too_many = profile.ipcluster("engines", "remove", "-n", "2")
        assert too_many.returncode == 1
        assert "cannot remove 2 engines: the cluster has only 1" in too_many.stderr
        engines_used = squares_on_all_engines(rc, 1, tasks=10)
        assert engines_used == set(rc.ids)
    finally:
        rc.close()
    listing = profile.ipcluster("list").stdout
    assert "1/1" in listing, listing
    assert profile.ipcluster("stop").returncode == 0
    profile.assert_nothing_left()


def test_unknown_launcher_fails_before_anything_starts(profile):
    done = profile.ipcluster("start", "-n", "1", "--engines", "nope", "--daemonize")
    assert done.returncode == 1
    assert "unknown engines launcher 'nope'; known: htcondor, local, lsf, mpi, pbs, sge, " \
        "slurm, ssh, winhpc" in done.stderr
    assert read_record(profile.dir) is None
    # a start that fails leaves no empty profile behind; one that existed stays
    failed = profile.ipcluster("start", "-n", "1", "--engines", "nope", "--profile", "x")
    assert failed.returncode == 1 and "unknown engines launcher 'nope'" in failed.stderr
    assert not (profile.dir.parent / "profile_x").exists() and profile.dir.is_dir()


def test_after_engines_die_and_are_replaced_list_and_stop_count_those_that_exist(profile):
    profile.start("-n", "2")
    rc = profile.client()
    try:
        wait_engines(rc, 2, 30, "start")
        os.kill(profile.engine_pids()[0], signal.SIGKILL)
        wait_engines(rc, 1, NOTICED_WITHIN, "the killed engine unregistered")
        wait_for(lambda: len(profile.engine_pids()) == 1, 10, "the watcher to forget the unit")
        assert profile.ipcluster("list").stdout.split()[4:] == ["default",
                                                                str(profile.controller_pid()),
                                                                "1/1", "running"]
        added = profile.ipcluster("engines", "add", "-n", "1")
        assert added.returncode == 0, added.stderr
        wait_engines(rc, 2, 30, "the replacement registered")
        assert "2/2" in profile.ipcluster("list").stdout
    finally:
        rc.close()
    stopped = profile.ipcluster("stop")
    assert "(controller pid" in stopped.stdout and ", 2 engines)" in stopped.stdout
    profile.assert_nothing_left()


def test_client_errors_name_the_profiles_and_a_dead_controller(profile):
    from taskhub.client import Client
    from taskhub.error import ClusterStateError, ConnectionFileError
    profile.start("-n", "1")
    env = {"TASKHUB_DIR": profile.env["TASKHUB_DIR"]}
    with mock.patch.dict(os.environ, env):
        with pytest.raises(ConnectionFileError) as info:
            Client(profile="defualt")
        assert str(info.value).endswith(
            f"; profiles under {profile.dir.parent}: default (running); did you mean "
            f"profile='default'?")
        os.kill(profile.controller_pid(), signal.SIGKILL)
        wait_for(lambda: "stale" in profile.ipcluster("list").stdout, 10, "a stale record")
        with pytest.raises(ClusterStateError) as info:  # at once: not a TimeoutError
            Client(timeout=30)
        assert str(info.value) == (
            f"the controller of profile 'default' (pid {profile.controller_pid()}) is not "
            f"running: `ipcluster list` shows its record as stale. Start the cluster with "
            f"`ipcluster start --profile default` (or clear the record with `ipcluster stop "
            f"--profile default`)")


def _engine_with(tmp_path, port):
    """Run an engine whose connection file names 127.0.0.1:`port`; its stderr."""
    conn = tmp_path / "engine.json"
    ports = dict.fromkeys(("query", "task", "mux", "control", "iopub", "hb_ping", "hb_pong"),
                          port)
    conn.write_text(json.dumps({"ip": "127.0.0.1", "ports": ports, "key": "k" * 32}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "taskhub.engine", "--file", str(conn),
                           "--registration-timeout", "2"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert time.monotonic() - started < 20
    return done.stderr


def test_an_engine_that_cannot_reach_its_controller_says_where_and_how_long(tmp_path):
    with socket.socket() as probe:   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = _engine_with(tmp_path, port)
    assert f"could not reach the controller at tcp://127.0.0.1:{port}: no TCP connection " \
           "within 2s" in err, err


def test_an_engine_whose_controller_does_not_answer_says_so(tmp_path):
    with socket.socket() as listener:   # accepts TCP, never speaks zmq
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        err = _engine_with(tmp_path, listener.getsockname()[1])
    assert "accepted a connection but did not answer within 2s" in err, err
