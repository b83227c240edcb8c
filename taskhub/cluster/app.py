"""`ipcluster`: start, stop and list local taskhub clusters from the shell.

    ipcluster start -n 4 [--profile P | --profile-dir D] [--daemonize] [--db KIND] ...
                    [--engines local|mpi|ssh|slurm|pbs|sge] [--controller local|ssh|...]
                    [--ssh-hosts h1,h2:4] [--ip A --location B] [--curve | --no-curve]
                    [--restart-engines]
    ipcluster stop  [--profile P | --profile-dir D]
    ipcluster list
    ipcluster clean [--profile P | --profile-dir D]
    ipcluster engines add -n K | remove -n K | list   [--profile P | --profile-dir D]
    ipcluster tasks [--profile P | --profile-dir D] [--query JSON] [--keys k1,k2] [--limit N]
    ipcluster dashboard [--profile P | --profile-dir D] [--no-browser]

`start` records what it started in the profile's pid/cluster.json (see `cluster.py`), so
`stop` and `list` work from any shell. Without --daemonize, `start` stays in the foreground,
watching the engines (watch.py), until SIGINT/SIGTERM (or until the controller exits) and
then stops everything; with it, `start` returns once every engine has registered, leaving
a background watcher. Launchers: launcher.py and launchers/; docs/launchers.md.

Defaults come from the profile's ipcluster_config.py (the `IPCluster` options below);
command-line options win.
"""
import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

from traitlets import Bool, Float, Integer, List, Unicode
from traitlets.config import Configurable
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from .. import __version__, paths
from ..error import ClusterStateError
from ..web import dashboard
from .cluster import (Cluster, profile_label, profile_name, profile_option, read_record,
                      record_path, recorded_cluster, recorded_controller_pid)
from . import scaling, tasks
from .launcher import find_launcher, is_ours, wait_until
from .lifetime import recorded_profile_dirs
from .launchers.ssh import plan_hosts
from .watch import Watcher, start_background_watcher

CONFIG_FILE = "ipcluster_config.py"


class IPCluster(Configurable):
    """What `ipcluster start` starts when the command line does not say."""

    n = Integer(4, help="""Engines to start when -n is not given. More engines than cores
        only pays off for tasks that wait on I/O; for CPU-bound work use one per core.
        """).tag(config=True)
    controller_launcher = Unicode("local", help="""How the controller is started: "local" (a
        subprocess here), "ssh" (on SSHControllerLauncher.host), "slurm", "pbs" or "sge" (a
        batch job), or a name another package registers (entry point group
        taskhub.controller_launchers).""").tag(config=True)
    engine_launcher = Unicode("local", help="""How engines are started: "local" (subprocesses
        here), "mpi" (one mpiexec), "ssh" (on SSHEngineSetLauncher.hosts), "slurm", "pbs"
        or "sge" (a batch job), or a name another package registers (entry point group
        taskhub.engine_launchers).""").tag(config=True)
    restart_engines = Bool(False, help="""Replace engines whose process or job ends (same
        launcher, same place). Keeps the pool its size through crashes and batch time
        limits; a task that crashes its engine then costs an engine start each time.
        """).tag(config=True)
    resume = Bool(True, help="""Started on a profile whose controller died (killed, OOM,
        a reboot of its host) with engines still running: start the controller again on
        the same ports and keys, keep those engines (they reconnect, keep their ids and
        finish what they hold), let connected clients reconnect, and queue again the
        unfinished load-balanced tasks (at-least-once: one that was running may run twice).
        False (--no-resume): stop the engines, start new ones, and fail the unfinished
        tasks with TaskLost. See docs/taskdb.md, "Restart".""").tag(config=True)
    restart_controller = Bool(False, help="""A foreground `ipcluster start` (or the watcher
        of a daemonized one) starts the controller again, resuming, when it dies, instead of
        stopping the cluster. Keeps a cluster serving through a controller crash at the
        price of a crash loop if the controller cannot start.""").tag(config=True)
    restart_limit = Integer(10, help="""Most engine units replaced in a cluster's life;
        beyond it, ended units stay ended (a crash loop must not resubmit jobs forever).
        """).tag(config=True)
    controller_args = List(Unicode(), help="""Extra ipcontroller options, e.g.
        ["--db", "memory"]. ipcluster's own --db/--scheme/--hwm/--ip come after these, so
        they win.""").tag(config=True)
    engine_args = List(Unicode(), help="""Extra ipengine options, e.g. ["--log-level", "DEBUG"].
        """).tag(config=True)
    start_timeout = Float(30.0, help="""Seconds to wait for the controller's connection file,
        then again for all engines to register, before giving up and stopping everything.
        Raise it on slow or loaded machines; lower it to fail fast.""").tag(config=True)
    stop_timeout = Float(10.0, help="""Seconds between SIGTERM and SIGKILL when stopping.
        Longer lets engines finish cleanly; shorter makes `ipcluster stop` return sooner.
        """).tag(config=True)


