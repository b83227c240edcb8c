"""`Cluster`: start a controller and N engines from Python, connect a Client, stop them.

    with Cluster(n=4) as rc:                  # a throw-away profile, removed on exit
        rc.load_balanced_view().map_sync(f, xs)

`start()` does, in order (the first five holding pid/start.lock against a second start):

    refuse if the profile's pid/cluster.json names a live controller (stale: stopped, removed)
    remove stale connection files
    start the controller launcher  ──▶  wait for security/taskhub-client.json whose
                                         "pid" is the new controller's pid
    start the engine launcher (n)
    (after each launcher starts) write pid/cluster.json: the launchers' info(), which
        `ipcluster stop` and `ipcluster list` read from any shell
    connect a Client, wait until n engines have registered

While it runs, `ipcluster engines add/remove` (scaling.py) and the watcher (watch.py)
change the record's engine sets, each holding pid/record.lock while it reads and writes.

Any failure stops what was started and raises `ClusterStateError` carrying the tail of
the relevant log. Unless started with `shutdown_atexit=False`, the cluster is stopped when
the Python process that started it ends, however it ends (see lifetime.py).
`Cluster.from_record(profile_dir)` rebuilds a Cluster from cluster.json in another process,
so it can be stopped there.
"""
import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import filemodes, paths
from ..error import ClusterStateError, TimeoutError as TaskhubTimeout
from .clusterapi import ClusterAPI, ClusterManager  # noqa: F401 - ClusterManager: API
from .launcher import (Launcher, LocalProcess, is_ours, stop_processes,
                       wait_until)
from .lifetime import Lifeline, forget_cluster, note_cluster

RECORD_FILE = "cluster.json"
LOG_TAIL_LINES = 20
ENGINE_CHECK_INTERVAL = 1.0  # s between checks, while waiting, that engines still run


def record_path(profile_dir):
    return Path(profile_dir) / "pid" / RECORD_FILE


