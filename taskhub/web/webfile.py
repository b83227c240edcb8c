"""Where a profile records its running web view: security/taskhub-web.json, holding the
URL with its token (written by the controller, read by `ipcluster start` and `ipcluster
dashboard`). Kept apart from server.py so that reading it does not import tornado."""
import json
import os
from pathlib import Path

from ..appbase import write_connection_file
from ..error import ConnectionFileError

WEB_FILE = "taskhub-web.json"


def web_file(profile_dir):
    return Path(profile_dir) / "security" / WEB_FILE


def write_web_file(profile_dir, server):
    """Record the running web view's URL in the profile, readable by its owner only."""
    write_connection_file(web_file(profile_dir), {
        "url": server.url, "ip": server.ip, "port": server.port, "token": server.token,
        "pid": os.getpid()})


def remove_web_file(profile_dir):
    web_file(profile_dir).unlink(missing_ok=True)


def read_web_file(profile_dir):
    """The dict `write_web_file` wrote, or ConnectionFileError saying why there is none."""
    path = web_file(profile_dir)
    try:
        info = json.loads(path.read_text())
        info["url"], info["pid"]
    except FileNotFoundError:
        raise ConnectionFileError(f"no web view recorded at {path}: is the cluster running, "
                                  "and was its controller started with web_port -1 "
                                  "(no web view)?") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConnectionFileError(f"cannot read the web view file {path}: {e}") from None
    return info
