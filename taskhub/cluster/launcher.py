"""Launchers: how `ipcluster` and `Cluster` start, watch and stop controllers and engines.

Every way of starting processes (local subprocesses, mpiexec, ssh, Slurm, PBS, Grid
Engine) is one `Launcher` with the same small interface:

    launcher.start()          start the process(es) or submit the job(s)
    launcher.poll()           None while anything runs (or waits in a queue), else a status
    launcher.signal(sig)      send a signal to what is still running
    launcher.stop(timeout)    SIGTERM / cancel, wait until gone (deadline), SIGKILL the rest
    launcher.info()           a JSON-able dict of what was started ...
    Launcher.from_info(info)  ... from which any other process rebuilds the launcher,
                              so `ipcluster stop` works from any shell

Engine launchers start their engines in *units*: the pieces that end independently (one
local process, one ssh session, one mpiexec, one batch job). Each unit has a `tag` that
its engines put in front of their uuid (`ipengine --tag`), so when a unit ends the engines
it ran can be named to the hub at once (see watch.py), and a unit can be replaced or
removed on its own:

    launcher.units            what runs now, each with .tag and .n (engines in it)
    launcher.ended_units()    the units that have ended
    launcher.replace_unit(u)  start a new unit like `u` in its place
    launcher.remove_units(us) stop those units and forget them

A launcher rebuilt by `from_info` never signals a pid unless that pid still runs the
recorded taskhub command line: a pid recycled by the OS for another process is left alone.

Launchers are traitlets Configurables: `c.SlurmEngineSetLauncher.queue = "short"` in a
profile's ipcluster_config.py configures them. `find_launcher(role, name)` is the one place
a launcher class is looked up by name: the built-in table below, then the entry points
`taskhub.controller_launchers` / `taskhub.engine_launchers` of installed packages.
"""
import abc
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from importlib.metadata import entry_points
from pathlib import Path

from traitlets import Dict, List, MetaHasTraits, Unicode
from traitlets.config import LoggingConfigurable

from .. import filemodes, paths

# The exit status `poll()` reports for a process this Python did not start (rebuilt with
# `from_info`): only its parent can learn the real status, so we can only say "it ended".
EXIT_UNKNOWN = 255

# Every command line we launch contains this, which is how a pid is recognised as ours.
MARKER = "taskhub"


def command_line(pid):
    """The command line of `pid` as one string; "" if it is gone or a zombie."""
    if not Path("/proc").is_dir():
        # Systems without /proc (macOS): ps prints nothing for a pid that is gone.
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_ours(pid, marker=MARKER):
    """Is `pid` a live (not zombie) process whose command line contains `marker`?"""
    return isinstance(pid, int) and pid > 0 and marker in command_line(pid)


