"""Tier 2: executors, batches, imap, task groups, callables by name, nested tasks,
serialization strategies and registered functions, on a live loopback cluster."""
import asyncio
import concurrent.futures as cf
import gc
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import tracemalloc

import pytest
from conftest import wait_for_file, wait_until

import taskhub
from taskhub import Executor, Serializer
from taskhub.client.taskfuture import TaskFuture
from taskhub.error import RemoteError, RemoteTraceback, TaskTimeout, TimeoutError


# -- functions the tasks run (shipped by value: engines cannot import this file) -----------
def square(x):
    return x * x


def divide(a, b):
    return a / b


def hold(started, release, value=None):
    """Say it started (a file), then run until `release` exists."""
    open(started, "w").close()
    wait_for_file(release)
    return value


def descend():
    """Submit the same function one level deeper and return (depth, child msg_id, group)."""
    import os

    import taskhub
    child = taskhub.engine_client().executor().submit(descend)
    return int(os.environ["TASKHUB_DEPTH"]), child.msg_ids[0], os.environ["TASKHUB_TASK_GROUP"]


class Gate:
    """Tasks that block until the test releases them; always released at the end."""

    def __init__(self, tmp_path):
        self.dir, self.release, self.n = tmp_path, str(tmp_path / "release"), 0

    def submit(self, ex, value=None, **options):
        self.n += 1
        started = str(self.dir / f"started-{self.n}")
        fut = ex.submit_ext(hold, (started, self.release, value), **options)
        fut.started_file = started
        return fut

    def wait_started(self, *futures):
        for fut in futures:
            wait_until(lambda: os.path.exists(fut.started_file), 30, what="a task to start")

    def open(self):
        open(self.release, "w").close()


@pytest.fixture
def gate(tmp_path):
    g = Gate(tmp_path)
    yield g
    g.open()


# -- 1. the Executor --------------------------------------------------------------------------
def test_submit_and_map_with_the_stdlib_helpers(rc):
    ex = rc.executor()
    assert isinstance(ex, cf.Executor)
    futures = [ex.submit(square, i) for i in range(8)]
    assert all(isinstance(f, cf.Future) and isinstance(f, TaskFuture) for f in futures)
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == \
        [i * i for i in range(8)]
    assert list(ex.map(square, range(20), timeout=30)) == [i * i for i in range(20)]
    assert list(ex.map(divide, [6, 8], [3, 4])) == [2, 2]
    assert list(ex.map(square, [])) == []
    assert ex.submit(lambda a, b=1: a - b, 5, b=2).result(30) == 3


def test_wait_first_completed_returns_the_finished_one_first(rc, gate):
    ex = rc.executor()
    slow = gate.submit(ex, "slow")
    fast = ex.submit(square, 4)
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    gate.open()
    done, not_done = cf.wait([slow, fast], timeout=30)
    assert not not_done and slow.result() == "slow"


def test_asyncio_await_and_wrap_future(rc):
    ex = rc.executor()

    async def main():
        one = await ex.submit(square, 3)
        two = await asyncio.wrap_future(ex.submit(square, 4))
        rest = await asyncio.gather(*(ex.submit(square, i) for i in range(3)))
        return one, two, rest

    assert asyncio.run(main()) == (9, 16, [0, 1, 4])


