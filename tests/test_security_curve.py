"""Issue 14, encryption: CurveZMQ, tried as an attacker would.

Three tiers. Pure: the ZAP decision and when encryption is on. Loopback: a cluster forced
to encrypt (`--curve`) does everything a plain one does, and a peer without the cluster's
keys — or with keys of the wrong kind — fails the handshake on every port. Across hosts: a
controller and an engine in a network namespace of the test's own on a veth address
(shared/INFRA.md), a client and a second engine here, everything at its defaults, so
CurveZMQ is on because the controller binds a non-loopback address; tcpdump on the veth
shows none of a task's argument, result or output bytes (and, as the control that the
capture sees the traffic, shows them all with --no-curve), a keyless subscriber gets no
output, and a keyless client can neither register nor submit. Needs root, iproute2 and
tcpdump (tests/infra/setup_batch_systems.sh); without them the tests fail saying why.
"""
import json
import os
import secrets
import stat
import subprocess
import sys
import time

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from conftest import LoopbackCluster, wait_until
from infra.capture import Capture
from taskhub import curve
from taskhub.client import Client
from taskhub.error import TimeoutError as TaskhubTimeout
from taskhub.paths import ensure_profile_dir, security_file
from taskhub.session import Session

pytestmark = pytest.mark.timeout(180)

HANDSHAKE_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                    zmq.EVENT_HANDSHAKE_FAILED_AUTH}


# -- functions the engines run ---------------------------------------------------------
def reveal(text, blob):
    """Print and return transforms of the arguments: the bytes on the wire differ for the
    argument, the output and the result, and none of them is in this function's code."""
    print(text.replace("ARG", "OUT"), flush=True)
    return text.replace("ARG", "RES"), blob.replace(b"BUF", b"RBF")


def shout(text):
    print(text, flush=True)
    return len(text)


