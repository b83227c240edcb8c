"""The ipyparallel spellings taskhub supports (issue 15), each checked on a real cluster.

tests/test_conformance.py runs ipyparallel's own suite as the outside check; these are ours.
"""
import concurrent.futures
import os
import tempfile
import time
from datetime import datetime

import pytest
from conftest import wait_for_file, wait_until

from taskhub import Reference, interactive
from taskhub.client import AsyncResult
from taskhub.error import CompositeError, RemoteError, TimeoutError


def pid():
    import os
    return os.getpid()


def wait_recorded(rc, ar):
    """Until the hub's task DB holds the results of `ar` (it records as replies pass)."""
    wait_until(lambda: all(r["completed"] for r in rc.db_query(
        {"msg_id": {"$in": ar.msg_ids}}, keys=["completed"])) and len(rc.db_query(
            {"msg_id": {"$in": ar.msg_ids}}, keys=["msg_id"])) == len(ar.msg_ids),
        what="results recorded")


def test_len_iteration_and_negative_ids(rc):
    assert len(rc) == len(rc.ids) == 2
    assert [v.targets for v in rc] == rc.ids
    assert rc[-1].targets == rc.ids[-1]
    assert rc[[-1, 0]].targets == [rc.ids[-1], rc.ids[0]]
    assert rc.load_balanced_view(-1).targets == [rc.ids[-1]]
    assert rc.load_balanced_view("all").targets is None
    with pytest.raises(IndexError):
        rc[-3]


def test_clear_empties_the_namespaces_of_its_targets(rc):
    rc[:].push({"a": 5}, block=True)
    rc.clear(targets=rc.ids[-1], block=True)
    assert rc[rc.ids[0]].get("a") == 5
    with pytest.raises(RemoteError, match="NameError"):
        rc[-1].get("a")
    ar = rc.clear()
    assert isinstance(ar, AsyncResult) and ar.get(10) == [None, None]
    with pytest.raises(CompositeError):
        rc[:].get("a")


def test_direct_view_all_is_lazy_and_views_have_len_and_history(rc):
    view = rc.direct_view("all")
    assert view.targets == "all" and len(view) == len(rc.ids) == len(rc[:1]) + 1
    ar = view.apply_async(pid)
    assert len(set(ar.get(10))) == 2
    assert view.history == ar.msg_ids and set(ar.msg_ids) <= set(rc.history)
    assert view.set_flags(block=True) is view and view.block
    assert view.wait([ar], timeout=10)
    assert rc.wait([concurrent.futures.Future()], timeout=0) is False


def test_apply_takes_a_keyword_named_f(rc):
    def echo(**kwargs):
        return kwargs
    assert rc[-1].apply_sync(echo, f=5) == {"f": 5}


def test_metadata_timestamps_are_tz_aware_datetimes(rc):
    ar = rc.load_balanced_view().apply_async(time.sleep, 0.05)
    ar.get(10)
    for key in ("submitted", "started", "completed", "received"):
        assert isinstance(ar[key], datetime) and ar[key].tzinfo is not None, key
    assert ar.completed - ar.submitted > ar.completed - ar.completed  # subtracting works
    assert ar["engine_id"] == ar.engine_id in rc.ids
    with pytest.raises(KeyError):
        ar["nonsense"]
    assert "stdout" in dir(ar)
    assert 0 < ar.serial_time <= ar.wall_time
    assert ar.elapsed == ar.wall_time


def test_wall_time_is_unknown_until_done(rc, tmp_path):
    gate = tmp_path / "gate"
    ar = rc.load_balanced_view().apply_async(wait_for_file, str(gate))
    with pytest.raises(TimeoutError):
        ar.wall_time
    with pytest.raises(TimeoutError):
        ar.serial_time
    gate.touch()
    ar.get(10)
    assert ar.wall_time > 0


