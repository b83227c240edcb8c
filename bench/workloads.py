"""What is measured: each workload is a small named function that returns its steps.

A `Workload` names the systems that take part (the first is the subject, taskhub; the
others are its peers), the engines their clusters get, and its phases. A `Phase` prepares
every system once, untimed (fill the task DB, say), then measures its steps `repeats`
times, alternating the systems call by call. A `Step` is one driver call and what its
result means. Sizes come from `SIZES["quick"]` or `SIZES["full"]`.
"""
from dataclasses import dataclass, replace

KB, MB = 1000, 1000 * 1000


@dataclass(frozen=True)
class Step:
    label: str             # the metric, as the report names it
    method: str            # the System call (see bench/systems/base.py)
    kwargs: dict
    timeout: float         # seconds the call may take (the driver is killed after more)
    unit: str = "s"        # "s", "MB" or "n"
    parts: dict = None     # for calls returning a dict: key -> (label suffix, unit)


@dataclass(frozen=True)
class Phase:
    steps: tuple
    prepare: tuple = ()    # (method, kwargs, timeout) per system, untimed, before the steps
    repeats: int = None    # None: the run's --repeats
    systems: tuple = ()    # the workload's systems that take part (empty: all)


@dataclass(frozen=True)
class Workload:
    name: str              # what --only selects
    title: str
    systems: tuple         # variant names (bench/systems/__init__.py); the first is taskhub
    engines: int           # engines per cluster; None: the steps start their own
    phases: tuple
    fresh: bool = False    # True: clusters of its own; False: may reuse those of the last


@dataclass(frozen=True)
class Sizes:
    map_tasks: tuple
    map_engines: tuple
    latency_calls: int
    db_records: tuple
    resubmit: int
    memory_tasks: tuple
    memory_result: int
    push_bytes: int
    ipp_memory_limit: int  # ipyparallel's memory runs stop here: 200,000 tasks take minutes


SIZES = {
    "quick": Sizes(map_tasks=(2000,), map_engines=(2,), latency_calls=100,
                   db_records=(2000,), resubmit=100, memory_tasks=(2000,),
                   memory_result=100 * KB, push_bytes=20 * MB, ipp_memory_limit=2000),
    "full": Sizes(map_tasks=(2000, 20000), map_engines=(2, 4), latency_calls=500,
                  db_records=(20000, 200000), resubmit=500, memory_tasks=(20000, 200000),
                  memory_result=100 * KB, push_bytes=100 * MB, ipp_memory_limit=20000),
}

TASKHUB_AND_PEERS = ("taskhub", "taskhub-memdb", "taskhub-curve", "ipp", "ipp-sqlite", "dask",
                     "pool", "zmq-floor")


def lb_map(sizes, engines):
    """(1) Load-balanced map of no-op tasks, one task per item (chunksize 1). On more than
    2 engines the DB variants are left out: they answer the same question as on 2."""
    steps = tuple(Step(f"map {n:,} no-op tasks", "map_noop", {"n_tasks": n},
                       timeout=60 + n / 100) for n in sizes.map_tasks)
    systems = TASKHUB_AND_PEERS if engines <= 2 else \
        tuple(s for s in TASKHUB_AND_PEERS
              if s not in ("taskhub-memdb", "taskhub-curve", "ipp-sqlite"))
    return Workload("map", f"LB map, {engines} engines", systems, engines, (Phase(steps),))


def latency(sizes):
    """(2) apply_sync round trip of a no-op, one call at a time: median of many."""
    n = sizes.latency_calls
    steps = tuple(Step(f"apply_sync {kind}, median of {n}", "latency",
                       {"kind": kind, "count": n}, timeout=30 + n * 0.05)
                  for kind in ("lb", "direct"))
    return Workload("latency", "Round-trip latency, 2 engines",
                    ("taskhub", "taskhub-curve", "ipp", "dask", "pool", "zmq-floor"), 2,
                    (Phase(steps),))