# -- pure ------------------------------------------------------------------------------
@pytest.mark.parametrize("ip, loopback", [
    ("127.0.0.1", True), ("127.3.0.9", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("*", False), ("10.201.0.2", False),
    ("::", False), ("eth0", False), ("head.example.org", False)])
def test_loopback_addresses(ip, loopback):
    assert curve.is_loopback(ip) is loopback


@pytest.mark.parametrize("option, ip, on", [
    (None, "127.0.0.1", False), (None, "0.0.0.0", True), (None, "10.0.0.5", True),
    (True, "127.0.0.1", True), (False, "0.0.0.0", False), (False, "127.0.0.1", False)])
def test_curve_is_on_by_default_exactly_off_loopback(option, ip, on):
    assert curve.use_curve(option, ip) is on


def _zap_request(domain, key, mechanism=b"CURVE"):
    from zmq.utils import z85
    credentials = [z85.decode(key.encode())] if mechanism == b"CURVE" else []
    return [b"1.0", b"7", domain.encode(), b"10.0.0.9", b"", mechanism, *credentials]


def test_zap_admits_each_key_on_its_own_sockets_only():
    keys = curve.ClusterKeys.generate()
    stranger = curve.KeyPair.new()
    cases = [(curve.CLIENT, keys.client, b"200", b"client"),
             (curve.EITHER, keys.client, b"200", b"client"),
             (curve.ENGINE, keys.engine, b"200", b"engine"),
             (curve.EITHER, keys.engine, b"200", b"engine"),
             (curve.ENGINE, keys.client, b"400", b""),   # a client posing as an engine
             (curve.CLIENT, keys.engine, b"400", b""),
             (curve.EITHER, stranger, b"400", b""),
             (curve.EITHER, keys.server, b"400", b""),   # the server's own public key
             ("nonsense", keys.client, b"400", b"")]
    for domain, pair, status, user in cases:
        reply, refusal = curve.zap_decision(keys, _zap_request(domain, pair.public))
        assert (reply[0], reply[1], reply[2], reply[4]) == (b"1.0", b"7", status, user), domain
        assert (refusal is None) == (status == b"200")


def test_zap_refuses_other_mechanisms_and_malformed_requests():
    keys = curve.ClusterKeys.generate()
    for mechanism in (b"NULL", b"PLAIN"):
        reply, refusal = curve.zap_decision(keys, _zap_request("client", "", mechanism))
        assert reply[2] == b"400" and refusal == f"mechanism {mechanism.decode()}"
    reply, refusal = curve.zap_decision(keys, [b"2.0", b"7", b"client"])
    assert reply[:3] == [b"1.0", b"7", b"500"] and refusal == "malformed request"
    assert curve.zap_decision(keys, [])[0][2] == b"500"


def test_connection_info_holds_the_server_public_key_never_its_secret():
    keys = curve.ClusterKeys.generate()
    client, engine = keys.connection_info("client"), keys.connection_info("engine")
    assert client == {"server_key": keys.server.public, "public_key": keys.client.public,
                      "secret_key": keys.client.secret}
    assert engine == {"server_key": keys.server.public, "public_key": keys.engine.public,
                      "secret_key": keys.engine.secret}
    assert keys.server.secret not in json.dumps([client, engine])


# -- helpers: sockets as an attacker holds them -----------------------------------------
PEER_KIND = {zmq.ROUTER: zmq.DEALER, zmq.PUB: zmq.SUB, zmq.SUB: zmq.PUB}
CONTROLLER_KIND = {"query": zmq.ROUTER, "task": zmq.ROUTER, "mux": zmq.ROUTER,
                   "control": zmq.ROUTER, "iopub": zmq.PUB, "notification": zmq.PUB,
                   "e_task": zmq.ROUTER, "e_mux": zmq.ROUTER, "e_control": zmq.ROUTER,
                   "e_iopub": zmq.SUB, "hb_ping": zmq.PUB, "hb_pong": zmq.ROUTER}


def peer_socket(kind, keys=None):
    """A socket of `kind`, with `keys` ({"server_key", "public_key", "secret_key"}, as in a
    connection file) or none."""
    sock = zmq.Context.instance().socket(kind)
    sock.linger = 0
    if kind == zmq.SUB:
        sock.subscribe(b"")
    if keys:
        curve.secure_client(sock, {"curve": keys})
    return sock


def handshake(sock, url, timeout=10.0, then=lambda: None):
    """Connect `sock` to `url`, call `then()` (the connection may not be up yet), and
    return the first handshake outcome: "ok" or "failed"."""
    monitor = sock.get_monitor_socket()
    try:
        sock.connect(url)
        then()
        deadline = time.monotonic() + timeout
        while monitor.poll(max(0, deadline - time.monotonic()) * 1000):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return "ok"
            if event in HANDSHAKE_FAILED:
                return "failed"
        raise AssertionError(f"no handshake outcome within {timeout}s on {url}")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def stranger_keys(info):
    """The server's public key (it is no secret) with a key pair of the attacker's own."""
    pair = curve.KeyPair.new()
    return {"server_key": info["curve"]["server_key"], "public_key": pair.public,
            "secret_key": pair.secret}


def keyless_copy(path, dest):
    """The connection file at `path` without its CurveZMQ keys (HMAC key still in it)."""
    info = json.loads(path.read_text())
    info["curve"] = None
    dest.write_text(json.dumps(info))
    dest.chmod(0o600)  # as the client expects (a wider one is warned about)
    return dest


def assert_markers_work(rc, ids, token):
    """Run `reveal` on engines `ids` with markers; return the strings that must not leak."""
    text, blob = f"ARG-{token}", f"BUF-{token}".encode() * 20_000  # blob: frames of its own
    ar = rc[ids].apply_async(reveal, text, blob)
    assert ar.get(30) == [(f"RES-{token}", f"RBF-{token}".encode() * 20_000)] * len(ids)
    wait_until(lambda: all(f"OUT-{token}" in md["stdout"] for md in ar.metadata), 10,
               what="every engine's output to reach the client")
    return [f"{tag}-{token}".encode() for tag in ("ARG", "OUT", "RES", "BUF", "RBF")]


# -- loopback, --curve forced ----------------------------------------------------------
@pytest.fixture(scope="module")
def curve_cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("curve-profile"), n=2, heartbeat_period=0.2,
                        heartbeat_misses=25, curve=curve.ClusterKeys.generate()).start()
    yield c
    c.stop()


