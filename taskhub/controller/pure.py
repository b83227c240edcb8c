"""The 'pure' scheme: load-balanced tasks pass through libzmq, with no Python on their path.

    client ─▶ ROUTER ═══ zmq_proxy_steerable (C, a thread of its own) ═══ DEALER ─▶ engines
                                  │ capture: a copy of every message, both ways
                                  ▼
                    PUSH ─▶ the controller's PULL: the hub records requests and replies

The DEALER hands tasks to the connected engines in turn. So nothing can be decided per task:
no dependencies, retries, priorities, targets or high-water mark (the client refuses them
at submission), an UnmetDependency comes back as an error, and tasks queued on an engine
that dies are lost (their records stay pending). The proxy is steerable so that `stop()`
ends it with a TERMINATE command instead of tearing down the shared zmq context; pyzmq's
`monitored_queue` could not be stopped that way. The hub gets replies from engines in the
reply's metadata (engine_uuid), since the device does not say where it sent a task.
"""
import threading

import zmq


class PureDevice:
    """Owns the proxy thread and its sockets. `start()` binds (ports in `.ports`)."""

    def __init__(self, context, ip, secure=lambda sock, channel: None):
        self.context = context
        self.ip = ip
        self.secure = secure  # (socket, channel name): the controller's CurveZMQ options
        self.ports = {}
        tag = f"taskhub-pure-{id(self)}"
        self.capture_url = f"inproc://{tag}-capture"
        self.front_url = f"inproc://{tag}-front"  # where the hub itself submits (resubmit)
        self._control_url = f"inproc://{tag}-control"
        self._thread = None

    def start(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,),
                                        name="taskhub-pure-scheduler", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def _run(self, ready):
        ctx = self.context
        front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        capture, control = ctx.socket(zmq.PUSH), ctx.socket(zmq.PAIR)
        capture.sndhwm = 0  # a copy must never be dropped: the hub records from it
        self.secure(front, "task")
        self.secure(back, "e_task")
        self.ports = {"task": front.bind_to_random_port(f"tcp://{self.ip}"),
                      "e_task": back.bind_to_random_port(f"tcp://{self.ip}")}
        front.bind(self.front_url)
        capture.bind(self.capture_url)
        control.bind(self._control_url)
        ready.set()
        try:
            zmq.proxy_steerable(front, back, capture, control)
        finally:
            for sock in (front, back, capture, control):
                sock.close(linger=0)

    def stop(self):
        """End the proxy (from any thread) and wait for its thread."""
        if self._thread is None:
            return
        steer = self.context.socket(zmq.PAIR)
        steer.connect(self._control_url)
        steer.send(b"TERMINATE")
        steer.close(linger=1000)
        self._thread.join(5)
        self._thread = None
