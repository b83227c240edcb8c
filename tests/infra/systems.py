"""The real systems the launcher tests run engines through, started and stopped by us.

    Slurm        munged (as munge), slurmctld -c, slurmd -N localhost   (pid files in /run)
    Grid Engine  sge_qmaster, sge_execd                                 (pid files in spool)
    sshd         one on 127.0.0.1:<free port>, one per network namespace, key-only login
    namespace    `ip netns` + a veth pair: a "remote host" with its own addresses

tests/infra/setup_batch_systems.sh installs and configures them (`make test` runs it).
A daemon found already running (started by someone else) is used and left running; the
ones started here are stopped by pid, with a deadline, by the fixtures that started them.
Two test sessions on one machine take turns with a scheduler (a lock file in /tmp): one
session's cleanup must not cancel the other's jobs. Every wait has a deadline.
"""
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

SETUP_HINT = ("tests/infra/setup_batch_systems.sh installs it (as root; `make test` runs it "
              "first)")
PBS_BIN = Path("/opt/taskhub-pbs/bin")
SGE_ENV = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}


def require(*binaries):
    """Fail (as root, who could have installed them) or skip, saying why, if missing."""
    missing = [b for b in binaries if not (shutil.which(b) or Path(b).is_file())]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed: {SETUP_HINT}"
    if os.geteuid() == 0:
        pytest.fail(message)
    pytest.skip(message + " (not root here, so it could not be installed)")


def wait_for(condition, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def run(argv, env=None, check=True, timeout=60, **kw):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({done.returncode}): "
                             f"{done.stdout}{done.stderr}")
    return done