def test_a_curve_cluster_does_what_a_plain_one_does(curve_cluster):
    with curve_cluster.client() as rc:
        lview = rc.load_balanced_view()
        assert lview.map_sync(lambda x: x * x, range(200)) == [x * x for x in range(200)]
        assert rc[0].apply_sync(pow, 2, 10) == 1024
        ar = lview.apply_async(shout, "through curve")
        assert ar.get(10) == len("through curve")
        wait_until(lambda: "through curve" in ar.stdout, 10, what="the output on iopub")
        [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["status", "stdout"])
        assert rec["status"] == "ok" and "through curve" in rec["stdout"]
        assert isinstance(rc.stats()["refused"], dict)


def test_connection_files_carry_each_holder_its_own_keys_0600(curve_cluster):
    keys = curve_cluster.controller.curve
    for which in ("client", "engine"):
        path = security_file(curve_cluster.profile_dir, which)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["curve"] == keys.connection_info(which)


@pytest.mark.parametrize("channel", sorted(CONTROLLER_KIND))
def test_peers_without_the_right_keys_fail_the_handshake_on_every_port(curve_cluster,
                                                                        channel):
    port = curve_cluster.controller.ports[channel]
    url = f"tcp://127.0.0.1:{port}"
    kind = PEER_KIND[CONTROLLER_KIND[channel]]
    files = {w: json.loads(security_file(curve_cluster.profile_dir, w).read_text())
             for w in ("client", "engine")}
    own = "engine" if channel.startswith(("e_", "hb_")) else "client"
    other = {"client": "engine", "engine": "client"}[own]
    attempts = {"no keys": None, "a stranger's key": stranger_keys(files["client"]),
                "its own keys": files[own]["curve"]}
    if channel != "query":  # the query socket takes clients and engines alike
        attempts[f"the {other}s' keys"] = files[other]["curve"]
    outcomes = {}
    for what, keys in attempts.items():
        sock = peer_socket(kind, keys)
        outcomes[what] = handshake(sock, url)
        sock.close()
    assert outcomes == {what: "ok" if what == "its own keys" else "failed"
                        for what in attempts}


def test_a_client_without_keys_or_with_a_strangers_cannot_connect(curve_cluster, tmp_path):
    path = security_file(curve_cluster.profile_dir, "client")
    with pytest.raises(TaskhubTimeout):
        Client(keyless_copy(path, tmp_path / "keyless.json"), timeout=2)
    info = json.loads(path.read_text())
    info["curve"] = stranger_keys(info)
    (tmp_path / "stranger.json").write_text(json.dumps(info))
    (tmp_path / "stranger.json").chmod(0o600)
    with pytest.raises(TaskhubTimeout):
        Client(tmp_path / "stranger.json", timeout=2)
    with curve_cluster.client() as rc:
        assert rc.stats()["refused"].get("unknown key for either", 0) >= 1


def test_the_pure_scheme_encrypts_too(tmp_path):
    c = LoopbackCluster(tmp_path / "pure", n=1, scheme="pure",
                        curve=curve.ClusterKeys.generate()).start()
    try:
        info = json.loads(security_file(c.profile_dir, "client").read_text())
        sock = peer_socket(zmq.DEALER)
        assert handshake(sock, f"tcp://127.0.0.1:{info['ports']['task']}") == "failed"
        sock.close()
        with c.client() as rc:
            assert rc.load_balanced_view().map_sync(abs, range(-50, 0)) == \
                list(range(50, 0, -1))
    finally:
        c.stop()


