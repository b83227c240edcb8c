"""The controller's heartbeat: pings out and pongs in, on a thread of its own.

    heart thread:  hb_ping PUB ── "<time>" every period ──▶ engines' hearts (C proxies)
                   hb_pong ROUTER ◀── the same bytes, from each engine's uuid identity
                   pongs: {uuid: monotonic time of its last pong}   (under a lock)
    routing loop:  every period, take_pongs() → HubState.Pong events, then Tick

Why a thread: an engine that hears no ping for its `controller_timeout` shuts itself down,
so pings sent by the routing loop stopped every engine whenever that loop was slow (a long
query, a flood of output). Here pings go out, and pongs are timed, whatever the loop does;
when it comes back, the hub sees each engine's real last pong, and declares dead only the
engines that really went silent. The thread does no routing and touches no state but its
own dict: a routing loop that is stuck for good is not hidden from engines by it any more
than a slow one is — clients notice a dead controller process by their own heartbeats
(client/connection.py); see docs/architecture.md.
"""
import threading
import time

import zmq


class HeartMonitor:
    """Binds hb_ping and hb_pong on `ip` (random ports) in its thread; `start()` returns once
    they are bound (`ports` then holds them); `stop()` ends the thread and closes both."""

    def __init__(self, context, ip, period, secure=lambda sock, name: None, ports=None,
                 incarnation=b""):
        self.context = context
        self.fixed_ports = ports or {}  # name -> port to bind (a controller started again)
        # in front of every ping: an engine that sees it change knows the controller was
        # started again and must register anew (engine/reconnect.py)
        self.incarnation = incarnation
        self.ip = ip
        self.period = period
        self.secure = secure  # (socket, name): the cluster's CurveZMQ keys, before binding
        self.ports = {}
        self.pings = 0  # pings sent so far (tests wait on it: a clock that is not time)
        self._pongs = {}
        self._lock = threading.Lock()
        self._stop_url = f"inproc://taskhub-heart-monitor-{id(self)}"
        self._thread = None
        self._error = None

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="taskhub-controller-heart")
        self._thread.start()
        ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def take_pongs(self):
        """{engine uuid: monotonic time of its last pong} since the last call."""
        with self._lock:
            pongs, self._pongs = self._pongs, {}
        return pongs

    def stop(self, timeout=5.0):
        if self._thread is None:
            return
        stopper = self.context.socket(zmq.PAIR)
        stopper.linger = 1000
        stopper.connect(self._stop_url)
        stopper.send(b"")
        stopper.close()
        self._thread.join(timeout)

    # -- the thread -------------------------------------------------------------------------
    def _bind(self):
        ping, pong, stop = (self.context.socket(k) for k in (zmq.PUB, zmq.ROUTER, zmq.PAIR))
        stop.bind(self._stop_url)
        for sock, name in ((ping, "hb_ping"), (pong, "hb_pong")):
            sock.linger = 0
            self.secure(sock, name)
            self.ports[name] = bind_port(sock, self.ip, self.fixed_ports.get(name))
        return ping, pong, stop

    def _run(self, ready):
        try:
            socks = self._bind()
        except Exception as e:  # a port or key problem: start() raises it
            self._error = e
            ready.set()
            return
        ready.set()
        try:
            self._beat(*socks)
        finally:
            for sock in socks:
                sock.close(linger=0)

    def _beat(self, ping, pong, stop):
        poller = zmq.Poller()
        poller.register(pong, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_ping:
                ping.send(self.incarnation + str(now).encode())
                self.pings += 1
                next_ping = now + self.period
            ready = dict(poller.poll(max(0.0, next_ping - time.monotonic()) * 1000))
            if stop in ready:
                return
            if pong in ready:
                self._read_pongs(pong)

    def _read_pongs(self, pong):
        now, seen = time.monotonic(), {}
        while True:
            try:
                frames = pong.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) == 2:
                seen[frames[0].decode("utf8", "replace")] = now
        with self._lock:
            self._pongs.update(seen)


def bind_port(sock, ip, port=None):
    """Bind `sock` on `ip`: on `port` if given (a controller started again takes its
    predecessor's ports, which the connection files name), else a random one; the port."""
    if not port:
        return sock.bind_to_random_port(f"tcp://{ip}")
    sock.bind(f"tcp://{ip}:{port}")
    return port