def push_pull(sizes):
    """(6) A numpy array pushed to both engines' namespaces and pulled back from both."""
    mb = sizes.push_bytes // MB
    step = Step(f"{mb} MB numpy array", "push_pull", {"nbytes": sizes.push_bytes},
                timeout=120, parts={"push": ("push to both", "s"),
                                    "pull": ("pull from both", "s")})
    return Workload("pushpull", "Push/pull, 2 engines",
                    ("taskhub", "taskhub-curve", "ipp", "dask", "zmq-floor"), 2, (Phase((step,)),))


def task_db(sizes):
    """(3) Task-DB queries and resubmission, on SQLite for both systems."""
    phases = []
    for i, records in enumerate(sizes.db_records):
        steps = [Step(f"db_query all completed ({records:,} records)", "db_query",
                      {"which": "completed"}, timeout=60 + records / 500),
                 Step(f"db_query $in engine_uuid ({records:,} records)", "db_query",
                      {"which": "in"}, timeout=60 + records / 1000)]
        if i == 0:
            steps.append(Step(f"resubmit {sizes.resubmit} finished tasks", "resubmit",
                              {"count": sizes.resubmit}, timeout=120))
            prepare = (("fill", {"n_records": records, "result_bytes": 0},
                        60 + records / 50),)
        else:  # the larger DB is grown by copying records (see copy_sqlite_records)
            prepare = (("copy_records", {"n_records": records}, 300),)
        phases.append(Phase(tuple(steps), prepare))
    return Workload("db", "Task DB (SQLite), 2 engines", ("taskhub", "ipp-sqlite"), 2,
                    tuple(phases), fresh=True)


def controller_memory(sizes):
    """(4) Controller RSS (all its processes) after many tasks with large results."""
    kb = sizes.memory_result // KB
    phases = []
    for tasks in sizes.memory_tasks:
        step = Step(f"{tasks:,} tasks × {kb} KB results", "controller_memory", {},
                    timeout=60, parts={"rss_mb": ("controller RSS", "MB"),
                                       "peak_rss_mb": ("controller peak RSS", "MB"),
                                       "processes": ("controller processes", "n")})
        prepare = (("fill", {"n_records": tasks, "result_bytes": sizes.memory_result},
                    120 + tasks / 50),)
        systems = ("taskhub", "ipp") if tasks <= sizes.ipp_memory_limit else ("taskhub",)
        phases.append(Phase((step,), prepare, repeats=1, systems=systems))
    return Workload("memory", "Controller memory, 2 engines", ("taskhub", "ipp"), 2,
                    tuple(phases), fresh=True)


def cluster_start_stop(sizes, workdir):
    """(5) `ipcluster start -n 4` until a client sees 4 engines; `ipcluster stop` until
    every process is gone (dask: LocalCluster(4) and close())."""
    step = Step("ipcluster, 4 engines", "cli_start_stop", {"n": 4, "workdir": str(workdir)},
                timeout=120, parts={"start": ("start, until all registered", "s"),
                                    "stop": ("stop, until all processes gone", "s"),
                                    "processes": ("processes started", "n")})
    return Workload("cli", "Cluster start/stop", ("taskhub", "ipp", "dask"), None,
                    (Phase((step,)),), fresh=True)


def plan(mode, workdir, only=None, systems=None):
    """The workloads of a run, in order; `only`/`systems` narrow it (names)."""
    sizes = SIZES[mode]
    workloads = [lb_map(sizes, sizes.map_engines[0]), latency(sizes), push_pull(sizes),
                 task_db(sizes), controller_memory(sizes),
                 *(lb_map(sizes, n) for n in sizes.map_engines[1:]),
                 cluster_start_stop(sizes, workdir)]
    if only:
        workloads = [w for w in workloads if w.name in only]
    if systems:
        workloads = [replace(w, systems=tuple(s for s in w.systems if s in systems))
                     for w in workloads]
        workloads = [w for w in workloads if w.systems]
    return workloads


WORKLOAD_NAMES = ("map", "latency", "pushpull", "db", "memory", "cli")
