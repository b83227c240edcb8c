"""What the ipcontroller and ipengine applications share: profile location and logging."""
import json
import logging
import os
import sys
from pathlib import Path

from traitlets import Unicode
from traitlets.config import Application

from . import __version__, paths
from .error import ConnectionFileError


class BaseApp(Application):
    version = __version__  # what --version prints
    profile = Unicode("default", help="Name of the profile: its directory "
                      "($TASKHUB_DIR/profile_<name>) holds config, connection files, logs "
                      "and the task DB. Ignored when --profile-dir is given.").tag(config=True)
    profile_dir = Unicode("", help="Use this directory as the profile instead of looking "
                          "it up by name (tests and temporary clusters use it).").tag(config=True)
    log_format = Unicode("%(asctime)s %(name)s %(levelname)s %(message)s").tag(config=True)
    config_file_name = Unicode("", help="Config file in the profile, loaded before the "
                               "command line (which wins).")

    def resolve_profile_dir(self):
        if self.profile_dir:
            return paths.ensure_profile_dir(self.profile_dir)
        return paths.profile_dir(self.profile, create=True)

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        cl_config = self.config
        self.location = self.resolve_profile_dir()
        if self.config_file_name:
            self.load_config_file(self.config_file_name, path=[str(self.location)])
            self.update_config(cl_config)  # the command line wins over the file
        logging.basicConfig(level=self.log_level, format=self.log_format, stream=sys.stderr)


def write_connection_file(path, info):
    """Write JSON readable only by the owner, atomically (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, path)


def read_connection_file(path):
    """The dict in a connection file, or ConnectionFileError saying what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConnectionFileError(f"no connection file at {path}: is a cluster running for "
                                  "this profile? (start one with 'ipcluster start')") from None
    except OSError as e:
        raise ConnectionFileError(f"cannot read connection file {path}: {e.strerror}") from None
    try:
        info = json.loads(text)
        for key in ("ip", "ports", "key"):
            info[key]
    except (ValueError, KeyError, TypeError):
        raise ConnectionFileError(f"connection file {path} is not a taskhub connection file "
                                  "(expected JSON with ip, ports and key)") from None
    return info