def test_get_dict_split_join_and_progress(rc):
    ar = rc[:].apply_async(pid)
    by_engine = ar.get_dict(10)
    assert sorted(by_engine) == rc.ids and list(by_engine.values()) == ar.get()
    children = ar.split()
    assert [c.get(10) for c in children] == ar.get()
    assert children[0].split() == (children[0],)
    assert AsyncResult.join(*children).get(10) == ar.get()
    amr = rc.load_balanced_view().map_async(lambda x: x, range(4))
    with pytest.raises(ValueError):
        amr.get_dict(10)  # four tasks on two engines
    assert [s.get(10) for s in amr.split()] == [[[0]], [[1]], [[2]], [[3]]]
    assert amr.progress == len(amr) == 4


def test_get_return_exceptions_and_first_exception(rc):
    def fail_on_1(x):
        if x == 1:
            raise ValueError("one")
        return x
    amr = rc.load_balanced_view().map_async(fail_on_1, range(3))
    result = amr.get(10, return_exceptions=True)
    assert result[0] == 0 and result[2] == 2 and isinstance(result[1], RemoteError)
    with pytest.raises(CompositeError) as info:
        amr.get()
    assert isinstance(info.value, RemoteError) and info.value.elist[0][0] == "ValueError"
    with pytest.raises(RemoteError, match="ValueError"):
        info.value.raise_exception(0)
    assert any("ValueError" in line for line in info.value.render_traceback())
    done, pending = amr.wait(timeout=10, return_when=concurrent.futures.FIRST_EXCEPTION)
    assert done and all(d.done() for d in done)


def test_reference_and_interactive_resolve_on_the_engine(rc):
    view = rc[-1]
    view["data"] = [1, 2, 3]
    assert view.apply_sync(len, Reference("data")) == 3
    view.execute("double = lambda x: 2 * x", block=True)
    assert view.apply_sync(Reference("double"), 4) == 8
    with pytest.raises(RemoteError, match="NameError"):
        view.apply_sync(len, Reference("nowhere"))

    @interactive
    def read_data():
        return data  # noqa: F821 - the engine's name

    assert view.apply_sync(read_data) == [1, 2, 3]


def test_remote_and_parallel_decorators(rc):
    view = rc.load_balanced_view()

    @view.remote(block=True)
    def where():
        import os
        return os.getpid()

    assert where() != os.getpid()

    @view.parallel(block=True)
    def double(x):
        return 2 * x

    assert double.map(range(5)) == [0, 2, 4, 6, 8]


def test_sync_imports_and_run(rc, tmp_path, capsys):
    view = rc[-1]
    with view.sync_imports():
        import json  # noqa: F401
    assert "importing json on engine(s)" in capsys.readouterr().out
    assert view.apply_sync(interactive(lambda: "json" in globals()))
    with view.importer:
        import re  # noqa: F401
    assert view.apply_sync(interactive(lambda: "re" in globals()))
    ar = view.execute("print('out')", block=False)
    assert ar.wait_for_output(10) and ar.stdout == "out\n"
    script = tmp_path / "defs.py"
    script.write_text("def g():\n    return 5")
    view.run(str(script), block=True)
    assert view.apply_sync(Reference("g")) == 5


def test_local_results_metadata_and_purges(rc, tmp_path):
    rc.results["asdf"] = 5
    assert rc.metadata["asdf"]["msg_id"] == "asdf"
    rc.purge_local_results("asdf")
    assert "asdf" not in rc.results and "asdf" not in rc.metadata
    gate = tmp_path / "gate"
    ar = rc[-1].apply_async(wait_for_file, str(gate))
    with pytest.raises(RuntimeError):
        rc.purge_local_results("all")
    gate.touch()
    ar.get(10)
    wait_until(lambda: not rc.outstanding, what="nothing outstanding")
    rc.purge_local_results("all")
    rc.spin()
    rc[:].apply_sync(pid)
    wait_until(lambda: rc.queue_status()["unassigned"] == 0, what="hub idle")
    rc.purge_everything()
    assert rc.history == [] and len(rc.results) == 0


def test_display_outputs(rc, capsys):
    ar = rc[-1].execute("print(5555)", block=False)
    ar.get(10)
    wait_until(lambda: ar.stdout, what="stdout")
    capsys.readouterr()
    ar.display_outputs()
    assert capsys.readouterr().out == "5555\n"