def wait_until(condition, timeout, interval=0.02):
    """Call `condition` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def new_tag(kind):
    """A fresh unit tag: the launcher kind and 8 random hex digits, e.g. "slurm-1f3a9c0e"."""
    return f"{kind}-{uuid.uuid4().hex[:8]}"


class LocalProcess:
    """One local subprocess: started here (with a Popen) or adopted from a recorded pid.

    As an engine unit it runs `n` engines tagged `tag`; `where` says where they run
    (e.g. {"host": "node3"} for an ssh session), so a replacement can start there too.
    """

    def __init__(self, pid, cmd, log, popen=None, tag=None, n=1, where=None):
        self.pid = pid
        self.cmd = list(cmd)
        self.log = str(log)
        self._popen = popen
        self.tag = tag
        self.n = n
        self.where = dict(where or {})

    @classmethod
    def spawn(cls, cmd, log_dir, log_name, env=None, **unit):
        """Start `cmd` in a new session, output to `log_dir/<log_name>-<pid>.log`."""
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        # The pid is only known once started: write to a unique name, then rename it.
        tmp = log_dir / f"{log_name}-starting-{uuid.uuid4().hex[:8]}.log"
        with filemodes.open_private(tmp, "ab") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env)
        log = log_dir / f"{log_name}-{popen.pid}.log"
        os.replace(tmp, log)
        # Popen returns while exec is still setting up the new command line; wait until
        # it is readable, so a launcher rebuilt from info() at once still sees the process.
        wait_until(lambda: popen.poll() is not None or is_ours(popen.pid), 5, interval=0.001)
        return cls(popen.pid, cmd, log, popen, **unit)

    def running(self):
        if self._popen is not None:
            return self._popen.poll() is None
        # Adopted: the pid must still run taskhub, and the very command we recorded, so
        # a pid the OS has reused (even for another cluster's engine) is never ours.
        return is_ours(self.pid) and (not self.cmd or command_line(self.pid) == " ".join(self.cmd))

    def returncode(self):
        """None while running, else the exit status (EXIT_UNKNOWN if not our child)."""
        if self.running():
            return None
        return self._popen.returncode if self._popen is not None else EXIT_UNKNOWN

    def signal(self, sig):
        """Send `sig` to the process's group (its session: it and anything it started)."""
        if not self.running():
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout=None):
        """Wait for the process to end; True if it did within `timeout` (None: forever)."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        forever = math.inf if timeout is None else timeout
        return wait_until(lambda: not self.running(), forever, interval=0.05)

    def info(self):
        info = {"pid": self.pid, "cmd": self.cmd, "log": self.log}
        if self.tag is not None:
            info.update(tag=self.tag, n=self.n, where=self.where)
        return info

    @classmethod
    def from_info(cls, info):
        return cls(int(info["pid"]), info.get("cmd", ()), info.get("log", ""),
                   tag=info.get("tag"), n=int(info.get("n", 1)), where=info.get("where"))


def stop_processes(processes, timeout):
    """SIGTERM `processes`, wait up to `timeout` s for them to go, SIGKILL the rest, reap."""
    for p in processes:
        p.signal(signal.SIGTERM)
    wait_until(lambda: not any(p.running() for p in processes), timeout)
    for p in processes:
        if p.running():
            p.signal(signal.SIGKILL)
    for p in processes:
        p.wait(timeout=5)


class _LauncherMeta(MetaHasTraits, abc.ABCMeta):
    """Lets a launcher be both a traitlets Configurable and an abstract base class."""


class Launcher(LoggingConfigurable, metaclass=_LauncherMeta):
    """Starts and stops the processes of one side of a cluster ("controller" or "engines")."""

    role = None   # "controller" or "engines": which table of LAUNCHERS it belongs in
    kind = None   # its name in that table, e.g. "local"
    configured_args_name = None  # "controller_args" or "engine_args"

    cluster_id = Unicode("", help="""The id of the cluster this launcher starts processes
        of; they find it in $IPP_CLUSTER_ID (ipyparallel's name).""").tag(config=True)
    environment = Dict(help="""More environment variables for the processes it starts
        (on this machine).""").tag(config=True)
    work_dir = Unicode(".", help="""The directory that job scripts written to look at or
        submit by hand (write_batch_script) go to.""")

    def __init__(self, profile_dir, args=(), config=None, **options):
        super().__init__(config=config, **options)
        self.profile_dir = str(profile_dir)
        # Options configured as controller_args / engine_args (ipyparallel's names) come
        # after those given; info() records them once, in args.
        configured = [str(a) for a in getattr(self, self.configured_args_name or "", ())]
        given = [str(a) for a in args]
        self.args = given if given[len(given) - len(configured):] == configured and \
            configured else [*given, *configured]

    @abc.abstractmethod
    def start(self):
        """Start the process(es); return once they have been started (not registered)."""

    @abc.abstractmethod
    def stop(self, timeout=10):
        """Stop everything started: SIGTERM, wait up to `timeout` s, then SIGKILL and reap."""

    @abc.abstractmethod
    def signal(self, sig):
        """Send `sig` to every process still running."""

    @abc.abstractmethod
    def poll(self):
        """None while any process runs; else the first non-zero exit status, or 0."""

    @abc.abstractmethod
    def info(self):
        """A JSON-able dict with "role" and "kind" from which `from_info` rebuilds this."""

    @classmethod
    def from_info(cls, info):
        """Rebuild a launcher from `info()`; on `Launcher` itself, pick the class by name."""
        if cls is Launcher:
            cls = find_launcher(info["role"], info["kind"])
        return cls._from_info(info)

    @classmethod
    @abc.abstractmethod
    def _from_info(cls, info):
        """Build an instance of exactly this class from `info()`."""

    def running(self):
        return self.poll() is None

    def options(self):
        """This launcher's configurable options and their values, recorded by `info()` so
        that a launcher rebuilt elsewhere (e.g. to replace a unit) starts the same way."""
        return {name: getattr(self, name) for name in self.class_trait_names(config=True)
                if name != self.configured_args_name}  # already in args

    def base_info(self):
        return {"role": self.role, "kind": self.kind, "profile_dir": self.profile_dir,
                "args": self.args, "options": self.options()}

    @classmethod
    def from_base_info(cls, info, **extra):
        """A new launcher of this class built from `base_info()` fields."""
        return cls(info["profile_dir"], info.get("args", ()), **extra,
                   **info.get("options", {}))

    def pids(self):
        """Local pids of what was started (none for batch jobs)."""
        return []

    def log_files(self):
        """Where the output of what was started goes (for error messages)."""
        return []

    def log_dir(self):
        return Path(self.profile_dir) / "log"

    def get_env(self):
        """The environment the processes it starts on this machine get: this process's,
        `environment`, and $IPP_PROFILE_DIR / $IPP_CLUSTER_ID (ipyparallel's names)."""
        return {**os.environ, **self.environment, "IPP_PROFILE_DIR": self.profile_dir,
                "IPP_CLUSTER_ID": self.cluster_id}

    def describe(self):
        """One line saying what runs where, for `ipcluster list` and messages."""
        return self.kind

    @property
    def state(self):
        """ipyparallel's spelling: "running" while anything runs, else "after"."""
        return "running" if self.poll() is None else "after"

    def get_output(self):
        """Everything its processes have written to their logs so far (or, once the logs
        are gone with a temporary profile, what they held when last read)."""
        texts = []
        for log in self.log_files():
            try:
                texts.append(Path(log).read_text(errors="replace"))
            except OSError:
                continue  # not written yet, or removed
        if texts or not hasattr(self, "_output_read"):
            self._output_read = "".join(texts)
        return self._output_read


class ControllerLauncher(Launcher):
    """Starts one controller; says when its connection files are ready to use."""

    role = "controller"
    configured_args_name = "controller_args"
    controller_args = List(Unicode(), help="""More ipcontroller options, after those the
        cluster gives.""").tag(config=True)

    @property
    def pid(self):
        """The controller's local pid, or None when it runs elsewhere (ssh, batch job)."""
        return None

    @property
    def process(self):
        """A psutil.Process of the local controller, or None (not started, or elsewhere)."""
        import psutil  # only when asked: psutil is not needed to launch
        return None if self.pid is None else psutil.Process(self.pid)

    def wait(self, timeout=None):
        """Block until the controller ends; True if it did within `timeout` (None: never
        give up)."""
        forever = math.inf if timeout is None else timeout
        return wait_until(lambda: self.poll() is not None, forever, interval=0.2)

    def connection_ready(self):
        """Are this controller's connection files in the local profile's security/?

        The caller removed stale files before `start()`, so existence is enough here;
        launchers that know the controller's pid check that the file names it."""
        client, engine = (paths.security_file(self.profile_dir, w) for w in ("client", "engine"))
        return client.exists() and engine.exists()


class EngineLauncher(Launcher):
    """What every engine launcher takes (ipyparallel's name for the section)."""

    role = "engines"
    configured_args_name = "engine_args"
    engine_args = List(Unicode(), help="""More ipengine options, after those the cluster
        gives.""").tag(config=True)


class EngineSetLauncher(EngineLauncher):
    """Starts `n` engines, in units (see the module docstring)."""

    # How often the watcher asks whether units ended: cheap for local processes; a batch
    # scheduler's status command costs more (and its answers lag behind anyway).
    watch_interval = 0.2

    def __init__(self, profile_dir, args=(), n=1, config=None, **options):
        super().__init__(profile_dir, args, config=config, **options)
        self.n = n
        self.units = []
        self.set_id = uuid.uuid4().hex[:8]  # names this set in cluster.json

    def base_info(self):
        return {**super().base_info(), "set_id": self.set_id}

    @classmethod
    def from_base_info(cls, info, **extra):
        launcher = super().from_base_info(info, **extra)
        launcher.set_id = info.get("set_id") or launcher.set_id
        return launcher

    def plan(self):
        """The units to start for `n` engines: a list of (engines in it, where) pairs."""
        return [(1, {}) for _ in range(self.n)]

    @abc.abstractmethod
    def start_unit(self, n, where):
        """Start one unit of `n` engines at `where`; return it (with .tag, .n, .where)."""

    @abc.abstractmethod
    def stop_units(self, units, timeout):
        """Stop `units` (SIGTERM or cancel, `timeout` s, then SIGKILL); wait until gone."""

    @abc.abstractmethod
    def unit_running(self, unit):
        """Does `unit` still run (or wait in a batch queue)?"""

    def start(self):
        for n, where in self.plan()[len(self.units):]:
            self.units.append(self.start_unit(n, where))

    def stop(self, timeout=10):
        self.stop_units(self.units, timeout)

    def poll(self):
        if any(self.unit_running(u) for u in self.units):
            return None
        codes = [self.unit_status(u) for u in self.units]
        return next((code for code in codes if code), 0)

    def unit_status(self, unit):
        """The exit status of an ended unit (EXIT_UNKNOWN when it cannot be known)."""
        return EXIT_UNKNOWN

    def ended_units(self):
        return [u for u in self.units if not self.unit_running(u)]

    def replace_unit(self, unit):
        """Start a unit like `unit` (same size, same place) in its place; return it."""
        fresh = self.start_unit(unit.n, unit.where)
        self.units[self.units.index(unit)] = fresh
        return fresh

    def remove_units(self, units, timeout=10):
        self.stop_units(units, timeout)
        self.units = [u for u in self.units if u not in units]

    def engine_count(self):
        return sum(u.n for u in self.units)

    def tag_args(self, tag):
        """The ipengine options that make an engine's uuid start with `tag`."""
        return ["--tag", tag]

    def describe(self):
        return f"{self.kind}: {self.engine_count()} engines in {len(self.units)} units"


class LocalLauncher(Launcher):
    """Local subprocesses of `python -m <module> --profile-dir D ...args`."""

    module = None     # "taskhub.controller" or "taskhub.engine"
    log_name = None   # log files are log/<log_name>-<pid>.log

    def command(self):
        return [sys.executable, "-m", self.module, "--profile-dir", self.profile_dir, *self.args]

    def signal(self, sig):
        for p in self.processes:
            p.signal(sig)

    def pids(self):
        return [p.pid for p in self.processes]

    def log_files(self):
        return [p.log for p in self.processes]

    def info(self):
        return {**self.base_info(), "processes": [p.info() for p in self.processes]}

    @classmethod
    def _from_info(cls, info):
        launcher = cls.from_base_info(info)
        launcher.processes = [LocalProcess.from_info(p) for p in info.get("processes", ())]
        return launcher


class LocalControllerLauncher(LocalLauncher, ControllerLauncher):
    """One `python -m taskhub.controller` on this machine."""

    kind = "local"
    module = "taskhub.controller"
    log_name = "ipcontroller"

    def __init__(self, profile_dir, args=(), config=None, **options):
        super().__init__(profile_dir, args, config=config, **options)
        self.processes = []

    @property
    def pid(self):
        return self.processes[0].pid if self.processes else None

    def start(self):
        proc = LocalProcess.spawn(self.command(), self.log_dir(), self.log_name,
                                  env=self.get_env())
        self.processes.append(proc)

    def stop(self, timeout=10):
        stop_processes(self.processes, timeout)

    def poll(self):
        codes = [p.returncode() for p in self.processes]
        if any(code is None for code in codes):
            return None
        return next((code for code in codes if code), 0)

    def wait(self, timeout=None):
        """Block until the controller exits; True if it did within `timeout`."""
        return self.processes[0].wait(timeout) if self.processes else True

    def connection_ready(self):
        return _file_pid(paths.security_file(self.profile_dir, "client")) == self.pid

    def describe(self):
        return f"local pid {self.pid}"


class LocalEngineUnits(LocalLauncher, EngineSetLauncher):
    """Engines whose units are processes of this machine (one engine each, or one mpiexec
    of n): what stopping, polling and recording them takes. Subclasses start a unit."""

    @property
    def processes(self):
        return self.units

    @processes.setter
    def processes(self, value):
        self.units = value

    def stop_units(self, units, timeout):
        stop_processes(units, timeout)

    def unit_running(self, unit):
        return unit.running()

    def unit_status(self, unit):
        return unit.returncode()

    def info(self):
        return {**super().info(), "n": self.n}

    @classmethod
    def _from_info(cls, info):
        launcher = super()._from_info(info)
        launcher.n = int(info.get("n", sum(p.n for p in launcher.processes)))
        return launcher


class LocalEngineSetLauncher(LocalEngineUnits):
    """`n` processes of `python -m taskhub.engine` on this machine, one unit each."""

    kind = "local"
    module = "taskhub.engine"
    log_name = "ipengine"

    def start_unit(self, n, where):
        tag = new_tag(self.kind)
        index = len(self.units)
        return LocalProcess.spawn([*self.command(), *self.tag_args(tag)], self.log_dir(),
                                  f"{self.log_name}-{index}", env=self.get_env(), tag=tag,
                                  n=1)


def _file_pid(path):
    """The "pid" in a connection file, or None if it is missing or unreadable."""
    try:
        return int(json.loads(Path(path).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# Imported only when chosen. Other packages add theirs through entry points.
LAUNCHERS = {
    "controller": {
        "local": "taskhub.cluster.launcher:LocalControllerLauncher",
        "mpi": "taskhub.cluster.launchers.mpi:MPIControllerLauncher",
        "ssh": "taskhub.cluster.launchers.ssh:SSHControllerLauncher",
        "slurm": "taskhub.cluster.launchers.batch:SlurmControllerLauncher",
        "pbs": "taskhub.cluster.launchers.batch:PBSControllerLauncher",
        "sge": "taskhub.cluster.launchers.batch:SGEControllerLauncher",
        "winhpc": "taskhub.cluster.launchers.winhpc:WindowsHPCControllerLauncher",
        "lsf": "taskhub.cluster.launchers.lsf_condor:LSFControllerLauncher",
        "htcondor": "taskhub.cluster.launchers.lsf_condor:HTCondorControllerLauncher",
    },
    "engines": {
        "local": "taskhub.cluster.launcher:LocalEngineSetLauncher",
        "mpi": "taskhub.cluster.launchers.mpi:MPIEngineSetLauncher",
        "ssh": "taskhub.cluster.launchers.ssh:SSHEngineSetLauncher",
        "slurm": "taskhub.cluster.launchers.batch:SlurmEngineSetLauncher",
        "pbs": "taskhub.cluster.launchers.batch:PBSEngineSetLauncher",
        "sge": "taskhub.cluster.launchers.batch:SGEEngineSetLauncher",
        "winhpc": "taskhub.cluster.launchers.winhpc:WindowsHPCEngineSetLauncher",
        "lsf": "taskhub.cluster.launchers.lsf_condor:LSFEngineSetLauncher",
        "htcondor": "taskhub.cluster.launchers.lsf_condor:HTCondorEngineSetLauncher",
    },
}

ENTRY_POINT_GROUPS = {"controller": "taskhub.controller_launchers",
                      "engines": "taskhub.engine_launchers"}


def known_launchers(role):
    """{name: "module:Class" or entry point} of every launcher for `role`."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUPS[role])}
    return {**found, **LAUNCHERS[role]}  # the built-in names cannot be shadowed


def find_launcher(role, name):
    """The launcher class called `name` for `role` ("controller" or "engines")."""
    if role not in LAUNCHERS:
        raise ValueError(f"unknown launcher role {role!r}; expected one of {sorted(LAUNCHERS)}")
    table = known_launchers(role)
    if name not in table:
        raise ValueError(f"unknown {role} launcher {name!r}; known: {', '.join(sorted(table))}")
    target = table[name]
    try:
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            cls = getattr(importlib.import_module(module), attr)
        else:
            cls = target.load()
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {role} launcher {name!r} ({target}): {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, Launcher) and cls.role == role):
        raise ValueError(f"{role} launcher {name!r} ({target}) is not a {role} Launcher")
    return cls