def pid_alive(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""   # "" for a zombie
    except OSError:
        return False


def pid_from(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def stop_pids(pids, timeout=15.0):
    """SIGTERM `pids`, wait until they are gone, SIGKILL what is left."""
    pids = [p for p in pids if p and pid_alive(p)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def processes_mentioning(text):
    """(pid, command line) of every live process whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(entry.name), cmd.strip()))
    return found


class Turn:
    """An exclusive lock on /tmp/taskhub-tests-<name>.lock, waited for with a deadline."""

    def __init__(self, name, timeout=150):
        self.path = Path(f"/tmp/taskhub-tests-{name}.lock")
        self.timeout = timeout
        self.file = None

    def take(self):
        self.file = open(self.path, "w")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.file.close()
                    pytest.fail(f"another test session has held {self.path} for "
                                f"{self.timeout}s: it is using the same scheduler")
                time.sleep(0.2)

    def give_back(self):
        if self.file is not None:
            self.file.close()   # closing releases the lock
            self.file = None


# -- Slurm --------------------------------------------------------------------------------

class Slurm:
    """munged + slurmctld + slurmd on this machine (node "localhost")."""

    daemons = {"munged": "/run/munge/munged.pid", "slurmctld": "/run/slurmctld.pid",
               "slurmd": "/run/slurmd.pid"}

    def __init__(self):
        self.started = []   # pids we started, stopped in reverse order
        self.turn = Turn("slurm")

    def running(self, name):
        pid = pid_from(self.daemons[name])
        return pid is not None and pid_alive(pid) and name in Path(f"/proc/{pid}/cmdline") \
            .read_bytes().decode(errors="replace")

    def start(self):
        require("slurmctld", "slurmd", "munged", "sbatch")
        self.turn.take()
        commands = {"munged": ["runuser", "-u", "munge", "--", "/usr/sbin/munged"],
                    "slurmctld": ["slurmctld", "-c"],   # -c: forget earlier runs' jobs
                    "slurmd": ["slurmd", "-N", "localhost"]}
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        for name, argv in commands.items():
            if not self.running(name):
                run(argv)  # each daemonizes and writes its pid file
                self.started.append(wait_for(lambda n=name: self.running(n) and
                                             pid_from(self.daemons[n]), 10, f"{name} to start"))
        wait_for(self.node_ready, 30, "the Slurm node to be idle")
        return self

    def node_ready(self):
        state = run(["sinfo", "--noheader", "--format=%t"], check=False).stdout.strip()
        if state.startswith(("drain", "down")):   # left so by an earlier run's failure
            run(["scontrol", "update", "nodename=localhost", "state=resume"], check=False)
        return state in ("idle", "mix", "alloc")

    def jobs(self):
        """Ids of the jobs Slurm still lists (pending, running, completing)."""
        out = run(["squeue", "--noheader", "--format=%i"], check=False).stdout
        return out.split()

    def stop(self):
        for job in self.jobs():
            run(["scancel", job], check=False)
        stop_pids(reversed(self.started))
        self.turn.give_back()


# -- Grid Engine ----------------------------------------------------------------------------

class GridEngine:
    """sge_qmaster + sge_execd, cell "default", queue all.q@localhost."""

    pid_files = {"sge_qmaster": "/var/spool/gridengine/qmaster/qmaster.pid",
                 "sge_execd": "/var/spool/gridengine/execd/localhost/execd.pid"}

    def __init__(self):
        self.started = []
        self.turn = Turn("sge")

    def pid(self, name):
        pid = pid_from(self.pid_files[name])
        return pid if pid is not None and pid_alive(pid) else None

    def start(self):
        require("/usr/sbin/sge_qmaster", "/usr/sbin/sge_execd", "qsub", "qconf")
        os.environ.update(SGE_ENV)  # qsub, qstat, qdel need them, in the tests' processes too
        self.turn.take()
        for name in ("sge_qmaster", "sge_execd"):
            if self.pid(name) is None:
                run([f"/usr/sbin/{name}"])
                self.started.append(wait_for(lambda n=name: self.pid(n), 20, f"{name} to start"))
            if name == "sge_qmaster":
                wait_for(lambda: run(["qstat"], check=False).returncode == 0, 20,
                         "qmaster to answer")
        wait_for(self.queue_ready, 30, "the execd to report to the qmaster")
        return self

    def queue_ready(self):
        """all.q@localhost is listed without a/u (alarm, unknown) in its states column."""
        out = run(["qstat", "-f", "-q", "all.q"], check=False).stdout
        rows = [line.split() for line in out.splitlines() if line.startswith("all.q@")]
        return bool(rows) and all(len(r) == 5 for r in rows)

    def jobs(self):
        out = run(["qstat"], check=False).stdout.splitlines()[2:]
        return sorted({line.split()[0] for line in out if line.strip()})

    def stop(self):
        if self.jobs():
            run(["qdel", "-f", *self.jobs()], check=False)
        # Both at once: the qmaster alone takes ~9 s to shut down, whatever asks it.
        stop_pids(self.started, timeout=30)
        self.turn.give_back()


# -- sshd and network namespaces ------------------------------------------------------------

def free_port(host="127.0.0.1"):
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class NetNamespace:
    """A network namespace joined to ours by a veth pair: a host at `ns_ip` that reaches
    us at `host_ip`. Names are short (interface names have at most 15 characters)."""

    def __init__(self, index):
        suffix = f"{os.getpid() % 10000}{index}"
        self.name = f"thns{suffix}"
        self.veth_host, self.veth_ns = f"thv{suffix}a", f"thv{suffix}b"
        subnet = 100 + (os.getpid() * 7 + index) % 150   # unlikely to meet another run's
        self.host_ip, self.ns_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def create(self):
        require("ip")
        run(["ip", "netns", "add", self.name])
        for argv in (["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name",
                      self.veth_ns],
                     ["ip", "link", "set", self.veth_ns, "netns", self.name],
                     ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.veth_host],
                     ["ip", "link", "set", self.veth_host, "up"],
                     [*self.exec_prefix(), "ip", "addr", "add", f"{self.ns_ip}/24", "dev",
                      self.veth_ns],
                     [*self.exec_prefix(), "ip", "link", "set", self.veth_ns, "up"],
                     [*self.exec_prefix(), "ip", "link", "set", "lo", "up"]):
            run(argv)
        return self

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def pids(self):
        out = run(["ip", "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split()]

    def delete(self):
        stop_pids(self.pids(), timeout=5)
        run(["ip", "netns", "del", self.name], check=False)
        run(["ip", "link", "del", self.veth_host], check=False)  # gone with the namespace


class SSHD:
    """An sshd accepting only our key, for root, at `address`:`port` (in `netns`)."""

    def __init__(self, directory, address="127.0.0.1", port=None, netns=None):
        self.dir = Path(directory)
        self.address = address
        self.port = port or free_port()
        self.netns = netns
        self.pid = None

    def start(self, client_key):
        require("/usr/sbin/sshd", "ssh", "ssh-keygen")
        self.dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        host_key = self.dir / "host_key"
        if not host_key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key])
        shutil.copy(f"{client_key}.pub", self.dir / "authorized_keys")
        config = self.dir / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            ListenAddress {self.address}:{self.port}
            HostKey {host_key}
            PidFile {self.dir}/sshd.pid
            AuthorizedKeysFile {self.dir}/authorized_keys
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            PrintMotd no
            """))
        prefix = self.netns.exec_prefix() if self.netns else []
        run([*prefix, "/usr/sbin/sshd", "-f", config, "-E", self.dir / "sshd.log"])
        self.pid = wait_for(lambda: pid_from(self.dir / "sshd.pid"), 10, "sshd to start")
        return self

    def stop(self):
        stop_pids([self.pid], timeout=5)


class SSHHosts:
    """A client key and an ssh_config naming each sshd as a host ("loop", "h1", ...)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "id_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key])
        self.config = self.dir / "ssh_config"
        self.hosts = {}

    def add(self, name, sshd):
        self.hosts[name] = sshd
        self.config.write_text("".join(textwrap.dedent(f"""\
            Host {host}
                HostName {d.address}
                Port {d.port}
                User root
                IdentityFile {self.key}
                IdentitiesOnly yes
                StrictHostKeyChecking no
                UserKnownHostsFile /dev/null
                LogLevel ERROR
                BatchMode yes
                ConnectTimeout 10
            """) for host, d in self.hosts.items()))

    def ssh(self, host, command, **kw):
        return run(["ssh", "-F", self.config, host, command], **kw)
