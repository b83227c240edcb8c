"""Other clients' apply latency while the task DB is abused (issue 13), next to the quiet figure.

    .venv/bin/python -m bench.isolation [--applies 200]

Starts a controller in this process (so the bench can make its DB fail) with 2 engine
processes in a temporary profile, then, for each workload, times `--applies` sequential
apply_sync calls of one client while the workload runs:

    quiet             nothing else
    pathological regex  another client repeats db_query({"label": {"$regex": "(a+)+$"}})
                      over a label of 28 a's and a "!" (118 s per query before RE2)
    DB failing        the DB writer cannot write (SQLite max_page_count: "database or disk
                      is full"); records are kept, results still delivered

Prints median and max latency (ms) per workload. The loop never waits on the DB, so the
figures should stay close to the quiet ones.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from taskhub.appbase import write_connection_file
from taskhub.client import Client
from taskhub.controller.controller import Controller
from taskhub.controller.db import make_db
from taskhub.paths import ensure_profile_dir, security_file
from taskhub.session import Session, new_key


def _start(profile, engines):
    key = new_key()
    controller = Controller(Session(key), make_db(
        "sqlite", filename=str(profile / "tasks.db"))).bind()
    for which in ("client", "engine"):
        info = controller.connection_info(which)
        info.update(key=key.decode(), pid=os.getpid())
        write_connection_file(security_file(profile, which), info)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    procs = [subprocess.Popen([sys.executable, "-m", "taskhub.engine", "--profile-dir",
                               str(profile)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(engines)]
    return controller, thread, procs


def _latencies(rc, n):
    view, times = rc.load_balanced_view(), []
    for i in range(n):
        t0 = time.perf_counter()
        view.apply_sync(abs, -i)
        times.append(time.perf_counter() - t0)
    return times


def _in_background(profile, work):
    """Run work(client) in a loop on a thread until the returned stop() is called."""
    done = threading.Event()

    def loop():
        with Client(profile_dir=profile) as other:
            while not done.is_set():
                work(other)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop():
        done.set()
        thread.join(60)
    return stop


def _on_writer(controller, sql):
    answered = threading.Event()
    controller.dbworker.on_writer(lambda db: db._conn.execute(sql).fetchall(),
                                  lambda ok, value: answered.set())
    answered.wait(30)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.isolation")
    p.add_argument("--applies", type=int, default=200)
    args = p.parse_args(argv)
    profile = ensure_profile_dir(tempfile.mkdtemp(prefix="bench-isolation-"))
    controller, thread, procs = _start(profile, 2)
    rows = []
    try:
        with Client(profile_dir=profile) as rc:
            rc.wait_for_engines(2, timeout=60)
            labelled = rc.load_balanced_view()
            labelled.label = "a" * 28 + "!"
            labelled.apply_sync(abs, -1)
            _latencies(rc, 20)  # warm up
            rows.append(("quiet", _latencies(rc, args.applies)))
            stop = _in_background(profile, lambda other: other.db_query(
                {"label": {"$regex": "(a+)+$"}}, keys=["label"]))
            rows.append(("pathological regex", _latencies(rc, args.applies)))
            stop()
            pages = controller.db._conn.execute("PRAGMA page_count").fetchone()[0]
            _on_writer(controller, f"PRAGMA max_page_count = {pages}")
            stop = _in_background(profile, lambda other: other.load_balanced_view().map_sync(
                abs, range(50)))
            rows.append(("DB failing", _latencies(rc, args.applies)))
            stop()
            state = rc.stats()["db"]
            _on_writer(controller, "PRAGMA max_page_count = 1073741823")
    finally:
        for proc in procs:
            proc.terminate()
        controller.stop()
        thread.join(30)
        controller.close()
    print(f"{'workload':<20} {'median ms':>10} {'max ms':>10}")
    for name, times in rows:
        print(f"{name:<20} {statistics.median(times) * 1e3:>10.2f} {max(times) * 1e3:>10.2f}")
    print(f"(while failing: db_state={state['db_state']}, "
          f"kept={state['db_kept_in_memory'] + state['db_kept_in_spill_file']})")


if __name__ == "__main__":
    main()
