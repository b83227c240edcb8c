"""Where taskhub keeps things on disk.

    $TASKHUB_DIR (default ~/.taskhub)/
        profile_<name>/
            security/            0700: connection files (0600), read by clients and engines
                taskhub-client.json
                taskhub-engine.json
            log/                 controller and engine logs
            pid/                 cluster.json: what `ipcluster start` started
            tasks.db             the default SQLite task database
            *_config.py          traitlets config, copied from profiles/ on creation
"""
import os
import shutil
import sys
from pathlib import Path

from . import filemodes

CLIENT_FILE = "taskhub-client.json"
ENGINE_FILE = "taskhub-engine.json"


def taskhub_dir():
    return Path(os.environ.get("TASKHUB_DIR") or Path.home() / ".taskhub")


def profile_dir(name="default", create=False):
    """The directory of profile `name`; with `create`, make it from the default files."""
    if not isinstance(name, str) or not name or os.sep in name:
        raise ValueError(f"profile name must be a non-empty string without {os.sep!r}, not {name!r}")
    path = taskhub_dir() / f"profile_{name}"
    if create:
        ensure_profile_dir(path)
    return path


def ensure_profile_dir(path):
    """Create the profile layout at `path` (idempotent); returns it as a Path."""
    path = filemodes.private_dir(path)  # others must not read tasks.db, logs, keys
    for sub in ("log", "pid", "security"):
        filemodes.private_dir(path / sub)
    src = default_profile_source()
    if src is not None:
        for f in src.glob("*_config.py"):
            if not (path / f.name).exists():
                shutil.copy(f, path / f.name)
    return path


def default_profile_source():
    """The folder of default config files: `profiles/default` of the checkout or install."""
    for candidate in (Path(__file__).resolve().parent.parent / "profiles" / "default",
                      Path(sys.prefix) / "share" / "taskhub" / "profiles" / "default"):
        if candidate.is_dir():
            return candidate
    return None


def security_file(profile_path, which="client"):
    return Path(profile_path) / "security" / (CLIENT_FILE if which == "client" else ENGINE_FILE)
