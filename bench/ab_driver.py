"""One round of bench/ab.py, run by path with PYTHONPATH naming the checkout under test:
a controller and 2 engines from that checkout, a warm-up, the best of 3 maps of N no-op
tasks, and the median apply_sync round trip of M calls. Prints one JSON line. Uses only
what every revision has (Client, `python -m taskhub.controller/engine`)."""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def noop(x=None):
    return x


def start(profile):
    base = [sys.executable, "-m"]
    procs = [subprocess.Popen([*base, "taskhub.controller", "--profile-dir", str(profile),
                               "--log-level", "WARN"])]
    procs += [subprocess.Popen([*base, "taskhub.engine", "--profile-dir", str(profile),
                                "--log-level", "WARN"]) for _ in range(2)]
    from taskhub.client import Client
    deadline = time.monotonic() + 60
    while True:
        try:
            rc = Client(profile_dir=profile, timeout=10)
            break
        except Exception:  # noqa: BLE001 - the connection file is not written yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    rc.wait_for_engines(2, timeout=60)
    return procs, rc


def main(tasks, calls):
    with tempfile.TemporaryDirectory(prefix="taskhub-ab-") as tmp:
        procs, rc = start(Path(tmp) / "profile")
        try:
            lview = rc.load_balanced_view()
            lview.map_sync(noop, range(200))
            maps = []
            for _ in range(3):
                t0 = time.perf_counter()
                lview.map_sync(noop, range(tasks))
                maps.append(time.perf_counter() - t0)
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                lview.apply_sync(noop)
                lat.append(time.perf_counter() - t0)
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)
    print(json.dumps({"map": min(maps), "latency": statistics.median(lat)}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
