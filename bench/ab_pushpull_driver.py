"""One round of bench/sign_cost.py, run by path with PYTHONPATH naming the checkout under
test: a controller and 2 engines from that checkout (bench/ab_driver.py starts them), then
the best of 3 pushes of an N MB numpy array to both engines and the best of 3 pulls of it
back. Prints one JSON line (seconds)."""
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_driver import start  # noqa: E402


def best_of(call, n=3):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(mb):
    import numpy
    with tempfile.TemporaryDirectory(prefix="taskhub-ab-") as tmp:
        procs, rc = start(Path(tmp) / "profile")
        try:
            view, array = rc[:], numpy.ones(mb * (1 << 20) // 8)
            push = best_of(lambda: view.push({"bench_array": array}, block=True))
            pull = best_of(lambda: view.pull("bench_array", block=True))
        finally:
            rc.shutdown(hub=True)
            rc.close()
            for p in procs:
                p.wait(30)
    print(json.dumps({"push": push, "pull": pull}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
