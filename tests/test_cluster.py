"""Launchers (with dummy processes), then end-to-end runs of the real `ipcluster` command.

The end-to-end tests run `python -m taskhub.cluster` with a per-test $TASKHUB_DIR. The
tests that only read share one cluster (module fixture `shared`); the ones that start or
stop clusters start their own. Nothing sleeps: every wait is a condition with a deadline.
"""
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskhub.cluster.cluster import Cluster, read_record, record_path
from taskhub.cluster.launcher import (EXIT_UNKNOWN, Launcher, LocalControllerLauncher,
                                      LocalEngineSetLauncher, find_launcher, is_ours, wait_until)
from taskhub.error import ClusterStateError

pytestmark = pytest.mark.timeout(90)

IPCLUSTER = [sys.executable, "-m", "taskhub.cluster"]


# -- helpers --------------------------------------------------------------------------

def ipcluster(env, *args, timeout=60):
    return subprocess.run([*IPCLUSTER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def env_for(taskhub_dir):
    return {**os.environ, "TASKHUB_DIR": str(taskhub_dir)}


def recorded_pids(profile_dir):
    record = read_record(profile_dir)
    return [p["pid"] for side in ("controller", "engines")
            for p in (record.get(side) or {}).get("processes", [])]


def assert_all_gone(pids, timeout=15):
    """Every pid ends (or is a zombie, which is not running) within `timeout` seconds."""
    gone = wait_until(lambda: not any(is_ours(pid) for pid in pids), timeout, interval=0.05)
    assert gone, f"still running after {timeout} s: {[p for p in pids if is_ours(p)]}"


def kill_leftovers(pids):
    for pid in pids:
        if is_ours(pid):
            os.kill(pid, signal.SIGKILL)


def read_until(stream, text, timeout):
    """Read lines of `stream` until one contains `text`; return all read (a deadline applies)."""
    seen, deadline = [], time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                line = stream.readline()
                seen.append(line)
                if text in line or not line:
                    break
    return "".join(seen)


class DummyEngines(LocalEngineSetLauncher):
    """Engines that are long sleeps whose command line contains "taskhub"."""

    code = "import time; time.sleep(60)"

    def command(self):
        return [sys.executable, "-c", self.code, "taskhub"]


class StubbornEngines(DummyEngines):
    """Ignores SIGTERM, and says so in its log once it does."""

    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")


class DummyController(LocalControllerLauncher):
    """A long sleep whose command line contains `marker`."""

    def __init__(self, profile_dir, marker="taskhub"):
        super().__init__(profile_dir)
        self.marker = marker

    def command(self):
        return [sys.executable, "-c", DummyEngines.code, self.marker]


@pytest.fixture
def started():
    """started(launcher) starts it, and stops it when the test ends, whatever happened."""
    launchers = []

    def start(launcher):
        launchers.append(launcher)
        launcher.start()
        return launcher
    yield start
    for launcher in launchers:
        launcher.stop(timeout=1)


# -- launchers, no cluster needed -----------------------------------------------------

def test_launcher_start_stop_and_logs(tmp_path, started):
    engines = started(DummyEngines(tmp_path, n=2))
    assert engines.poll() is None and len(engines.pids()) == 2
    logs = sorted(Path(f).name for f in engines.log_files())
    assert logs == sorted(f"ipengine-{i}-{pid}.log" for i, pid in enumerate(engines.pids()))
    engines.stop(timeout=5)
    assert engines.poll() == -signal.SIGTERM


def test_launcher_rebuilt_from_info_stops_processes(tmp_path, started):
    engines = started(DummyEngines(tmp_path, n=2))
    info = json.loads(json.dumps(engines.info()))
    rebuilt = Launcher.from_info(info)
    assert type(rebuilt) is LocalEngineSetLauncher and rebuilt.poll() is None
    rebuilt.stop(timeout=5)
    assert rebuilt.poll() == EXIT_UNKNOWN
    assert all(p.wait(timeout=5) for p in engines.processes)   # reaped by their parent
    assert engines.poll() == -signal.SIGTERM


def test_stop_escalates_to_sigkill(tmp_path, started):
    engines = started(StubbornEngines(tmp_path, n=1))
    assert wait_until(lambda: "ready" in Path(engines.log_files()[0]).read_text(), 10)
    engines.stop(timeout=0.3)
    assert engines.poll() == -signal.SIGKILL


@pytest.mark.parametrize("stranger_cmd", [
    ["sleep", "30"],                                                  # not taskhub at all
    [sys.executable, "-c", DummyEngines.code, "taskhub", "other"],   # another taskhub process
])
def test_recycled_pid_is_never_signalled(tmp_path, stranger_cmd):
    stranger = subprocess.Popen(stranger_cmd)
    recorded = {"pid": stranger.pid, "log": "",
                "cmd": [sys.executable, "-m", "taskhub.engine", "--profile-dir", str(tmp_path)]}
    try:
        launcher = Launcher.from_info({"role": "engines", "kind": "local", "n": 1, "args": [],
                                       "profile_dir": str(tmp_path), "processes": [recorded]})
        assert launcher.poll() == EXIT_UNKNOWN   # not ours: counts as ended
        launcher.stop(timeout=1)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_unknown_launcher_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown engines launcher 'nope'; known: .*local"):
        find_launcher("engines", "nope")


def test_ipcluster_list_and_stop_follow_the_record(tmp_path, started):
    """`stop` stops what cluster.json names, and asks a foreground ipcluster owner to quit."""
    profile_dir = tmp_path / "profile_p"
    controller = started(DummyController(profile_dir))
    engines = started(DummyEngines(profile_dir, n=2))
    owner = started(DummyController(tmp_path, marker="taskhub.cluster"))
    record_path(profile_dir).parent.mkdir(parents=True)
    record_path(profile_dir).write_text(json.dumps(
        {"n": 2, "owner_pid": owner.pid, "controller": controller.info(),
         "engines": engines.info()}))
    env = env_for(tmp_path)
    listed = ipcluster(env, "list").stdout.splitlines()
    assert listed[1].split() == ["p", str(controller.pid), "2/2", "running"]
    stopped = ipcluster(env, "stop", "--profile", "p")
    assert stopped.returncode == 0, stopped.stderr
    assert_all_gone([owner.pid, controller.pid, *engines.pids()], timeout=0)
    assert not record_path(profile_dir).exists()


def test_stale_record_is_reported_and_removed(tmp_path, started):
    profile_dir = tmp_path / "profile_p"
    controller = started(DummyController(profile_dir))
    controller.stop(timeout=5)
    record_path(profile_dir).parent.mkdir(parents=True)
    record_path(profile_dir).write_text(json.dumps({"n": 0, "controller": controller.info()}))
    env = env_for(tmp_path)
    assert ipcluster(env, "list").stdout.splitlines()[1].split()[-1] == "stale"
    stopped = ipcluster(env, "stop", "--profile", "p")
    assert stopped.returncode == 1
    assert "removed the stale record" in stopped.stderr
    assert not record_path(profile_dir).exists()


def test_ipcluster_clean_removes_what_a_stopped_cluster_left_and_refuses_a_running_one(
        tmp_path, started):
    profile_dir = tmp_path / "profile_p"
    (profile_dir / "log").mkdir(parents=True)
    (profile_dir / "log" / "old.log").write_text("logs")
    (profile_dir / "ipcluster_config.py").write_text("c.IPCluster.n = 2\n")
    controller = started(DummyController(profile_dir))
    record_path(profile_dir).parent.mkdir(parents=True)
    record_path(profile_dir).write_text(json.dumps({"n": 0, "controller": controller.info()}))
    env = env_for(tmp_path)
    refused = ipcluster(env, "clean", "--profile", "p")
    assert refused.returncode == 1 and "`ipcluster stop` it first" in refused.stderr
    assert record_path(profile_dir).exists()
    controller.stop(timeout=5)
    security = profile_dir / "security"
    security.mkdir()
    (security / "taskhub-client.json").write_text("{}")
    cleaned = ipcluster(env, "clean", "--profile", "p")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed" in cleaned.stdout
    assert not record_path(profile_dir).exists() and not list((profile_dir / "log").iterdir())
    assert not (security / "taskhub-client.json").exists()
    assert (profile_dir / "ipcluster_config.py").exists()  # configuration stays


def test_ipcluster_defaults_come_from_the_profile_config(tmp_path):
    from taskhub.cluster.app import load_options
    assert load_options(tmp_path).n == 4
    (tmp_path / "ipcluster_config.py").write_text(
        "c = get_config()\nc.IPCluster.n = 3\nc.IPCluster.controller_args = ['--db', 'memory']\n")
    options = load_options(tmp_path)
    assert (options.n, options.controller_args) == (3, ["--db", "memory"])


def test_default_profile_configs_are_up_to_date(tmp_path):
    from taskhub.cluster.app import write_default_configs
    write_default_configs(tmp_path)
    checked_in = Path(__file__).resolve().parent.parent / "profiles" / "default"
    for generated in sorted(tmp_path.glob("*_config.py")):
        assert generated.read_text() == (checked_in / generated.name).read_text(), \
            f"profiles/default/{generated.name} is out of date: run `make configs`"


# -- ipcluster, end to end ------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One `ipcluster start -n 4 --daemonize` for the tests that only read from it."""
    env = env_for(tmp_path_factory.mktemp("taskhub"))
    profile_dir = Path(env["TASKHUB_DIR"]) / "profile_default"
    started = ipcluster(env, "start", "-n", "4", "--daemonize")
    pids = recorded_pids(profile_dir) if record_path(profile_dir).exists() else []
    try:
        assert started.returncode == 0, started.stderr
        yield env, profile_dir
    finally:
        ipcluster(env, "stop")
        kill_leftovers(pids)


@pytest.fixture(scope="module")
def client(shared):
    from taskhub.client import Client
    rc = Client(profile_dir=str(shared[1]))
    rc.wait_for_engines(4, timeout=30)
    yield rc
    rc.close()


def test_map_squares_and_every_task_is_recorded_in_full(client):
    lview = client.load_balanced_view()
    ar = lview.map_async(lambda x: x * x, range(1000))
    assert ar.get(60) == [x * x for x in range(1000)]
    keys = ["engine_uuid", "submitted", "started", "completed"]
    # the hub records a reply before it serves any later request, so no waiting is needed
    records = client.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=keys)
    assert len(records) == 1000
    assert [r["msg_id"] for r in records if any(r[k] is None for k in keys)] == []
    assert len({r["engine_uuid"] for r in records}) > 1


def test_printed_output_is_in_the_db(client):
    def shout(i):
        print(f"shouting {i}")
        return i

    assert client.load_balanced_view().map_sync(shout, [7]) == [7]
    last = client.hub_history()[-1]
    assert client.db_query({"msg_id": last}, keys=["stdout"])[0]["stdout"] == "shouting 7\n"


def test_list_shows_the_cluster(shared):
    env, profile_dir = shared
    listed = ipcluster(env, "list")
    controller = recorded_pids(profile_dir)[0]
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("default"))
    assert line.split() == ["default", str(controller), "4/4", "running"]