def test_ipcluster_curve_starts_an_encrypted_cluster_on_loopback(profile):
    profile.start("-n", "2", "--curve", "--log-level", "INFO")
    info = json.loads(security_file(profile.dir, "client").read_text())
    assert info["ip"] == "127.0.0.1" and set(info["curve"]) == {"server_key", "public_key",
                                                                 "secret_key"}
    rc = profile.client()
    try:
        rc.wait_for_engines(2, timeout=30)
        assert rc.load_balanced_view().map_sync(lambda x: -x, range(20)) == \
            [-x for x in range(20)]
    finally:
        rc.close()
    assert profile.ipcluster("stop").returncode == 0
    logs = "".join(p.read_text() for p in (profile.dir / "log").glob("*controller*"))
    assert "CurveZMQ on" in logs and "CurveZMQ is OFF" not in logs


# -- across a veth pair, at the defaults -----------------------------------------------
SUFFIX = os.getpid() % 100000
NETNS = f"tcns{SUFFIX}"              # names: at most 12 characters here
VETH_HERE, VETH_THERE = f"tch{SUFFIX}", f"tct{SUFFIX}"
SUBNET = f"10.201.{os.getpid() % 250 + 1}"
HERE, THERE = f"{SUBNET}.1", f"{SUBNET}.2"


def ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.fail(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}"
                    " -- this test needs root and iproute2 with network namespaces")


@pytest.fixture(scope="module")
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


