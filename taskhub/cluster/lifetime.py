"""A Cluster started from Python lives no longer than its Python process — unless asked to.

    Python process (Cluster.start)               lifeline: python -m taskhub.cluster.lifetime
      atexit: cluster.stop()                       (its own session: a Ctrl-C or SIGHUP of
      pipe write end ───────────────────────────▶    the terminal does not reach it)
      stop() ends by writing "release" ─────────▶  stdin says "release": exits, touches nothing
      dies without stop() (SIGKILL, SIGTERM,       stdin ends (the kernel closed the pipe):
        os._exit, a crash): the kernel closes        stops the cluster cluster.json records,
        its end of the pipe                          if that process owns it; removes a
                                                     temporary profile directory

atexit covers a normal end and an uncaught exception; the lifeline covers every death,
since nothing the dying process does (or fails to do) is needed to close the pipe. A
process forked from the owner (os.fork, not subprocess) holds the pipe too, so the
cluster then lives until that child ends as well. `Cluster(shutdown_atexit=False)` starts
neither: the cluster runs until `ipcluster stop`, as `ipcluster start --daemonize` wants.

Clusters outside $TASKHUB_DIR (a Cluster() with no profile lives in a temporary
directory) leave a pointer in $TASKHUB_DIR/clusters/ while they run, so `ipcluster list`
shows them beside the profiles' clusters.
"""
import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .. import filemodes, paths

log = logging.getLogger("taskhub.cluster")

RELEASE = b"release\n"
POINTERS = "clusters"


class Lifeline:
    """The parent's end of a lifeline process watching this process for a cluster."""

    def __init__(self, popen):
        self._popen = popen

    @classmethod
    def start(cls, profile_dir, remove_profile):
        """Start a lifeline for the cluster of `profile_dir`, owned by this process."""
        cmd = [sys.executable, "-m", "taskhub.cluster.lifetime", "--profile-dir",
               str(profile_dir), "--owner-pid", str(os.getpid()),
               *(["--remove-profile"] if remove_profile else [])]
        popen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        return cls(popen)

    @property
    def pid(self):
        return self._popen.pid

    def release(self, timeout=5.0):
        """Tell the lifeline the cluster was stopped (or is to outlive us): it exits."""
        try:
            self._popen.stdin.write(RELEASE)
            self._popen.stdin.close()
        except (BrokenPipeError, ValueError):  # it is gone already, or released
            pass
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()


def stop_orphan(profile_dir, owner_pid, remove_profile):
    """Stop the cluster recorded in `profile_dir` if `owner_pid` started it; True if one was."""
    from .cluster import Cluster, read_record  # late: cluster imports this module
    record = read_record(profile_dir)
    stopped = False
    if record is not None and record.get("owner_pid") == owner_pid:
        log.warning("process %d ended without stopping its cluster in %s: stopping it",
                    owner_pid, profile_dir)
        Cluster.from_record(profile_dir).stop()
        stopped = True
    if remove_profile:
        shutil.rmtree(profile_dir, ignore_errors=True)
    return stopped


# -- pointers, so `ipcluster list` sees clusters outside $TASKHUB_DIR ------------------------

def _pointer(profile_dir):
    digest = hashlib.sha1(str(Path(profile_dir).resolve()).encode()).hexdigest()[:16]
    return paths.taskhub_dir() / POINTERS / f"{digest}.json"


def note_cluster(profile_dir):
    """Point $TASKHUB_DIR/clusters/ at `profile_dir` if it lies outside $TASKHUB_DIR."""
    profile_dir = Path(profile_dir).resolve()
    if profile_dir.parent == paths.taskhub_dir().resolve():
        return
    pointer = _pointer(profile_dir)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"profile_dir": str(profile_dir)}))


def forget_cluster(profile_dir):
    _pointer(profile_dir).unlink(missing_ok=True)


def recorded_profile_dirs():
    """Every profile directory with a cluster record: $TASKHUB_DIR's profiles, then those
    pointed at from $TASKHUB_DIR/clusters/ (pointers whose record is gone are removed)."""
    from .cluster import record_path  # late: cluster imports this module
    home = paths.taskhub_dir()
    found = [f.parent.parent for f in sorted(home.glob("profile_*/pid/cluster.json"))]
    for pointer in sorted((home / POINTERS).glob("*.json")):
        try:
            profile_dir = Path(json.loads(pointer.read_text())["profile_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            profile_dir = None
        if profile_dir is None or not record_path(profile_dir).exists():
            pointer.unlink(missing_ok=True)
        elif profile_dir not in found:
            found.append(profile_dir)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m taskhub.cluster.lifetime",
                                     description="Stop a cluster when the process that "
                                                 "started it ends without stopping it.")
    parser.add_argument("--profile-dir", required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--remove-profile", action="store_true")
    args = parser.parse_args(argv)
    # Its own stop is what we are for: a signal to the owner's group must not end us first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    said = sys.stdin.buffer.read()  # blocks until the owner releases us or dies
    if said == RELEASE:
        return 0
    # Only now is there anything to say (a named profile keeps this log; a temporary one
    # is removed with it).
    log_file = Path(args.profile_dir) / "log" / "lifeline.log"
    if log_file.parent.is_dir():
        filemodes.private_file(log_file)
    logging.basicConfig(filename=log_file if log_file.parent.is_dir() else os.devnull,
                        level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop_orphan(args.profile_dir, args.owner_pid, args.remove_profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
