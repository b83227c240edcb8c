"""`ipengine`: start one engine and connect it to a profile's controller."""
import logging
import os
import sys
import signal
import time
from pathlib import Path

from traitlets import Float, Unicode

from .. import paths
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

    aliases = {"profile": "IPEngineApp.profile", "profile-dir": "IPEngineApp.profile_dir",
               "file": "IPEngineApp.file", "wait-for-file": "IPEngineApp.wait_for_file",
               "controller-timeout": "IPEngineApp.controller_timeout",
               "log-level": "Application.log_level"}

    def connection_info(self):
        path = Path(self.file) if self.file else paths.security_file(self.location, "engine")
        deadline = time.monotonic() + self.wait_for_file
        while True:
            try:
                return read_connection_file(path)
            except ConnectionFileError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # polling a file that another process will write

    def start(self):
        info = self.connection_info()
        engine = Engine(info, info["key"].encode(), controller_timeout=self.controller_timeout)
        try:
            engine.connect(self.registration_timeout)
        except RegistrationFailed as e:
            log.error("%s", e)
            raise SystemExit(1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: _stop(engine))
        log.info("engine %s registered as %s", engine.id, engine.uuid)
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
