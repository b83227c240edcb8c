"""`--engines=ssh` and `--controller=ssh`: processes on other hosts, through `ssh`.

    local ssh client (a LocalProcess, our log file) ──▶ remote shell:
        echo taskhub-remote-pid $$; exec <python> -m taskhub.engine --file F --tag T ...

The remote shell prints its pid and then becomes the engine, so the first line of the
local log names the remote pid: stopping a unit is `ssh host kill -TERM pid` (killing the
local ssh client alone would leave the remote process running). The local ssh client
lives exactly as long as the remote process, so polling it polls the remote side.

The engine connection file is copied to each host before its engines start (through ssh's
stdin, written atomically, mode 0600), to `remote_profile_dir` (default: the same path as
here, which is also right on a shared file system). A remote controller writes its
connection files on its host; `connection_ready()` fetches them back into the local
profile so that clients and local engines can use them.

Hosts are given as "host" or "host:K" (K engines there), e.g. `--ssh-hosts a,b:4`. Ports,
users and keys belong in ssh's own configuration (`ssh_args = ["-F", "my_ssh_config"]`).
"""
import json
import shlex
import subprocess
import sys
import time

from traitlets import Float, List, Unicode, default

from ... import paths
from ...appbase import write_connection_file
from ..launcher import (ControllerLauncher, EngineSetLauncher, Launcher, LocalProcess, new_tag,
                        stop_processes, wait_until)

PID_LINE = "taskhub-remote-pid"
FILE_SEPARATOR = "----taskhub-connection-file----"


def plan_hosts(spec, n=None):
    """[(host, engines)] from "a,b:4"-style `spec`, in its order: "host:K" runs K engines
    there; the `n` engines not placed by a count are spread evenly over the hosts without
    one (n=None: one each).

    >>> plan_hosts("a,b:4", n=6)
    [('a', 2), ('b', 4)]
    """
    entries = [h.strip() for h in (spec.split(",") if isinstance(spec, str) else spec)]
    if not entries or not all(entries):
        raise ValueError(f"no ssh hosts in {spec!r}: give --ssh-hosts host1,host2:4")
    counts = [_count(entry) for entry in entries]   # None for a host without a count
    fixed = sum(k for k in counts if k is not None)
    bare = counts.count(None)
    if n is None:
        n = fixed + bare
    if not bare and n != fixed:
        raise ValueError(f"--ssh-hosts {spec!r} places {fixed} engines but -n asks for {n}; "
                         "drop -n, or add a host without a count to take the rest")
    if n < fixed:
        raise ValueError(f"-n {n} is fewer than the {fixed} engines {spec!r} places")
    share, extra = divmod(n - fixed, bare or 1)
    plan, nth_bare = {}, 0
    for entry, count in zip(entries, counts):
        if count is None:
            count, nth_bare = share + (nth_bare < extra), nth_bare + 1
        host = entry.partition(":")[0]
        plan[host] = plan.get(host, 0) + count
    return [(host, k) for host, k in plan.items() if k]


def _count(entry):
    count = entry.partition(":")[2]
    if not count:
        return None
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"bad engine count in ssh host {entry!r}: expected host:K, K >= 1")
    return int(count)


def remote_pid(log):
    """The remote pid a unit's log starts with, or None if it has not arrived yet."""
    try:
        with open(log, errors="replace") as f:
            first = f.readline().split()
    except OSError:
        return None
    return int(first[1]) if len(first) == 2 and first[0] == PID_LINE and first[1].isdigit() \
        else None