def test_use_pickle_and_dill_keep_lambdas_working(rc):
    view = rc[:]
    view.use_pickle()
    assert view.apply_sync(lambda: 1) == [1, 1]
    view.use_dill()
    assert view.apply_sync(lambda: 2) == [2, 2]
    with pytest.raises(NotImplementedError, match="use_dill"):
        view.use_cloudpickle()


def test_broadcast_view_is_a_direct_view_of_its_targets(rc):
    view = rc.broadcast_view("all", is_coalescing=True, block=True)
    assert view.block and view.targets == "all"
    assert view.apply(lambda: 3) == [3, 3]


def test_execute_returns_its_async_result_and_blocking_waits(rc):
    ar = rc[:].execute("x = 41 + 1", block=True)
    assert isinstance(ar, AsyncResult) and ar.done()
    assert rc[:].execute("x", silent=True, block=True).execute_result == [None, None]
    with pytest.raises(CompositeError):
        rc[:].execute("1 / 0", block=True)


def test_scatter_flatten_and_gather_nonblocking(rc):
    view = rc[:]
    view.scatter("rank", rc.ids, flatten=True, block=True)
    assert view.pull("rank", block=True) == rc.ids
    view.scatter("part", list(range(6)), block=True)
    ar = view.gather("part", block=False)
    assert isinstance(ar, AsyncResult) and ar.get(10) == list(range(6))


def test_map_unordered_and_return_exceptions(rc):
    def slow(x):
        import time
        time.sleep(0.05 * x)
        return x
    lview = rc.load_balanced_view()
    amr = lview.map_async(slow, [6, 0, 0, 0], ordered=False)
    got = list(amr)
    assert sorted(got) == [0, 0, 0, 6] and got[0] == 0  # a fast one first, not the slow
    assert amr.get() == [6, 0, 0, 0]  # get() keeps submission order

    def inverse(x):
        return 1 / x
    amr = lview.map(inverse, [1, 0, 4], return_exceptions=True, block=False)
    got = list(amr)
    assert got[0] == 1 and isinstance(got[1], RemoteError) and got[2] == 0.25
    assert amr.get()[1] is got[1]


def test_imap_is_ordered_by_default_and_cancellable(rc):
    import itertools
    lview = rc.load_balanced_view()
    stream = lview.imap(lambda x: x, itertools.count(), max_outstanding=3)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.cancel()
    with pytest.raises(StopIteration):
        next(stream)


def test_reference_takes_an_expression(rc):
    view = rc[-1]
    view["g"] = [10, 20]
    assert view.apply_sync(lambda x: x, Reference("g[1]")) == 20
    with pytest.raises(SyntaxError):
        Reference("g[")


def test_dictdb_culls_by_count_and_by_size_and_returns_copies():
    from datetime import timezone
    from taskhub.controller.db.compat import DictDB

    def record(i, size):
        return {"submitted": datetime.now(timezone.utc), "buffers": [b"x" * size],
                "header": {"msg_id": f"m{i}"}}

    db = DictDB(record_limit=20, cull_fraction=0.2)
    for i in range(21):
        db.add_record(f"m{i}", record(i, 1))
    assert db.get_history() == [f"m{i}" for i in range(4, 21)]  # 0.2 * 20 oldest dropped
    db = DictDB(size_limit=1000, cull_fraction=0.2)
    for i in range(100):
        db.add_record(f"m{i}", record(i, 10))
    db.add_record("big", record(100, 1))  # 1001 bytes > 1000: down to <= 800
    assert len(db.get_history()) == 80 and db.get_history()[0] == "m21"
    got = db.get_record("big")
    got["header"]["msg_id"] = "changed"
    assert db.get_record("big")["header"]["msg_id"] == "m100"