def write_default_configs(folder):
    """Write the commented ipcluster/ipcontroller/ipengine config files into `folder`.

    `make configs` runs this to refresh profiles/default/ when an option changes.
    """
    from ..controller.app import IPControllerApp
    from ..engine.app import IPEngineApp
    texts = {"ipcluster": "c = get_config()  # noqa\n\n" + "\n".join(
                 cls.class_config_section() for cls in (IPCluster, *launcher_classes())),
             "ipcontroller": IPControllerApp().generate_config_file(),
             "ipengine": IPEngineApp().generate_config_file()}
    for name, text in texts.items():
        body = text.split("\n", 1)[1] if text.startswith("# Configuration file") else text
        Path(folder, f"{name}_config.py").write_text(
            f"# Configuration file for {name} (taskhub). Every option is commented out at its\n"
            "# default: uncomment one to change it. Command-line options override this file.\n"
            f"# Generated by `make configs`.\n\n{body.lstrip()}")


def launcher_classes():
    """The launchers with options, for the config file (BatchLauncher's options apply to
    every Slurm, PBS and Grid Engine launcher; c.SlurmEngineSetLauncher.queue sets one)."""
    from .launchers.batch import BatchLauncher
    from .launchers.mpi import MPIEngineSetLauncher
    from .launchers.ssh import SSHControllerLauncher, SSHEngineSetLauncher
    return (MPIEngineSetLauncher, SSHEngineSetLauncher, SSHControllerLauncher, BatchLauncher)


def load_options(profile_dir):
    """The `IPCluster` options of `profile_dir`'s ipcluster_config.py (defaults if none)."""
    try:
        config = PyFileConfigLoader(CONFIG_FILE, path=str(profile_dir)).load_config()
    except ConfigFileNotFound:
        config = None
    return IPCluster(config=config)


