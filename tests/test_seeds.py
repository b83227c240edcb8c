"""The examples of the documents taskhub was specified from (shared/seeds/), run as
written there, adapted only to taskhub's names: qbfutures' Executor, papyros' execute over
a bounded queue, the Globus Compute executor's task groups.

A cluster of 4 engines runs in the `default` profile of a $TASKHUB_DIR of this module's
own, so `taskhub.Executor()` finds it as the seeds' `Executor()` finds its farm; the
engines run in a directory holding `awesome_package` (`ipengine --work-dir`), so
'awesome_package.the_tool:qube_handler' imports there.
"""
import concurrent.futures
import os
import queue
import threading

import pytest
from conftest import LoopbackCluster

import taskhub
from taskhub import Executor

pytestmark = pytest.mark.timeout(180)

THE_TOOL = '''
def qube_handler(*args):
    return "handled " + " ".join(map(str, args))
'''


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """4 engines in the default profile of a TASKHUB_DIR of our own, run in a work dir."""
    home = tmp_path_factory.mktemp("taskhub")
    work = tmp_path_factory.mktemp("work")
    (work / "awesome_package").mkdir()
    (work / "awesome_package" / "__init__.py").write_text("")
    (work / "awesome_package" / "the_tool.py").write_text(THE_TOOL)
    patch = pytest.MonkeyPatch()
    patch.setenv("TASKHUB_DIR", str(home))
    cluster = LoopbackCluster(home / "profile_default", n=0)
    cluster.start()
    for _ in range(4):
        cluster.add_engine("--work-dir", str(work))
    with cluster.client() as rc:
        rc.wait_for_engines(4, timeout=60)
    yield cluster
    cluster.stop()
    patch.undo()


def my_function(a, b, key=None):
    return f"Awesome results! {a} {b} {key}"


def a_function(text):
    return text.upper()


def another_function():
    return "another"


def mapping_function(x):
    return x + 100


# -- qbfutures ------------------------------------------------------------------------------
def test_qbfutures_basic_usage_and_submit_ext(farm):
    executor = taskhub.Executor()
    future = executor.submit(my_function, 1, 2, key="value")
    assert future.result() == "Awesome results! 1 2 value"
    # Qube's job options are taskhub's task options: name (the label), priority, ...
    future = executor.submit_ext(my_function, (3, 4), name="Job Name", priority=3)
    assert future.result() == "Awesome results! 3 4 None"
    results_iter = executor.map(mapping_function, range(10), priority=10)
    assert list(results_iter) == list(range(100, 110))
    executor.shutdown()
    with farm.client() as rc:
        [rec] = rc.db_query({"msg_id": future.msg_ids[0]}, keys=["label", "metadata"])
        assert rec["label"] == "Job Name" and rec["metadata"]["priority"] == 3


def test_qbfutures_constructor_keywords_are_defaults(farm):
    executor = Executor(priority=4, label="farm")   # qbfutures: Executor(cpus=4, group='farm')
    futures = [executor.submit(mapping_function, i) for i in range(3)]
    assert [f.result() for f in futures] == [100, 101, 102]
    executor.shutdown()
    with farm.client() as rc:
        records = rc.db_query({"msg_id": {"$in": [f.msg_ids[0] for f in futures]}},
                              keys=["label", "metadata"])
        assert {(r["label"], r["metadata"]["priority"]) for r in records} == {("farm", 4)}


def test_qbfutures_batch_mode(farm):
    executor = Executor()
    with executor.batch(name="A set of functions", priority=4) as batch:
        f1 = batch.submit(a_function, 'input')
        f2 = batch.submit_ext(another_function, name='work name')
        map_iter = batch.map(mapping_function, range(10))
    assert f1.result() == "INPUT"          # qbfutures' docs write f1.results()
    assert f2.result() == "another"
    assert list(map_iter) == list(range(100, 110))
    assert batch.label == "A set of functions"
    with executor.client as rc:
        assert rc.db_count({"label": "A set of functions"}) == 11  # f1 and 10 map items
        assert rc.db_count({"msg_id": f2.msg_ids[0], "label": "work name"}) == 1
    executor.shutdown()


def test_qbfutures_callables_by_name_and_the_lambda_workaround(farm):
    executor = Executor()
    args = ("a", 1)
    assert executor.submit('awesome_package.the_tool:qube_handler', *args).result() == \
        "handled a 1"
    assert executor.submit(eval, 'a + b', dict(a=1, b=2)).result() == 3
    executor.shutdown()


