"""The systems under test: each is a `System` subclass run in a driver process of its own.

`VARIANTS` is the one table of what can be benchmarked: a variant is a System class, the
options its constructor gets, and the virtualenv its driver runs in. Adding a peer is one
System class and one row here.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    name: str
    target: str                  # "module:Class" of the System, imported by the driver
    venv: str                    # "main" (taskhub's .venv) or a peer venv under bench/.peers/
    options: dict = field(default_factory=dict)
    label: str = ""              # how the report names it (default: name)


VARIANTS = {v.name: v for v in [
    Variant("taskhub", "bench.systems.taskhub_system:TaskhubSystem", "main",
            label="taskhub (SQLite DB)"),
    Variant("taskhub-memdb", "bench.systems.taskhub_system:TaskhubSystem", "main",
            {"controller_args": ["--db", "memory"]}, label="taskhub (--db memory)"),
    Variant("taskhub-curve", "bench.systems.taskhub_system:TaskhubSystem", "main",
            {"controller_args": ["--curve"]}, label="taskhub (--curve: CurveZMQ)"),
    Variant("ipp", "bench.systems.ipyparallel_system:IpyparallelSystem", "ipp",
            label="ipyparallel (default DictDB)"),
    Variant("ipp-sqlite", "bench.systems.ipyparallel_system:IpyparallelSystem", "ipp",
            {"controller_args": ["--sqlitedb"]}, label="ipyparallel (--sqlitedb)"),
    Variant("ipp-hwm0", "bench.systems.ipyparallel_system:IpyparallelSystem", "ipp",
            {"controller_args": ["--TaskScheduler.hwm=0"]}, label="ipyparallel (hwm=0)"),
    Variant("dask", "bench.systems.dask_system:DaskSystem", "dask",
            label="dask.distributed LocalCluster"),
    Variant("ray", "bench.systems.ray_system:RaySystem", "ray",
            label="Ray (ray.init(num_cpus=N))"),
    Variant("pool", "bench.systems.pool_system:PoolSystem", "main",
            label="ProcessPoolExecutor"),
    Variant("zmq-floor", "bench.systems.zmq_floor:ZmqFloorSystem", "main",
            label="raw pyzmq floor"),
]}
