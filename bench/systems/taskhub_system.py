"""taskhub, through its public API: `Cluster`, `Client`, views, the task DB, `ipcluster`."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

from .base import BenchError, cli_cycle
from .views import ViewSystem


class TaskhubSystem(ViewSystem):
    def __init__(self, controller_args=()):
        super().__init__()
        self.controller_args = list(controller_args)
        self.cluster = None

    def describe(self):
        import taskhub
        import zmq
        return {"taskhub": getattr(taskhub, "__version__", "?"), "pyzmq": zmq.__version__,
                "python": sys.version.split()[0]}

    def start(self, n):
        from taskhub.cluster.cluster import Cluster
        self.workdir = tempfile.mkdtemp(prefix="bench-taskhub-")
        self.cluster = Cluster(n=n, profile_dir=self.workdir,
                               controller_args=self.controller_args, timeout=60)
        self.cluster.start()
        self.rc = self.cluster.client
        self.lview = self.rc.load_balanced_view()
        self.warm_up(n)

    def stop(self):
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = self.rc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def controller_pid(self):
        info = Path(self.workdir, "security", "taskhub-client.json")
        return int(json.loads(info.read_text())["pid"])

    def engine_uuid(self, engine_id):
        return self.rc._uuids([engine_id])[0]

    def sqlite_table(self):
        path = Path(self.workdir, "tasks.db")
        if not path.exists():
            raise BenchError("the task DB is not SQLite (the default --db sqlite)")
        return path, "tasks"

    def cli_start_stop(self, n, workdir, timeout):
        from taskhub.client import Client
        profile = tempfile.mkdtemp(prefix="taskhub-cli-", dir=workdir)
        ipcluster = str(Path(sys.executable).with_name("ipcluster"))
        where = ["--profile-dir", profile]

        def wait_ready():
            with Client(profile_dir=profile) as rc:
                rc.wait_for_engines(n, timeout)

        try:
            return cli_cycle([ipcluster, "start", "-n", str(n), "--daemonize", *where],
                             wait_ready, [ipcluster, "stop", *where], timeout)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
