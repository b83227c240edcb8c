"""Watching a running cluster: engines whose process or job ended are noticed at once.

    every launcher.watch_interval s (0.2 s local, 1 s batch), holding pid/record.lock:
        cluster.json ──sync──▶ engine sets (`ipcluster engines add/remove` change them)
        each set: ended_units() ──▶ new ones:
            hub: unregistration_request for every engine whose uuid starts with the
                 unit's tag; the hub fails or reroutes their tasks at once, instead of
                 after heartbeat_period × heartbeat_misses
            --restart-engines: replace_unit() (same size, same place), up to
                 restart_limit replacements in the cluster's life
        cluster.json ◀── the sets as they are now

A foreground `ipcluster start` runs this loop itself; `ipcluster start --daemonize` starts
`python -m taskhub.cluster.watch` in the background and records it in cluster.json, so
`ipcluster stop` stops it first (it must not restart engines being stopped). The loop
ends when the controller does.
"""
import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import zmq

from .. import curve, paths
from ..appbase import read_connection_file
from ..session import Session
from .cluster import Cluster, read_record, record_lock, record_path, write_json_atomic
from .launcher import LocalProcess

log = logging.getLogger("taskhub.cluster")


class HubUnavailable(RuntimeError):
    """The controller did not answer a request of the watcher."""


def hub_request(profile_dir, msg_type, content, timeout=5.0):
    """Send one request to the hub of `profile_dir`'s controller; the reply's content."""
    info = read_connection_file(paths.security_file(profile_dir, "client"))
    session = Session(info["key"].encode())
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    try:
        curve.secure_client(sock, info)
        sock.connect(f"tcp://{info['ip']}:{info['ports']['query']}")
        session.send(sock, msg_type, content)
        if not sock.poll(timeout * 1000):
            raise HubUnavailable(f"no answer to {msg_type} from the hub within {timeout:g}s")
        _, msg = session.feed(sock.recv_multipart())
        if msg is None:
            raise HubUnavailable(f"the hub's reply to {msg_type} failed the signature check")
        return msg["content"]
    finally:
        sock.close()


def unregister_tags(profile_dir, tags, timeout=5.0):
    """Tell the hub that the engines of the units tagged `tags` are gone; their ids."""
    engines = hub_request(profile_dir, "connection_request", {}, timeout).get("engines", {})
    gone = {int(i): u for i, u in engines.items() if u.split(".")[0] in set(tags)}
    for uuid in gone.values():
        hub_request(profile_dir, "unregistration_request", {"uuid": uuid}, timeout)
    return sorted(gone)


