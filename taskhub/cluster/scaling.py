"""`ipcluster engines add|remove|list`: grow and shrink a running cluster.

    add -n K     a new engine set of K engines (same launcher and engine options as the
                 cluster's first set unless --engines says otherwise), appended to
                 cluster.json; waits until they have registered
    remove -n K  the K newest engines, whole units only (a batch job or an mpiexec run is
                 one unit): taken out of cluster.json first, so the watcher does not
                 restart them, then stopped, and unregistered at the hub at once
    list         every unit: its set, launcher, engines, state and where it runs

Every change holds pid/record.lock while it reads and writes cluster.json, as the watcher
does.
"""
from ..error import ClusterStateError, TimeoutError as TaskhubTimeout
from .cluster import (Cluster, profile_label, read_record, record_lock, record_path,
                      write_json_atomic)
from .launcher import find_launcher
from .watch import HubUnavailable, unregister_tags


def running_cluster(profile_dir):
    """The cluster recorded in `profile_dir`, which must be running."""
    if read_record(profile_dir) is None:
        raise ClusterStateError(f"no cluster is running for profile "
                                f"'{profile_label(profile_dir)}' (nothing recorded in "
                                f"{record_path(profile_dir)})")
    cluster = Cluster.from_record(profile_dir)
    if not cluster.running():
        raise ClusterStateError(f"the cluster of profile '{profile_label(profile_dir)}' is not "
                                "running (its controller has ended); run 'ipcluster stop'")
    return cluster


def add_engines(profile_dir, n, kind=None, config=None, options=None, timeout=60.0):
    """Start `n` more engines in a new set; return it once they have registered."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"-n must be a positive number of engines, not {n!r}")
    cluster = running_cluster(profile_dir)
    first = cluster.engine_set
    kind = kind or (first.kind if first is not None else "local")
    args = first.args if first is not None else []
    options = {**inherited_options(first, kind), **(options or {})}
    launcher = find_launcher("engines", kind)(profile_dir, args, n=n, config=config, **options)
    client = cluster._own_client()
    try:
        before = len(client.ids)
        launcher.start()
        try:
            with record_lock(profile_dir):
                cluster.sync_engine_sets(read_record(profile_dir))
                cluster.added_engines.append(launcher)
                write_json_atomic(record_path(profile_dir), cluster.record())
        except BaseException:
            launcher.stop()
            raise
        try:
            client.wait_for_engines(before + n, timeout=timeout)
        except TaskhubTimeout:
            raise ClusterStateError(f"only {len(client.ids) - before} of {n} added engines "
                                    f"registered within {timeout:g} s; they keep running "
                                    "('ipcluster engines remove' stops them)") from None
    finally:
        cluster.close_client()
    return launcher


def inherited_options(first, kind):
    """The options the cluster's first engine set was started with, if it is of `kind`:
    added engines go where those went (ssh hosts without their counts: the new engines
    are spread over them)."""
    if first is None or first.kind != kind:
        return {}
    options = first.options()
    if options.get("hosts"):
        options["hosts"] = list(dict.fromkeys(h.partition(":")[0] for h in options["hosts"]))
    return options


def choose_units(engine_sets, n):
    """[(set, unit)] of the newest units holding exactly `n` engines, newest first."""
    chosen, left = [], n
    for engine_set in reversed(engine_sets):
        for unit in reversed(engine_set.units):
            if left == 0:
                return chosen
            if unit.n > left:
                raise ValueError(
                    f"cannot remove exactly {n} engines: the next newest unit, "
                    f"{engine_set.kind} {unit.tag}, runs {unit.n} engines together and only "
                    f"{left} more are to go; remove {n - left + unit.n} instead")
            chosen.append((engine_set, unit))
            left -= unit.n
    if left:
        raise ValueError(f"cannot remove {n} engines: the cluster has only {n - left}")
    return chosen


def remove_engines(profile_dir, n, timeout=10.0):
    """Stop the `n` newest engines (whole units); the [(launcher kind, unit)] stopped."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"-n must be a positive number of engines, not {n!r}")
    cluster = running_cluster(profile_dir)
    with record_lock(profile_dir):
        cluster.sync_engine_sets(read_record(profile_dir))
        chosen = choose_units(cluster.engine_sets(), n)
        for engine_set, unit in chosen:
            engine_set.units.remove(unit)
        cluster.added_engines = [s for s in cluster.added_engines if s.units]
        write_json_atomic(record_path(profile_dir), cluster.record())
    by_set = {}
    for engine_set, unit in chosen:
        by_set.setdefault(id(engine_set), (engine_set, []))[1].append(unit)
    for engine_set, units in by_set.values():
        engine_set.stop_units(units, timeout)
    try:  # engines that were killed, not stopped, could not unregister themselves
        unregister_tags(profile_dir, [u.tag for _, u in chosen])
    except HubUnavailable:
        pass
    return [(engine_set.kind, unit) for engine_set, unit in chosen]


def unit_rows(profile_dir):
    """(set, kind, unit tag, engines, state, where) of every unit of the recorded cluster."""
    cluster = Cluster.from_record(profile_dir)
    rows = []
    for engine_set in cluster.engine_sets():
        for unit in engine_set.units:
            state = "running" if engine_set.unit_running(unit) else "ended"
            rows.append((engine_set.set_id, engine_set.kind, unit.tag, unit.n, state,
                         _where(unit)))
    return rows


def _where(unit):
    if getattr(unit, "job_id", None):
        return f"job {unit.job_id}"
    host = unit.where.get("host")
    return f"{host} via ssh pid {unit.pid}" if host else f"pid {unit.pid}"

