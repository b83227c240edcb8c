"""How registration and heartbeats scale with the number of engines on one controller.

    python -m bench.engines_scale [--counts 100,500] [--per-process 25]
                                  [--heartbeat-period 0.5] [--beats 20] [--json FILE]

For each count N: one controller (`python -m taskhub.controller`, task DB in memory), then
N lightweight engines: real `Engine` objects (registration, heart device, IO thread), 25 to
a process so that 500 fit on a laptop, which never run a task. It reports

    registered   seconds from launching the engine processes until a client sees all N
                 (includes starting the processes and importing taskhub in each)
    spread       seconds from the first registration to the N-th (the hub's part)
    cpu/beat     the controller's CPU time per heartbeat with N idle engines (ping out,
                 N pongs in, the dead-engine check), measured over --beats heartbeats
    lost         engines the hub declared dead meanwhile (must be 0)

and the same CPU figure with no engine at all, so the growth per engine shows.

    controller (its own process) ◀── registration, pongs ── engine processes × ceil(N/25)
        ▲                                                     (`--host K`: this module
        └── a Client: counts registrations and engine_down     running K engines)
"""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """CPU time of `pid`'s threads so far: nanoseconds from /proc/PID/task/*/schedstat,
    or clock ticks (10 ms: too coarse for one heartbeat) from /proc/PID/stat without it."""
    try:
        return sum(int((task / "schedstat").read_text().split()[0])
                   for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- one engine process: K engines ----------------------------------------------------------

def host_engines(count, connection_file):
    """Register `count` engines from this process and keep them beating until SIGTERM."""
    from taskhub.appbase import read_connection_file
    from taskhub.engine.engine import Engine
    from taskhub.zmqsocket import make_context
    info = read_connection_file(connection_file)
    context = make_context()
    engines = [Engine(info, info["key"].encode(), controller_timeout=300, context=context)
               for _ in range(count)]
    for engine in engines:
        engine.connect(timeout=120)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the devices' threads never join
    sys.stdout.write(f"registered {count}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


# -- the measurement ------------------------------------------------------------------------

class Run:
    """A controller in a temporary profile, engine processes, and a client watching them."""

    def __init__(self, heartbeat_period):
        self.profile = Path(tempfile.mkdtemp(prefix="taskhub-scale-"))
        self.heartbeat_period = heartbeat_period
        self.hosts = []
        self.controller = None
        self.client = None
        self.down = 0

    def start_controller(self):
        log = open(self.profile / "controller.log", "w")
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "taskhub.controller", "--profile-dir", str(self.profile),
             "--db", "memory", "--heartbeat-period", str(self.heartbeat_period),
             "--log-level", "WARN"], stdout=log, stderr=log)
        client_file = self.profile / "security" / "taskhub-client.json"
        deadline = time.monotonic() + 30
        while not client_file.exists():
            if time.monotonic() > deadline or self.controller.poll() is not None:
                raise RuntimeError(f"the controller did not start: see {log.name}")
            time.sleep(0.05)
        from taskhub.client import Client
        self.client = Client(profile_dir=str(self.profile))
        self._count_engine_downs()

    def _count_engine_downs(self):
        original = self.client._on_notification

        def counting(msg):
            if msg.msg_type == "engine_down":
                self.down += 1
            original(msg)
        self.client._on_notification = counting

    def register(self, n, per_process):
        """Launch n engines; (seconds until all registered, first-to-last spread)."""
        engine_file = self.profile / "security" / "taskhub-engine.json"
        started = time.monotonic()
        for k in _split(n, per_process):
            self.hosts.append(subprocess.Popen(
                [sys.executable, "-m", "bench.engines_scale", "--host", str(k), "--file",
                 str(engine_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        first = None
        deadline = started + 300
        while len(self.client.ids) < n:
            if self.client.ids and first is None:
                first = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.client.ids)} of {n} engines registered "
                                   "in 300 s")
            time.sleep(0.01)
        done = time.monotonic()
        return done - started, done - (first or done)

    def cpu_per_beat(self, beats):
        """The controller's CPU seconds per heartbeat over `beats` heartbeats."""
        time.sleep(2 * self.heartbeat_period)  # let registration's aftermath settle
        before, t0 = cpu_seconds(self.controller.pid), time.monotonic()
        time.sleep(beats * self.heartbeat_period)
        used, elapsed = cpu_seconds(self.controller.pid) - before, time.monotonic() - t0
        return used / (elapsed / self.heartbeat_period)

    def stop(self):
        if self.client is not None:
            self.client.close()
        for proc in [*self.hosts, self.controller]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in [*self.hosts, self.controller]:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _split(n, per_process):
    """n engines in chunks of at most `per_process`, as even as possible."""
    processes = max(1, math.ceil(n / per_process))
    share, extra = divmod(n, processes)
    return [share + (i < extra) for i in range(processes)]


def measure(n, per_process, heartbeat_period, beats):
    run = Run(heartbeat_period)
    try:
        run.start_controller()
        if n == 0:
            return {"engines": 0, "processes": 0, "registered_s": 0.0, "spread_s": 0.0,
                    "cpu_per_beat_ms": run.cpu_per_beat(beats) * 1e3, "lost": 0}
        registered, spread = run.register(n, per_process)
        cpu = run.cpu_per_beat(beats)
        lost = run.down + (n - len(run.client.ids))
        return {"engines": n, "processes": len(run.hosts), "registered_s": registered,
                "spread_s": spread, "cpu_per_beat_ms": cpu * 1e3, "lost": lost}
    finally:
        run.stop()


def table(rows, baseline):
    lines = [f"{'engines':>8} {'procs':>6} {'registered':>11} {'spread':>8} {'cpu/beat':>10} "
             f"{'per engine':>11} {'lost':>5}"]
    for r in rows:
        per_engine = ((r["cpu_per_beat_ms"] - baseline) / r["engines"] * 1e3
                      if r["engines"] else 0.0)
        lines.append(f"{r['engines']:>8} {r['processes']:>6} {r['registered_s']:>10.2f}s "
                     f"{r['spread_s']:>7.2f}s {r['cpu_per_beat_ms']:>8.3f}ms "
                     f"{per_engine:>9.2f}µs {r['lost']:>5}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.engines_scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,500", help="engine counts (default 100,500)")
    parser.add_argument("--per-process", type=int, default=25,
                        help="engines per engine process (default 25)")
    parser.add_argument("--heartbeat-period", type=float, default=0.5,
                        help="the controller's heartbeat period in seconds (default 0.5)")
    parser.add_argument("--beats", type=int, default=20,
                        help="heartbeats to measure the controller's CPU over (default 20)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--host", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host:
        return host_engines(args.host, args.file)
    counts = [int(c) for c in args.counts.split(",")]
    sys.stdout.write(f"{os.cpu_count()} cores; heartbeat every {args.heartbeat_period:g}s; "
                     f"{args.per_process} engines per process\n")
    sys.stdout.flush()
    rows = [measure(n, args.per_process, args.heartbeat_period, args.beats)
            for n in [0, *counts]]
    sys.stdout.write(table(rows[1:], rows[0]["cpu_per_beat_ms"]) +
                     f"\n(controller alone: {rows[0]['cpu_per_beat_ms']:.3f} ms CPU per "
                     "heartbeat; 'per engine' is the growth over that)\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any(r["lost"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