def test_with_block_waits_for_tasks_and_then_refuses_new_ones(rc, gate):
    with rc.load_balanced_view().executor as ex:
        fut = gate.submit(ex, 7)
        gate.wait_started(fut)
        threading.Thread(target=gate.open).start()
    assert fut.done() and fut.result() == 7
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(square, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(square, [1])


def test_shutdown_cancel_futures_cancels_only_what_no_engine_started(rc, gate):
    ex = rc.executor()
    running = [gate.submit(ex, i) for i in range(2)]
    gate.wait_started(*running)
    queued = [ex.submit(square, i) for i in range(6)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not any(f.done() for f in running)
    gate.open()
    assert [f.result(30) for f in running] == [0, 1]
    wait_until(lambda: not rc.outstanding, what="the aborted tasks' replies")
    records = rc.db_query({"msg_id": {"$in": [f.msg_ids[0] for f in queued]}},
                          keys=["started", "status"])
    assert len(records) == 6 and all(r["started"] is None for r in records)


def test_cancel_takes_back_tasks_in_the_scheduler_or_an_engine_queue(rc, gate):
    one_engine = rc.executor(targets=rc.ids[0])
    running = gate.submit(one_engine)
    gate.wait_started(running)
    behind = one_engine.submit(square, 5)
    retried = one_engine.submit_ext(square, (6,), retries=1)
    in_scheduler = rc.executor().submit_ext(square, (7,), after=[running])  # blocked there
    assert in_scheduler.cancel() and in_scheduler.cancelled()
    assert not running.cancel() and not running.cancelled()
    assert behind.cancel() and behind.cancelled()
    with pytest.raises(cf.CancelledError):
        behind.result()
    # queued on its engine, the scheduler would run it elsewhere if the engine dropped it,
    # so it is not taken back; still at the hub (adaptive prefetch keeps it there while the
    # engine is busy, unless its recent tasks were tiny) it is
    [rec] = rc.db_query({"msg_id": retried.msg_ids[0]}, keys=["status"])
    at_hub = rec["status"] == "pending"
    assert retried.cancel() is at_hub
    gate.open()
    assert running.result(30) is None
    if not at_hub:
        assert retried.result(30) == 36


def test_shutdown_without_waiting_returns_while_tasks_run(rc, gate):
    ex = rc.executor()
    fut = gate.submit(ex, "done later")
    ex.shutdown(wait=False)
    assert not fut.done()
    gate.open()
    assert fut.result(30) == "done later"


def test_map_chunks_timeout_and_early_exit_cancels_the_rest(rc, gate):
    label = f"map-{os.getpid()}-{id(rc)}"
    ex = rc.executor(label=label)
    assert list(ex.map(square, range(50), chunksize=7)) == [i * i for i in range(50)]
    assert len(rc.db_query({"label": label}, keys=["msg_id"])) == 8
    blocker = gate.submit(ex)
    results = ex.map(hold, [str(gate.dir / "m1")], [gate.release], timeout=0.2)
    with pytest.raises(TimeoutError, match="not ready within its timeout"):
        next(results)
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(square, [1], chunksize=0)
    gate.open()
    assert blocker.result(30) is None


def test_submit_ext_options_and_executor_defaults(rc):
    e0, e1 = rc.ids[:2]
    ex = rc.executor(priority=2, label="ex-defaults")
    a = ex.submit_ext(square, (3,), name="custom", retries=1, targets=e0)
    b = ex.submit_ext(divide, args=[8], kwargs={"b": 2}, targets=[e1], after=[a])
    c = ex.submit_ext(square, (4,), follow=[b], timeout=30)
    assert (a.result(30), b.result(30), c.result(30)) == (9, 4, 16)
    assert (a.engine_id, b.engine_id, c.engine_id) == (e0, e1, e1)
    assert b.started >= a.completed
    md = {r["msg_id"]: r for r in rc.db_query({"msg_id": {"$in": a.msg_ids + b.msg_ids}},
                                              keys=["metadata", "label"])}
    ma, mb = md[a.msg_ids[0]], md[b.msg_ids[0]]
    assert (ma["label"], mb["label"]) == ("custom", "ex-defaults")
    assert ma["metadata"]["retries"] == 1 and ma["metadata"]["priority"] == 2
    assert mb["metadata"]["after"]["msg_ids"] == a.msg_ids
    with pytest.raises(TaskTimeout):
        ex.submit_ext(wait_for_file, ("/nonexistent/never",), time_limit=0.3).result(30)
    with pytest.raises(TypeError, match="unknown flag 'colour'"):
        ex.submit_ext(square, (1,), colour="red")
    with pytest.raises(ValueError, match="retries must be ≥ 0"):
        ex.submit_ext(square, (1,), retries=-1)
    with pytest.raises(TypeError, match="label= or name="):
        rc.executor(label="a", name="b")
    with pytest.raises(TypeError, match="args must be a tuple or list"):
        ex.submit_ext(square, 3)


def test_a_view_s_flags_are_the_executor_s_defaults(rc):
    lview = rc.load_balanced_view(targets=[rc.ids[1]])
    lview.label = "from-the-view"
    fut = lview.executor.submit(square, 6)
    assert fut.result(30) == 36 and fut.engine_id == rc.ids[1]
    [rec] = rc.db_query({"msg_id": fut.msg_ids[0]}, keys=["label"])
    assert rec["label"] == "from-the-view"


def test_an_executor_with_its_own_client(cluster):
    with Executor.connect(profile_dir=cluster.profile_dir, label="own") as ex:
        assert ex.submit(square, 11).result(30) == 121
    assert ex.client._closed


def test_lambdas_and_closures_everywhere(rc):
    k = 10
    ex = rc.executor()
    assert ex.submit(lambda x: x + k, 1).result(30) == 11
    assert list(ex.map(lambda x: x * k, range(3), chunksize=2)) == [0, 10, 20]
    with ex.batch() as batch:
        fut = batch.submit(lambda: k * 2)
    assert fut.result(30) == 20
    assert sorted(rc.load_balanced_view().imap(lambda x: -x * k, range(3))) == [-20, -10, 0]
    fid = rc.register_function(lambda x: x - k)
    assert rc.load_balanced_view().apply_sync(fid, 15) == 5


# -- 2. batches -------------------------------------------------------------------------------
def test_a_batch_of_1000_calls_is_one_submission(rc, monkeypatch):
    flushes, flush = [], rc._flush
    monkeypatch.setattr(rc, "_flush", lambda: (flushes.append(len(rc._outbox)), flush()))
    ex = rc.executor()
    label = f"batch-1000-{id(rc)}"
    with ex.batch(label=label) as batch:
        futures = [batch.submit(square, i) for i in range(1000)]
        assert not any(f.running() or f.done() for f in futures)
        assert flushes == []
    assert flushes == [1000]  # one wake of the IO thread, the whole batch in its outbox
    assert [f.result(60) for f in futures] == [i * i for i in range(1000)]
    records = rc.db_query({"label": label}, keys=["engine_id"])
    assert len(records) == 1000 and {r["msg_id"] for r in records} == \
        {f.msg_ids[0] for f in futures}
    assert {r["engine_id"] for r in records} == set(rc.ids[:2])


def test_an_exception_in_the_batch_block_sends_nothing(rc):
    label = f"batch-broken-{id(rc)}"
    with pytest.raises(ZeroDivisionError):
        with rc.executor().batch(label=label) as batch:
            futures = [batch.submit(square, i) for i in range(5)]
            1 / 0
    assert all(f.cancelled() for f in futures)
    assert cf.wait(futures, timeout=5).not_done == set()
    assert rc.db_query({"label": label}, keys=["msg_id"]) == []


def test_batch_submit_ext_map_and_cancel_inside_the_block(rc):
    ex = rc.executor(label="not-the-batch-label")
    with ex.batch(label="batch-mixed", priority=1) as batch:
        plain = batch.submit(square, 2)
        ext = batch.submit_ext(divide, (9, 3), retries=1)
        dropped = batch.submit(square, 3)
        squares = batch.map(square, range(5), chunksize=2)
        assert dropped.cancel()
        with pytest.raises(RuntimeError, match="once the batch is sent"):
            next(squares)
    assert (plain.result(30), ext.result(30)) == (4, 3)
    assert list(squares) == [0, 1, 4, 9, 16]
    assert dropped.cancelled() and batch.label == "batch-mixed"
    records = rc.db_query({"msg_id": {"$in": plain.msg_ids + ext.msg_ids + dropped.msg_ids}},
                          keys=["label", "metadata"])
    assert len(records) == 2 and {r["label"] for r in records} == {"batch-mixed"}
    with pytest.raises(RuntimeError, match="inside its with block"):
        batch.submit(square, 1)


# -- 3. errors, imap, the client-wide bound ---------------------------------------------------
def test_a_remote_error_says_what_failed(rc):
    ex = rc.executor()
    fut = ex.submit(divide, 1, 0)
    with pytest.raises(RemoteError) as info:
        fut.result(30)
    err = info.value
    assert err.task == fut.msg_ids[0] and err.task.msg_id == fut.msg_ids[0]
    assert err.task.call == "divide(1, 0)" and "(in divide(1, 0))" in str(err)
    assert (err.ename, err.evalue, err.engine_id in rc.ids) == \
        ("ZeroDivisionError", "division by zero", True)
    assert isinstance(err.__cause__, RemoteTraceback)
    assert "in divide" in str(err.__cause__) and err.traceback == str(err.__cause__)
    with pytest.raises(RemoteError) as info:
        list(ex.map(lambda x: 1 / x, [1, 2, 0, 4], chunksize=4))
    assert info.value.task.call == "<lambda>(0), item 3 of 4 in a map chunk"


def test_imap_unordered_ordered_and_return_exceptions(rc):
    lview = rc.load_balanced_view()
    assert sorted(lview.imap(square, range(30), max_outstanding=4)) == \
        [i * i for i in range(30)]
    assert list(lview.imap(divide, [3, 4], [1, 2], ordered=True)) == [3, 2]
    out = list(lview.imap(divide, [1, 1, 1], [1, 0, 2], ordered=True, return_exceptions=True))
    assert out[0] == 1 and out[2] == 0.5 and isinstance(out[1], RemoteError)
    stream = lview.imap(divide, [1, 1, 1], [1, 0, 2], ordered=True)
    assert next(stream) == 1
    with pytest.raises(RemoteError, match="division by zero"):
        list(stream)
    with pytest.raises(ValueError, match="max_outstanding"):
        lview.imap(square, [1], max_outstanding=0)


def test_imap_over_an_unbounded_generator_keeps_the_client_bounded(rc):
    pulled = 0

    def naturals():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    stream = rc.load_balanced_view().imap(square, naturals(), max_outstanding=10)
    try:
        for k, value in enumerate(stream, 1):
            assert pulled <= k + 10 and len(rc._pending) <= 10 and len(rc._throttle) <= 10
            assert int(value ** 0.5) ** 2 == value
            if k == 200:  # traced from here on only: tracing slows every allocation
                gc.collect()
                tracemalloc.start(12)
                before = tracemalloc.take_snapshot()
            if k == 800:
                gc.collect()
                after = tracemalloc.take_snapshot()
                break
    finally:
        tracemalloc.stop()
        stream.close()
    # the controller runs on a thread of this process: count only the client's memory
    controller = [tracemalloc.Filter(False, "*/taskhub/controller/*", all_frames=True)]
    grown = sum(stat.size_diff for stat in after.filter_traces(controller).compare_to(
        before.filter_traces(controller), "filename"))
    # 600 more tasks cost the client less than 300 kB (what stays is the session's bounded
    # window of the signatures it saw, against replays: ~150 bytes a reply)
    assert grown < 300_000, grown
    wait_until(lambda: not rc.outstanding, what="the tasks left in flight to be cancelled")


def test_imap_timeout_between_results(rc, gate):
    stream = rc.load_balanced_view().imap(hold, [str(gate.dir / "i")], [gate.release],
                                          timeout=0.2)
    with pytest.raises(TimeoutError, match="no result within 0.2s"):
        next(stream)


def test_the_client_wide_bound_blocks_submits_or_times_out(rc, gate):
    rc.max_outstanding, rc.submit_timeout = 2, 0.2
    ex = rc.executor()
    held = [gate.submit(ex, i) for i in range(2)]
    with pytest.raises(TimeoutError, match="max_outstanding"):
        ex.submit(square, 1)
    with pytest.raises(TimeoutError, match="max_outstanding"):
        rc.load_balanced_view().apply_async(square, 1)
    rc.submit_timeout = None
    results = []
    submitter = threading.Thread(target=lambda: results.append(ex.submit(square, 3).result(30)))
    submitter.start()
    submitter.join(0.3)
    assert submitter.is_alive() and len(rc._throttle) == 2  # waiting for room
    gate.open()
    submitter.join(30)
    assert results == [9] and [f.result(30) for f in held] == [0, 1]
    with pytest.raises(ValueError, match="max_outstanding must be a positive integer"):
        rc.max_outstanding = 0


# -- 4. task groups ---------------------------------------------------------------------------
def test_every_task_records_its_task_group(rc):
    group = rc.task_group_id
    lb = rc.load_balanced_view().apply_async(square, 2)
    direct = rc[rc.ids[0]].apply_async(square, 3)
    own = rc.executor(task_group_id="my-own-group").submit(square, 4)
    for f in (lb, direct, own):
        f.result(30)
    found = {r["msg_id"]: r["task_group"] for r in rc.db_query(
        {"msg_id": {"$in": lb.msg_ids + direct.msg_ids + own.msg_ids}}, keys=["task_group"])}
    assert found == {lb.msg_ids[0]: group, direct.msg_ids[0]: group,
                     own.msg_ids[0]: "my-own-group"}
    assert [r["msg_id"] for r in rc.db_query({"task_group": "my-own-group"})] == own.msg_ids


def test_reload_tasks_from_another_client(cluster, rc, gate):
    ex = rc.executor(task_group_id=f"reload-{id(rc)}")
    pending = gate.submit(ex, "late", targets=rc.ids[0])
    done = ex.submit_ext(square, (9,), targets=rc.ids[1])
    failed = ex.submit_ext(divide, (1, 0), targets=rc.ids[1])
    failed.exception(30)
    with cluster.client() as other:
        other.task_group_id = ex.task_group_id
        reloaded = other.executor().reload_tasks()
        assert [f.msg_ids for f in reloaded] == [pending.msg_ids, done.msg_ids, failed.msg_ids]
        assert reloaded[1].done() and reloaded[1].result() == 81
        assert reloaded[2].exception(30).ename == "ZeroDivisionError"
        assert not reloaded[0].done()
        gate.open()
        assert reloaded[0].result(30) == "late"
    with pytest.raises(KeyError, match="no task in the task database has task group "
                                       "'no-such-group'; known groups, newest first: "):
        rc.reload_tasks("no-such-group")


SUBMITTER = """
import json, os, sys, time
import taskhub

def hold(release, value):
    while not os.path.exists(release):
        time.sleep(0.01)
    return value

profile_dir, group, release = sys.argv[1:4]
rc = taskhub.Client(profile_dir=profile_dir)
rc.task_group_id = group
ex = rc.executor()
first, second = rc.wait_for_engines(2, timeout=30)[:2]
pending = [ex.submit_ext(hold, (release, i), targets=first) for i in range(2)]
finished = [ex.submit_ext(pow, (2, i), targets=second) for i in range(3)]
[f.result(30) for f in finished]  # the hub saw the earlier ones first: same socket
print(json.dumps([f.msg_ids[0] for f in pending + finished]), flush=True)
time.sleep(600)  # until SIGKILL
"""

RELOADER = """
import json, sys
import taskhub

profile_dir, group, release = sys.argv[1:4]
rc = taskhub.Client(profile_dir=profile_dir)
futures = rc.reload_tasks(group)
done_at_once = [f.done() for f in futures]
open(release, "w").close()
print(json.dumps({"ids": [f.msg_ids[0] for f in futures], "done_at_once": done_at_once,
                  "results": [f.result(30) for f in futures]}))
"""


def test_reload_tasks_in_a_new_process_after_sigkill_of_the_submitter(cluster, tmp_path):
    group, release = f"killed-{os.getpid()}", str(tmp_path / "release")
    args = [str(cluster.profile_dir), group, release]
    submitter = subprocess.Popen([sys.executable, "-c", SUBMITTER, *args],
                                 stdout=subprocess.PIPE, text=True)
    try:
        ids = json.loads(submitter.stdout.readline())
    finally:
        submitter.send_signal(signal.SIGKILL)
        submitter.wait(10)
    assert submitter.returncode == -signal.SIGKILL
    reloader = subprocess.run([sys.executable, "-c", RELOADER, *args], capture_output=True,
                              text=True, timeout=60)
    assert reloader.returncode == 0, reloader.stderr
    out = json.loads(reloader.stdout)
    assert out["ids"] == ids
    assert out["done_at_once"] == [False, False, True, True, True]
    assert out["results"] == [0, 1, 1, 2, 4]


# -- 5. callables by name, tasks that submit tasks ---------------------------------------------
def test_callables_by_name(rc):
    ex = rc.executor()
    assert ex.submit("math:factorial", 5).result(30) == 120
    assert ex.submit("os.path:join", "a", "b").result(30) == os.path.join("a", "b")
    assert rc.load_balanced_view().apply_sync("operator:add", 2, 3) == 5
    assert rc.load_balanced_view().map_sync("math:sqrt", [4, 9]) == [2, 3]
    assert list(ex.map("builtins:abs", [-1, -2])) == [1, 2]
    with pytest.raises(RemoteError, match="cannot import module 'no_such_module'") as info:
        ex.submit("no_such_module:f").result(30)
    assert info.value.ename == "ModuleNotFoundError"
    with pytest.raises(RemoteError, match="cannot find 'nope' in module 'math'"):
        ex.submit("math:nope", 1).result(30)
    with pytest.raises(ValueError, match="is not a callable's name"):
        ex.submit("math:", 1)
    with pytest.raises(TypeError, match="expected a callable"):
        ex.submit(42)


def test_a_module_the_engine_cannot_import_says_where_it_looked_and_what_to_do(tmp_path):
    """A package beside the user's script is not where an engine looks, until the engine
    is started with --work-dir there (ipcluster start --work-dir passes it on)."""
    from conftest import LoopbackCluster
    scripts = tmp_path / "scripts"
    (scripts / "pkgdemo").mkdir(parents=True)
    (scripts / "pkgdemo" / "__init__.py").write_text("")
    (scripts / "pkgdemo" / "work.py").write_text("def square(x):\n    return x * x\n")
    cluster = LoopbackCluster(tmp_path / "profile", n=1).start()
    try:
        with cluster.client() as rc:
            plain = Executor(view=rc.load_balanced_view(targets=rc.ids))
            with pytest.raises(RemoteError) as info:
                plain.submit("pkgdemo.work:square", 3).result(30)
            message = str(info.value)
            assert "cannot import module 'pkgdemo.work' for the callable " \
                   "'pkgdemo.work:square': No module named 'pkgdemo'" in message
            assert f"runs in {os.getcwd()} and looked on sys.path:" in message
            assert "start the engines with the directory that holds it: `ipcluster start " \
                   "--work-dir DIR` / `ipengine --work-dir DIR`, or PYTHONPATH=DIR" in message
            first = rc.ids
            cluster.add_engine("--work-dir", str(scripts))
            rc.wait_for_engines(2, timeout=30)
            there = Executor(view=rc.load_balanced_view(
                targets=[i for i in rc.ids if i not in first]))
            assert there.submit("pkgdemo.work:square", 3).result(30) == 9
            assert there.submit(os.getcwd).result(30) == str(scripts)
    finally:
        cluster.stop()


# -- constructor keywords are defaults, as in qbfutures ----------------------------------------
def test_executor_keywords_are_task_defaults_on_the_default_profile(tmp_path, monkeypatch):
    """`taskhub.Executor(priority=5)` connects to the default profile's cluster; every task
    takes the keywords as its options (recorded in the task DB)."""
    from conftest import LoopbackCluster
    monkeypatch.setenv("TASKHUB_DIR", str(tmp_path))
    cluster = LoopbackCluster(tmp_path / "profile_default", n=1).start()
    try:
        with taskhub.Executor(priority=5, label="farm") as ex:
            assert ex._owns_client and ex.client.connection_file.parent.parent == \
                tmp_path / "profile_default"
            fut = ex.submit(square, 4)
            assert fut.result(30) == 16
            client = ex.client
        assert client._closed  # its own client goes with it
        with cluster.client() as rc:
            [rec] = rc.db_query({"msg_id": fut.msg_ids[0]}, keys=["label", "metadata"])
            assert rec["label"] == "farm" and rec["metadata"]["priority"] == 5
            with taskhub.Executor(client=rc, retries=1) as ex:
                assert not ex._owns_client and ex.submit(square, 5).result(30) == 25
            assert not rc._closed
            with taskhub.Executor(profile_dir=cluster.profile_dir) as ex:
                assert ex.submit(square, 6).result(30) == 36
    finally:
        cluster.stop()


def test_executor_place_errors_are_clear(rc, tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="give an Executor one place to run: a Client, a "
                                        "view or a profile, not client and profile"):
        taskhub.Executor(client=rc, profile="x")
    with pytest.raises(TypeError, match="an Executor runs on a Client or a LoadBalancedView, "
                                        "not int"):
        taskhub.Executor(3)
    monkeypatch.setenv("TASKHUB_DIR", str(tmp_path))
    with pytest.raises(OSError, match="profile_default"):
        taskhub.Executor(cpus=4)  # nothing running there


def test_executor_with_a_bad_default_closes_the_client_it_made(cluster):
    threads = len([t for t in threading.enumerate() if t.name == "taskhub-client-io"])
    with pytest.raises(Exception, match="priority"):
        taskhub.Executor(profile_dir=cluster.profile_dir, priority="high")
    wait_until(lambda: len([t for t in threading.enumerate()
                            if t.name == "taskhub-client-io"]) <= threads,
               what="the executor's own client to close")


# -- endless inputs: map(buffersize=), imap(chunksize=) ----------------------------------------
def test_map_with_buffersize_reads_an_endless_input_as_results_go_out(rc):
    ex = rc.executor()
    read = []

    def endless():
        for i in itertools.count():
            read.append(i)
            yield i

    results = ex.map(square, endless(), buffersize=4)
    assert [next(results) for _ in range(10)] == [i * i for i in range(10)]
    assert len(read) <= 10 + 4  # at most buffersize tasks ahead of what was given out
    results.close()
    results = ex.map(divide, [1, 2, 3], [1, 1, 1], max_outstanding=2, chunksize=2)
    assert list(results) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="buffersize must be a positive integer, not 0"):
        ex.map(square, endless(), buffersize=0)
    with pytest.raises(TypeError, match="as buffersize= or max_outstanding=, not both"):
        ex.map(square, [1], buffersize=2, max_outstanding=3)


def test_imap_chunksize_sends_one_task_per_chunk(rc):
    lview = rc.load_balanced_view()
    before = len(rc.hub_history())
    got = list(lview.imap(square, iter(range(10)), ordered=True, chunksize=4,
                          max_outstanding=2))
    assert got == [i * i for i in range(10)]
    assert len(rc.hub_history()) - before == 3  # 4 + 4 + 2 items
    got = list(lview.imap(divide, [1, 2, 3, 4], [1, 0, 1, 1], chunksize=2, ordered=True,
                          return_exceptions=True))
    # 2/0 fails its whole chunk: its error stands for each of the chunk's two items
    assert got[2:] == [3.0, 4.0] and got[0] is got[1]
    assert isinstance(got[0], RemoteError) and got[0].ename == "ZeroDivisionError"
    with pytest.raises(ValueError, match="chunksize must be a positive integer, not 0"):
        lview.imap(square, [1], chunksize=0)


# -- task groups: a typo is an error, not [] ---------------------------------------------------
def test_reload_tasks_of_an_unknown_group_names_the_known_ones(rc):
    ex = rc.executor(task_group_id="nightly-render-2024")
    assert ex.submit(square, 2).result(30) == 4
    with pytest.raises(KeyError) as info:
        rc.reload_tasks("nightly-rendr-2024")
    assert str(info.value).startswith(
        "no task in the task database has task group 'nightly-rendr-2024' (did you mean "
        "'nightly-render-2024'?); known groups, newest first: 'nightly-render-2024'")
    with rc.executor() as fresh:  # its own group, nothing sent yet: nothing to reload
        assert fresh.reload_tasks() == []
    assert rc.reload_tasks() is not None


TOOL = '''
import json, sys
import taskhub

def triple(x):
    return 3 * x

def add_path(path):
    import sys
    if path not in sys.path:
        sys.path.insert(0, path)

def main():
    rc = taskhub.Client(profile_dir=sys.argv[1])
    rc[:].apply_sync(add_path, sys.argv[2])  # engines share this machine's files
    with rc.executor() as ex:
        by_main = ex.submit("__main__:triple", 5)
        by_module = ex.submit("{module}:triple", 6)
        missing = ex.submit("__main__:no_such_function", 1)
        out = {{"main": by_main.result(30), "module": by_module.result(30),
               "spec": by_main.fname}}
        try:
            missing.result(30)
        except taskhub.RemoteError as e:
            out["missing"] = [e.ename, e.evalue]
    print(json.dumps(out))

if __name__ == "__main__":
    main()
'''


def test_python_dash_m_submits_its_own_main_function_by_name(cluster, tmp_path):
    module = f"th_tool_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(TOOL.format(module=module))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    run = subprocess.run([sys.executable, "-m", module, str(cluster.profile_dir),
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert (out["main"], out["module"], out["spec"]) == (15, 18, f"{module}:triple")
    assert out["missing"][0] == "AttributeError"
    assert f"cannot find 'no_such_function' in module '{module}'" in out["missing"][1]


def _follow_chain(rc, first):
    """[(depth, group), ...] of the descend tasks that returned, and the error of the one
    that could not submit its child."""
    seen, fut = [], first
    while True:
        try:
            depth, child, group = fut.result(30)
        except RemoteError as e:
            return seen, e
        seen.append((depth, group))
        # the child's request and its parent's reply reach the hub on different sockets
        wait_until(lambda: child in rc.hub_history(), what="the hub to see the child task")
        fut = rc.get_result(child)


def test_tasks_submit_tasks_and_the_fifth_level_fails_to_schedule(rc):
    ex = rc.executor(task_group_id=f"nested-{id(rc)}")
    seen, error = _follow_chain(rc, ex.submit(descend))
    # levels 1-3 returned; level 4 ran, but could not schedule level 5
    assert seen == [(d, ex.task_group_id) for d in (1, 2, 3)]
    assert error.ename == "RecursionLimitExceeded"
    assert "depth 5" in error.evalue and "recursion limit of 4" in error.evalue
    assert "TASKHUB_RECURSION_LIMIT" in error.evalue
    assert len(rc.db_query({"task_group": ex.task_group_id}, keys=["msg_id"])) == 4


def test_taskhub_recursion_limit_raises_the_limit(rc, monkeypatch):
    monkeypatch.setenv("TASKHUB_RECURSION_LIMIT", "6")
    seen, error = _follow_chain(rc, rc.executor().submit(descend))
    assert [d for d, _ in seen] == [1, 2, 3, 4, 5]
    assert "depth 7" in error.evalue and "recursion limit of 6" in error.evalue


def test_engine_client_is_only_for_tasks():
    with pytest.raises(taskhub.TaskhubError, match="for code running in a task"):
        taskhub.engine_client()


# -- 6. serialization strategies, registered functions ---------------------------------------
def test_data_strategies_on_the_cluster(rc):
    as_json = rc.executor(serializer=Serializer(data="json"))
    assert as_json.submit(lambda xs, d: (type(xs).__name__, d), (1, 2), {"k": 1}).result(30) \
        == ("list", {"k": 1})
    assert as_json.check_strategies(square, (1, 2))[1] == [[1, 2]]
    with pytest.raises(TypeError, match="json strategy carries only JSON types"):
        as_json.submit(square, {1, 2})
    as_pickle = rc.executor(serializer=Serializer(code="pickle", data="pickle"))
    assert as_pickle.submit("math:factorial", 4).result(30) == 24
    assert as_pickle.submit(os.path.join, "a", "b").result(30) == "a/b"
    with pytest.raises(TypeError, match="pickle strategy sends functions by name"):
        as_pickle.submit(lambda: 1)


def test_a_client_wide_serializer_applies_to_views(rc):
    rc.serializer = Serializer(data="json", result="json")
    ar = rc.load_balanced_view().apply_async(lambda t: t, (1, 2))
    assert ar.get(30) == [1, 2]
    [rec] = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["metadata", "buffers"])
    assert rec["metadata"]["result_serializers"] == ["json"]
    assert json.loads(rec["buffers"][1]) == [[[1, 2]], {}]
    assert rc.get_result(ar.msg_ids[0]).get(30) == [1, 2]


