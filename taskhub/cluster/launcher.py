"""Launchers: how `ipcluster` and `Cluster` start, watch and stop controllers and engines.

Every way of starting processes (local subprocesses now; MPI, SSH, Slurm later) is one
`Launcher` with the same small interface:

    launcher.start()          start the process(es)
    launcher.poll()           None while running, else an exit status
    launcher.signal(sig)      send a signal to what is still running
    launcher.stop(timeout)    SIGTERM, wait until gone (deadline), SIGKILL the rest, reap
    launcher.info()           a JSON-able dict of what was started ...
    Launcher.from_info(info)  ... from which any other process rebuilds the launcher,
                              so `ipcluster stop` works from any shell

A launcher rebuilt by `from_info` never signals a pid unless that pid still runs the
recorded taskhub command line: a pid recycled by the OS for another process is left alone.

`find_launcher(role, name)` is the one place a launcher class is looked up by name.
"""
import abc
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

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


class LocalProcess:
    """One local subprocess: started here (with a Popen) or adopted from a recorded pid."""

    def __init__(self, pid, cmd, log, popen=None):
        self.pid = pid
        self.cmd = list(cmd)
        self.log = str(log)
        self._popen = popen

    @classmethod
    def spawn(cls, cmd, log_dir, log_name):
        """Start `cmd` in a new session, output to `log_dir/<log_name>-<pid>.log`."""
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        # The pid is only known once started: write to a unique name, then rename it.
        tmp = log_dir / f"{log_name}-starting-{uuid.uuid4().hex[:8]}.log"
        with open(tmp, "ab") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log = log_dir / f"{log_name}-{popen.pid}.log"
        os.replace(tmp, log)
        # Popen returns while exec is still setting up the new command line; wait until
        # it is readable, so a launcher rebuilt from info() at once still sees the process.
        wait_until(lambda: popen.poll() is not None or is_ours(popen.pid), 5, interval=0.001)
        return cls(popen.pid, cmd, log, popen)

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
        return {"pid": self.pid, "cmd": self.cmd, "log": self.log}

    @classmethod
    def from_info(cls, info):
        return cls(int(info["pid"]), info.get("cmd", ()), info.get("log", ""))


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


class Launcher(abc.ABC):
    """Starts and stops the processes of one side of a cluster ("controller" or "engines")."""

    role = None   # "controller" or "engines": which table of LAUNCHERS it belongs in
    kind = None   # its name in that table, e.g. "local"

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


class LocalLauncher(Launcher):
    """Local subprocesses of `python -m <module> --profile-dir D ...args`."""

    module = None     # "taskhub.controller" or "taskhub.engine"
    log_name = None   # log files are log/<log_name>-<pid>.log

    def __init__(self, profile_dir, args=()):
        self.profile_dir = str(profile_dir)
        self.args = [str(a) for a in args]
        self.processes = []

    def command(self):
        return [sys.executable, "-m", self.module, "--profile-dir", self.profile_dir, *self.args]

    def _spawn(self, log_name):
        proc = LocalProcess.spawn(self.command(), Path(self.profile_dir) / "log", log_name)
        self.processes.append(proc)
        return proc

    def stop(self, timeout=10):
        stop_processes(self.processes, timeout)

    def signal(self, sig):
        for p in self.processes:
            p.signal(sig)

    def poll(self):
        codes = [p.returncode() for p in self.processes]
        if any(code is None for code in codes):
            return None
        return next((code for code in codes if code), 0)

    def pids(self):
        return [p.pid for p in self.processes]

    def log_files(self):
        return [p.log for p in self.processes]

    def info(self):
        return {"role": self.role, "kind": self.kind, "profile_dir": self.profile_dir,
                "args": self.args, "processes": [p.info() for p in self.processes]}

    @classmethod
    def _from_info(cls, info):
        launcher = cls(info["profile_dir"], info.get("args", ()))
        launcher.processes = [LocalProcess.from_info(p) for p in info.get("processes", ())]
        return launcher


class LocalControllerLauncher(LocalLauncher):
    """One `python -m taskhub.controller` on this machine."""

    role, kind = "controller", "local"
    module = "taskhub.controller"
    log_name = "ipcontroller"

    @property
    def pid(self):
        return self.processes[0].pid if self.processes else None

    def start(self):
        self._spawn(self.log_name)

    def wait(self, timeout=None):
        """Block until the controller exits; True if it did within `timeout`."""
        return self.processes[0].wait(timeout) if self.processes else True


class LocalEngineSetLauncher(LocalLauncher):
    """`n` processes of `python -m taskhub.engine` on this machine."""

    role, kind = "engines", "local"
    module = "taskhub.engine"
    log_name = "ipengine"

    def __init__(self, profile_dir, args=(), n=1):
        super().__init__(profile_dir, args)
        self.n = n

    def start(self):
        for i in range(len(self.processes), self.n):
            self._spawn(f"{self.log_name}-{i}")

    def info(self):
        return {**super().info(), "n": self.n}

    @classmethod
    def _from_info(cls, info):
        launcher = super()._from_info(info)
        launcher.n = int(info.get("n", len(launcher.processes)))
        return launcher


LAUNCHERS = {
    "controller": {"local": LocalControllerLauncher},
    "engines": {"local": LocalEngineSetLauncher},
}


def find_launcher(role, name):
    """The launcher class called `name` for `role` ("controller" or "engines")."""
    if role not in LAUNCHERS:
        raise ValueError(f"unknown launcher role {role!r}; expected one of {sorted(LAUNCHERS)}")
    table = LAUNCHERS[role]
    if name not in table:
        raise ValueError(f"unknown {role} launcher {name!r}; known: {', '.join(sorted(table))}")
    return table[name]
