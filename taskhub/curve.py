"""CurveZMQ for a cluster: its keys, the socket options that use them, and the controller's
ZAP handler, which lets in only peers holding the cluster's keys.

    controller: one "server" key pair          connection files (0600, in security/)
      every TCP socket: curve_server            taskhub-client.json: server public key +
      ZAP handler (inproc://zeromq.zap.01)                           the client key pair
        client-side sockets: the client key     taskhub-engine.json: server public key +
        engine-side sockets: the engine key                          the engine key pair
        query socket: either

CurveZMQ encrypts every frame and authenticates both ends during the handshake, before any
message is read: a peer that lacks the server's public key cannot complete it, and the
ZAP handler refuses every client key that is not one of the cluster's own — so a keyless
peer can neither read nor send anything, on any socket (iopub subscribers included). The
keys are made afresh by each controller start; whoever can read a connection file can
join, exactly as with the HMAC key beside them. Inproc sockets do no handshake, so the
controller's own inproc links need no keys.

When it is on: `use_curve` (on by default whenever the controller binds anything but a
loopback address). The decision about one handshake is the pure `zap_decision`;
`ZapHandler` is only the thread that carries it out.
"""
import collections
import ipaddress
import logging
import threading
from dataclasses import dataclass

import zmq
from zmq.utils import z85

log = logging.getLogger("taskhub.curve")

ZAP_URL = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27); one handler per context
ZAP_VERSION = b"1.0"
# The ZAP domain of each controller socket: who may connect to it.
CLIENT, ENGINE, EITHER = "client", "engine", "either"
DOMAINS = {"query": EITHER, "task": CLIENT, "mux": CLIENT, "control": CLIENT,
           "iopub": CLIENT, "notification": CLIENT, "e_task": ENGINE, "e_mux": ENGINE,
           "e_control": ENGINE, "e_iopub": ENGINE, "hb_ping": ENGINE, "hb_pong": ENGINE}
MAX_LOGGED_PEERS = 100  # distinct refused addresses logged at WARNING; later ones at DEBUG


class CurveUnavailable(RuntimeError):
    """Encryption was asked for (or is the default here) but libzmq has no CurveZMQ."""


@dataclass(frozen=True)
class KeyPair:
    public: str  # Z85 text, 40 characters
    secret: str

    @classmethod
    def new(cls):
        public, secret = zmq.curve_keypair()
        return cls(public.decode("ascii"), secret.decode("ascii"))


@dataclass(frozen=True)
class ClusterKeys:
    """The key pairs of one cluster: the controller's, the clients', the engines'."""
    server: KeyPair
    client: KeyPair
    engine: KeyPair

    @classmethod
    def generate(cls):
        if not zmq.has("curve"):
            raise CurveUnavailable("this libzmq was built without CurveZMQ (libsodium): "
                                   "cannot encrypt")
        return cls(KeyPair.new(), KeyPair.new(), KeyPair.new())

    def connection_info(self, which):
        """The "curve" entry of the `which` ("client" or "engine") connection file."""
        pair = self.client if which == "client" else self.engine
        return {"server_key": self.server.public, "public_key": pair.public,
                "secret_key": pair.secret}

    def admits(self, domain, public_key):
        """Who (CLIENT or ENGINE) holding `public_key` (Z85) may connect to a socket of
        `domain`; None if nobody."""
        holders = {self.client.public: CLIENT, self.engine.public: ENGINE}
        who = holders.get(public_key)
        return who if who is not None and domain in (who, EITHER) else None


# -- whether to encrypt ----------------------------------------------------------------------
def is_loopback(ip):
    """Is binding `ip` reachable from this machine only? Wildcards and names are not."""
    host = ip.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def use_curve(option, ip):
    """Encrypt or not: `option` (True/False from --curve/--no-curve, None if not given)
    wins; by default, on exactly when `ip` is not loopback."""
    return (not is_loopback(ip)) if option is None else bool(option)


def insecure_warning(ip):
    """What the controller logs at every start it binds `ip` without CurveZMQ."""
    return (f"CurveZMQ is OFF (--no-curve) while binding {ip}, which is not a loopback "
            "address: task arguments, results and output cross the network in clear, and "
            "anyone who reaches these ports can connect and read iopub. Drop --no-curve "
            "to encrypt.")


# -- socket options --------------------------------------------------------------------------
def secure_server(sock, keys, channel):
    """Make `sock` (a controller socket of `channel`, before it binds) a CurveZMQ server
    that admits the keys of that channel's ZAP domain."""
    sock.curve_server = True
    sock.curve_secretkey = keys.server.secret.encode("ascii")
    sock.zap_domain = DOMAINS[channel].encode("ascii")