def test_result_serializers_are_tried_in_order(rc):
    first_json = rc.executor(result_serializers=["json", "pickle"])
    assert first_json.submit(lambda: {"a": (1, 2)}).result(30) == {"a": [1, 2]}
    assert first_json.submit(lambda: {1, 2}).result(30) == {1, 2}
    with pytest.raises(RemoteError) as info:
        rc.executor(result_serializers=["json"]).submit(lambda: {1, 2}).result(30)
    assert info.value.ename == "ResultSerializationError"
    assert "json: TypeError" in info.value.evalue
    with pytest.raises(RemoteError) as info:
        first_json.submit(lambda: lambda: 1).result(30)
    assert "json: TypeError" in info.value.evalue and "pickle: " in info.value.evalue
    with pytest.raises(ValueError, match="unknown serialization strategy 'yaml'"):
        rc.executor(result_serializers=["yaml"])


def test_registered_functions_send_only_their_id(rc):
    payload = bytes(1_000_000)

    def big(x):
        return len(payload) + x

    fid = rc.register_function(big)
    assert fid == rc.register_function(big)  # the same bytes, the same id
    lview = rc.load_balanced_view()
    ar = lview.map_async(fid, range(6), chunksize=2)
    assert ar.get(30) == [1_000_000 + x for x in range(6)]
    assert lview.apply_sync(fid, 1) == 1_000_001
    assert rc.executor().submit(fid, 2).result(30) == 1_000_002
    records = rc.db_query({"msg_id": {"$in": ar.msg_ids}}, keys=["buffers"])
    assert all(len(r["buffers"][0]) < 200 for r in records)
    with pytest.raises(RemoteError, match="no function is registered with id 'fn-0+'"):
        lview.apply_sync("fn-" + "0" * 32)
