"""`python -m taskhub.demo` (`make demo`): a one-minute tour of taskhub.

It starts a local cluster of 4 engines with the real `ipcluster` command (profile "demo"
under $TASKHUB_DIR, SQLite task database), maps functions over it with a Client, shows the
task history the controller recorded, resubmits one task, and stops the cluster again —
also when a step fails.
"""
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

PROFILE = "demo"
HISTORY_KEYS = ["msg_id", "engine_id", "engine_uuid", "submitted", "started", "completed",
                "stdout", "resubmitted"]


def square(x):
    return x * x


def greet(i):
    print(f"hello from task {i} in engine pid {os.getpid()}")
    return i


def heading(text):
    sys.stdout.write(f"\n== {text}\n")


def ipcluster(*args):
    """Run the ipcluster command of this Python; raise if it fails."""
    script = Path(sys.executable).with_name("ipcluster")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "taskhub.cluster"]
    sys.stdout.write(f"$ ipcluster {' '.join(args)}\n")
    sys.stdout.flush()
    subprocess.run([*cmd, *args], check=True)


def main():
    heading("1. Start a controller and 4 engines (SQLite task database in the profile)")
    ipcluster("start", "-n", "4", "--daemonize", "--profile", PROFILE)
    try:
        tour()
    finally:
        heading("6. Stop the cluster")
        ipcluster("stop", "--profile", PROFILE)
    return 0


def tour():
    from taskhub import Client

    heading(f"2. Connect a Client: Client(profile={PROFILE!r})")
    rc = Client(profile=PROFILE)
    try:
        rc.wait_for_engines(4, timeout=30)
        sys.stdout.write(f"engine ids: {rc.ids}\n")
        run_maps(rc)
        show_history(rc)
        resubmit_one(rc)
    finally:
        rc.close()


def run_maps(rc):
    lview = rc.load_balanced_view()
    heading("3. Map functions over the engines: lview.map_sync(f, xs)")
    sys.stdout.write(f"squares:  {lview.map_sync(square, range(12))}\n")
    sys.stdout.write(f"greetings returned: {lview.map_sync(greet, range(6))}"
                     "  (what they printed is in the task database)\n")


def show_history(rc):
    heading("4. The task history: rc.db_query({'msg_id': {'$in': last_6}}, keys=[...])")
    last = rc.hub_history()[-6:]
    print_records(rc.db_query({"msg_id": {"$in": last}}, keys=HISTORY_KEYS))


def resubmit_one(rc):
    first = rc.hub_history()[-6]
    heading(f"5. Run a recorded task again: rc.resubmit({first[:8]!r}).get()  (any unique "
            f"prefix of a msg_id names its task)")
    result = rc.resubmit(first[:8]).get(timeout=30)
    sys.stdout.write(f"rerun of {first[:8]} returned {result}  (a map task runs a chunk of "
                     "the inputs)\n")
    new_id = rc.db_query({"msg_id": first}, keys=["resubmitted"])[0].get("resubmitted")
    sys.stdout.write(f"the original record now names its rerun: resubmitted = {new_id[:8]}\n")
    print_records(rc.db_query({"msg_id": {"$in": [first, new_id]}}, keys=HISTORY_KEYS))


def print_records(records):
    header = ("msg_id", "engine", "submitted", "completed", "duration", "stdout")
    rows = [header, *(table_row(r) for r in sorted(records, key=sort_key))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def sort_key(record):
    return as_datetime(record.get("submitted")) or datetime.max


def table_row(record):
    started, completed = as_datetime(record.get("started")), as_datetime(record.get("completed"))
    duration = f"{(completed - started).total_seconds() * 1000:.1f} ms" \
        if started and completed else "-"
    engine = record.get("engine_id")
    return (record["msg_id"][:8], "-" if engine is None else str(engine),
            clock(record.get("submitted")), clock(record.get("completed")), duration,
            (record.get("stdout") or "").strip().replace("\n", " | ")[:50])


def as_datetime(value):
    """A record's timestamp as a naive datetime, whatever form the backend returned."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value)
    return value.replace(tzinfo=None) if isinstance(value, datetime) else None


def clock(value):
    when = as_datetime(value)
    return when.strftime("%H:%M:%S.%f")[:-3] if when else "-"


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    sys.stdout.write(f"\ndemo finished in {time.monotonic() - started:.1f} s\n")
    sys.exit(status)
