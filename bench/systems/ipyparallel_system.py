"""ipyparallel (from PyPI, in its own venv), driven through its public API like a user would."""
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .base import BenchError, cli_cycle
from .views import ViewSystem


class IpyparallelSystem(ViewSystem):
    def __init__(self, controller_args=()):
        super().__init__()
        self.controller_args = list(controller_args)
        self.cluster = None

    def describe(self):
        import ipyparallel
        import zmq
        return {"ipyparallel": ipyparallel.__version__, "pyzmq": zmq.__version__,
                "python": sys.version.split()[0]}

    def start(self, n):
        import ipyparallel as ipp
        self.workdir = tempfile.mkdtemp(prefix="bench-ipp-")
        self.cluster = ipp.Cluster(n=n, profile_dir=self.workdir, log_level=logging.WARNING,
                                   controller_args=self.controller_args)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(n, timeout=60)
        self.lview = self.rc.load_balanced_view()
        self.warm_up(n)

    def stop(self):
        if self.rc is not None:
            self.rc.close()
            self.rc = None
        if self.cluster is not None:
            self.cluster.stop_cluster_sync()
            self.cluster = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def controller_pid(self):
        return self.cluster.controller.pid

    def engine_uuid(self, engine_id):
        return self.rc._engines[engine_id]

    def sqlite_table(self):
        path = Path(self.workdir, "tasks.db")
        if not path.exists():
            raise BenchError("the task DB is not SQLite (--sqlitedb)")
        return path, None  # the hub names its table after its session: the file's only one

    def settle_db(self):
        time.sleep(2.5)  # the hub commits every 2 s (a periodic callback)

    def forget_results(self):
        self.rc.purge_local_results("all")  # the client caches every result otherwise

    def cli_start_stop(self, n, workdir, timeout):
        import ipyparallel as ipp
        profile = tempfile.mkdtemp(prefix="ipp-cli-", dir=workdir)
        ipcluster = str(Path(sys.executable).with_name("ipcluster"))
        where = [f"--profile-dir={profile}"]

        def wait_ready():
            rc = _connect(ipp, profile, timeout)
            try:
                rc.wait_for_engines(n, timeout=timeout)
            finally:
                rc.close()

        try:
            return cli_cycle([ipcluster, "start", f"--n={n}", "--daemonize", *where],
                             wait_ready, [ipcluster, "stop", *where], timeout)
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def _connect(ipp, profile, timeout):
    """A Client of the profile, once the controller has written its connection file."""
    connection = Path(profile, "security", "ipcontroller-client.json")
    deadline = time.monotonic() + timeout
    while not connection.exists():
        if time.monotonic() > deadline:
            raise BenchError(f"no {connection} after {timeout:g} s")
        time.sleep(0.01)
    return ipp.Client(profile_dir=profile, timeout=timeout)
