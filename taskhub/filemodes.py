"""Nothing in a profile readable by others: who may read a profile may run code on the
cluster (its connection files hold the key) and read every task's arguments, results and
output (tasks.db, the logs).

    profile dir, log/, pid/, security/   0700    private_dir
    tasks.db*, logs, cluster.json        0600    private_file / open_private

Files are created 0600 (not created then narrowed: no moment where others may open them);
ones an older version left wider are narrowed when met. `exposed` is what the client checks
before it trusts a connection file.
"""
import os
import stat
import warnings
from pathlib import Path


class ExposedProfileWarning(UserWarning):
    """A connection file or profile directory that users other than its owner can read."""


def private_dir(path):
    """Make (parents too) the directory `path`, only its owner may use it; returns a Path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path):
    """Create `path` empty if missing; either way only its owner may read or write it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return Path(path)


def open_private(path, mode="w", **kwargs):
    """`open(path, mode)`, a new file being created 0600 (an existing one narrowed)."""
    f = open(path, mode, opener=lambda p, flags: os.open(p, flags, 0o600), **kwargs)
    os.chmod(path, 0o600)
    return f


def exposed(path):
    """Whether users other than the owner may read (or enter) `path`; False if missing."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def warn_if_exposed(connection_file, profile_dir=None):
    """An ExposedProfileWarning for each of the two that others may read."""
    for path, what in ((connection_file, "connection file"), (profile_dir, "profile")):
        if path is not None and exposed(path):
            warnings.warn(f"the {what} {path} is readable by other users, who can then use "
                          f"the cluster as you: chmod {'600' if what.startswith('c') else '700'}"
                          f" {path}", ExposedProfileWarning, stacklevel=3)