def build_parser():
    parser = argparse.ArgumentParser(prog="ipcluster",
                                     description="Start, stop and list taskhub clusters.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="start a controller and N engines")
    _add_profile_options(start)
    start.add_argument("-n", type=int, default=None, help="number of engines (default: config, 4)")
    start.add_argument("--daemonize", action="store_true",
                       help="return once all engines have registered, leaving the cluster running")
    start.add_argument("--db", help="task database: sqlite (default), memory, mongodb or none")
    for flag, kind in (("--sqlitedb", "sqlite"), ("--dictdb", "memory"),
                       ("--mongodb", "mongodb"), ("--nodb", "none")):
        start.add_argument(flag, dest="db", action="store_const", const=kind,
                           help=f"task database: {kind} (same as --db {kind})")
    start.add_argument("--mongodb-url", help="MongoDB server for --mongodb")
    start.add_argument("--scheme", help="load-balancing scheme of the task scheduler")
    start.add_argument("--hwm", type=int, help="max tasks outstanding per engine")
    start.add_argument("--ip", help="interface the controller binds (default 127.0.0.1; "
                       "0.0.0.0 or a host address to let engines on other hosts connect)")
    start.add_argument("--location", help="address engines and clients connect to, when "
                       "it is not the --ip address (default: --ip, or the host name for "
                       "0.0.0.0)")
    start.add_argument("--curve", dest="curve", action="store_const", const=True,
                       help="encrypt with CurveZMQ even on loopback (the default whenever "
                            "--ip is not loopback; costs CPU per byte, see docs/security.md)")
    start.add_argument("--no-curve", dest="curve", action="store_const", const=False,
                       help="do not encrypt, even off loopback: tasks and results cross the "
                            "network in clear (the controller logs a WARNING at every start)")
    start.add_argument("--engines", dest="engine_launcher", metavar="KIND",
                       help="engine launcher: local (default), mpi, ssh, slurm, pbs, sge, ...")
    start.add_argument("--controller", dest="controller_launcher", metavar="KIND",
                       help="controller launcher: local (default), ssh, slurm, pbs, sge, ...")
    start.add_argument("--ssh-hosts", metavar="HOSTS",
                       help="with --engines=ssh: where engines run, e.g. host1,host2:4 "
                            "(host:K runs K there; -n's other engines spread evenly)")
    start.add_argument("--controller-host", metavar="HOST",
                       help="with --controller=ssh: the host the controller runs on")
    start.add_argument("--restart-engines", action="store_true", default=None,
                       help="replace engines whose process or job ends")
    start.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                       help="on a profile whose controller died: stop its engines and fail "
                            "its unfinished tasks (TaskLost) instead of resuming them")
    start.add_argument("--restart-controller", action="store_true", default=None,
                       help="start the controller again (resuming) when it dies")
    start.add_argument("--log-level", help="log level of the controller and engines")
    start.add_argument("--work-dir", metavar="DIR",
                       help="directory the engines run tasks in and import modules from "
                            "(first on their sys.path): for submit('pkg.mod:func') with a "
                            "package beside your script; default: where each engine starts")
    start.set_defaults(func=cmd_start)
    stop = commands.add_parser("stop", help="stop the cluster recorded in a profile")
    _add_profile_options(stop)
    stop.set_defaults(func=cmd_stop)
    listing = commands.add_parser("list", help="list the clusters recorded under "
                                  "$TASKHUB_DIR, and those run from profile dirs elsewhere")
    listing.set_defaults(func=cmd_list)
    clean = commands.add_parser("clean", help="remove the logs, the stale cluster record and "
                                "the connection files of a profile with no cluster running")
    _add_profile_options(clean)
    clean.set_defaults(func=cmd_clean)
    _add_engines_parser(commands)
    tasks.add_parser(commands, _add_profile_options,
                     lambda args: tasks.cmd_tasks(args, _profile_dir(args, create=False)))
    dashboard.add_parser(commands, _add_profile_options, lambda args: dashboard.cmd_dashboard(
        args, _profile_dir(args, create=False)))
    return parser


def _add_profile_options(parser):
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--profile", default="default", help="profile name (default: default)")
    where.add_argument("--profile-dir", help="profile directory (instead of --profile)")


def _with_help_all(parser):
    """--help-all (ipyparallel's spelling) shows --help, on every (sub)command."""
    parser.add_argument("--help-all", action="help", help="the same as --help")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _with_help_all(sub)
    return parser


def main(argv=None):
    args = _with_help_all(build_parser()).parse_args(argv)
    try:
        return args.func(args)
    except (ClusterStateError, ValueError) as e:
        _error(str(e))
        return 1


def _error(message):
    sys.stderr.write(f"ipcluster: {message}\n")


def _profile_dir(args, create):
    if args.profile_dir:
        return paths.ensure_profile_dir(args.profile_dir) if create else Path(args.profile_dir)
    return paths.profile_dir(args.profile, create=create)