class FarCluster:
    """A real ipcontroller and one engine in the namespace, bound to THERE; a second engine
    here, so that tasks cross the veth to an engine as well as from the client."""

    def __init__(self, netns, profile_dir, *controller_args):
        self.netns, self.profile_dir = netns, ensure_profile_dir(profile_dir)
        self.log = self.profile_dir / "log" / "controller.log"
        self.procs = []
        try:
            self._start(controller_args)
        except BaseException:
            self.stop()
            raise

    def _start(self, controller_args):
        profile_dir = self.profile_dir
        self.controller = self._spawn(self.log, True, "taskhub.controller", "--ip", THERE,
                                      "--heartbeat-period", "0.2", "--log-level", "INFO",
                                      *controller_args)
        client_file = security_file(profile_dir, "client")
        wait_until(lambda: _file_pid(client_file) == self.controller.pid, 30,
                   what=f"the controller's connection file (log: {self._log_tail()})")
        for where in (True, False):
            self._spawn(profile_dir / "log" / f"engine-{where}.log", where, "taskhub.engine")
        with self.client() as rc:
            rc.wait_for_engines(2, timeout=30)

    def _spawn(self, log_path, in_netns, module, *args):
        prefix = ["ip", "netns", "exec", self.netns] if in_netns else []
        with open(log_path, "w") as log:
            proc = subprocess.Popen([*prefix, sys.executable, "-m", module, "--profile-dir",
                                     str(self.profile_dir), *args], stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def _log_tail(self):
        return self.log.read_text()[-2000:] if self.log.exists() else "(none)"

    def client(self, **kw):
        return Client(profile_dir=self.profile_dir, **kw)

    def info(self, which="client"):
        return json.loads(security_file(self.profile_dir, which).read_text())

    def stop(self):
        for proc in reversed(self.procs):  # engines first, then the controller
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _file_pid(path):
    try:
        return json.loads(path.read_text()).get("pid")
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def far(netns, tmp_path_factory):
    cluster = FarCluster(netns, tmp_path_factory.mktemp("far"))
    yield cluster
    cluster.stop()


def test_off_loopback_curve_is_on_by_default(far):
    info = far.info()
    assert info["ip"] == THERE and set(info["curve"]) == {"server_key", "public_key",
                                                          "secret_key"}
    log = far.log.read_text()
    assert "CurveZMQ on" in log and "CurveZMQ is OFF" not in log


def test_a_capture_on_the_wire_holds_no_argument_result_or_output(far, tmp_path):
    token = secrets.token_hex(8)
    with far.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        with Capture(VETH_HERE, tmp_path / "wire.pcap") as cap:
            markers = assert_markers_work(rc, rc.ids, token)
        streams = cap.tcp_streams()
    ports = set(far.info()["ports"].values()) | set(far.info("engine")["ports"].values())
    assert {p for flow in streams for p in (flow[1], flow[3])} & ports  # it saw the cluster
    wire = b"".join(streams.values())
    assert len(wire) > 2 * 20_000 * len(f"BUF-{token}")  # the blob went by, both ways
    assert [m for m in markers if m in wire] == []


def test_a_keyless_subscriber_on_iopub_receives_nothing(far):
    info = far.info()
    url = f"tcp://{THERE}:{info['ports']['iopub']}"
    keyless, stranger = peer_socket(zmq.SUB), peer_socket(zmq.SUB, stranger_keys(info))
    keyed = peer_socket(zmq.SUB, info["curve"])
    try:
        assert [handshake(s, url) for s in (keyless, stranger, keyed)] == \
            ["failed", "failed", "ok"]
        with far.client() as rc:
            ar = rc.load_balanced_view().apply_async(shout, "password=hunter2")
            assert ar.get(30) == len("password=hunter2")
            wait_until(lambda: "password=hunter2" in ar.stdout, 10,
                       what="the output to reach the client")
        wait_until(lambda: keyed.poll(0), 10, what="the keyed subscriber to get output")
        assert keyless.poll(500) == 0 and stranger.poll(0) == 0
    finally:
        for sock in (keyless, stranger, keyed):
            sock.close()


def test_a_keyless_peer_can_neither_register_nor_submit(far, tmp_path):
    info = far.info()
    session = Session(info["key"].encode())  # it even holds the HMAC key: not enough
    register, submit = peer_socket(zmq.DEALER), peer_socket(zmq.DEALER)
    task, header = session.serialize("apply_request", {}, buffers=[b"", b""])
    requests = {"query": session.serialize("registration_request", {
                    "uuid": "intruder", "hostname": "attacker", "pid": 1})[0], "task": task}
    try:
        for sock, channel in ((register, "query"), (submit, "task")):
            # queued as soon as it connects: the message waits for a handshake that fails
            queue = lambda: sock.send_multipart(requests[channel], zmq.NOBLOCK)  # noqa: E731
            assert handshake(sock, f"tcp://{THERE}:{info['ports'][channel]}",
                             then=queue) == "failed"
        with pytest.raises(TaskhubTimeout):
            Client(keyless_copy(security_file(far.profile_dir, "client"),
                                tmp_path / "keyless.json"), timeout=2)
        with far.client() as rc:
            assert len(rc.ids) == 2
            assert rc.db_query({"msg_id": header["msg_id"]}) == []
            assert rc[:].apply_sync(os.getpid) and len(rc.ids) == 2
    finally:
        register.close()
        submit.close()


def test_a_client_with_the_keys_works_across_the_wire(far):
    with far.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        ar = rc.load_balanced_view().map_async(lambda x: x + 1, range(100))
        assert ar.get(30) == list(range(1, 101))
        assert len(rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"])) == 100


def test_no_curve_off_loopback_warns_and_the_capture_then_shows_everything(netns, tmp_path):
    """The control of the capture test: the same capture, unencrypted, has every marker."""
    plain = FarCluster(netns, tmp_path / "plain", "--no-curve")
    try:
        assert plain.info()["curve"] is None
        warnings = [line for line in plain.log.read_text().splitlines() if "WARNING" in line]
        assert any("CurveZMQ is OFF" in line and THERE in line for line in warnings)
        token = secrets.token_hex(8)
        with plain.client() as rc:
            with Capture(VETH_HERE, tmp_path / "plain.pcap") as cap:
                markers = assert_markers_work(rc, rc.ids, token)
        wire = b"".join(cap.tcp_streams().values())
        assert [m for m in markers if m not in wire] == []
    finally:
        plain.stop()
