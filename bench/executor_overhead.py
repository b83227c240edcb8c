"""Per-task overhead of the ways an Executor sends no-op tasks, on a real local cluster.

    .venv/bin/python -m bench.executor_overhead [--engines 2] [--tasks 1000] [--repeats 5]

Each way runs the same `tasks` no-op calls end to end (first request built → last result
in), in `repeats` rounds where the ways take turns; the table gives the median per task,
and for submit also the time the submitting thread spends per call. The controller records
every task in SQLite throughout.

    submit     ex.submit(noop, i) for each i, then wait for all: one request and one wake
               of the client's IO thread per call
    batch      with ex.batch() as b: b.submit(noop, i) ...: one request per call, built
               while the block runs, sent in one burst when it exits
    map/100    ex.map(noop, range(tasks), chunksize=100): one request per 100 calls
    lview.map  lview.map_async(noop, range(tasks)), for reference: one request per call,
               one wake
"""
import argparse
import statistics
import tempfile
import time
from concurrent import futures


def noop(x):
    return x


def run_submit(ex, n):
    start = time.perf_counter()
    sent = [ex.submit(noop, i) for i in range(n)]
    submitted = time.perf_counter()
    futures.wait(sent)
    assert [f.result() for f in sent] == list(range(n))
    return time.perf_counter() - start, submitted - start


def run_batch(ex, n):
    start = time.perf_counter()
    with ex.batch() as batch:
        sent = [batch.submit(noop, i) for i in range(n)]
    futures.wait(sent)
    assert [f.result() for f in sent] == list(range(n))
    return time.perf_counter() - start, None


def run_map(ex, n):
    start = time.perf_counter()
    assert list(ex.map(noop, range(n), chunksize=100)) == list(range(n))
    return time.perf_counter() - start, None


def run_lview_map(ex, n):
    start = time.perf_counter()
    assert ex.client.load_balanced_view().map_async(noop, range(n)).get(60) == list(range(n))
    return time.perf_counter() - start, None


WAYS = {"submit": run_submit, "batch": run_batch, "map/100": run_map,
        "lview.map": run_lview_map}


def measure(ex, n, repeats):
    """{way: (median seconds per task end to end, median submit-side seconds per task)}.
    The ways take turns in each round, so a busy moment of the machine hits them alike."""
    for run in WAYS.values():
        run(ex, min(n, 200))  # warm up: function caches, first connections
    times = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way, run in WAYS.items():
            times[way].append(run(ex, n))
    rows = {}
    for way, runs in times.items():
        sides = [s for _, s in runs if s is not None]
        rows[way] = (statistics.median(t for t, _ in runs) / n,
                     statistics.median(sides) / n if sides else None)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from taskhub.cluster.cluster import Cluster
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as workdir:
        cluster = Cluster(n=args.engines, profile_dir=workdir, timeout=60)
        cluster.start()
        try:
            rows = measure(cluster.client.executor(), args.tasks, args.repeats)
        finally:
            cluster.stop()
    print(f"{args.tasks} no-op tasks on {args.engines} engines, median of {args.repeats}")
    print(f"{'way':<10} {'µs/task end to end':>19} {'µs/task to submit':>18}")
    for way, (total, side) in rows.items():
        side_text = f"{side * 1e6:18.1f}" if side is not None else f"{'—':>18}"
        print(f"{way:<10} {total * 1e6:19.1f} {side_text}")


if __name__ == "__main__":
    main()