# -- ipcluster start ------------------------------------------------------------------

def cmd_start(args):
    fresh = not _profile_dir(args, create=False).exists()
    profile_dir = _profile_dir(args, create=True)
    try:
        return _start(args, profile_dir)
    except BaseException:
        _forget_unused(profile_dir, fresh)
        raise


def _forget_unused(profile_dir, fresh):
    """Remove a profile this start created and never ran a cluster in: a typo in
    --profile, or a start that failed, leaves no empty profile_X behind (its logs' last
    lines are in the error already)."""
    if fresh and read_record(profile_dir) is None:
        shutil.rmtree(profile_dir, ignore_errors=True)


def _start(args, profile_dir):
    options = load_options(profile_dir)
    cluster = _cluster_from(args, profile_dir, options)
    restart = options.restart_engines if args.restart_engines is None else True
    cluster.resume = options.resume if args.resume is None else args.resume
    restart_controller = options.restart_controller if args.restart_controller is None \
        else True
    # SIGTERM, like Ctrl-C, must stop what was started. SIGINT is set explicitly because
    # Python leaves it ignored when started in the background by a non-interactive shell.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_keyboard_interrupt)
    ready = False
    try:
        cluster.start()
        cluster.close_client()
        ready = True
        if args.daemonize:
            start_background_watcher(cluster, restart, options.restart_limit,
                                     restart_controller)
            _print_ready(cluster, "it keeps running in the background")
            return 0
        _print_ready(cluster, "press Ctrl-C to stop it")
        status = Watcher(cluster, restart, options.restart_limit,
                         restart_controller=restart_controller).run()
        _error(f"the controller exited (status {status}); stopping the engines")
        return 1
    except KeyboardInterrupt:
        if not ready:
            _error("interrupted while starting; stopped what was started")
        return 0 if ready else 1
    finally:
        # One try block from start to here: an interrupt at any point stops everything.
        if not (args.daemonize and ready):
            _stop_uninterrupted(cluster, announce=ready)


def _stop_uninterrupted(cluster, announce):
    # A second Ctrl-C must not interrupt the stop and leave engines behind.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    cluster.stop(load_options(cluster.profile_dir).stop_timeout)
    if announce:
        sys.stdout.write("ipcluster: cluster stopped\n")


def _cluster_from(args, profile_dir, options):
    flags = {"--db": args.db, "--scheme": args.scheme, "--hwm": args.hwm, "--ip": args.ip,
             "--location": args.location, "--log-level": args.log_level,
             "--mongodb-url": args.mongodb_url}
    curve = {True: ["--curve"], False: ["--no-curve"], None: []}[args.curve]
    controller_args = [*options.controller_args, *_flag_args(flags), *curve]
    work_dir = args.work_dir and os.path.abspath(args.work_dir)  # engines may start elsewhere
    engine_args = [*options.engine_args, *_flag_args({"--log-level": args.log_level,
                                                      "--work-dir": work_dir})]
    engine_launcher = args.engine_launcher or options.engine_launcher
    controller_launcher = args.controller_launcher or options.controller_launcher
    for role, name in (("engines", engine_launcher), ("controller", controller_launcher)):
        find_launcher(role, name)  # an unknown name fails before anything starts
    engine_options = _launcher_options(args)
    n = options.n if args.n is None else args.n
    if args.n is None and engine_launcher == "ssh":  # without -n, the hosts' counts decide
        cls = find_launcher("engines", "ssh")
        hosts = cls(profile_dir, config=options.config, **engine_options).hosts
        n = sum(k for _, k in plan_hosts(hosts)) if hosts else n
    return Cluster(n=n, profile_dir=profile_dir,
                   controller_args=controller_args, engine_args=engine_args,
                   timeout=options.start_timeout,
                   controller_launcher=controller_launcher, engine_launcher=engine_launcher,
                   launcher_config=options.config, engine_options=engine_options,
                   controller_options=({"host": args.controller_host}
                                       if args.controller_host else {}),
                   # a daemonized cluster outlives this command; a foreground one does not
                   shutdown_atexit=not getattr(args, "daemonize", False))