def secure_client(sock, info):
    """Give `sock` (before it connects) the keys in connection info `info`, if the
    cluster encrypts; a no-op for a cluster that does not."""
    curve = info.get("curve")
    if not curve:
        return
    sock.curve_serverkey = curve["server_key"].encode("ascii")
    sock.curve_publickey = curve["public_key"].encode("ascii")
    sock.curve_secretkey = curve["secret_key"].encode("ascii")


# -- ZAP ----------------------------------------------------------------------------------
def zap_decision(keys, frames):
    """The reply to one ZAP request (RFC 27: version, request id, domain, address,
    identity, mechanism, credentials…) and why: (reply frames, refusal reason or None)."""
    if len(frames) < 6 or frames[0] != ZAP_VERSION:
        request_id = frames[1] if len(frames) > 1 else b""
        return _zap_reply(request_id, b"500", b"malformed ZAP request"), "malformed request"
    request_id, domain, mechanism = frames[1], frames[2].decode("ascii", "replace"), frames[5]
    if mechanism != b"CURVE" or len(frames) != 7 or len(frames[6]) != 32:
        return (_zap_reply(request_id, b"400", b"CURVE required"),
                f"mechanism {mechanism.decode('ascii', 'replace')}")
    who = keys.admits(domain, z85.encode(frames[6]).decode("ascii"))
    if who is None:
        return _zap_reply(request_id, b"400", b"unknown key"), f"unknown key for {domain}"
    return _zap_reply(request_id, b"200", b"OK", who.encode("ascii")), None


def _zap_reply(request_id, status, text, user_id=b""):
    return [ZAP_VERSION, request_id, status, text, user_id, b""]


class ZapHandler:
    """Answers the ZAP requests of one zmq context on a thread of its own (so handshakes
    never wait for the controller's loop). `start()` before binding any curve socket: with
    no handler, libzmq would let every CurveZMQ client in. `counts()`: refusals by reason.
    """

    def __init__(self, context, keys):
        self.context = context
        self.keys = keys
        self._refused = collections.Counter()
        self._lock = threading.Lock()  # the counter is read from the controller's thread
        self._logged = set()
        self._stop_url = f"inproc://taskhub-zap-stop-{id(self)}"
        self._thread = None
        self._error = None

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name="taskhub-zap", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def _run(self, ready):
        handler, stopper = self.context.socket(zmq.ROUTER), self.context.socket(zmq.PULL)
        try:
            handler.bind(ZAP_URL)
            stopper.bind(self._stop_url)
        except zmq.ZMQError as e:  # another handler in this context already
            self._error = RuntimeError(f"cannot bind the ZAP handler at {ZAP_URL}: {e}")
            ready.set()
            return
        ready.set()
        poller = zmq.Poller()
        poller.register(handler, zmq.POLLIN)
        poller.register(stopper, zmq.POLLIN)
        try:
            while stopper not in dict(poller.poll()):
                try:
                    self._answer(handler, handler.recv_multipart())
                except Exception:  # the thread must live on: without it no one connects
                    log.exception("error answering a ZAP request; the peer is not admitted")
        finally:
            handler.close(linger=0)
            stopper.close(linger=0)

    def _answer(self, handler, frames):
        envelope, sep, request = _split_envelope(frames)
        reply, refusal = zap_decision(self.keys, request)
        if refusal is not None:
            self._note_refusal(request, refusal)
        handler.send_multipart([*envelope, sep, *reply])

    def counts(self):
        """Connections refused so far, by reason."""
        with self._lock:
            return dict(self._refused)

    def _note_refusal(self, request, reason):
        with self._lock:
            self._refused[reason] += 1
        address = request[3].decode("ascii", "replace") if len(request) > 3 else "?"
        if address not in self._logged and len(self._logged) < MAX_LOGGED_PEERS:
            self._logged.add(address)
            log.warning("refused a connection from %s: %s (not a key of this cluster; "
                        "further refusals from there are logged at DEBUG)", address, reason)
        else:
            log.debug("refused a connection from %s: %s", address, reason)

    def stop(self):
        """End the thread (from any thread) and wait for it."""
        if self._thread is None:
            return
        stopper = self.context.socket(zmq.PUSH)
        stopper.connect(self._stop_url)
        stopper.send(b"")
        stopper.close(linger=1000)
        self._thread.join(5)
        self._thread = None


def _split_envelope(frames):
    """A ROUTER's message split at its empty delimiter: (routing ids, delimiter, body)."""
    try:
        i = frames.index(b"")
    except ValueError:
        return frames[:1], b"", frames[1:]
    return frames[:i], frames[i], frames[i + 1:]
