"""`ipengine`: start one engine and connect it to a profile's controller."""
import logging
import os
import sys
import signal
import time
from pathlib import Path

from traitlets import Bool, Float, Unicode

from .. import nesting, paths
from ..appbase import BaseApp, read_connection_file
from ..error import ConnectionFileError
from .engine import Engine, RegistrationFailed

log = logging.getLogger("taskhub.engine")


class IPEngineApp(BaseApp):
    name = "ipengine"
    description = "Start a taskhub engine."
    config_file_name = Unicode("ipengine_config.py")

    file = Unicode("", help="Engine connection file; default: the profile's "
                   "security/taskhub-engine.json.").tag(config=True)
    wait_for_file = Float(30.0, help="Seconds to wait for the connection file to appear "
                          "(engines may start before the controller).").tag(config=True)
    registration_timeout = Float(30.0, help="Seconds to wait for the controller to answer "
                                 "registration before giving up.").tag(config=True)
    controller_timeout = Float(30.0, help="Seconds without a heartbeat from the controller "
                               "after which the engine exits. Longer rides out a stalled "
                               "controller; shorter frees orphaned engines sooner."
                               ).tag(config=True)
    reconnect_grace = Float(120.0, min=0, help="Seconds past --controller-timeout an "
                            "engine whose controller went silent waits for it to be started "
                            "again on its profile (same ports and keys) before it exits; "
                            "if it comes back, the engine reconnects, keeps its id and "
                            "finishes its tasks. Longer rides out a slower restart; 0 exits "
                            "at --controller-timeout as an orphan.").tag(config=True)
    tag = Unicode("", help="Prefix of this engine's uuid. Launchers set it so that when the "
                  "process or job they started ends, they can tell the hub which engines "
                  "went with it at once, without waiting for missed heartbeats.").tag(config=True)
    mpi = Bool(False, help="Initialize MPI (mpi4py) at start and register the MPI rank and "
               "size, so tasks can use mpi4py.MPI.COMM_WORLD. Set by `--engines=mpi`; "
               "requires mpi4py and a run under mpiexec.").tag(config=True)

    work_dir = Unicode("", help="Directory the engine runs tasks in: it changes into it at "
                       "start and puts it first on sys.path, so tasks find the modules kept "
                       "there (submit('pkg.mod:func') for a package beside your script) and "
                       "relative paths. Empty: the directory it was started in, which is "
                       "not on sys.path when started as the `ipengine` command.").tag(config=True)

    aliases = {"profile": "IPEngineApp.profile", "profile-dir": "IPEngineApp.profile_dir",
               "work-dir": "IPEngineApp.work_dir",
               "file": "IPEngineApp.file", "wait-for-file": "IPEngineApp.wait_for_file",
               "controller-timeout": "IPEngineApp.controller_timeout",
               "reconnect-grace": "IPEngineApp.reconnect_grace",
               "registration-timeout": "IPEngineApp.registration_timeout",
               "tag": "IPEngineApp.tag",
               "log-level": "Application.log_level"}

    def connection_info(self):
        path = Path(self.file) if self.file else paths.security_file(self.location, "engine")
        # the client file sits beside the engine's: taskhub.engine_client() reads it
        os.environ[nesting.CLIENT_FILE_ENV] = str(path.with_name(paths.CLIENT_FILE))
        deadline = time.monotonic() + self.wait_for_file
        while True:
            try:
                return read_connection_file(path)
            except ConnectionFileError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # polling a file that another process will write

    flags = {"mpi": ({"IPEngineApp": {"mpi": True}}, "Initialize MPI with mpi4py and "
                     "register the MPI rank.")}

    def mpi_info(self):
        """{"mpi": {"rank", "size"}} after initializing MPI, or {} without --mpi."""
        if not self.mpi:
            return {}
        from mpi4py import MPI  # importing initializes MPI
        world = MPI.COMM_WORLD
        return {"mpi": {"rank": world.Get_rank(), "size": world.Get_size()}}

    def enter_work_dir(self):
        """Change into --work-dir and make its modules importable (see work_dir)."""
        if not self.work_dir:
            return
        path = os.path.abspath(os.path.expanduser(self.work_dir))
        if not os.path.isdir(path):
            log.error("--work-dir %s is not a directory", path)
            raise SystemExit(1)
        os.chdir(path)
        sys.path.insert(0, path)

    def start(self):
        self.enter_work_dir()
        info = self.connection_info()
        extra = self.mpi_info()
        engine = Engine(info, info["key"].encode(), controller_timeout=self.controller_timeout,
                        tag=self.tag or None, extra_info=extra,
                        reconnect_grace=self.reconnect_grace)
        try:
            engine.connect(self.registration_timeout)
        except RegistrationFailed as e:
            log.error("%s", e)
            raise SystemExit(1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: _stop(engine))
        log.info("Completed registration with id %s (uuid %s)%s", engine.id, engine.uuid,
                 f" (MPI rank {extra['mpi']['rank']} of {extra['mpi']['size']})" if extra else "")
        engine.run()


def _stop(engine):
    engine.shutdown()
    raise SystemExit(0)  # interrupts a running task; the hub fails it as engine death


def main(argv=None):
    """Run an engine; the process ends here, hard, once the engine has stopped.

    The heart is a zmq device blocked in C on its own thread; a normal interpreter exit
    would wait forever for its sockets, so after our own sockets are closed we leave with
    os._exit."""
    code = 1
    try:
        app = IPEngineApp.instance()
        app.initialize(argv)
        app.start()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
