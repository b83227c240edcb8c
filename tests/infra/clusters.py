"""Running `ipcluster` in the launcher tests, and proving that nothing was left behind."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .systems import processes_mentioning, wait_for

IPCLUSTER = [sys.executable, "-m", "taskhub.cluster"]


def ipcluster(env, *args, timeout=120):
    return subprocess.run([*IPCLUSTER, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


class Profile:
    """A $TASKHUB_DIR of our own with one profile, "default", and its ipcluster config."""

    def __init__(self, taskhub_dir, config=""):
        self.env = {**os.environ, "TASKHUB_DIR": str(taskhub_dir)}
        self.dir = Path(taskhub_dir) / "profile_default"
        self.dir.mkdir(parents=True, exist_ok=True)
        # Fail fast: an engine that cannot register gives up after 10 s, not 30.
        self.dir.joinpath("ipcluster_config.py").write_text(
            "c = get_config()\n"
            "c.IPCluster.engine_args = ['--registration-timeout', '10']\n"
            "c.IPCluster.start_timeout = 60.0\n" + config)

    def ipcluster(self, *args, timeout=120):
        return ipcluster(self.env, *args, timeout=timeout)

    def start(self, *args, timeout=120):
        """`ipcluster start --daemonize ARGS`; fails the test with its output if it fails."""
        done = self.ipcluster("start", "--daemonize", *args, timeout=timeout)
        assert done.returncode == 0, f"ipcluster start failed:\n{done.stdout}\n{done.stderr}"
        return done

    def client(self):
        from taskhub.client import Client
        return Client(profile_dir=str(self.dir))

    def engine_pids(self):
        """The pids of the local engines its cluster record lists (started and added)."""
        from taskhub.cluster.cluster import read_record
        record = read_record(self.dir)
        return [u["pid"] for s in [record["engines"], *record.get("added_engines", ())]
                for u in s["processes"]]

    def controller_pid(self):
        from taskhub.cluster.cluster import read_record
        return read_record(self.dir)["controller"]["processes"][0]["pid"]

    def leftovers(self):
        """Processes still running for this profile (local, ssh clients, remote engines in
        our namespaces: they all name the profile directory on their command line)."""
        return processes_mentioning(str(self.dir))

    def assert_nothing_left(self, batch=None, timeout=30):
        """No process of this profile, and no job of `batch` (a Slurm/GridEngine), left."""
        wait_for(lambda: not self.leftovers(), timeout,
                 f"every process of {self.dir} to end: {self.leftovers()}")
        if batch is not None:
            wait_for(lambda: not batch.jobs(), timeout, f"no job left: {batch.jobs()}")

    def clean_up(self, batch=None):
        """After a test, pass or fail: stop the cluster, then kill whatever survived."""
        self.ipcluster("stop", timeout=120)
        for pid, _ in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if batch is not None:
            for job in batch.jobs():
                subprocess.run(["scancel" if type(batch).__name__ == "Slurm" else "qdel", job],
                               capture_output=True, timeout=30)


def squares_on_all_engines(client, n_engines, tasks=40):
    """A load-balanced map over the cluster; the engine ids that ran its tasks."""
    client.wait_for_engines(n_engines, timeout=60)
    view = client.load_balanced_view()
    ar = view.map_async(lambda x: x * x, range(tasks))
    assert ar.get(timeout=60) == [x * x for x in range(tasks)]
    return {md["engine_id"] for md in ar.metadata}


def wait_engines(client, count, timeout, what):
    """Wait until exactly `count` engines are registered."""
    wait_for(lambda: len(client.ids) == count, timeout,
             f"{what}: {count} engines registered (have {client.ids})", interval=0.05)
    return time.monotonic()
