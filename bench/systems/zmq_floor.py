"""The raw pyzmq floor: the least any Python task system pays per task.

    client DEALER ──▶ ROUTER relay ROUTER ──▶ DEALER worker (one process each)
        ◀──────────────────┘       └──────────────────┘

A call is one pickle (protocol 5, large buffers out of band as frames of their own), one
hop through a relay process that picks the worker with the fewest calls outstanding (or the
one named), one unpickle and call in the worker, and the same way back. No signatures, no
headers, no bookkeeping, no task record: what is left is the Python cost of three
processes passing a message. High-water marks are off, so nothing is ever dropped.

    python -m bench.systems.zmq_floor relay              prints {"front": port, "back": port}
    python -m bench.systems.zmq_floor worker URL IDENT
"""
import itertools
import json
import pickle
import subprocess
import sys
import time

import zmq

from . import tasks
from .base import BenchError, System, median_latency, timed

STATUS = b"STATUS"  # a target asking the relay how many workers it knows
READY = b"READY"    # a worker's first message


def _socket(ctx, kind):
    sock = ctx.socket(kind)
    sock.sndhwm = sock.rcvhwm = 0
    sock.linger = 0
    return sock


def _dumps(obj):
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return [data, *(b.raw() for b in buffers)]


def _loads(frames):
    return pickle.loads(frames[0].buffer, buffers=[f.buffer for f in frames[1:]])


# -- the relay process ------------------------------------------------------------------------
def relay():
    ctx = zmq.Context()
    front, back = _socket(ctx, zmq.ROUTER), _socket(ctx, zmq.ROUTER)
    ports = {"front": front.bind_to_random_port("tcp://127.0.0.1"),
             "back": back.bind_to_random_port("tcp://127.0.0.1")}
    print(json.dumps(ports), flush=True)
    load = {}  # worker identity -> calls outstanding
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll():
            for _ in range(1000):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if sock is front:
                    _request(frames, front, back, load)
                else:
                    _reply(frames, front, load)


def _request(frames, front, back, load):
    """[client, target, msg_id, payload...] from a client → the worker that runs it."""
    client, target = frames[0], frames[1].bytes
    if target == STATUS:
        front.send_multipart([client, frames[2], str(len(load)).encode()])
        return
    worker = target or min(load, key=load.get)
    load[worker] += 1
    back.send_multipart([worker, client, *frames[2:]], copy=False)


def _reply(frames, front, load):
    """[worker, client, msg_id, result...] from a worker → its client."""
    worker = frames[0].bytes
    if len(frames) == 2 and frames[1].bytes == READY:
        load[worker] = 0
        return
    load[worker] -= 1
    front.send_multipart(frames[1:], copy=False)


# -- a worker process -------------------------------------------------------------------------
def worker(url, ident):
    ctx = zmq.Context()
    sock = _socket(ctx, zmq.DEALER)
    sock.identity = ident.encode()
    sock.connect(url)
    sock.send(READY)
    while True:
        client, msg_id, *payload = sock.recv_multipart(copy=False)
        f, args = _loads(payload)
        sock.send_multipart([client, msg_id, *_dumps(f(*args))], copy=False)


# -- the System (client side) -----------------------------------------------------------------
class ZmqFloorSystem(System):
    def __init__(self):
        super().__init__()
        self.procs = []
        self.sock = None
        self.ids = itertools.count()

    def describe(self):
        return {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
                "python": sys.version.split()[0]}

    def start(self, n):
        me = [sys.executable, "-m", __name__]
        relay_proc = subprocess.Popen([*me, "relay"], stdout=subprocess.PIPE, text=True)
        self.procs.append(relay_proc)
        ports = json.loads(relay_proc.stdout.readline())
        self.workers = [f"w{i}".encode() for i in range(n)]
        self.procs += [subprocess.Popen([*me, "worker", f"tcp://127.0.0.1:{ports['back']}",
                                         w.decode()]) for w in self.workers]
        self.ctx = zmq.Context()
        self.sock = _socket(self.ctx, zmq.DEALER)
        self.sock.connect(f"tcp://127.0.0.1:{ports['front']}")
        self._wait_for_workers(n, timeout=30)
        self._gather([self._send(b"", tasks.noop, i) for i in range(4 * n)], 30)  # warm up

    def _wait_for_workers(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.send_multipart([STATUS, b"", b""])
            if int(self.sock.recv_multipart()[1]) >= n:
                return
            time.sleep(0.01)
        raise BenchError(f"fewer than {n} floor workers registered after {timeout} s")

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            self.ctx.term()
            self.sock = None
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        self.procs = []

    def _send(self, target, f, *args):
        msg_id = next(self.ids).to_bytes(8, "little")
        self.sock.send_multipart([target, msg_id, *_dumps((f, args))], copy=False)
        return msg_id

    def _gather(self, msg_ids, timeout):
        """The results of `msg_ids`, in their order."""
        results, deadline = {}, time.monotonic() + timeout
        while len(results) < len(msg_ids):
            if not self.sock.poll(max(0, deadline - time.monotonic()) * 1000):
                raise BenchError(f"{len(results)} of {len(msg_ids)} replies after {timeout} s")
            msg_id, *payload = self.sock.recv_multipart(copy=False)
            results[msg_id.bytes] = _loads(payload)
        return [results[m] for m in msg_ids]

    def map_noop(self, n_tasks, timeout):
        seconds, result = timed(lambda: self._gather(
            [self._send(b"", tasks.noop, i) for i in range(n_tasks)], timeout))
        if result[-1] != n_tasks - 1:
            raise BenchError("the floor's map returned wrong results")
        return seconds

    def latency(self, kind, count, timeout):
        target = self.workers[0] if kind == "direct" else b""
        return median_latency(lambda: self._gather([self._send(target, tasks.noop, 1)],
                                                   timeout), count)

    def push_pull(self, nbytes, timeout):
        import numpy
        array = numpy.ones(nbytes // 8)
        push, _ = timed(lambda: self._gather(
            [self._send(w, tasks.push, {"bench_array": array}) for w in self.workers], timeout))
        pull, back = timed(lambda: self._gather(
            [self._send(w, tasks.pull, "bench_array") for w in self.workers], timeout))
        if any(b.shape != array.shape for b in back):
            raise BenchError("pull returned something else than what was pushed")
        return {"push": push, "pull": pull}


if __name__ == "__main__":
    {"relay": relay, "worker": worker}[sys.argv[1]](*sys.argv[2:])
