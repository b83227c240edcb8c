"""Issue 7, network faults: an engine on the far side of a link that goes down, then up.

The test makes its own network namespace (a separate "host", shared/INFRA.md) joined to
this one by a veth pair, 10.200.N.1 here and 10.200.N.2 there. The controller binds
10.200.N.1; one engine runs here, one in the namespace. `ip link set … down` is a silent
partition (no RST): the hub must declare the far engine dead after its heartbeat timeout
and retry its tasks here; after `up`, TCP recovers within seconds, the far engine's heart
answers again, the hub asks it to rejoin, and it comes back as a new engine that takes work.
Needs root; when `ip netns` fails the test fails with the reason.
"""
import os
import subprocess
import sys
import time

import pytest
from conftest import LoopbackCluster, wait_until

pytestmark = pytest.mark.timeout(150)

SUFFIX = os.getpid() % 100000
NETNS = f"thns{SUFFIX}"              # names: at most 12 characters here
VETH_HERE, VETH_THERE = f"thh{SUFFIX}", f"tht{SUFFIX}"
SUBNET = f"10.200.{os.getpid() % 250 + 1}"
HERE, THERE = f"{SUBNET}.1", f"{SUBNET}.2"


# -- functions the engines run ---------------------------------------------------------
def network_namespace():
    return os.readlink("/proc/self/ns/net")


def hang_in(netns, x):
    """x, at once; but in network namespace `netns`, only after 60 s."""
    if os.readlink("/proc/self/ns/net") == netns:
        time.sleep(60)
    return x


# -- the namespace ---------------------------------------------------------------------
def ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.fail(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}"
                    " -- this test needs root and iproute2 with network namespaces")


@pytest.fixture
def netns():
    """A namespace NETNS reached over a veth pair (HERE ↔ THERE); removed afterwards."""
    ip("netns", "add", NETNS)
    try:
        ip("link", "add", VETH_HERE, "type", "veth", "peer", "name", VETH_THERE)
        ip("link", "set", VETH_THERE, "netns", NETNS)
        ip("addr", "add", f"{HERE}/24", "dev", VETH_HERE)
        ip("link", "set", VETH_HERE, "up")
        for args in (("addr", "add", f"{THERE}/24", "dev", VETH_THERE),
                     ("link", "set", VETH_THERE, "up"), ("link", "set", "lo", "up")):
            ip("netns", "exec", NETNS, "ip", *args)
        yield NETNS
    finally:
        subprocess.run(["ip", "link", "del", VETH_HERE], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, timeout=30)


@pytest.fixture
def split_cluster(netns, tmp_path):
    """A controller on HERE with one engine here and one in the namespace (heartbeat
    timeout 2 s); yields (cluster, the far engine's process)."""
    cluster = LoopbackCluster(tmp_path / "profile", n=1, ip=HERE, heartbeat_period=0.2,
                              heartbeat_misses=10).start()
    log = open(cluster.profile_dir / "log" / "engine-far.log", "w")
    far = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m",
                            "taskhub.engine", "--profile-dir", str(cluster.profile_dir),
                            "--controller-timeout", "90"], stdout=log, stderr=log)
    log.close()
    cluster.engines.append(far)
    try:
        yield cluster, far
    finally:
        ip("link", "set", VETH_HERE, "up")  # so that the far engine can say goodbye
        cluster.stop()


def test_a_cut_off_engine_is_declared_dead_its_tasks_retried_and_it_rejoins(split_cluster):
    cluster, far = split_cluster
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        namespaces = dict(zip(rc.ids, rc[:].apply_sync(network_namespace)))
        there = next(i for i, ns in namespaces.items() if ns != network_namespace())
        assert rc[there].apply_sync(os.getpid) == far.pid
        lview = rc.load_balanced_view()
        tasks = [lview.apply_with_flags(hang_in, (namespaces[there], i), retries=1)
                 for i in range(4)]
        wait_until(lambda: rc.queue_status()[there]["tasks"] >= 1, 10,
                   what="a task to run on the far engine")
        stuck = rc.queue_status(verbose=True)[there]["tasks"]

        cut = time.monotonic()
        ip("link", "set", VETH_HERE, "down")
        assert [t.get(30) for t in tasks] == [0, 1, 2, 3]
        wait_until(lambda: there not in rc.ids, 10, what="the far engine to leave rc.ids")
        assert time.monotonic() - cut >= 1.8  # not before the timeout (less a period)
        retried = rc.db_query({"msg_id": {"$in": stuck}},
                              keys=["status", "engine_id", "result_metadata"])
        assert len(retried) == len(stuck)
        for rec in retried:
            [attempt] = rec["result_metadata"]["failed_attempts"]
            assert (attempt["engine_id"], attempt["ename"]) == (there, "EngineError")
            assert rec["status"] == "ok" and rec["engine_id"] != there

        ip("link", "set", VETH_HERE, "up")
        wait_until(lambda: len(rc.ids) == 2, 60, what="the far engine to rejoin")
        rejoined = max(rc.ids)
        assert rejoined == 2 and there not in rc.ids
        assert rc[rejoined].apply_sync(network_namespace) == namespaces[there]
        assert rc[rejoined].apply_sync(os.getpid) == far.pid
        assert rc.db_query({"msg_id": {"$in": stuck}},
                           keys=["status", "engine_id", "result_metadata"]) == retried
        spread = lview.map_async(time.sleep, [0.02] * 40, chunksize=1)
        spread.get(30)
        assert {md["engine_id"] for md in spread.metadata} == set(rc.ids)
