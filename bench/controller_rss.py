"""Controller RSS before and after N tasks with 100 KB results on the default SQLite DB.

    .venv/bin/python -m bench.controller_rss [--tasks 100000] [--result-bytes 100000]

Starts a Cluster of 2 engines in a temporary profile, runs maps of 10,000 tasks that each
return `--result-bytes` bytes, and prints the controller's VmRSS (and VmHWM, the peak) from
/proc after each map. The task DB grows by about tasks × result bytes on disk.
"""
import argparse
import json
import os
import shutil
import tempfile
import time

from taskhub import Cluster


def _status(pid, field):
    """`field` (e.g. VmRSS, VmHWM) of process `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def controller_pid(profile_dir):
    """The pid of the controller of the cluster in `profile_dir` (from its connection file)."""
    with open(f"{profile_dir}/security/taskhub-client.json") as f:
        return json.load(f)["pid"]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.controller_rss")
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--result-bytes", type=int, default=100_000)
    args = p.parse_args(argv)
    d = tempfile.mkdtemp(prefix="controller-rss-")
    try:
        with Cluster(n=2, profile_dir=d) as rc:
            pid = controller_pid(d)
            lview = rc.load_balanced_view()
            lview.map_sync(len, [b""] * 100)
            before, t0, done = _status(pid, "VmRSS"), time.time(), 0
            while done < args.tasks:
                n = min(10_000, args.tasks - done)
                lview.map_sync(lambda size: b"x" * size, [args.result_bytes] * n)
                done += n
                print(f"{done:>8,} tasks: controller RSS {_status(pid, 'VmRSS'):6.1f} MiB "
                      f"(peak {_status(pid, 'VmHWM'):6.1f})", flush=True)
            records = len(rc.db_query({"completed": {"$ne": None}}, keys=["msg_id"]))
            size = os.path.getsize(f"{d}/tasks.db") / 2**30
            print(f"before {before:.1f} MiB, after {_status(pid, 'VmRSS'):.1f} MiB, peak "
                  f"{_status(pid, 'VmHWM'):.1f} MiB; {records:,} records; "
                  f"{time.time() - t0:.0f} s; task DB {size:.1f} GiB")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