def recurse(level_seen):
    """qbfutures' recursion: each job schedules the next; TASKHUB_DEPTH is QBLVL."""
    depth = int(os.environ["TASKHUB_DEPTH"])
    try:
        child = taskhub.engine_client().executor().submit(recurse, level_seen + [depth])
    except taskhub.error.RecursionLimitExceeded as e:
        return level_seen + [depth], str(e)
    return child.result(60)


def test_qbfutures_recursion_limit(farm):
    with Executor() as executor:    # the default: 4 levels; the 5th fails to schedule
        levels, why = executor.submit(recurse, []).result(120)
    assert levels == [1, 2, 3, 4]
    assert why.startswith("this task would run at depth 5 (a task submitted by a task, 4 "
                          "levels down from the first), beyond the recursion limit of 4")
    os.environ["TASKHUB_RECURSION_LIMIT"] = "2"   # qbfutures: QBFUTURES_RECURSION_LIMIT
    try:
        with Executor() as executor:
            levels, _ = executor.submit(recurse, []).result(120)
    finally:
        del os.environ["TASKHUB_RECURSION_LIMIT"]
    assert levels == [1, 2]


# -- papyros: execute(tasks, ordered=, timeout=, chunksize=) over a bounded queue ------------
def factorize(n):
    '''Return the prime factors of an integer.'''
    factors, d, m = [], 2, n
    while d * d <= m:
        while m % d == 0:
            factors.append(d)
            m //= d
        d += 1
    if m > 1:
        factors.append(m)
    return (n, factors)


def test_papyros_execute(farm):
    """papyros' dispatcher.execute is lview.imap; its `size=N` bound is max_outstanding."""
    rc = farm.client()
    dispatcher = rc.load_balanced_view()
    out = {}
    for n, factors in dispatcher.imap(factorize, (i for i in range(1, 1000))):
        out[n] = factors
    assert len(out) == 999 and out[360] == [2, 2, 2, 3, 3, 5]
    ordered = list(dispatcher.imap(factorize, range(1, 50), ordered=True, timeout=30,
                                   chunksize=8))
    assert [n for n, _ in ordered] == list(range(1, 50))
    # exceptions handled without breaking the loop: call next() explicitly
    iter_results = dispatcher.imap(lambda i: 1 // (i % 5), range(1, 11), ordered=True,
                                   return_exceptions=True)
    got = []
    for _ in range(1, 11):
        result = next(iter_results)
        got.append("Exception raised: " + result.ename if isinstance(result, Exception)
                   else result)
    assert got.count("Exception raised: ZeroDivisionError") == 2
    rc.close()


def test_papyros_bounded_queue_of_tasks_from_another_thread(farm):
    """A producer pushes to a bounded queue (papyros' make_queue(size=N)); the tasks go
    out as they arrive, at most 4 in flight, and results are popped with a timeout."""
    tasks = queue.Queue(maxsize=5)
    stop = object()

    def producer():
        for i in range(1, 60):
            tasks.put(i)
        tasks.put(stop)

    threading.Thread(target=producer, daemon=True).start()
    pushed = iter(tasks.get, stop)
    with farm.client() as rc:
        results = rc.load_balanced_view().imap(factorize, pushed, max_outstanding=4,
                                               timeout=30, chunksize=2)
        assert sorted(n for n, _ in results) == list(range(1, 60))


# -- Globus Compute: task_group_id, reload_tasks, as_completed ---------------------------------
def double(x):
    return f"{x} -> {x * 2}"


def task_kernel(num):
    return f"your Globus Compute logic result, from task: {num}"


def test_globus_compute_results_as_they_arrive(farm):
    with Executor() as gce:
        futs = [gce.submit(double, i) for i in range(10)]
        assert [f.result() for f in futs] == [f"{i} -> {i * 2}" for i in range(10)]
        futs = [gce.submit(double, i) for i in range(10, 20)]
        received = [f.result() for f in concurrent.futures.as_completed(futs)]
    assert sorted(received) == sorted(f"{i} -> {i * 2}" for i in range(10, 20))


def test_globus_compute_reload_tasks_by_task_group_id(farm):
    with Executor() as gce:
        task_group_id = gce.task_group_id
        futures = [gce.submit(task_kernel, i + 1) for i in range(5)]
        [f.result() for f in futures]
    # a new session, given the task group id
    with Executor() as gce:
        gce.task_group_id = task_group_id
        futures = gce.reload_tasks()
    results = [f.result(timeout=10) for f in futures]
    assert results == [task_kernel(i + 1) for i in range(5)]
    with Executor(task_group_id=task_group_id) as gce:
        futures = gce.reload_tasks()
        received = [f.result() for f in concurrent.futures.as_completed(futures)]
    assert sorted(received) == sorted(results)
