"""`--engines=ssh` and `--controller=ssh` against real sshd: one on 127.0.0.1 ("loop"), one
in a network namespace of its own ("h1", a remote host: its own addresses, its own
127.0.0.1, reachable only over a veth pair). Key-only root login, our own ssh_config.
"""
import os
import signal

import pytest

from infra.clusters import Profile, squares_on_all_engines, wait_engines
from infra.systems import SSHD, NetNamespace, SSHHosts, require
from taskhub.cluster.cluster import read_record

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    require("/usr/sbin/sshd", "ssh", "ip")
    base = tmp_path_factory.mktemp("ssh")
    ssh_hosts = SSHHosts(base / "client")
    ns = NetNamespace(1).create()
    daemons = []
    try:
        daemons.append(SSHD(base / "loop").start(ssh_hosts.key))
        ssh_hosts.add("loop", daemons[-1])
        daemons.append(SSHD(base / "h1", address=ns.ns_ip, port=22, netns=ns)
                       .start(ssh_hosts.key))
        ssh_hosts.add("h1", daemons[-1])
        ssh_hosts.ns = ns
        yield ssh_hosts
    finally:
        for daemon in daemons:
            daemon.stop()
        ns.delete()


@pytest.fixture
def profile(tmp_path, hosts):
    p = Profile(tmp_path / "taskhub", config=(
        f"c.SSHEngineSetLauncher.ssh_args = ['-F', '{hosts.config}']\n"
        f"c.SSHControllerLauncher.ssh_args = ['-F', '{hosts.config}']\n"))
    yield p
    p.clean_up()


def interfaces():
    """The network interfaces an engine sees: its host's, so to speak."""
    return sorted(os.listdir("/sys/class/net"))


def test_ssh_engines_on_loopback_and_on_a_host_in_its_own_namespace(profile, hosts):
    # Engines in h1 reach the controller only at our end of the veth pair.
    started = profile.start("--engines", "ssh", "--ssh-hosts", "loop:1,h1:2",
                            "--ip", "0.0.0.0", "--location", hosts.ns.host_ip)
    assert "ssh: 3 engines on h1, loop" in started.stdout
    rc = profile.client()
    try:
        wait_engines(rc, 3, 30, "start")
        seen = rc[:].apply_sync(interfaces)
        in_h1 = [s for s in seen if hosts.ns.veth_ns in s]
        assert len(in_h1) == 2 and all(s == ["lo", hosts.ns.veth_ns] for s in in_h1), seen
        assert len(squares_on_all_engines(rc, 3, tasks=60)) >= 2
        # Added engines go to the same hosts, spread evenly: one more on each.
        added = profile.ipcluster("engines", "add", "-n", "2")
        assert added.returncode == 0, added.stderr
        assert "ssh: 2 engines on h1, loop" in added.stdout
        wait_engines(rc, 5, 10, "after engines add")
    finally:
        rc.close()
    stopped = profile.ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "5 engines" in stopped.stdout
    profile.assert_nothing_left()
    assert hosts.ns.pids() == [hosts.hosts["h1"].pid], "a process is left in h1"


def test_a_remote_engine_that_dies_is_unregistered_and_replaced(profile, hosts):
    profile.start("--engines", "ssh", "--ssh-hosts", "h1:2", "--restart-engines",
                  "--ip", "0.0.0.0", "--location", hosts.ns.host_ip)
    rc = profile.client()
    try:
        wait_engines(rc, 2, 30, "start")
        remote = [pid for pid in hosts.ns.pids() if pid != hosts.hosts["h1"].pid
                  and b"taskhub.engine" in open(f"/proc/{pid}/cmdline", "rb").read()]
        assert len(remote) == 2
        os.kill(remote[0], signal.SIGKILL)   # the engine on the remote host dies
        wait_engines(rc, 1, 3.0, "the dead remote engine unregistered")
        wait_engines(rc, 2, 30, "its replacement on h1 registered")
        units = read_record(profile.dir)["engines"]["units"]
        assert [u["where"] for u in units] == [{"host": "h1"}] * 2
    finally:
        rc.close()
    assert profile.ipcluster("stop").returncode == 0
    profile.assert_nothing_left()


def test_controller_on_a_remote_host_over_ssh(profile, hosts):
    """The controller runs in h1 (bound to h1's address); its connection files come back."""
    started = profile.start("--controller", "ssh", "--controller-host", "h1",
                            "--ip", hosts.ns.ns_ip, "-n", "2")
    assert "controller: ssh h1 pid" in started.stdout
    [controller] = [pid for pid in hosts.ns.pids()
                    if b"taskhub.controller" in open(f"/proc/{pid}/cmdline", "rb").read()]
    rc = profile.client()
    try:
        assert rc.connection_file and hosts.ns.ns_ip in open(rc.connection_file).read()
        assert len(squares_on_all_engines(rc, 2, tasks=40)) >= 1
    finally:
        rc.close()
    assert profile.ipcluster("stop").returncode == 0
    profile.assert_nothing_left()
    assert not os.path.exists(f"/proc/{controller}/cmdline") or \
        open(f"/proc/{controller}/cmdline", "rb").read() == b""


def test_engines_in_a_namespace_that_cannot_reach_the_controller_say_so(profile, hosts):
    """The controller binds 127.0.0.1: h1's engines try their own 127.0.0.1 and give up."""
    with open(profile.dir / "ipcluster_config.py", "a") as config:
        config.write("c.IPCluster.engine_args = ['--registration-timeout', '3']\n")
    failed = profile.ipcluster("start", "--daemonize", "--engines", "ssh", "--ssh-hosts",
                               "h1:1", "--log-level", "INFO")
    assert failed.returncode == 1
    assert "only 0 of 1 engines registered when every engine had ended" in failed.stderr
    assert "could not reach the controller at tcp://127.0.0.1:" in failed.stderr
    assert "no TCP connection within 3s" in failed.stderr
    profile.assert_nothing_left()