class SSHLauncher(Launcher):
    """What the ssh launchers share: how to run a command on a host."""

    ssh = List(Unicode(), ["ssh"], help="""The ssh client command.""").tag(config=True)
    ssh_args = List(Unicode(), ["-o", "BatchMode=yes"], help="""Options for every ssh call,
        e.g. ["-F", "cluster_ssh_config"]. BatchMode makes a missing key an error instead
        of a password prompt that would hang ipcluster.""").tag(config=True)
    remote_python = Unicode("", help="""Python on the remote hosts, by absolute path (a
        remote shell may not set up PATH, virtualenvs or pyenv as yours does). Empty: the
        same path as the Python running ipcluster.""").tag(config=True)
    remote_profile_dir = Unicode("", help="""The profile directory on the remote hosts.
        Default: the same path as the local one (right for a shared file system).
        """).tag(config=True)
    ssh_timeout = Float(30.0, help="""Seconds one ssh command (copying a file, a kill)
        may take before it counts as failed. Higher for slow links.""").tag(config=True)

    def remote_dir(self):
        return self.remote_profile_dir or self.profile_dir

    @default("remote_profile_dir")
    def _local_profile_dir(self):
        return self.profile_dir

    def ssh_command(self, host, remote_cmd):
        """The local argv that runs the shell command `remote_cmd` on `host`."""
        return [*self.ssh, *self.ssh_args, host, remote_cmd]

    def run_remote(self, host, remote_cmd, stdin=None, check=True):
        """Run `remote_cmd` on `host` and wait; its CompletedProcess (text)."""
        done = subprocess.run(self.ssh_command(host, remote_cmd), input=stdin,
                              capture_output=True, text=True, timeout=self.ssh_timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"ssh {host} {remote_cmd!r} failed with status "
                               f"{done.returncode}: {done.stderr.strip()}")
        return done

    def exec_line(self, argv):
        """The remote shell command that prints its pid and then becomes `argv`."""
        return f"echo {PID_LINE} $$; exec {shlex.join(argv)}"

    def spawn_remote(self, host, argv, log_name, **unit):
        return LocalProcess.spawn(self.ssh_command(host, self.exec_line(argv)), self.log_dir(),
                                  log_name, **unit)

    def kill_remote(self, units, sig):
        """`kill -SIG` on each host the remote pids of `units` (the ones known)."""
        by_host = {}
        for unit in units:
            pid = remote_pid(unit.log)
            if pid is not None and unit.running():
                by_host.setdefault(unit.where["host"], []).append(str(pid))
        calls = [subprocess.Popen(self.ssh_command(host, f"kill -{sig} {' '.join(pids)}"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
                 for host, pids in by_host.items()]
        for call in calls:
            try:
                call.wait(self.ssh_timeout)
            except subprocess.TimeoutExpired:
                call.kill()
                call.wait()

    # both launchers keep their ssh client processes (LocalProcess) in `units`
    def signal(self, sig):
        self.kill_remote(self.units, int(sig))

    def pids(self):
        return [u.pid for u in self.units]

    def log_files(self):
        return [u.log for u in self.units]

    def stop_remote(self, units, timeout):
        """TERM the remote processes, wait, KILL what is left there, then the ssh clients."""
        wait_until(lambda: all(remote_pid(u.log) or not u.running() for u in units), 5, 0.05)
        self.kill_remote(units, "TERM")
        wait_until(lambda: not any(u.running() for u in units), timeout, interval=0.05)
        self.kill_remote(units, "KILL")
        stop_processes(units, timeout=2)


class SSHEngineSetLauncher(SSHLauncher, EngineSetLauncher):
    """Engines on the hosts of `hosts`, one ssh session (one unit) per engine."""

    kind = "ssh"
    hosts = List(Unicode(), [], help="""Where to start engines: "host" or "host:K" (K
        engines). Engines not placed by a count are spread over the hosts without one.
        --ssh-hosts on the ipcluster command line sets this.""").tag(config=True)

    def plan(self):
        if not self.hosts:
            raise ValueError("the ssh engine launcher needs hosts: --ssh-hosts host1,host2:4 "
                             "or c.SSHEngineSetLauncher.hosts in ipcluster_config.py")
        return [(1, {"host": host}) for host, k in plan_hosts(self.hosts, self.n)
                for _ in range(k)]

    def start(self):
        for host in dict.fromkeys(where["host"] for _, where in self.plan()):
            self.copy_connection_file(host)
        super().start()

    def copy_connection_file(self, host):
        text = paths.security_file(self.profile_dir, "engine").read_text()
        security = shlex.quote(f"{self.remote_dir()}/security")
        tmp = f"{security}/.taskhub-engine.json.$$"
        self.run_remote(host, f"umask 077 && mkdir -p {security} && cat > {tmp} && "
                              f"mv -f {tmp} {security}/{paths.ENGINE_FILE}", stdin=text)

    def engine_argv(self, tag):
        remote_file = f"{self.remote_dir()}/security/{paths.ENGINE_FILE}"
        return [self.remote_python or sys.executable, "-m", "taskhub.engine", "--file", remote_file,
                *self.args, *self.tag_args(tag)]

    def start_unit(self, n, where):
        tag = new_tag(self.kind)
        return self.spawn_remote(where["host"], self.engine_argv(tag), f"ssh-engine-{tag}",
                                 tag=tag, n=1, where=where)

    def replace_unit(self, unit):
        self.copy_connection_file(unit.where["host"])
        return super().replace_unit(unit)

    def stop_units(self, units, timeout):
        self.stop_remote(units, timeout)

    def unit_running(self, unit):
        return unit.running()

    def info(self):
        return {**self.base_info(), "n": self.n, "units": [u.info() for u in self.units]}

    @classmethod
    def _from_info(cls, info):
        launcher = cls.from_base_info(info, n=int(info.get("n", 0)))
        launcher.units = [LocalProcess.from_info(u) for u in info.get("units", ())]
        return launcher

    def describe(self):
        hosts = sorted({u.where["host"] for u in self.units})
        return f"ssh: {self.engine_count()} engines on {', '.join(hosts)}"


class SSHControllerLauncher(SSHLauncher, ControllerLauncher):
    """The controller on `host`; its connection files are fetched back to this profile."""

    kind = "ssh"
    host = Unicode("", help="""The host to run the controller on (--controller-host).
        Start it with --ip set to an address of that host others can reach (or 0.0.0.0
        with --location).""").tag(config=True)
    check_interval = Float(0.5, help="""Seconds between ssh checks for the remote
        connection files while the controller starts.""").tag(config=True)

    def __init__(self, profile_dir, args=(), config=None, **options):
        super().__init__(profile_dir, args, config=config, **options)
        self.units = []
        self._checked = 0.0

    def controller_argv(self):
        return [self.remote_python or sys.executable, "-m", "taskhub.controller", "--profile-dir",
                self.remote_dir(), *self.args]

    def start(self):
        if not self.host:
            raise ValueError("the ssh controller launcher needs a host: --controller-host H "
                             "or c.SSHControllerLauncher.host in ipcluster_config.py")
        security = shlex.quote(f"{self.remote_dir()}/security")
        stale = " ".join(f"{security}/{name}" for name in (paths.CLIENT_FILE, paths.ENGINE_FILE))
        clear = f"mkdir -p {security} && rm -f {stale}; "
        cmd = self.ssh_command(self.host, clear + self.exec_line(self.controller_argv()))
        self.units = [LocalProcess.spawn(cmd, self.log_dir(), "ssh-controller",
                                         tag=new_tag(self.kind), where={"host": self.host})]

    def connection_ready(self):
        """Fetch the remote connection files once they name the remote controller's pid."""
        pid = remote_pid(self.units[0].log) if self.units else None
        if pid is None or time.monotonic() - self._checked < self.check_interval:
            return False
        self._checked = time.monotonic()
        files = self.fetch_connection_files()
        if files is None or any(info.get("pid") != pid for info in files.values()):
            return False
        for which, info in files.items():
            write_connection_file(paths.security_file(self.profile_dir, which), info)
        return True

    def fetch_connection_files(self):
        """{"client": info, "engine": info} from the remote host, or None if not there."""
        security = shlex.quote(f"{self.remote_dir()}/security")
        shown = self.run_remote(self.host, f"cat {security}/{paths.CLIENT_FILE} && echo "
                                f"{FILE_SEPARATOR} && cat {security}/{paths.ENGINE_FILE}",
                                check=False)
        parts = shown.stdout.split(FILE_SEPARATOR)
        if shown.returncode != 0 or len(parts) != 2:
            return None
        try:
            return {"client": json.loads(parts[0]), "engine": json.loads(parts[1])}
        except ValueError:
            return None

    def poll(self):
        if not self.units or self.units[0].running():
            return None
        return self.units[0].returncode()

    def stop(self, timeout=10):
        self.stop_remote(self.units, timeout)

    def info(self):
        return {**self.base_info(), "processes": [u.info() for u in self.units]}

    @classmethod
    def _from_info(cls, info):
        launcher = cls.from_base_info(info)
        launcher.units = [LocalProcess.from_info(u) for u in info.get("processes", ())]
        return launcher

    def describe(self):
        pid = remote_pid(self.units[0].log) if self.units else None
        return f"ssh {self.host} pid {pid}"