def test_second_start_fails_clearly(shared):
    env, profile_dir = shared
    again = ipcluster(env, "start", "-n", "1", "--daemonize")
    controller = recorded_pids(profile_dir)[0]
    assert again.returncode == 1
    assert (f"ipcluster: a cluster is already running for profile 'default' (controller pid "
            f"{controller}); run 'ipcluster stop --profile default' first") in again.stderr


def test_start_over_a_stale_record_then_stop_leaves_no_process(tmp_path, started):
    env = env_for(tmp_path)
    profile_dir = tmp_path / "profile_p"
    dead = started(DummyController(profile_dir))
    dead.stop(timeout=5)
    record_path(profile_dir).parent.mkdir(parents=True)
    record_path(profile_dir).write_text(json.dumps({"n": 0, "controller": dead.info()}))
    start = ipcluster(env, "start", "-n", "2", "--daemonize", "--profile", "p")
    pids = recorded_pids(profile_dir) if record_path(profile_dir).exists() else []
    try:
        assert start.returncode == 0, start.stderr
        assert "ipcluster stop --profile p" in start.stdout
        assert len(pids) == 3 and dead.pid not in pids
        stopped = ipcluster(env, "stop", "--profile", "p")
        assert stopped.returncode == 0, stopped.stderr
        assert_all_gone(pids)
        assert not record_path(profile_dir).exists()
    finally:
        kill_leftovers(pids)