def test_sqlitedb_and_init_record_as_ipyparallel_builds_them(tmp_path):
    from taskhub.controller.db.compat import SQLiteDB, init_record
    db = SQLiteDB(location=str(tmp_path), filename="ipp.db")
    header = {"msg_id": "abc", "session": "s1", "date": datetime.now().astimezone()}
    db.add_record("abc", init_record({"header": header, "content": {"a": 5},
                                      "metadata": {}, "buffers": [b"1"]}))
    rec = db.get_record("abc")
    assert (rec["client_uuid"], rec["buffers"], rec["content"]) == ("s1", [b"1"], {"a": 5})
    assert rec["submitted"] == header["date"]
    db.close()
    assert (tmp_path / "ipp.db").exists()


def test_client_rejects_misspelt_attributes_and_block_is_the_views_default(rc):
    with pytest.raises(AttributeError, match="did you mean 'block'"):
        rc.blok = 3
    rc.request_timeout = rc.request_timeout  # existing ones may be set
    rc.my_note, rc._scratch = 1, 2  # and new ones not spelt like an existing one
    rc.block = True
    try:
        assert rc[-1].block and rc.direct_view().block and rc.load_balanced_view().block
        assert rc[-1].apply(lambda: 7) == 7
    finally:
        rc.block = False
    assert not rc[:].block


def test_get_result_owner_block_and_async_wait_for_engines(rc):
    from taskhub.client import AsyncHubResult
    ar = rc[-1].apply_async(pid)
    ar.get(10)
    wait_recorded(rc, ar)
    mine = rc.get_result(ar.msg_ids[0], block=True)
    assert type(mine) is AsyncResult and mine.done() and mine.get() == ar.get()
    hub = rc.get_result(ar, owner=False)
    assert isinstance(hub, AsyncHubResult) and hub.get(10) == ar.get()
    assert rc.get_result([ar]).msg_ids == ar.msg_ids
    future = rc.wait_for_engines(len(rc), block=False)
    assert isinstance(future, concurrent.futures.Future) and future.result(10) == rc.ids


def test_executor_view_history_and_lazy_map(rc):
    from taskhub.client.imap import LazyMapIterator
    view = rc.load_balanced_view()
    ex = view.executor
    assert ex.view is view and isinstance(rc.executor().view, type(view))
    results = ex.map(lambda x: x, range(3))
    assert isinstance(results, LazyMapIterator) and list(results) == [0, 1, 2]
    assert len(view.history) == 3


def test_dotted_names_in_push_and_pull(rc):
    view = rc[-1]
    view.execute("class A: pass\na = A()\na.b = 128", block=True)
    assert view["a.b"] == 128
    view["a.b"] = 0
    assert view.pull("a.b", block=True) == 0


def test_hub_results_carry_the_hub_timestamps(rc):
    ar = rc[:].apply_async(time.sleep, 0.1)
    ar.get(10)
    wait_recorded(rc, ar)
    hub = rc.get_result(ar.msg_ids, owner=False, block=True)
    assert all(isinstance(s, datetime) for s in hub.submitted)
    assert 0 < hub.wall_time and hub.serial_time == ar.serial_time


def test_composite_error_renders_each_engine_and_method(rc, capsys):
    with pytest.raises(CompositeError) as info:
        rc[:].execute("1/0", block=True)
    e = info.value
    assert [info["method"] for *_, info in e.elist] == ["execute", "execute"]
    assert e._render_traceback_() == e.render_traceback()
    e.print_traceback()
    out = capsys.readouterr().out
    assert out.count(":execute]") == 2 and "ZeroDivisionError" in out
    e.tb_limit = 1
    assert "more exceptions" in e.render_traceback()[-1]


def test_view_get_result(rc):
    from taskhub.client import AsyncHubResult
    ar = rc[-1].apply_async(lambda: 5)
    ar.get(10)
    wait_recorded(rc, ar)
    assert rc[-1].get_result(ar.msg_ids[0]).get(10) == 5
    assert isinstance(rc[-1].get_result(ar.msg_ids[0], owner=False), AsyncHubResult)


# -- Cluster as ipyparallel code drives it (taskhub/cluster/clusterapi.py) ---------------

def mark_and_sleep(folder, seconds):
    """Sleep, interruptible by SIGUSR1, once a file in `folder` says so."""
    import os
    import signal
    import time

    def interrupt(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGUSR1, interrupt)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(seconds)