def _launcher_options(args):
    """Engine launcher options given on the command line (they win over the config)."""
    if getattr(args, "ssh_hosts", None):
        return {"hosts": [h for h in args.ssh_hosts.split(",") if h]}
    return {}


def _flag_args(flags):
    return [str(part) for flag, value in flags.items() if value is not None
            for part in (flag, value)]


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _print_ready(cluster, how_long):
    where = profile_option(cluster.profile_dir)
    name = profile_label(cluster.profile_dir)
    client_args = (f"profile={name!r}" if profile_name(cluster.profile_dir)
                   else f"profile_dir={str(cluster.profile_dir)!r}")
    controller = (f"controller pid {cluster.controller.pid}" if cluster.controller.pid
                  else f"controller: {cluster.controller.describe()}")
    sys.stdout.write(
        f"ipcluster: {cluster.n} engines ready ({controller}, "
        f"profile {name}; engines: {cluster.engine_set.describe()}); {how_long}\n"
        f"  connect: from taskhub import Client; rc = Client({client_args})\n"
        f"{dashboard.ready_line(cluster.profile_dir)}"
        f"  stop:    ipcluster stop {where}\n")
    sys.stdout.flush()


# -- ipcluster stop -------------------------------------------------------------------

def cmd_stop(args):
    profile_dir = _profile_dir(args, create=False)
    record = read_record(profile_dir) or {}
    pid = recorded_controller_pid(record)
    cluster = recorded_cluster(profile_dir)
    if cluster is None:
        _error(f"no cluster is running for profile '{profile_label(profile_dir)}' "
               f"(nothing recorded in {record_path(profile_dir)})")
        return 1
    was_running = cluster.any_running()
    engines = cluster.running_engine_count()  # not the units that ended before the stop
    stop_timeout = load_options(profile_dir).stop_timeout
    _stop_foreground_owner(record.get("owner_pid"), stop_timeout + 5)
    cluster.stop(stop_timeout)
    if not was_running:
        _error(f"no cluster is running for profile '{profile_label(profile_dir)}' "
               f"(removed the stale record of controller pid {pid})")
        return 1
    controller = f"pid {pid}" if cluster.controller.kind == "local" \
        else cluster.controller.describe()
    sys.stdout.write(f"ipcluster: stopped the cluster of profile '{profile_label(profile_dir)}' "
                     f"(controller {controller}, {engines} engines)\n")
    return 0


def _stop_foreground_owner(pid, timeout):
    """Let a foreground `ipcluster start` stop its own cluster, as Ctrl-C would.

    Only a pid running ipcluster is signalled: a daemonized start has exited, and a Python
    session using `Cluster` must not be killed. Whatever it leaves, the caller stops.
    """
    def is_ipcluster():
        return is_ours(pid, "ipcluster") or is_ours(pid, "taskhub.cluster")

    if pid == os.getpid() or not is_ipcluster():
        return
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not is_ipcluster(), timeout)


# -- ipcluster list -------------------------------------------------------------------

