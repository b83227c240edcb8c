"""`ipcontroller`: start the hub, the relays and the scheduler on one profile."""
import logging
import os
import signal
import socket
import time
from pathlib import Path

from traitlets import Bool, Enum, Float, Integer, Unicode

from .. import curve, filemodes, paths, web
from ..appbase import BaseApp, write_connection_file
from ..error import CorruptTaskDB
from ..session import Session, new_key
from .controller import Controller
from . import limits
from .db import make_db
from .prefetch import MODES as PREFETCH_MODES
from . import restart
from .retention import Retention
from .schemes import SCHEME_NAMES

log = logging.getLogger("taskhub.controller")

PID_FILE = "ipcontroller.pid"  # in the profile's pid/: there while a controller runs


class IPControllerApp(BaseApp):
    name = "ipcontroller"
    description = "Start the taskhub controller: hub, relays, scheduler and task DB."
    config_file_name = Unicode("ipcontroller_config.py")

    ip = Unicode("127.0.0.1", help="Address to bind. 127.0.0.1 keeps the cluster on this "
                 "machine; 0.0.0.0 or a interface address lets engines and clients on other "
                 "hosts connect (encrypted with CurveZMQ unless --no-curve; see curve)."
                 ).tag(config=True)
    connect_ip = Unicode("", help="(--location) Address written into the connection files "
                         "for engines and clients to connect to. Empty: the --ip address, or "
                         "this host's name when --ip is 0.0.0.0 or *. Set it when the bind "
                         "address is not one other hosts can reach (0.0.0.0, or behind NAT)."
                         ).tag(config=True)
    curve = Bool(None, allow_none=True, help="Encrypt and authenticate every connection "
                 "with CurveZMQ (--curve / --no-curve). Unset: on exactly when --ip is not "
                 "a loopback address. On, only holders of the keys in this cluster's "
                 "connection files can connect to any port or read anything; it costs CPU "
                 "per byte (see docs/security.md for the figures). Off beyond loopback, "
                 "tasks, results and output cross the network in clear and anyone who can "
                 "reach the ports can connect: only an explicit --no-curve does that, and "
                 "every such start logs a WARNING.").tag(config=True)
    db = Unicode("sqlite", help="Task DB backend: 'sqlite' (default: a file in the profile, "
                 "durable across restarts), 'memory' (fastest, lost at exit, grows with "
                 "every task), 'mongodb' (a server, shareable), 'none' (no history; db_query "
                 "fails), or 'module:Class'.").tag(config=True)
    db_file = Unicode("tasks.db", help="SQLite file, relative to the profile directory. "
                      "One file per profile keeps the history of every cluster run on it."
                      ).tag(config=True)
    query_timeout = Float(10.0, min=0.01, help="Seconds a task-DB query (db_query, "
                          "db_count, get_result of old tasks, ...) may run before it is stopped "
                          "and refused with a QueryTimeout. Queries run on a thread of their "
                          "own, so a slow one never delays routing, but it holds up the "
                          "queries behind it: longer lets big scans finish, shorter keeps "
                          "other queries prompt.").tag(config=True)
    db_max_value_bytes = Integer(500 * 2**20, min=1, help="Largest value (a task's or "
                                 "result's buffers, its output text, ...) written into the "
                                 "SQLite task DB. A bigger one goes to a file beside it "
                                 "(<db_file>.values/) and the record names the file (text "
                                 "and dicts are cut, with a note saying so). SQLite refuses "
                                 "values over 1e9 bytes; smaller keeps the DB file compact "
                                 "and its reads fast.").tag(config=True)
    db_kept_bytes = Integer(256 * 2**20, min=0, help="While the task DB cannot be written "
                            "(disk full, read-only, deleted), the records waiting to be "
                            "written are kept in the controller's memory up to this many "
                            "bytes, then appended to a spill file beside the DB "
                            "(<db_file>.spill, written when the DB recovers or at the next "
                            "start). More memory spares the disk that may be full; less "
                            "bounds the controller's growth.").tag(config=True)
    mongodb_url = Unicode("mongodb://127.0.0.1:27017", help="MongoDB server for db=mongodb."
                          ).tag(config=True)
    mongodb_database = Unicode("taskhub", help="MongoDB database for db=mongodb."
                               ).tag(config=True)
    scheme = Enum(SCHEME_NAMES, default_value="leastload", help="Load-balancing scheme: "
                  "leastload (fewest outstanding tasks; the best default), lru (round "
                  "robin), plainrandom, twobin, weighted (cheaper choices that ignore some "
                  "of the load), or pure (a C-level zmq device: the highest throughput, "
                  "but no dependencies, retries, priorities, targets or high-water mark, "
                  "and tasks on an engine that dies are lost).").tag(config=True)
    hwm = Integer(0, help="Most tasks outstanding on one engine (0: no cap beyond what "
                  "--prefetch allows). An explicit cap: 1 sends one task at a time, at a "
                  "round trip per task. Ignored by the pure scheme.").tag(config=True)
    prefetch = Enum(PREFETCH_MODES, default_value="adaptive", help="When tasks leave the "
                    "hub for an engine. adaptive: each engine gets as many as cover its next "
                    "~50 ms of work, from measured task durations (deep for tiny tasks, "
                    "one at a time for long ones), idle engines take back tasks queued on "
                    "busy ones, and priorities order all work not yet sent: balance and "
                    "throughput together. eager: every task goes to an engine as soon as "
                    "it arrives (up to --hwm): balances task counts only; priorities do not "
                    "reorder work already sent. Ignored by the pure scheme. See "
                    "docs/scheduling.md.").tag(config=True)
    heartbeat_period = Float(1.0, help="Seconds between heartbeats. Shorter notices dead "
                             "engines sooner and costs more messages.").tag(config=True)
    ping = Integer(0, min=0, help="ipyparallel's spelling of the heartbeat period, in "
                   "milliseconds (0: heartbeat_period decides).").tag(config=True)
    heartbeat_misses = Integer(10, help="Heartbeat periods an engine may be silent before "
                               "it is declared dead and its tasks fail. Too few and a "
                               "busy machine loses healthy engines.").tag(config=True)
    output_limit = Integer(2**20, min=0, help="Characters of a task's stdout, and of its "
                           "stderr, that its record keeps; the rest is cut, with a line saying "
                           "how much (clients watching the task still get all of it, as it "
                           "runs). Larger keeps more of chatty tasks at the cost of DB size "
                           "and of the reply every client gets.").tag(config=True)
    retain_records = Integer(0, min=0, help="Most finished tasks the task DB keeps (0: all). "
                             "The oldest beyond it are culled every retain_period seconds "
                             "(whole, or only their buffers: see retain_what); unfinished "
                             "tasks never are.").tag(config=True)
    retain_bytes = Integer(0, min=0, help="Most bytes of arguments and results the task DB "
                           "keeps over finished tasks (0: no bound); the oldest go first."
                           ).tag(config=True)
    retain_days = Float(0.0, min=0, help="Days a finished task is kept (0: forever)."
                        ).tag(config=True)
    retain_what = Enum(("records", "buffers"), default_value="records", help="What "
                       "retention removes: 'records' (the whole record) or 'buffers' (its "
                       "arguments and results, keeping status, timings and output, so the "
                       "history stays whole but resubmit cannot rerun it).").tag(config=True)
    store_buffers = Bool(True, help="Keep each task's function, arguments and result in the "
                         "task DB, so get_result and resubmit work from any client later. "
                         "False keeps only records (status, timings, output, errors); a task "
                         "can also choose for itself (view flag store=False)."
                         ).tag(config=True)
    retain_period = Float(60.0, min=1, help="Seconds between retention culls.").tag(config=True)
    max_engines = Integer(0, min=0, help="Most engines registered at once (0: as many as "
                          "the file-descriptor limit allows; the controller raises its soft "
                          "limit to the hard one at start and logs the figure). Engines past "
                          "the limit are refused with a message naming it, which their log "
                          "and `ipcluster start` show.").tag(config=True)
    web_port = Integer(0, min=-1, max=65535, help="Port of the web view (engines, "
                       "throughput, the task history; `ipcluster dashboard` opens it). 0: a "
                       "free port, chosen at each start, so clusters never collide but the "
                       "URL changes (it is written to security/taskhub-web.json); a fixed "
                       "port gives a stable URL but fails the start if it is taken; -1: no "
                       "web view (saves a thread, and a client connection once someone "
                       "looks).").tag(config=True)
    resume = Bool(False, help="Started on a profile whose controller died (its pid file "
                  "left behind, its process gone): come back on the same ports with the same "
                  "keys (from the profile's connection files), let the engines and clients "
                  "that outlived it reconnect, and resume its unfinished tasks — those the "
                  "engines still hold are answered by them, load-balanced ones whose request "
                  "is stored are queued again (a task that was running may run twice), the "
                  "rest fail with TaskLost. Off: they all fail with TaskLost, and new ports "
                  "and keys are made. `ipcluster start` turns it on (see its --no-resume)."
                  ).tag(config=True)
    resume_wait = Float(10.0, min=0, help="Seconds a resumed task that was on an engine "
                        "waits for that engine to reconnect before it is queued again (or, "
                        "direct, lost). Longer spares work engines slow to notice the "
                        "restart still hold; shorter ends a map sooner when they are gone."
                        ).tag(config=True)
    web_ip = Unicode("127.0.0.1", help="Address the web view binds. 127.0.0.1 shows it to "
                     "this machine only; 0.0.0.0 to others too (every request still needs "
                     "the token, but travels unencrypted).").tag(config=True)

    max_message_size = Integer(64 << 20, help="Largest frame (bytes) the controller takes "
                               "in on its query, control, iopub and heartbeat sockets; a peer "
                               "sending more is disconnected before anything is allocated. "
                               "Larger lets bigger hub requests through; smaller bounds what "
                               "an unauthenticated peer can make the controller hold "
                               "(<= 0: no limit).").tag(config=True)
    max_task_message_size = Integer(4 << 30, help="Largest frame (bytes) on the task and mux "
                                    "sockets, which carry functions, arguments and results "
                                    "(one numpy array is one frame). Raise it to send bigger "
                                    "arrays; each connection can make the controller hold "
                                    "up to this much before the signature is checked "
                                    "(<= 0: no limit).").tag(config=True)

    flags = {
        "sqlitedb": ({"IPControllerApp": {"db": "sqlite"}},
                     "Record tasks in SQLite in the profile (the default; durable)."),
        "dictdb": ({"IPControllerApp": {"db": "memory"}},
                   "Record tasks in memory (fast; gone when the controller stops)."),
        "mongodb": ({"IPControllerApp": {"db": "mongodb"}},
                    "Record tasks in MongoDB at --mongodb-url."),
        "nodb": ({"IPControllerApp": {"db": "none"}},
                 "Keep no task history (db_query and get_result then fail)."),
        "curve": ({"IPControllerApp": {"curve": True}},
                  "Encrypt with CurveZMQ even on loopback (the default off loopback)."),
        "resume": ({"IPControllerApp": {"resume": True}},
                   "Resume a dead controller's profile: same ports and keys, its tasks "
                   "resumed."),
        "no-store": ({"IPControllerApp": {"store_buffers": False}},
                     "Keep task records without their arguments and results."),
        "no-curve": ({"IPControllerApp": {"curve": False}},
                     "Do not encrypt, even off loopback (logs a WARNING at every start)."),
    }

    aliases = {"profile": "IPControllerApp.profile",
               "mongodb-url": "IPControllerApp.mongodb_url",
               "mongodb-database": "IPControllerApp.mongodb_database", "profile-dir": "IPControllerApp.profile_dir",
               "ip": "IPControllerApp.ip", "location": "IPControllerApp.connect_ip",
               "db": "IPControllerApp.db",
               "scheme": "IPControllerApp.scheme", "hwm": "IPControllerApp.hwm",
               "prefetch": "IPControllerApp.prefetch",
               "log-level": "Application.log_level",
               "heartbeat-period": "IPControllerApp.heartbeat_period",
               "heartbeat-misses": "IPControllerApp.heartbeat_misses",
               "ping": "IPControllerApp.ping",
               "web-port": "IPControllerApp.web_port", "web-ip": "IPControllerApp.web_ip",
               "max-engines": "IPControllerApp.max_engines",
               "query-timeout": "IPControllerApp.query_timeout",
               "retain-records": "IPControllerApp.retain_records",
               "retain-bytes": "IPControllerApp.retain_bytes",
               "retain-days": "IPControllerApp.retain_days",
               "retain-what": "IPControllerApp.retain_what",
               "output-limit": "IPControllerApp.output_limit",
               "resume-wait": "IPControllerApp.resume_wait",
               "max-message-size": "IPControllerApp.max_message_size",
               "max-task-message-size": "IPControllerApp.max_task_message_size"}

    def make_db(self):
        options = {"sqlite": {"filename": str(self.location / self.db_file)},
                   "mongodb": {"url": self.mongodb_url, "database": self.mongodb_database}}
        try:
            return make_db(self.db, **options.get(self.db, {}))
        except CorruptTaskDB as error:
            raise SystemExit(f"ipcontroller: {error}")

    def make_curve_keys(self, previous=None):
        """The cluster's CurveZMQ keys, or None when it does not encrypt (see `curve`);
        `previous`: a dead predecessor's, taken over (restart.py)."""
        if not curve.use_curve(self.curve, self.ip):
            if not curve.is_loopback(self.ip):
                log.warning("%s", curve.insecure_warning(self.ip))
            return None
        if previous is not None and previous.curve is not None:
            return previous.curve
        try:
            keys = curve.ClusterKeys.generate()
        except curve.CurveUnavailable as e:
            why = "--curve" if self.curve else f"--ip {self.ip} is not a loopback address"
            raise SystemExit(f"ipcontroller: {why}, so traffic must be encrypted, but {e}; "
                             "install a pyzmq built with libsodium, or pass --no-curve")
        log.info("CurveZMQ on: only holders of this cluster's connection files can connect")
        return keys

    def make_retention(self):
        retention = Retention(max_records=self.retain_records, max_bytes=self.retain_bytes,
                              max_age=self.retain_days * 86400, what=self.retain_what,
                              period=self.retain_period)
        return retention if retention.bounded else None

    def make_controller(self):
        previous = self.previous_cluster()
        key = previous.key if previous is not None else new_key()
        soft, hard = limits.raise_fd_limit()
        controller = Controller(Session(key), self.make_db(), ip=self.ip, scheme=self.scheme,
                                hwm=self.hwm, prefetch=self.prefetch,
                                heartbeat_period=(self.ping / 1000 if self.ping
                                                  else self.heartbeat_period),
                                heartbeat_misses=self.heartbeat_misses,
                                max_engines=self.max_engines, output_limit=self.output_limit,
                                query_timeout=self.query_timeout,
                                db_max_value_bytes=self.db_max_value_bytes,
                                db_kept_bytes=self.db_kept_bytes,
                                curve=self.make_curve_keys(previous),
                                ports=previous.ports if previous is not None else None,
                                retention=self.make_retention(),
                                store=self.store_buffers,
                                max_message_size=(self.max_message_size,
                                                  self.max_task_message_size)).bind()
        log.info("descriptor limit %d (hard %d): this controller takes up to %d engines, as "
                 "%s", soft, hard, controller.hub.engine_limit, controller.hub.limit_reason)
        if previous is not None:
            restart.resume(controller, time.monotonic(), self.resume_wait)
        else:
            self.fail_lost_tasks(controller)
        restart.save_server_key(self.location, controller.curve)
        for which in ("client", "engine"):
            info = controller.connection_info(which)
            info.update(key=key.decode(), pid=os.getpid(), ip=self.connect_address())
            write_connection_file(paths.security_file(self.location, which), info)
        return controller

    def previous_cluster(self):
        """A dead predecessor's ports and keys to take over (restart.Previous), or None:
        resume is off, no controller died on this profile, or its files do not allow it."""
        if not self.resume:
            return None
        pid = read_pid_file(self.location)
        if pid is None or _is_controller(pid):
            return None
        previous, why = restart.read_previous(self.location, self.ip, self.scheme, self.db)
        if previous is None:
            log.warning("not resuming the profile's dead controller (pid %d): %s", pid, why)
        else:
            log.warning("the profile's controller (pid %d) died: resuming it on the same "
                        "ports and keys", pid)
        return previous

    def fail_lost_tasks(self, controller):
        """Before serving, fail (TaskLost) the tasks an earlier controller of this profile
        left unfinished: killed, or stopped with work in flight. Its pid file, left behind
        when it died, names it. Only the profile's own SQLite file is swept: a MongoDB
        database may be shared with controllers still running elsewhere, and a live
        controller's pid file means another controller serves this profile now."""
        previous = read_pid_file(self.location)
        if self.db != "sqlite":
            return
        if previous is not None and _is_controller(previous):
            log.warning("controller pid %d still runs on this profile: its unfinished tasks "
                        "are left alone", previous)
            return
        who = f"the controller (pid {previous})" if previous else "the controller that ran it"
        marked = controller.fail_lost_tasks(f"{who} stopped before this task finished; "
                                            "resubmit it")
        if marked:
            log.warning("%d tasks were unfinished when %s stopped: marked failed (TaskLost)",
                        marked, who)

    def connect_address(self):
        """The address others connect to: --location, else --ip unless it is a wildcard."""
        if self.connect_ip:
            return self.connect_ip
        if self.ip in ("0.0.0.0", "*", ""):
            return socket.gethostname()
        return self.ip

    def start_web(self):
        """Serve the web view (unless web_port is -1) and record its URL in the profile."""
        web.remove_web_file(self.location)  # a stale one would point at a dead server
        if self.web_port < 0:
            return None
        server = web.WebServer(paths.security_file(self.location, "client"), self.web_ip,
                               self.web_port, title=str(self.location)).start()
        web.write_web_file(self.location, server)
        log.info("web view on http://%s:%s/ (URL with token in %s)", self.web_ip,
                 server.port, web.web_file(self.location))
        return server

    def start(self):
        controller = self.make_controller()
        write_pid_file(self.location)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: controller.stop())
        log.info("controller up on %s (profile %s, db %s, scheme %s, %s)", self.ip,
                 self.location, self.db, self.scheme,
                 "CurveZMQ" if controller.curve else "unencrypted")
        server = None
        try:
            server = self.start_web()
            controller.run()
        finally:
            if server is not None:
                server.stop()
                web.remove_web_file(self.location)
            controller.close()
            pid_file(self.location).unlink(missing_ok=True)
            log.info("controller stopped")


def pid_file(location):
    return location / "pid" / PID_FILE


def write_pid_file(location):
    with filemodes.open_private(pid_file(location), "w") as f:
        f.write(f"{os.getpid()}\n")


def read_pid_file(location):
    """The pid in the profile's controller pid file, or None."""
    try:
        return int(pid_file(location).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_controller(pid):
    """Is `pid` a running taskhub controller other than this process?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return pid != os.getpid() and (b"taskhub.controller" in cmdline
                                   or b"ipcontroller" in cmdline)


def main(argv=None):
    app = IPControllerApp.instance()
    app.initialize(argv)
    app.start()