def test_cluster_steps_awaited_engine_sets_by_id_and_stop_is_idempotent():
    import asyncio
    import signal as signals

    from traitlets.config import Config

    from taskhub.cluster.cluster import Cluster

    async def steps():
        config = Config()
        config.EngineLauncher.engine_args = ["--log-level=10"]
        cluster = Cluster(n=1, cluster_id="steps", controller="local", engines="local",
                          controller_args=["--ping=250"], config=config)
        assert repr(cluster) == "<Cluster(cluster_id='steps')>"
        try:
            await cluster.start_controller()
            with pytest.raises(RuntimeError):
                await cluster.start_controller()
            assert cluster.controller.process.is_running()
            with await cluster.connect_client() as rc:
                assert rc.queue_status() == {"unassigned": 0} and rc.cluster is cluster
            first = await cluster.start_engines(2, "first")
            second = await cluster.start_engines(1)
            assert list(cluster.engines) == ["first", second] and first == "first"
            assert cluster.engine_set is cluster.engines["first"]
            assert repr(cluster).endswith(f"controller=<running>, engine_sets="
                                          f"['first', '{second}'])>")
            rc = await cluster.connect_client()
            try:
                assert rc.wait_for_engines(3, timeout=30) == [0, 1, 2]
                before = set(rc[:].apply_sync(os.getpid))
                # a signal reaches the running task of every engine
                marks = tempfile.mkdtemp()
                ar = rc[:].apply_async(mark_and_sleep, marks, 30)
                wait_until(lambda: len(os.listdir(marks)) == 3, what="sleeps running")
                await cluster.signal_engines(signals.SIGUSR1)   # every set
                results = ar.get(timeout=30, return_exceptions=True)
                assert [type(r).__name__ for r in results] == ["RemoteError"] * 3
                assert [r.ename for r in results] == ["KeyboardInterrupt"] * 3
                await cluster.stop_engines(second)
                wait_until(lambda: len(rc.ids) == 2, what="the engine of that set unregistered")
                with pytest.raises(KeyError):
                    await cluster.stop_engines(second)
                await cluster.restart_engines("first")
                wait_until(lambda: len(rc.ids) == 2 and not set(rc.ids) & {0, 1, 2},
                           what="new engines in place of the restarted ones")
                assert not before & set(rc[:].apply_sync(os.getpid))
                output = cluster.engines["first"].get_output()   # engines at log level 10
                assert all(f"Completed registration with id {i}" in output for i in rc.ids)
            finally:
                rc.close()
            await cluster.stop_engines()
            assert cluster.engines == {}
            await cluster.stop_controller()
            assert cluster.controller is None
            await cluster.stop_controller()      # idempotent
        finally:
            cluster.stop_cluster_sync()

    asyncio.run(steps())