class Watcher:
    """One pass at a time over a cluster's engine sets; `run()` loops until it ends."""

    def __init__(self, cluster, restart=False, restart_limit=10, controller_poll=1.0,
                 restart_controller=False):
        self.cluster = cluster
        self.restart = restart
        self.restart_controller = restart_controller  # start a dead controller again
        self.controller_restarts = 0
        self.restart_limit = restart_limit
        self.controller_poll = controller_poll
        self.restarts = 0
        self.handled = set()     # tags of ended units already dealt with
        self._next_check = {}    # set_id -> monotonic time of its next check
        self._next_pass = 0.0

    def run(self, should_stop=lambda: False):
        """Watch until the controller ends (returns its status) or `should_stop()`."""
        next_controller_check = 0.0
        while not should_stop():
            now = time.monotonic()
            if now >= next_controller_check:
                status = self.cluster.controller.poll()
                if status is not None and not self._controller_died(status):
                    return status
                next_controller_check = now + self.controller_poll
            self.check()
            time.sleep(0.05)
        return None

    def _controller_died(self, status):
        """Start the controller again (resuming: controller/restart.py) if so configured
        and under restart_limit; whether it was."""
        if not self.restart_controller or self.controller_restarts >= self.restart_limit:
            return False
        self.controller_restarts += 1
        log.warning("the controller ended (status %s); starting it again (%d of at most "
                    "%d)", status, self.controller_restarts, self.restart_limit)
        try:
            self.cluster.restart_controller()
        except Exception as e:  # it cannot start: the cluster ends as without the option
            log.error("could not start the controller again: %s", e)
            return False
        return True

    def check(self):
        """Sync with cluster.json, deal with units that ended, write the record back;
        the (engine set, unit) pairs that ended."""
        if time.monotonic() < self._next_pass:
            return []
        self._next_pass = time.monotonic() + min(
            (s.watch_interval for s in self.cluster.engine_sets()), default=0.2)
        with record_lock(self.cluster.profile_dir):
            record = read_record(self.cluster.profile_dir)
            if record is None or record.get("controller") != self.cluster.controller.info():
                return []  # stopped, or the record describes another cluster now
            self.cluster.sync_engine_sets(record)
            ended = [(s, u) for s in self._due_sets() for u in s.ended_units()
                     if u.tag not in self.handled]
            for engine_set, unit in ended:
                self._unit_ended(engine_set, unit)
            if ended:
                write_json_atomic(record_path(self.cluster.profile_dir), self.cluster.record())
        return ended

    def _due_sets(self):
        now = time.monotonic()
        due = [s for s in self.cluster.engine_sets() if self._next_check.get(s.set_id, 0) <= now]
        for s in due:
            self._next_check[s.set_id] = now + s.watch_interval
        return due

    def _unit_ended(self, engine_set, unit):
        self.handled.add(unit.tag)
        try:
            ids = unregister_tags(self.cluster.profile_dir, [unit.tag])
        except (HubUnavailable, OSError) as e:
            ids = []
            log.warning("could not tell the hub that unit %s ended: %s", unit.tag, e)
        log.warning("%s unit %s ended (%d engines); unregistered engine ids %s",
                    engine_set.kind, unit.tag, unit.n, ids)
        if not self.restart or self.cluster.controller.poll() is not None \
                or self.restarts >= self.restart_limit:
            if self.restart and self.restarts >= self.restart_limit:
                log.error("not restarting unit %s: already replaced %d units (restart_limit)",
                          unit.tag, self.restarts)
            # gone and unregistered: the record counts engines that exist (ipcluster list
            # after `engines add` replaced it showed "4/6", and stop "6 engines")
            engine_set.units.remove(unit)
            return
        fresh = engine_set.replace_unit(unit)
        self.restarts += 1
        log.warning("replaced unit %s by %s (%d engines)", unit.tag, fresh.tag, fresh.n)


# -- the background watcher of a daemonized cluster ------------------------------------------

def watcher_command(profile_dir, restart, restart_limit, restart_controller=False):
    return [sys.executable, "-m", "taskhub.cluster.watch", "--profile-dir", str(profile_dir),
            "--restart-limit", str(restart_limit), *(["--restart-engines"] if restart else []),
            *(["--restart-controller"] if restart_controller else [])]


def start_background_watcher(cluster, restart, restart_limit, restart_controller=False):
    """Start `python -m taskhub.cluster.watch` for `cluster` and record it there."""
    proc = LocalProcess.spawn(watcher_command(cluster.profile_dir, restart, restart_limit,
                                              restart_controller),
                              Path(cluster.profile_dir) / "log", "ipcluster-watch")
    cluster.watcher = proc
    cluster._write_record()
    return proc


def _recorded_with_me(profile_dir, timeout=10.0):
    """The recorded cluster, once the record names this watcher.

    The parent records us just after starting us. A cluster read before that would rewrite
    the record without us when it replaces a unit, and `ipcluster stop` would then not stop
    us first: we would see the jobs it cancels end, and start new ones."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = Cluster.from_record(profile_dir)
        mine = cluster.watcher is not None and cluster.watcher.pid == os.getpid()
        if mine or time.monotonic() > deadline:
            return cluster
        time.sleep(0.05)  # polling a file another process is about to write


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m taskhub.cluster.watch",
                                     description="Watch the engines of a daemonized cluster.")
    parser.add_argument("--profile-dir", required=True)
    parser.add_argument("--restart-engines", action="store_true")
    parser.add_argument("--restart-limit", type=int, default=10)
    parser.add_argument("--restart-controller", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    cluster = _recorded_with_me(args.profile_dir)
    watcher = Watcher(cluster, restart=args.restart_engines, restart_limit=args.restart_limit,
                      restart_controller=args.restart_controller)
    log.info("watching the engines of %s (pid %d%s)", args.profile_dir, os.getpid(),
             ", restarting them" if args.restart_engines else "")
    status = watcher.run(should_stop=lambda: bool(stopping))
    if status is not None:
        log.warning("the controller ended (status %s); stopped watching", status)
    return 0

if __name__ == "__main__":
    sys.exit(main())
