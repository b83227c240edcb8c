"""`Cluster` as ipyparallel code drives it: one controller and named engine sets, started
and stopped step by step, awaitable or blocking.

    cluster = Cluster(n=2, controller="local", engines="mpi", cluster_id="x", log_level=10)
    await cluster.start_controller()          # or cluster.start_controller_sync()
    set_id = await cluster.start_engines(2)   # cluster.engines[set_id] is its launcher
    rc = await cluster.connect_client()       # a new Client each call; rc.cluster is this
    await cluster.signal_engines(signal.SIGINT)
    await cluster.stop_engines(set_id)
    await cluster.stop_controller()

Each `X` has a blocking twin `X_sync`; `X` called outside a running event loop just does
the work and returns its result (as ipyparallel's do), inside one it runs `X_sync` in a
worker thread and returns an awaitable. `ClusterManager` keeps clusters by
"profile:cluster_id" and finds the running ones recorded on this machine.
"""
import asyncio
import functools
import inspect
import logging
import secrets
import sys
import time

from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

from .launchernames import abbreviate_launcher_class, find_launcher_class


def _awaitable_twin(sync_name, doc):
    """A method running `sync_name` at once outside an event loop, in a thread inside one."""
    def method(self, *args, **kwargs):
        work = functools.partial(getattr(self, sync_name), *args, **kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return work()
        return loop.run_in_executor(None, work)
    method.__name__ = sync_name[:-len("_sync")]
    method.__doc__ = f"{doc} (awaitable in an event loop; see {sync_name})."
    return method


# What a config's "Cluster" section may set: {its name: (attribute, __init__ arguments
# that set the attribute too, so that one passed wins over the config)}
CONFIG_OPTIONS = {
    "n": ("n", ("n",)),
    "controller_args": ("controller_args", ("controller_args",)),
    "engine_args": ("engine_args", ("engine_args",)),
    "timeout": ("timeout", ("timeout",)),
    "engine_timeout": ("engine_timeout", ("engine_timeout",)),
    "controller_ip": ("controller_ip", ("controller_ip",)),
    "controller_location": ("controller_location", ("controller_location",)),
    "cluster_id": ("cluster_id", ("cluster_id",)),
    "shutdown_atexit": ("_shutdown_atexit", ("shutdown_atexit",)),
    "controller_launcher_class": ("controller_launcher", ("controller", "controller_launcher")),
    "engine_launcher_class": ("engine_launcher", ("engines", "engine_launcher")),
}
CONFIG_OPTIONS["controller_launcher"] = CONFIG_OPTIONS["controller_launcher_class"]
CONFIG_OPTIONS["engine_launcher"] = CONFIG_OPTIONS["engine_launcher_class"]


def profile_cluster_options(profile_dir):
    """The "Cluster" section of a profile's ipcluster_config.py and .json (json wins)."""
    merged = Config()
    for loader, name in ((PyFileConfigLoader, "ipcluster_config.py"),
                         (JSONFileConfigLoader, "ipcluster_config.json")):
        if (Path(profile_dir) / name).is_file():
            merged.merge(loader(name, path=str(profile_dir)).load_config())
    return dict(merged["Cluster"]) if "Cluster" in merged else {}


def new_cluster_id():
    return f"{int(time.time())}-{secrets.token_hex(2)}"


class ClusterAPI:
    """Mixed into Cluster: ipyparallel's spelling of it. Uses Cluster's own steps
    (_prepare_profile_dir, _start_controller, ...) and adds engine sets by id."""

    def _init_api(self, cluster_id, config, launcher_config, log, log_level, engine_timeout,
                  controller_ip, controller_location, parent=None):
        self.cluster_id = new_cluster_id() if cluster_id is None else str(cluster_id)
        if config is None:
            config = launcher_config if launcher_config is not None else Config()
        self.config = config
        self.launcher_config = config          # what the launchers are configured by
        self.log_level = logging.INFO if log_level is None else log_level
        if log is None:
            log = logging.getLogger(f"{type(self).__module__}.{self.cluster_id}")
            log.setLevel(self.log_level)
            if parent is not None and type(parent).__name__.endswith("InteractiveShell"):
                # made in IPython: its messages go where the notebook or terminal shows them
                log.handlers = [logging.StreamHandler(sys.stdout)]
        self.log = log
        self.engine_timeout = self.timeout if engine_timeout is None else engine_timeout
        self.controller_ip = controller_ip
        self.controller_location = controller_location

    def _apply_config_sections(self, passed, load_profile):
        """Options left at their defaults in `passed` (the __init__ arguments) from the
        profile's "Cluster" section (with `load_profile`), then from config.Cluster."""
        defaults = {name: p.default
                    for name, p in inspect.signature(type(self).__init__).parameters.items()}
        options = {}
        where = self.profile_dir or (self.profile and str(_profile_path(self.profile)))
        if load_profile and where and Path(where).is_dir():
            options.update(profile_cluster_options(where))
        if "Cluster" in self.config:
            options.update(self.config["Cluster"])
        for name, value in options.items():
            if name not in CONFIG_OPTIONS:
                self.log.warning("ignoring unknown Cluster option %r in the config", name)
                continue
            attr, arguments = CONFIG_OPTIONS[name]
            if any(passed.get(a, defaults.get(a)) != defaults.get(a) for a in arguments):
                continue  # given to the constructor: that wins
            setattr(self, attr, list(value) if attr.endswith("_args") else value)

    # -- names -------------------------------------------------------------------------

    @property
    def controller_launcher_class(self):
        return find_launcher_class(self.controller_launcher, "controller")

    @property
    def engine_launcher_class(self):
        return find_launcher_class(self.engine_launcher, "engine")

    @property
    def engines(self):
        """{engine set id: its launcher}, in the order they were started."""
        return {s.set_id: s for s in self.engine_sets()}

    @property
    def cluster_file(self):
        from .cluster import record_path
        return None if self.profile_dir is None else str(record_path(self.profile_dir))

    # -- steps ---------------------------------------------------------------------------

    def start_controller_sync(self):
        """Start the controller and wait until its connection files are written."""
        from .cluster import _start_lock
        if self.controller is not None:
            raise RuntimeError("the controller is already started; stop_controller() first")
        self._prepare_profile_dir()
        try:
            self._tie_to_this_process()
            with _start_lock(self.profile_dir):
                self._refuse_if_running()
                self._remove_stale_connection_files()
                self._start_controller()
        except BaseException:
            self.stop()
            self.controller = None
            raise

    def _controller_address_args(self):
        return ([f"--ip={self.controller_ip}"] if self.controller_ip else []) + \
            ([f"--location={self.controller_location}"] if self.controller_location else [])

    def start_engines_sync(self, n=None, engine_set_id=None):
        """Start a set of `n` engines (default: the cluster's n); return its id."""
        if self.controller is None:
            raise RuntimeError("start the controller before engines")
        if engine_set_id is not None and str(engine_set_id) in self.engines:
            raise KeyError(f"engine set {engine_set_id!r} exists already")
        launcher = self.engine_launcher_class(
            self.profile_dir, self.engine_args, n=self.n if n is None else n,
            config=self.launcher_config, **{"cluster_id": self.cluster_id, **self.engine_options})
        if engine_set_id is not None:
            launcher.set_id = str(engine_set_id)
        launcher.start()
        if self.engine_set is None:
            self.engine_set = launcher
        else:
            self.added_engines.append(launcher)
        self._write_record()
        return launcher.set_id

    def _engine_sets_named(self, engine_set_id):
        if engine_set_id is None:
            return self.engine_sets()
        return [self.engines[engine_set_id]]   # KeyError: no such set

    def stop_engines_sync(self, engine_set_id=None):
        """Stop one engine set (KeyError if there is none by that id), or all of them."""
        for launcher in self._engine_sets_named(engine_set_id):
            launcher.stop()
            sets = [s for s in self.engine_sets() if s is not launcher]
            self.engine_set, self.added_engines = (sets[0], sets[1:]) if sets else (None, [])
        if self.controller is not None:
            self._write_record()

    def restart_engines_sync(self, engine_set_id=None):
        """Stop the engines of a set (or of all) and start as many new ones in their place."""
        for launcher in self._engine_sets_named(engine_set_id):
            launcher.stop()
            launcher.units = []
            launcher.start()
        self._write_record()

    def signal_engines_sync(self, signum, engine_set_id=None):
        """Send `signum` to the engines of a set (or of all)."""
        for launcher in self._engine_sets_named(engine_set_id):
            launcher.signal(signum)

    def stop_controller_sync(self):
        """Stop the controller (engines are left to stop_engines); idempotent."""
        if self.controller is None:
            return
        self.controller.stop()
        self._remove_record()
        self.controller = None
        if not self.engine_sets():
            self._untie()

    def start_cluster_sync(self, n=None):
        """Start the controller, then a set of `n` engines (not waiting for them)."""
        self.start_controller_sync()
        try:
            self.start_engines_sync(n)
        except BaseException:
            self.stop_cluster_sync()
            raise

    def stop_cluster_sync(self):
        """Stop everything this cluster started (idempotent)."""
        try:
            self.stop()
        finally:
            self.controller = None
            self.engine_set, self.added_engines = None, []

    def connect_client_sync(self, **client_kwargs):
        """A new Client of this cluster (closing it leaves the cluster running)."""
        from ..client import Client  # late: the client pulls in zmq and more
        if self.controller is None:
            raise RuntimeError("the cluster has no controller running; start_controller() first")
        client = Client(profile_dir=str(self.profile_dir), **client_kwargs)
        client.cluster = self
        return client

    def start_and_connect_sync(self, n=None, activate=False):
        """Start the cluster, connect a Client, wait for the engines; return the Client."""
        if n is not None:
            self.n = n
        self.start_cluster_sync()
        try:
            self.client = self.connect_client_sync()
            self._wait_for_engines()
        except BaseException:
            self.stop_cluster_sync()
            raise
        if activate:
            self.client.activate()
        return self.client

    start_controller = _awaitable_twin("start_controller_sync", "Start the controller")
    start_engines = _awaitable_twin("start_engines_sync", "Start a set of engines")
    stop_engines = _awaitable_twin("stop_engines_sync", "Stop an engine set, or all")
    restart_engines = _awaitable_twin("restart_engines_sync", "Restart engine sets")
    signal_engines = _awaitable_twin("signal_engines_sync", "Signal engine sets")
    stop_controller = _awaitable_twin("stop_controller_sync", "Stop the controller")
    start_cluster = _awaitable_twin("start_cluster_sync", "Start controller and engines")
    stop_cluster = _awaitable_twin("stop_cluster_sync", "Stop the whole cluster")
    connect_client = _awaitable_twin("connect_client_sync", "Connect a new Client")
    start_and_connect = _awaitable_twin("start_and_connect_sync", "Start and connect")

    async def __aenter__(self):
        return await asyncio.get_running_loop().run_in_executor(None, self.__enter__)

    async def __aexit__(self, *exc_info):
        await asyncio.get_running_loop().run_in_executor(None, self.stop_cluster_sync)

    # -- as data -------------------------------------------------------------------------

    def to_dict(self):
        """A JSON-able description from which `from_dict` rebuilds this cluster (in any
        process) to inspect, signal or stop it."""
        return {"cluster": {"class": f"{type(self).__module__}.{type(self).__name__}",
                            "cluster_id": self.cluster_id, "n": self.n,
                            "profile_dir": None if self.profile_dir is None
                            else str(self.profile_dir),
                            "engine_timeout": self.engine_timeout},
                "controller": {"class": abbreviate_launcher_class(
                    self.controller_launcher_class)},
                "engines": {"class": abbreviate_launcher_class(self.engine_launcher_class),
                            "sets": {k: s.info() for k, s in self.engines.items()}},
                "record": self.record() if self.controller is not None else None}

    @classmethod
    def from_dict(cls, d, **kwargs):
        """The cluster `to_dict` described; it does not stop it when this process ends."""
        info = d["cluster"]
        cluster = cls(n=int(info.get("n") or 0), profile_dir=info["profile_dir"],
                      cluster_id=info.get("cluster_id"), shutdown_atexit=False,
                      controller_launcher=d["controller"]["class"],
                      engine_launcher=d["engines"]["class"], **kwargs)
        if d.get("record"):
            cluster._take_record(d["record"])
        return cluster

    @classmethod
    def from_file(cls, cluster_file=None, *, profile=None, profile_dir=None, cluster_id=None,
                  **kwargs):
        """The cluster recorded in a profile (default: the 'default' profile)."""
        from .. import paths
        from .cluster import read_record
        from pathlib import Path
        if cluster_file is not None:
            profile_dir = Path(cluster_file).parent.parent
        elif profile_dir is None:
            profile_dir = paths.profile_dir(profile or "default")
        record = read_record(profile_dir)
        if record is None:
            raise FileNotFoundError(f"no cluster is recorded in profile {profile_dir}")
        cluster = cls(n=int(record.get("n", 0)), profile_dir=profile_dir,
                      cluster_id=record.get("cluster_id", cluster_id), shutdown_atexit=False,
                      **kwargs)
        cluster._take_record(record)
        return cluster


def _profile_path(name):
    from .. import paths
    return paths.profile_dir(name)


class ClusterManager:
    """Clusters by key ("profile:cluster_id"): made here, or found running on this machine."""

    def __init__(self, log=None):
        self.log = log or logging.getLogger(__name__)
        self.clusters = {}

    @staticmethod
    def _cluster_key(cluster):
        from .cluster import profile_name
        name = cluster.profile if cluster.profile_dir is None \
            else profile_name(cluster.profile_dir)
        return f"{name or ''}:{cluster.cluster_id}"

    def new_cluster(self, **kwargs):
        """Make a Cluster(**kwargs) (not started); return (its key, it). KeyError if a
        cluster by that key is kept already."""
        from .cluster import Cluster
        cluster = Cluster(**kwargs)
        key = self._cluster_key(cluster)
        if key in self.clusters:
            raise KeyError(f"a cluster {key!r} exists already")
        self.clusters[key] = cluster
        return key, cluster

    def get_cluster(self, key):
        return self.clusters[key]

    def remove_cluster(self, key):
        del self.clusters[key]

    def load_clusters(self):
        """Add the running clusters recorded on this machine; drop kept ones that ended."""
        from .cluster import recorded_cluster
        from .lifetime import recorded_profile_dirs
        for key, cluster in list(self.clusters.items()):
            if cluster.controller is not None and not cluster.running():
                del self.clusters[key]
        found = {}
        for profile_dir in recorded_profile_dirs():
            cluster = recorded_cluster(profile_dir)
            if cluster is not None and cluster.running():
                found[self._cluster_key(cluster)] = cluster
        for key in [k for k, c in self.clusters.items()
                    if c.controller is not None and k not in found]:
            if not self.clusters[key].running():
                del self.clusters[key]
        for key, cluster in found.items():
            self.clusters.setdefault(key, cluster)
        return self.clusters
