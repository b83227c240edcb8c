"""taskhub's benchmark suite: taskhub and its peers side by side, in one run.

    python -m bench [--quick] [--only WORKLOAD] [--repeats N] [--json FILE]

Every system under test (taskhub, ipyparallel, dask.distributed, ProcessPoolExecutor, a raw
pyzmq floor) runs in a driver process of its own, with the Python of its own virtualenv,
and answers one small set of calls (`bench.systems.base.System`). The runner alternates
the systems call by call (A, B, A, B ...), so what the machine does in the background
weighs on all of them alike, and prints the medians with the ratio taskhub / peer.

    runner (this Python)                      driver processes (one per system)
      workloads.py  steps: "map 2,000 tasks"    systems/serve.py  JSON lines on a pipe
      runner.py     repeats × steps × systems ──▶ systems/<name>.py  start, map_noop, ...
      report.py     medians, ratios, table    ◀── {"result": seconds}

This package imports nothing outside the standard library at the top level: the drivers
import it from venvs that do not have taskhub installed.
"""