def test_stop_without_cluster_fails_clearly(tmp_path):
    stopped = ipcluster(env_for(tmp_path), "stop")
    assert stopped.returncode == 1
    assert "ipcluster: no cluster is running for profile 'default'" in stopped.stderr


def test_foreground_start_stops_everything_on_sigint(tmp_path):
    env = env_for(tmp_path)
    profile_dir = tmp_path / "profile_default"
    proc = subprocess.Popen([*IPCLUSTER, "start", "-n", "2"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids = []
    try:
        out = read_until(proc.stdout, "engines ready", 60)
        assert "engines ready" in out, out + proc.stderr.read()
        pids = recorded_pids(profile_dir)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert_all_gone(pids)
        assert not record_path(profile_dir).exists()
    finally:
        proc.kill()
        proc.wait()
        kill_leftovers(pids)


def test_cluster_context_manager(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKHUB_DIR", str(tmp_path))
    cluster = Cluster(n=2)
    with cluster as rc:
        assert len(rc.ids) == 2
        assert rc.load_balanced_view().map_sync(lambda x: -x, range(3)) == [0, -1, -2]
        pids = cluster.pids()
    assert_all_gone(pids)
    assert not Path(cluster.profile_dir).exists()


def test_cluster_whose_controller_dies_reports_its_log(tmp_path):
    cluster = Cluster(n=1, profile_dir=tmp_path / "p", controller_args=["--db", "bogus"],
                      timeout=30)
    with pytest.raises(ClusterStateError) as failure:
        cluster.start()
    message = str(failure.value)
    assert "the controller exited" in message and "bogus" in message
    assert "--- last lines of" in message
    assert_all_gone(cluster.pids())


def test_ipcluster_tasks_prints_the_history(shared, client):
    env, profile_dir = shared
    ar = client.load_balanced_view().map_async(abs, [-1, -2])
    ar.get(10)
    table = ipcluster(env, "tasks", "--limit", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["MSG_ID", "ENGINE_ID", "STATUS"]
    assert [ln.split()[0] for ln in lines[1:3]] == ar.msg_ids and lines[3] == "(2 tasks)"
    as_json = ipcluster(env, "tasks", "--json", "--keys", "msg_id,completed",
                        "--query", f'{{"msg_id": {{"$in": {json.dumps(ar.msg_ids)}}}}}')
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["msg_id"] for r in records] == ar.msg_ids and all(r["completed"] for r in records)
    later = ipcluster(env, "tasks", "--query", '{"completed": {"$gte": "2999-01-01"}}')
    assert later.stdout == "(no tasks)\n"
    short = {ln.split()[0][:8] for ln in ipcluster(env, "tasks").stdout.splitlines()[1:-1]}
    assert len(short) == len(ipcluster(env, "tasks").stdout.splitlines()) - 2  # all differ
    either = ipcluster(env, "tasks", "--query", json.dumps(
        {"$or": [{"completed": {"$gte": "2999-01-01"}}, {"msg_id": ar.msg_ids[1]}]}))
    assert [ln.split()[0] for ln in either.stdout.splitlines()[1:-1]] == ar.msg_ids[1:]


def test_ipcluster_tasks_bad_query_is_a_clear_error(shared):
    env, _ = shared
    typo = ipcluster(env, "tasks", "--query", '{"complete": null}')
    assert typo.returncode == 1 and "did you mean 'completed'" in typo.stderr
    broken = ipcluster(env, "tasks", "--query", "[1")
    assert broken.returncode == 1 and "not valid JSON" in broken.stderr


@pytest.mark.parametrize("flag,kind", [("--sqlitedb", "sqlite"), ("--dictdb", "memory"),
                                       ("--mongodb", "mongodb"), ("--nodb", "none")])
def test_ipcluster_db_flags(flag, kind):
    from taskhub.cluster.app import build_parser
    args = build_parser().parse_args(["start", flag, "--mongodb-url", "mongodb://h:1"])
    assert args.db == kind and args.mongodb_url == "mongodb://h:1"


def test_ipcluster_tasks_purge_culls_the_oldest_finished(shared, client):
    env, _ = shared
    client.load_balanced_view().map_sync(abs, range(6))
    total = client.db_count({})
    done = client.db_count({"completed": {"$ne": None}})
    keep = ipcluster(env, "tasks", "--purge", "--keep", "3", "--buffers-only")
    assert keep.returncode == 0, keep.stderr
    assert keep.stdout == f"{done - 3} finished tasks stripped of their arguments and results\n"
    assert client.db_count({}) == total  # records kept, only their buffers gone
    dropped = ipcluster(env, "tasks", "--purge", "--keep", "3")
    assert dropped.stdout == f"{done - 3} finished tasks dropped\n"
    assert client.db_count({"completed": {"$ne": None}}) == 3
    bare = ipcluster(env, "tasks", "--purge")
    assert bare.returncode == 1 and "--purge needs a bound" in bare.stderr
    bad = ipcluster(env, "tasks", "--purge", "--older-than", "soon")
    assert bad.returncode == 2 and "does not start with a number" in bad.stderr