def test_cluster_sync_twins_config_sections_and_to_from_dict(tmp_path):
    import json

    from traitlets.config import Config

    import taskhub
    from taskhub.cluster.cluster import Cluster
    from taskhub.cluster.launcher import LocalEngineSetLauncher
    from taskhub.cluster.launchernames import abbreviate_launcher_class, find_launcher_class
    from taskhub.cluster.launchers.mpi import MPIEngineSetLauncher

    assert find_launcher_class("MPI", "engine") is MPIEngineSetLauncher
    assert find_launcher_class("MPIEngineSetLauncher", "EngineSet") is MPIEngineSetLauncher
    assert find_launcher_class("taskhub.cluster.launcher.LocalEngineSetLauncher",
                               "engine") is LocalEngineSetLauncher
    assert abbreviate_launcher_class(MPIEngineSetLauncher) == "mpi"
    assert Cluster(engines="SGE").engine_launcher_class.kind == "sge"
    assert Cluster().cluster_id != Cluster().cluster_id

    # kwargs win over config.Cluster, which wins over the profile's Cluster section
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "ipcluster_config.json").write_text(json.dumps(
        {"Cluster": {"controller_args": ["--ping=300"], "n": 5, "engine_timeout": 10}}))
    config = Config()
    config.Cluster.engine_timeout = 20
    config.EngineLauncher.engine_args = ["--log-level=10"]
    cluster = Cluster(profile_dir=str(profile), n=2, config=config)
    assert (cluster.controller_args, cluster.engine_timeout, cluster.n) == \
        (["--ping=300"], 20, 2)
    assert cluster.profile_dir == str(profile) and cluster.config is config
    try:
        rc = cluster.start_and_connect_sync()
        assert sorted(rc.ids) == [0, 1] and rc.cluster is cluster
        assert cluster.engine_set.args == ["--log-level=10"]
        assert cluster.controller.config is config
        d = json.loads(json.dumps(cluster.to_dict()))          # JSON-able
        again = taskhub.Cluster.from_dict(d)
        assert not again.shutdown_atexit
        assert again.controller.process.pid == cluster.controller.process.pid
        assert list(again.engines) == list(cluster.engines)
        assert again.engine_set.n == 2
        assert again.engine_launcher_class is cluster.engine_launcher_class
        assert taskhub.Cluster.from_file(profile_dir=str(profile)).cluster_id == \
            cluster.cluster_id
        rc.close()
        again.stop_cluster_sync()                              # from the copy
        # (the copy sees a process gone as its command line empties, a moment before exit)
        wait_until(lambda: not cluster.any_running(), what="every process stopped")
    finally:
        cluster.stop_cluster_sync()                            # and again: no error


def test_cluster_manager_finds_running_clusters_and_forgets_stopped_ones():
    from taskhub.cluster.cluster import Cluster, ClusterManager

    manager = ClusterManager()
    key, made = manager.new_cluster(cluster_id="made", n=0)
    assert manager.get_cluster(key) is made
    with pytest.raises(KeyError):
        manager.new_cluster(cluster_id="made", n=0)
    manager.remove_cluster(key)
    with pytest.raises(KeyError):
        manager.remove_cluster(key)
    with pytest.raises(KeyError):
        manager.get_cluster("nosuchcluster")

    cluster = Cluster(n=1)
    key = manager._cluster_key(cluster)
    try:
        cluster.start_cluster_sync()
        assert key in manager.load_clusters()
        assert manager.clusters[key] is not cluster            # rebuilt from its record
        cluster.stop_cluster_sync()
        assert key not in manager.load_clusters()
    finally:
        cluster.stop_cluster_sync()


def test_with_cluster_gives_a_client_knowing_its_cluster():
    import asyncio

    from taskhub.cluster.cluster import Cluster

    async def use():
        async with Cluster(n=2, log_level=10) as rc:
            assert sorted(rc.ids) == [0, 1] and rc.cluster.engines
            rc[:]["a"] = 5
            assert rc[:]["a"] == [5, 5]
            return rc.cluster

    cluster = asyncio.run(use())
    assert cluster.controller is None and cluster.engines == {}


def test_abort_right_after_direct_applies_reaches_them(rc):
    """The abort goes on another socket than the direct tasks it names: the controller
    takes those in first, so the abort is not refused as naming unknown tasks."""
    from taskhub.error import TaskAborted
    view = rc[-1]
    for _ in range(5):
        running = view.execute("import time; time.sleep(60)", block=False)
        queued = view.apply_async(lambda: 2)
        view.abort(queued)
        view.abort(running.msg_ids)
        for ar in (queued, running):
            with pytest.raises(TaskAborted):
                ar.get(timeout=30)
    assert view.apply_sync(lambda: 3) == 3      # the engine serves on


def test_direct_view_label_is_recorded(rc):
    dview = rc[:]
    with dview.temp_flags(label="direct_map"):
        amr = dview.map_async(abs, [-1, -2, -3, -4])
    ar = dview.set_flags(label="direct_apply").apply_async(pid)
    assert amr.get(30) == [1, 2, 3, 4] and len(ar.get(30)) == len(rc.ids)
    assert dview.label == "direct_apply"
    with pytest.raises(TypeError):
        dview.set_flags(label=3)
    for done, label in ((amr, "direct_map"), (ar, "direct_apply")):
        wait_recorded(rc, done)
        rows = rc.db_query({"label": label}, keys=["msg_id"])
        assert sorted(r["msg_id"] for r in rows) == sorted(done.msg_ids)


