"""The runner's side of a driver process: a System of some venv, called like an object.

    driver = Driver.spawn(VARIANTS["ipp"], log_dir)
    driver.call("start", n=2)
    seconds = driver.call("map_noop", n_tasks=2000, timeout=80)
    driver.close()            # stop, then kill whatever the system left running

A call that has not answered `GRACE` seconds after its own timeout kills the driver and
everything it started (found by its token, see systems/procs.py) and raises `CallTimeout`;
the driver is dead from then on.
"""
import json
import os
import select
import subprocess
import uuid

from .peers import REPO, python_for
from .systems import procs

GRACE = 30.0
LINGER = 10.0  # seconds a stopped system's processes may take to exit before being killed


class DriverError(Exception):
    """The call failed in the driver; the message says how."""


class CallTimeout(DriverError):
    """The driver did not answer the call in time (its process tree is killed)."""


class CallUnsupported(DriverError):
    """The system has no such workload (the cell reads n/a)."""


class Driver:
    def __init__(self, variant, proc, token, log_path):
        self.variant = variant
        self.proc = proc
        self.token = token
        self.log_path = log_path
        self.dead = None  # why it can no longer be called

    @classmethod
    def spawn(cls, variant, log_dir):
        token = uuid.uuid4().hex
        env = {**os.environ, "PYTHONPATH": str(REPO), procs.TOKEN_VAR: token}
        log_path = log_dir / f"{variant.name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [python_for(variant.venv), "-m", "bench.systems.serve", variant.target,
                 json.dumps(variant.options)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env)
        return cls(variant, proc, token, log_path)

    def call(self, method, timeout=60.0, **kwargs):
        """The result of `method(**kwargs)` in the driver (`timeout` is passed on if the
        call takes one; the runner waits GRACE seconds longer)."""
        self.send(method, timeout, **kwargs)
        return self.receive()

    def send(self, method, timeout=60.0, **kwargs):
        """Start a call; `receive()` gets its result (so several drivers can work at once)."""
        if self.dead:
            raise DriverError(self.dead)
        if method in _TAKES_TIMEOUT:
            kwargs["timeout"] = timeout
        self._pending = (method, timeout)
        self.proc.stdin.write((json.dumps({"method": method, "kwargs": kwargs}) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self):
        method, timeout = self._pending
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout + GRACE)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            why = "no answer in time" if not ready else "the driver exited"
            self.kill(f"{method}: {why}; see {self.log_path}")
            raise CallTimeout(self.dead)
        reply = json.loads(line)
        if "unsupported" in reply:
            raise CallUnsupported(reply["unsupported"])
        if "error" in reply:
            raise DriverError(reply["error"])
        return reply["result"]

    def kill(self, why):
        self.dead = why
        procs.kill_all(procs.with_token(self.token))
        self.proc.wait()

    def close(self, timeout=120.0):
        """Stop the system and the driver; returns the pids that had to be killed after."""
        try:
            if not self.dead:
                self.call("stop", timeout=timeout)
        except DriverError:
            pass
        finally:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            # a system may end its processes asynchronously: give them a moment
            procs.wait_gone(procs.with_token(self.token), LINGER)
            leftover = procs.with_token(self.token)
            procs.kill_all(leftover)
            self.proc.wait()
            self.dead = self.dead or "closed"
        return leftover


_TAKES_TIMEOUT = {"map_noop", "map_sleep", "uneven", "latency", "fill", "copy_records", "db_query", "resubmit",
                  "push_pull", "cli_start_stop"}