def cmd_list(args):
    rows = [_list_row(d) for d in recorded_profile_dirs()]
    rows = [row for row in rows if row is not None]
    if not rows:
        sys.stdout.write(f"no clusters recorded under {paths.taskhub_dir()}\n")
        return 0
    header = ("PROFILE", "CONTROLLER", "ENGINES", "STATE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        sys.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    return 0


def _list_row(profile_dir):
    """(profile, controller pid, "alive/n", running|stale) of one record, None if unreadable."""
    record = read_record(profile_dir)
    try:
        cluster = Cluster.from_record(profile_dir)
    except (ClusterStateError, KeyError, TypeError, ValueError):
        return None
    alive = cluster.running_engine_count()
    state = "running" if cluster.running() else "stale"
    controller = recorded_controller_pid(record) if cluster.controller.pid is not None \
        or cluster.controller.kind == "local" else cluster.controller.describe()
    return (profile_label(profile_dir), controller, f"{alive}/{cluster.engine_count()}", state)


# -- ipcluster clean ------------------------------------------------------------------

def cmd_clean(args):
    """Remove what a stopped cluster left in its profile: log/, pid/cluster.json and the
    connection files. Configuration and the task database stay. Refused while a cluster
    (or a controller started by hand) runs from the profile."""
    profile_dir = _profile_dir(args, create=False)
    if not profile_dir.is_dir():
        _error(f"no profile directory {profile_dir}")
        return 1
    cluster = recorded_cluster(profile_dir)
    running = cluster is not None and cluster.any_running()
    connection = [paths.security_file(profile_dir, w) for w in ("client", "engine")]
    controller = [_connection_pid(f) for f in connection if f.exists()]
    if running or any(is_ours(pid) for pid in controller if pid):
        _error(f"a cluster is running from profile '{profile_label(profile_dir)}': "
               f"`ipcluster stop` it first")
        return 1
    removed = [p for p in (profile_dir / "log").glob("*") if p.is_file()]
    removed += [p for p in [record_path(profile_dir), *connection] if p.exists()]
    for path in removed:
        path.unlink(missing_ok=True)
    sys.stdout.write(f"ipcluster: removed {len(removed)} files from profile "
                     f"'{profile_label(profile_dir)}' (logs, cluster record, connection "
                     f"files)\n")
    return 0


def _connection_pid(path):
    try:
        return int(json.loads(path.read_text()).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


# -- ipcluster engines add / remove / list --------------------------------------------

def _add_engines_parser(commands):
    engines = commands.add_parser("engines", help="add, remove or list the engines of a "
                                  "running cluster")
    actions = engines.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="start K more engines and wait until they register")
    add.add_argument("-n", type=int, required=True, help="engines to add")
    add.add_argument("--engines", dest="engine_launcher", metavar="KIND",
                     help="launcher for the new engines (default: the cluster's)")
    add.add_argument("--ssh-hosts", metavar="HOSTS", help="with ssh: where they run")
    remove = actions.add_parser("remove", help="stop the K newest engines (whole units)")
    remove.add_argument("-n", type=int, required=True, help="engines to remove")
    listing = actions.add_parser("list", help="list the engine units and their state")
    for sub in (add, remove, listing):
        _add_profile_options(sub)
    add.set_defaults(func=cmd_engines_add)
    remove.set_defaults(func=cmd_engines_remove)
    listing.set_defaults(func=cmd_engines_list)


def cmd_engines_add(args):
    profile_dir = _profile_dir(args, create=False)
    options = load_options(profile_dir)
    launcher = scaling.add_engines(profile_dir, args.n, kind=args.engine_launcher,
                                   config=options.config, options=_launcher_options(args),
                                   timeout=options.start_timeout)
    sys.stdout.write(f"ipcluster: added {args.n} engines ({launcher.describe()})\n")
    return 0


def cmd_engines_remove(args):
    profile_dir = _profile_dir(args, create=False)
    removed = scaling.remove_engines(profile_dir, args.n,
                                     load_options(profile_dir).stop_timeout)
    units = ", ".join(f"{kind} {unit.tag}" for kind, unit in removed)
    sys.stdout.write(f"ipcluster: removed {args.n} engines ({units})\n")
    return 0


def cmd_engines_list(args):
    rows = scaling.unit_rows(_profile_dir(args, create=False))
    header = ("SET", "LAUNCHER", "UNIT", "ENGINES", "STATE", "WHERE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        sys.stdout.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    return 0