def test_cluster_made_in_ipython_logs_to_stdout():
    import sys

    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    from taskhub.cluster.cluster import Cluster
    shell = TerminalInteractiveShell.instance()
    try:
        cluster = Cluster(parent=shell, cluster_id="shown")
        assert cluster.log.name == "taskhub.cluster.cluster.shown"
        assert [h.stream for h in cluster.log.handlers] == [sys.stdout]
        assert Cluster(cluster_id="quiet").log.handlers == []
    finally:
        TerminalInteractiveShell.clear_instance()


def _mark_then_sleep(marker, seconds):
    import os
    import time
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def test_send_signal_sigint_interrupts_running_tasks_and_engines_carry_on(rc, tmp_path):
    markers = [tmp_path / f"m{i}" for i in rc.ids]
    running = [rc[i].apply_async(_mark_then_sleep, str(m), 30) for i, m in zip(rc.ids, markers)]
    wait_until(lambda: all(m.exists() for m in markers), 10, what="the tasks to start")
    rc.send_signal("SIGINT", block=True)
    for ar in running:
        with pytest.raises(RemoteError, match="KeyboardInterrupt"):
            ar.get(10)
    assert rc[:].apply_sync(lambda: 1) == [1] * len(rc.ids)
    with pytest.raises(ValueError, match="no signal 'SIGNOPE'"):
        rc.send_signal("SIGNOPE", targets=rc.ids[0], block=True)


def test_composite_error_elist_names_engine_uuids(rc):
    with pytest.raises(CompositeError) as info:
        rc[:].apply_sync(lambda: 1 / 0)
    assert [i["engine_uuid"] for *_, i in info.value.elist] == [rc._engines[e] for e in rc.ids]


def test_execute_reply_from_client_and_hub_compare_equal(rc):
    ar = rc[-1].execute("x = 5", block=False)
    ar.get(10)
    hub = rc.get_result(ar.msg_ids[0], owner=False)
    assert hub.get(10) == ar.get()


def _publishing_task(n):
    from taskhub.datapub import publish_data
    for i in range(n):
        publish_data({"i": i, f"k{i}": [i] * 3})
    return n


def test_publish_data_reaches_ar_data_and_wait_for_output_waits_for_all_of_it(rc):
    from taskhub.datapub import publish_data
    ars = [rc[e].apply_async(_publishing_task, 5) for e in rc.ids]
    for ar in ars:
        assert ar.get(10) == 5 and ar.wait_for_output(10)
        assert ar.data == {"i": 4, **{f"k{i}": [i] * 3 for i in range(5)}}
    plain = rc[-1].apply_async(lambda: 1)
    assert plain.get(10) == 1 and plain.wait_for_output(10) and plain.data == {}
    with pytest.raises(RuntimeError, match="call it in a task on an engine"):
        publish_data({"here": 1})
    with pytest.raises(RemoteError, match="TypeError"):
        rc[-1].apply_sync(lambda: __import__("taskhub.datapub").datapub.publish_data([1]))


def test_track_says_when_the_buffers_sent_may_be_changed(rc):
    import zmq
    view = rc[-1]
    data = bytearray(b"x" * (2 * 2**20))
    untracked = view.apply_async(len, data)
    assert untracked.sent  # untracked requests count as sent
    with view.temp_flags(track=True):
        ar = view.apply_async(len, data)
    assert isinstance(ar._tracker, zmq.MessageTracker)
    ar.wait_for_send(10)
    assert ar.sent
    data[:1] = b"y"  # safe now: zmq is done with the memory
    assert ar.get(10) == untracked.get(10) == len(data)
    pushed = rc[:].push({"blob": bytes(data)}, block=False, track=True)
    scattered = rc[:].scatter("part", list(range(8)), track=True)
    for done in (pushed, scattered):
        done.wait_for_send(10)
        assert done.sent
        done.get(10)
    assert sum(rc[:].pull("part", block=True), []) == list(range(8))