def read_record(profile_dir):
    """The parsed pid/cluster.json of `profile_dir`, or None if there is none (or unreadable)."""
    try:
        return json.loads(record_path(profile_dir).read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with filemodes.open_private(tmp, "w") as f:  # cluster.json: pids, hosts, paths
        f.write(json.dumps(data, indent=1))
    os.replace(tmp, path)


def profile_name(profile_dir):
    """The name of `profile_dir` if it is $TASKHUB_DIR/profile_<name>, else None."""
    path = Path(profile_dir).resolve()
    if path.parent == paths.taskhub_dir().resolve() and path.name.startswith("profile_"):
        return path.name[len("profile_"):]
    return None


def profile_label(profile_dir):
    """How a profile is named in messages: its name, or its path outside $TASKHUB_DIR."""
    return profile_name(profile_dir) or str(profile_dir)


def profile_option(profile_dir):
    """The ipcluster option that selects `profile_dir`: --profile NAME or --profile-dir D."""
    name = profile_name(profile_dir)
    return f"--profile {name}" if name else f"--profile-dir {shlex.quote(str(profile_dir))}"


@contextlib.contextmanager
def record_lock(profile_dir):
    """Hold pid/record.lock while reading, changing and writing cluster.json."""
    with filemodes.open_private(Path(profile_dir) / "pid" / "record.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def recorded_cluster(profile_dir):
    """The Cluster that cluster.json of `profile_dir` records (running or not), or None.

    A record too damaged to rebuild a launcher from is removed: there is nothing to stop.
    """
    if read_record(profile_dir) is None:
        return None
    try:
        return Cluster.from_record(profile_dir)
    except (KeyError, TypeError, ValueError):
        record_path(profile_dir).unlink(missing_ok=True)
        return None


@contextlib.contextmanager
def _start_lock(profile_dir):
    """Hold pid/start.lock so two starts in one profile cannot both pass the checks."""
    with filemodes.open_private(Path(profile_dir) / "pid" / "start.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterStateError(f"another cluster is being started in {profile_dir}") from None
        yield


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log {path})"


class Cluster(ClusterAPI):
    """A controller and `n` engines on this machine, started and stopped together.

    With neither `profile` nor `profile_dir`, the cluster lives in a temporary profile
    directory that `stop()` removes, task database included: pass `profile=` (a name under
    $TASKHUB_DIR) or `profile_dir=` to keep the task history.

    `controller_args`/`engine_args` are extra command-line options of ipcontroller and
    ipengine (e.g. ``["--db", "memory"]``); `timeout` bounds each wait of `start()`.
    `controller_launcher`/`engine_launcher` name launchers (see launcher.py), configured by
    `launcher_config` (a traitlets Config, e.g. the profile's ipcluster_config.py) and then
    `controller_options`/`engine_options` (dicts of their options, e.g. {"hosts": [...]}).

    `shutdown_atexit` (default True): stop the cluster when this Python process ends —
    normally, by an exception, or killed (a lifeline process notices). False: it outlives
    the process, until `ipcluster stop` (also settable after start).

    ipyparallel's spellings are taken too (see clusterapi.py): `controller=`/`engines=`
    (launcher names or classes, as `controller_launcher`/`engine_launcher`), `config=`
    (as `launcher_config`), `cluster_id=`, `log=`, `log_level=`, `engine_timeout=`,
    `controller_ip=`, `controller_location=`. Options left at their defaults are taken
    from `config.Cluster`, then (`load_profile`, default True) from the "Cluster" section
    of the profile's ipcluster_config.py/.json. `parent` is accepted.
    """

    def __init__(self, n=4, profile=None, profile_dir=None, controller_args=(),
                 engine_args=(), timeout=30, controller_launcher="local",
                 engine_launcher="local", launcher_config=None, controller_options=None,
                 engine_options=None, shutdown_atexit=True, *, controller=None, engines=None,
                 cluster_id=None, config=None, log=None, log_level=None, engine_timeout=None,
                 controller_ip=None, controller_location=None, load_profile=True,
                 parent=None):
        passed = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if profile is not None and profile_dir is not None:
            raise ValueError("give profile or profile_dir, not both")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        self.n = n
        self.profile = profile
        self.profile_dir = str(profile_dir) if profile_dir is not None else None
        self.controller_args = list(controller_args)
        self.engine_args = list(engine_args)
        self.timeout = timeout
        self.controller_launcher = controller if controller is not None else controller_launcher
        self.engine_launcher = engines if engines is not None else engine_launcher
        self.controller_options = dict(controller_options or {})
        self.engine_options = dict(engine_options or {})
        self.controller = None
        self.engine_set = None
        self.added_engines = []   # engine sets of `ipcluster engines add`
        self.watcher = None       # the LocalProcess watching a daemonized cluster
        # on a profile whose controller died: start the controller again on its ports and
        # keys and keep the engines that outlived it (`ipcluster start` sets it; see
        # docs/taskdb.md, "Restart"); else they are stopped and its tasks marked lost
        self.resume = False
        self.started = None
        self.owner_pid = None
        self.client = None
        self._temporary = False
        self._lifeline = None     # see lifetime.py
        self._tied_pid = None     # the process whose end stops the cluster
        self._shutdown_atexit = shutdown_atexit
        self._init_api(cluster_id, config, launcher_config, log, log_level, engine_timeout,
                       controller_ip, controller_location, parent)
        self._apply_config_sections(passed, load_profile)

    # -- starting ---------------------------------------------------------------------

    def start(self):
        """Start the controller and engines and wait for the engines to register."""
        self._prepare_profile_dir()
        try:
            self._tie_to_this_process()
            with _start_lock(self.profile_dir):
                survivor = self._refuse_if_running()
                if survivor is None:
                    self._remove_stale_connection_files()
                    self._start_controller()
                    self._start_engines()
                else:
                    self._resume(survivor)
            self._own_client()
            self._wait_for_engines()
        except BaseException:
            # Also on KeyboardInterrupt: a half-started cluster must not be left running.
            self.stop()
            raise
        return self

    def _prepare_profile_dir(self):
        if self.profile_dir is not None:
            paths.ensure_profile_dir(self.profile_dir)
        elif self.profile is not None:
            self.profile_dir = str(paths.profile_dir(self.profile, create=True))
        else:
            self.profile_dir = str(paths.ensure_profile_dir(tempfile.mkdtemp(prefix="taskhub-")))
            self._temporary = True

    def _tie_to_this_process(self):
        if self._shutdown_atexit and self._lifeline is None:
            self._lifeline = Lifeline.start(self.profile_dir, remove_profile=self._temporary)
            self._tied_pid = os.getpid()
            atexit.register(self._stop_at_exit)

    def _untie(self):
        atexit.unregister(self._stop_at_exit)
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            lifeline.release()

    def _stop_at_exit(self):
        # Not in a child forked from us (it inherits atexit handlers), and not after a
        # release (shutdown_atexit=False).
        if self._lifeline is not None and os.getpid() == self._tied_pid:
            self.stop()

    @property
    def shutdown_atexit(self):
        """Is the cluster stopped when this process ends? Set False to let it outlive it."""
        return self._shutdown_atexit

    @shutdown_atexit.setter
    def shutdown_atexit(self, value):
        self._shutdown_atexit = bool(value)
        if not value:
            self._untie()
        elif self.running():
            self._tie_to_this_process()

    def _refuse_if_running(self):
        recorded = recorded_cluster(self.profile_dir)
        if recorded is None:
            return
        if recorded.running():
            raise ClusterStateError(
                f"a cluster is already running for profile '{profile_label(self.profile_dir)}' "
                f"(controller pid {recorded_controller_pid(read_record(self.profile_dir))}); "
                f"run 'ipcluster stop {profile_option(self.profile_dir)}' first")
        if self.resume and recorded.running_engine_count() and all(
                _file_pid(paths.security_file(self.profile_dir, w)) for w in ("client", "engine")):
            if recorded.watcher is not None:  # the dead cluster's: this start watches now
                stop_processes([recorded.watcher], self.timeout)
            return recorded
        recorded.stop()   # stale: stop any survivors (engines outliving their controller)
        return None

    def _resume(self, survivor):
        """Start the controller again on the dead one's ports and keys (it reads them from
        the connection files) and adopt the engines that outlived it: they reconnect. If
        the controller did not take the ports over (it says why in its log), the survivors
        are stopped and new engines started."""
        client_file = paths.security_file(self.profile_dir, "client")
        before = json.loads(client_file.read_text()).get("ports")
        self._start_controller(["--resume"], stale_pid=_file_pid(client_file))
        if json.loads(client_file.read_text()).get("ports") != before:
            survivor.stop()
            self._start_engines()
            return
        self.engine_set, self.added_engines = survivor.engine_set, survivor.added_engines
        missing = self.n - self.running_engine_count()  # some died with the controller
        if missing > 0:
            self.start_engines_sync(missing)
        self._write_record()

    def _remove_stale_connection_files(self):
        for which in ("client", "engine"):
            path = paths.security_file(self.profile_dir, which)
            pid = _file_pid(path)
            if pid is not None and (is_ours(pid) or is_ours(pid, "ipcontroller")):
                raise ClusterStateError(
                    f"a controller (pid {pid}) not started by ipcluster is using profile "
                    f"'{profile_label(self.profile_dir)}'; stop it first")
            path.unlink(missing_ok=True)

    def restart_controller(self):
        """Start the controller again after it died, on its ports and keys, resuming its
        tasks; the engines reconnect by themselves (the watcher's --restart-controller)."""
        client_file = paths.security_file(self.profile_dir, "client")
        if not self.controller_args and self.controller is not None:
            # a cluster rebuilt from its record (the background watcher): the args the
            # dead controller was started with (its --db, --scheme, ...)
            self.controller_args = [a for a in self.controller.args if a != "--resume"]
        with _start_lock(self.profile_dir):
            self._start_controller(["--resume"], stale_pid=_file_pid(client_file))

    def _start_controller(self, extra_args=(), stale_pid=None):
        cls = self.controller_launcher_class
        self.controller = cls(self.profile_dir,
                              [*self.controller_args, *self._controller_address_args(),
                               *extra_args],
                              config=self.launcher_config,
                              **{"cluster_id": self.cluster_id, **self.controller_options})
        self.controller.start()
        self._write_record()
        client_file = paths.security_file(self.profile_dir, "client")
        ready = wait_until(lambda: self.controller.poll() is not None
                           or (self.controller.connection_ready()
                               and (stale_pid is None
                                    or _file_pid(client_file) != stale_pid)),
                           self.timeout, interval=0.05)
        if self.controller.poll() is not None:
            raise self._failure(f"the controller exited with status {self.controller.poll()} "
                                "while starting")
        if not ready:
            raise self._failure(f"the controller did not write {client_file} "
                                f"within {self.timeout} s")

    def _start_engines(self):
        self.start_engines_sync()

    def _own_client(self):
        """Connect (once) a `taskhub.client.Client` to this cluster and return it."""
        if self.client is None:
            from ..client import Client  # imported late: the client pulls in zmq and more
            self.client = Client(profile_dir=str(self.profile_dir))
        return self.client

    def _wait_for_engines(self):
        """Wait for n engines; give up at the timeout, or as soon as every engine process
        or job has ended (an engine that cannot register exits, saying why in its log)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self.client.wait_for_engines(
                    self.n, timeout=min(ENGINE_CHECK_INTERVAL, deadline - time.monotonic()))
            except TaskhubTimeout:
                ended = self.engine_set.ended_units()  # e.g. refused: its log says why
                if ended or time.monotonic() >= deadline:
                    raise self._failure(f"only {len(self.client.ids)} of {self.n} engines "
                                        f"registered {self._why_waiting_ended(ended)}; "
                                        f"{self._engine_address()}",
                                        logs=self._ended_logs(ended)) from None

    def _why_waiting_ended(self, ended):
        if not ended:
            return f"within {self.timeout} s"
        if len(ended) == len(self.engine_set.units):
            return "when every engine had ended"
        return f"when {len(ended)} engine process(es) or job(s) had ended"

    def _ended_logs(self, ended):
        """The logs of the units that ended (where they said why), else the first one's."""
        logs = [u.log for u in ended if getattr(u, "log", None)]
        return logs[:3] or self.engine_set.log_files()[:1]

    def _engine_address(self):
        """Where the engines were told to register, for error messages."""
        try:
            info = json.loads(paths.security_file(self.profile_dir, "engine").read_text())
            url = f"tcp://{info['ip']}:{info['ports']['query']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "no engine connection file"
        return (f"engines were told to register at {url} (engines on other hosts need the "
                "controller to bind an address they reach: ipcluster --ip, --location)")

    def _failure(self, what, logs=None):
        logs = logs if logs is not None else self.controller.log_files()
        tails = "\n".join(f"--- last lines of {log} ---\n{log_tail(log)}" for log in logs)
        return ClusterStateError(f"cluster in {self.profile_dir} failed to start: {what}\n{tails}")

    # -- the record in pid/cluster.json -----------------------------------------------

    def _write_record(self):
        if self.started is None:
            self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.owner_pid = os.getpid()
        with record_lock(self.profile_dir):
            write_json_atomic(record_path(self.profile_dir), self.record())
        note_cluster(self.profile_dir)  # so that `ipcluster list` shows it

    def record(self):
        """What pid/cluster.json says about this cluster."""
        return {
            "cluster_id": self.cluster_id,
            "profile_dir": str(self.profile_dir),
            "profile": profile_label(self.profile_dir),
            "n": self.n,
            "started": self.started,
            "owner_pid": self.owner_pid,
            "controller": self.controller.info(),
            "engines": self.engine_set.info() if self.engine_set is not None else None,
            "added_engines": [s.info() for s in self.added_engines],
            "watcher": self.watcher.info() if self.watcher is not None else None,
        }

    def engine_sets(self):
        """Every engine launcher: the one started with the cluster, then those added."""
        return [s for s in (self.engine_set, *self.added_engines) if s is not None]

    def engine_count(self):
        return sum(s.engine_count() for s in self.engine_sets())

    def running_engine_count(self):
        """Engines in units still running (or queued): what exists, not what was started."""
        return sum(u.n for s in self.engine_sets() for u in s.units if s.unit_running(u))

    def sync_engine_sets(self, record):
        """Take the engine sets of `record` (cluster.json, changed by another process) as
        the truth: adopt sets and units added there, forget those removed there."""
        mine = {s.set_id: s for s in self.engine_sets()}
        sets = []
        for info in [record.get("engines"), *record.get("added_engines", ())]:
            if not info:
                continue
            recorded = Launcher.from_info(info)
            own = mine.get(recorded.set_id)
            if own is not None:
                tags = {u.tag for u in recorded.units}
                own.units = [u for u in own.units if u.tag in tags] + \
                    [u for u in recorded.units if u.tag not in {o.tag for o in own.units}]
            sets.append(own or recorded)
        self.engine_set, self.added_engines = (sets[0], sets[1:]) if sets else (None, [])

    def _remove_record(self):
        """Remove cluster.json, unless it now describes another cluster."""
        record = read_record(self.profile_dir)
        if record is not None and self.controller is not None:
            if record.get("controller") != self.controller.info():
                return
        record_path(self.profile_dir).unlink(missing_ok=True)
        forget_cluster(self.profile_dir)

    @classmethod
    def from_record(cls, profile_dir):
        """The cluster recorded in `profile_dir`/pid/cluster.json, to stop or inspect it."""
        record = read_record(profile_dir)
        if record is None:
            raise ClusterStateError(f"no cluster is recorded in {record_path(profile_dir)}")
        cluster = cls(n=int(record.get("n", 0)), profile_dir=profile_dir,
                      cluster_id=record.get("cluster_id"))
        cluster._take_record(record)
        return cluster

    def _take_record(self, record):
        """Rebuild the launchers (and when they started) from a cluster.json record."""
        cluster = self
        cluster.controller = Launcher.from_info(record["controller"])
        cluster.controller_launcher = cluster.controller.kind
        cluster.started, cluster.owner_pid = record.get("started"), record.get("owner_pid")
        if record.get("engines"):
            cluster.engine_set = Launcher.from_info(record["engines"])
            cluster.engine_launcher = cluster.engine_set.kind
        cluster.added_engines = [Launcher.from_info(i) for i in record.get("added_engines", ())]
        if record.get("watcher"):
            cluster.watcher = LocalProcess.from_info(record["watcher"])

    # -- running and stopping ---------------------------------------------------------

    def running(self):
        """Is the controller running?"""
        return self.controller is not None and self.controller.poll() is None

    def any_running(self):
        """Is any process of this cluster (controller or engine) still running?"""
        return any(launcher is not None and launcher.poll() is None
                   for launcher in (self.controller, *self.engine_sets()))

    def close_client(self):
        """Close the client `start()` connected, leaving the cluster running."""
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def wait(self, timeout=None):
        """Block until the controller exits; True if it did within `timeout` (None: forever)."""
        return self.controller is None or self.controller.wait(timeout)

    def pids(self):
        """The pids of the controller and engines that were started."""
        return [*(self.controller.pids() if self.controller else ()),
                *(pid for s in self.engine_sets() for pid in s.pids())]

    def stop(self, timeout=10):
        """Close the client, stop engines then controller, forget the record (idempotent)."""
        try:
            self.close_client()
        finally:
            self._stop_processes(timeout)
            self._untie()  # last: if we die while stopping, the lifeline finishes the job

    def _stop_processes(self, timeout):
        if self.watcher is not None:  # first, so that it restarts nothing being stopped
            stop_processes([self.watcher], timeout)
        record = read_record(self.profile_dir) if self.profile_dir is not None else None
        if record is not None and self.controller is not None \
                and record.get("controller") == self.controller.info():
            self.sync_engine_sets(record)  # engines added or replaced by other processes
        # Engines first, so none is left waiting for a controller that is gone.
        for launcher in (*self.engine_sets(), self.controller):
            if launcher is not None:
                launcher.stop(timeout)
        if self.profile_dir is not None and self.controller is not None:
            self._remove_record()
        if self._temporary and self.profile_dir is not None:
            for launcher in (*self.engine_sets(), self.controller):
                if launcher is not None:
                    launcher.get_output()  # read before the logs go with the profile
            shutil.rmtree(self.profile_dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        self.client.cluster = self
        return self.client

    def __exit__(self, *exc_info):
        self.stop()

    def __repr__(self):
        fields = [f"cluster_id={self.cluster_id!r}"]
        name = None if self.profile_dir is None else profile_name(self.profile_dir)
        if name is not None:
            fields.append(f"profile={name!r}")
        elif self.profile_dir is not None:
            fields.append(f"profile_dir={str(self.profile_dir)!r}")
        if self.controller is not None:
            fields.append(f"controller=<{self.controller.state}>")
        if self.engine_sets():
            fields.append(f"engine_sets={list(self.engines)}")
        return f"<{type(self).__name__}({', '.join(fields)})>"


def recorded_controller_pid(record):
    """The controller pid a cluster.json record names, or None."""
    try:
        return int(record["controller"]["processes"][0]["pid"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _file_pid(path):
    """The "pid" in a connection file, or None if it is missing or unreadable."""
    try:
        return int(json.loads(Path(path).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
