"""What a Client is told when a profile's cluster cannot be reached: which profiles exist,
which are running, and when the recorded controller is known to be gone.

    Client(profile="typo") ─▶ no connection file ─▶ the profiles under $TASKHUB_DIR, each
                                                    running / stale / stopped, the nearest
    Client() ─▶ the profile's record (pid/cluster.json, written by ipcluster) names a local
                controller, the one that wrote the connection file, and it is gone
             ─▶ ClusterStateError at once, not a wait of `timeout` seconds for no answer

Only the error paths and one small JSON read on connect run here; nothing is imported from
the launchers until a record says a local controller ran.
"""
import difflib
import json
from pathlib import Path

from .. import paths
from ..appbase import read_connection_file
from ..error import ClusterStateError, ConnectionFileError


# what a record that is not one of ours raises when read as a cluster (as ipcluster list)
_UNREADABLE = (ClusterStateError, KeyError, TypeError, ValueError)


def read_client_file(path, profile=None):
    """The connection info in `path`, or an error that says what to do: the profiles that
    exist (`profile`: the name asked for) or that the recorded controller is gone."""
    try:
        info = read_connection_file(path)
    except ConnectionFileError as e:
        raise ConnectionFileError(f"{e}{known_profiles_hint(profile)}") from None
    gone = dead_controller(Path(path).parent.parent, info)
    if gone:
        raise ClusterStateError(gone)
    return info


def profile_states():
    """[(name, "running" | "stale" | "stopped")] of the profiles under taskhub_dir()."""
    found = sorted(p for p in paths.taskhub_dir().glob("profile_*") if p.is_dir())
    return [(p.name[len("profile_"):], _state(p)) for p in found]


def _state(profile_dir):
    record = _record(profile_dir)
    if record is None:
        return "stopped"
    from .cluster import Cluster
    try:
        return "running" if Cluster.from_record(profile_dir).running() else "stale"
    except _UNREADABLE:
        return "stale"


def known_profiles_hint(profile):
    """"; profiles under DIR: a (running), b (stale); did you mean 'a'?" or ""."""
    states = profile_states()
    if not states:
        return f"; there are no profiles under {paths.taskhub_dir()}"
    listed = ", ".join(f"{name} ({state})" for name, state in states)
    near = difflib.get_close_matches(profile, [n for n, _ in states], n=1) if profile else []
    near = f"; did you mean profile={near[0]!r}?" if near and near[0] != profile else ""
    return f"; profiles under {paths.taskhub_dir()}: {listed}{near}"


def dead_controller(profile_dir, info):
    """Why the controller that wrote `info` is known to be gone, or None when it may run."""
    record = _record(profile_dir)
    if record is None or (record.get("controller") or {}).get("kind") != "local":
        return None
    from .cluster import Cluster, profile_label, profile_option, recorded_controller_pid
    pid = recorded_controller_pid(record)
    if pid is None or pid != info.get("pid"):
        return None  # the file was written by another controller than the one recorded
    try:
        if Cluster.from_record(profile_dir).running():
            return None
    except _UNREADABLE:  # let the connection attempt tell
        return None
    where = profile_option(profile_dir)
    return (f"the controller of profile '{profile_label(profile_dir)}' (pid {pid}) is not "
            f"running: `ipcluster list` shows its record as stale. Start the cluster with "
            f"`ipcluster start {where}` (or clear the record with `ipcluster stop {where}`)")


def _record(profile_dir):
    try:
        return json.loads((Path(profile_dir) / "pid" / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
