"""How fast the web view's task table answers with 1,000,000 records in SQLite.

    .venv/bin/python -m bench.webtable [--records N] [--db FILE] [--repeats R]

Fills a SQLite task DB with N task records (default 1,000,000; 16 engines, 2% failed,
20 labels, 1,000 still pending; `--db FILE` keeps the file for the next run, which then
skips the ~80 s fill), starts a controller on it (in this process, no engines) with its web
view, and times `GET /api/tasks?...` — count and page, through the hub, as the browser
asks — for a set of filters and sorts. Prints the median and worst of R requests each,
and whether the median is under the 100 ms the table must answer in.
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

TARGET_MS = 100
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ENGINES = 16
PENDING = 1000
# (what it shows, URL parameters of /api/tasks)
CASES = [
    ("newest page of everything", {}),
    ("failed tasks, newest first", {"status": "failed"}),
    ("failed tasks, page 10", {"status": "failed", "skip": "450"}),
    ("one engine, by completion", {"engine": "7", "sort": "-completed"}),
    ("one label", {"label": "fit-03"}),
    ("label glob and failed", {"label": "fit-1*", "status": "failed"}),
    ("one hour of submissions", {"since": "2026-01-01T06:00:00Z",
                                 "until": "2026-01-01T07:00:00Z", "sort": "submitted"}),
    ("msg_id prefix", {"msg_id": "ab"}),
    ("pending", {"status": "pending"}),
    ("ok, by completion", {"status": "ok", "sort": "-completed"}),
    ("by status", {"sort": "status"}),
    ("by engine, descending", {"sort": "-engine_id"}),
    ("failed on one engine, by label", {"status": "failed", "engine": "3", "sort": "label"}),
    ("finished, page 100", {"status": "finished", "skip": "4950"}),
    ("raw query: stdout regex", {"q": json.dumps({"stdout": {"$regex": "^x"},
                                                  "engine_id": 5}), "limit": "20"}),
]


def fake_records(n, seed=1):
    """`n` task records shaped like the hub writes them, in submission order."""
    rnd = random.Random(seed)
    engines = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(ENGINES)]
    client = str(uuid.UUID(int=rnd.getrandbits(128)))
    for i in range(n):
        yield _record(i, n, rnd, engines, client)


def _record(i, n, rnd, engines, client):
    msg_id = str(uuid.UUID(int=rnd.getrandbits(128)))
    submitted = T0 + timedelta(milliseconds=50 * i)
    record = {"msg_id": msg_id, "submitted": submitted, "client_uuid": client, "queue": "task",
              "header": {"msg_id": msg_id, "msg_type": "apply_request", "session": client,
                         "date": submitted.isoformat(), "version": "1"},
              "metadata": {}, "content": {}, "buffers": [b"f" * 120, b"a" * 40],
              "label": f"fit-{i % 20:02}" if i % 7 else None}
    if i >= n - PENDING:
        return record
    failed, engine = rnd.random() < 0.02, i % ENGINES
    status = "error" if failed else "ok"
    record.update(
        engine_uuid=engines[engine], engine_id=engine, status=status,
        started=submitted + timedelta(milliseconds=5), stdout="x\n" if i % 5 == 0 else "",
        completed=submitted + timedelta(milliseconds=30),
        received=submitted + timedelta(milliseconds=31), result_buffers=[b"r" * 30],
        result_header={"msg_id": msg_id[::-1], "msg_type": "apply_reply",
                       "session": engines[engine], "date": submitted.isoformat()},
        result_content={"status": status}, result_metadata={"engine_id": engine},
        error={"status": "error", "ename": "ValueError", "evalue": "bad input",
               "traceback": "Traceback (most recent call last):\n" * 5} if failed else None)
    return record


def fill(db, n, batch=50000):
    start = time.perf_counter()
    records = fake_records(n)
    for done in range(0, n, batch):
        db.add_records([next(records) for _ in range(min(batch, n - done))])
        db.commit()
        sys.stderr.write(f"\r  filled {done + batch:,} of {n:,} records "
                         f"({time.perf_counter() - start:.0f} s)")
    sys.stderr.write("\n")


def open_db(path, n):
    from taskhub.controller.db import make_db
    db = make_db("sqlite", filename=path)
    have = db.count()
    if have != n:
        if have:
            db.drop_matching_records({})
        fill(db, n)
    return db


class Served:
    """A controller on `db` (no engines) on a thread, with its web view."""

    def __init__(self, db, profile):
        from taskhub.appbase import write_connection_file
        from taskhub.controller.controller import Controller
        from taskhub.paths import ensure_profile_dir, security_file
        from taskhub.session import Session, new_key
        from taskhub.web import WebServer
        key, profile = new_key(), ensure_profile_dir(profile)
        self.controller = Controller(Session(key), db).bind()
        for which in ("client", "engine"):
            info = self.controller.connection_info(which)
            write_connection_file(security_file(profile, which), {**info, "key": key.decode()})
        self.thread = threading.Thread(target=self.controller.run, daemon=True)
        self.thread.start()
        self.web = WebServer(security_file(profile, "client")).start()

    def get(self, params):
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"http://127.0.0.1:{self.web.port}/api/tasks?{query}",
                                         headers={"Authorization": f"token {self.web.token}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def stop(self):
        self.web.stop()
        self.controller.stop()
        self.thread.join(10)
        self.controller.close()


def measure(served, params, repeats):
    """(total, rows, [milliseconds per request])."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        page = served.get(params)
        times.append(1000 * (time.perf_counter() - start))
    return page["total"], len(page["tasks"]), times


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.webtable", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", help="SQLite file to fill (kept) or reuse if it holds "
                                     "--records records")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-webtable-") as tmp:
        path = args.db or os.path.join(tmp, "tasks.db")
        served = Served(open_db(path, args.records), Path(tmp) / "profile")
        try:
            served.get({})  # the web view's client connects on its first request
            return report(served, args)
        finally:
            served.stop()


def report(served, args):
    size = os.path.getsize(served.controller.db.filename) / 2**20
    print(f"task table over {args.records:,} records in SQLite ({size:,.0f} MB), "
          f"HTTP GET /api/tasks (count + one page), median and worst of {args.repeats}:")
    print(f"  {'case':34} {'matching':>9} {'rows':>4} {'median':>9} {'worst':>9}")
    slow = 0
    for name, params in CASES:
        total, rows, times = measure(served, params, args.repeats)
        median = statistics.median(times)
        slow += median >= TARGET_MS
        flag = "" if median < TARGET_MS else f"  over {TARGET_MS} ms"
        print(f"  {name:34} {total:>9,} {rows:>4} {median:>6.1f} ms {max(times):>6.1f} ms{flag}")
    print(f"{len(CASES) - slow} of {len(CASES)} cases under {TARGET_MS} ms (median); "
          f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
