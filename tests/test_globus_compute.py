"""The rest of the Globus Compute executor guide: shell and MPI tasks, version checks,
submission counters, and the client-side batch collected later from another process."""
import importlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import pytest

import taskhub
from taskhub import MPIFunction, ShellCommandFailed, ShellFunction, ShellResult, versions
from taskhub.paths import security_file
from taskhub.shell import allocation_hosts, mpi_prefix

from conftest import wait_until


# -- shell tasks ----------------------------------------------------------------------------
def test_a_shell_task_returns_its_output_and_lands_in_the_task_record(rc):
    with rc.executor() as ex:
        fut = ex.submit(ShellFunction("echo {message}; echo to-stderr >&2"), message="hi there")
        result = fut.result(timeout=30)
    assert isinstance(result, ShellResult)
    assert (result.returncode, result.stdout, result.stderr, result.cmd) == \
        (0, "hi there\n", "to-stderr\n", "echo hi there; echo to-stderr >&2")
    [rec] = rc.db_query({"msg_id": fut.msg_ids[0]}, keys=["stdout", "stderr", "status"])
    assert (rec["stdout"], rec["stderr"], rec["status"]) == ("hi there\n", "to-stderr\n", "ok")


def test_a_non_zero_exit_is_an_error_with_the_returncode_and_output(rc):
    with rc.executor() as ex:
        fut = ex.submit(ShellFunction("echo partial; echo broken >&2; exit 3"))
        with pytest.raises(ShellCommandFailed) as info:
            fut.result(timeout=30)
    err = info.value
    assert (err.returncode, err.stdout, err.stderr) == (3, "partial\n", "broken\n")
    assert err.cmd == "echo partial; echo broken >&2; exit 3"
    assert "returncode 3" in str(err) and "broken" in str(err)
    [rec] = rc.db_query({"msg_id": fut.msg_ids[0]}, keys=["stdout", "status"])
    assert (rec["stdout"], rec["status"]) == ("partial\n", "error")


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_a_command_past_its_walltime_is_killed_with_its_children(rc):
    sf = ShellFunction("sleep 300 & echo $!; wait", walltime=1)
    with rc.executor() as ex:
        fut = ex.submit(sf)
        with pytest.raises(ShellCommandFailed) as info:
            fut.result(timeout=30)
    assert info.value.returncode == 124
    assert "walltime of 1s" in str(info.value)
    child = int(info.value.stdout)
    # the backgrounded child was in the command's process group, so it was killed too
    wait_until(lambda: not _alive(child), what=f"the command's child {child} to be gone")
    assert rc.load_balanced_view().apply_sync(str, "next") == "next"


def test_shell_function_rejects_bad_arguments_at_once():
    with pytest.raises(TypeError, match="non-empty command"):
        ShellFunction("")
    with pytest.raises(ValueError, match="walltime"):
        ShellFunction("true", walltime=-1)
    with pytest.raises(KeyError, match=r"needs a value for \{name\}"):
        ShellFunction("echo {name}").format()
    with pytest.raises(TypeError, match="keyword arguments only"):
        ShellFunction("echo")(1)


# -- MPI tasks ------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("mpiexec") is None,
                    reason="Open MPI is installed by `make test` (tests/infra)")
def test_an_mpi_function_runs_the_ranks_its_resource_specification_asks_for(rc):
    # one write per line: ranks share the pipe, and separate writes could interleave
    cmd = (f"{sys.executable} -c 'import os, sys; "
           f"sys.stdout.write(\"rank %s\\n\" % os.environ[\"OMPI_COMM_WORLD_RANK\"])'")
    with rc.executor() as ex:
        ex.resource_specification = {"num_nodes": 1, "ranks_per_node": 3}
        result = ex.submit(MPIFunction(cmd)).result(timeout=60)
    assert result.returncode == 0
    assert sorted(result.stdout.split("\n")[:-1]) == ["rank 0", "rank 1", "rank 2"]
    assert result.cmd.startswith("mpiexec -n 3 ")


def test_an_mpi_function_says_when_the_allocation_is_too_small(rc):
    fut = rc.executor().submit(MPIFunction("hostname", mpiexec=sys.executable,
                                           resource_specification={"num_nodes": 4}))
    with pytest.raises(taskhub.RemoteError, match="asks for 4 nodes, but it runs outside a "
                                                  "batch allocation"):
        fut.result(timeout=30)
    fut = rc.executor().submit(MPIFunction("hostname", mpiexec="no-such-mpiexec"))
    with pytest.raises(taskhub.RemoteError, match="needs 'no-such-mpiexec' on the engine"):
        fut.result(timeout=30)


def test_mpi_hosts_come_from_the_batch_allocation(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("n1\nn1\nn2\nn2\n")
    assert allocation_hosts({"PBS_NODEFILE": str(nodefile)}) == ["n1", "n2"]
    assert allocation_hosts({"SLURM_JOB_NODELIST": "c[01-02],gpu7"}) == ["c01", "c02", "gpu7"]
    prefix, _ = mpi_prefix([sys.executable], {"num_nodes": 2, "ranks_per_node": 4},
                           ["c01", "c02", "gpu7"])
    assert prefix.endswith("-n 8 --host c01:4,c02:4")
    with pytest.raises(ValueError, match="unknown resource_specification keys"):
        MPIFunction("x", resource_specification={"nodes": 2})


# -- version checks -------------------------------------------------------------------------
def test_a_client_on_other_versions_is_warned_at_connection(cluster, monkeypatch):
    real = versions.local()
    other = {**real, "python": "3.99.0", "dill": "0.0.1"}
    monkeypatch.setattr(versions, "local", lambda: dict(other))
    with pytest.warns(versions.VersionMismatchWarning) as caught:
        rc = cluster.client()
    try:
        text = str(caught[0].message)
        assert f"python 3.99.0 on this client, {real['python']} on engines" in text
        assert f"dill 0.0.1 on this client, {real['dill']} on engines" in text
    finally:
        rc.close()


def test_a_client_on_the_same_versions_is_not_warned(cluster):
    with warnings.catch_warnings():
        warnings.simplefilter("error", versions.VersionMismatchWarning)
        cluster.client().close()


def test_a_task_an_engine_cannot_deserialize_names_the_version_difference(rc, monkeypatch):
    class Unloadable:  # unpickling it imports a module only the client has
        def __reduce__(self):
            return importlib.import_module, ("module_only_the_client_has",)
    real = versions.local()
    monkeypatch.setattr(versions, "local", lambda: {**real, "dill": "0.0.1"})
    ar = rc.load_balanced_view().apply(len, [Unloadable()])
    with pytest.raises(taskhub.RemoteError) as info:
        ar.get(timeout=30)
    text = str(info.value)
    assert "could not be deserialized on this engine" in text
    assert f"dill 0.0.1 on this client, {real['dill']} on that engine" in text


def test_version_differences_ignore_python_micro_versions():
    a = {"python": "3.11.7", "dill": "0.3.8", "cloudpickle": None}
    assert versions.differences(a, {**a, "python": "3.11.9"}) == []
    assert versions.differences(a, {**a, "cloudpickle": "3.0"}) == []
    assert versions.differences(a, {**a, "python": "3.12.1"}) == [("python", "3.11.7", "3.12.1")]


# -- counters and client-side batches --------------------------------------------------------
def test_submission_counters(rc, tmp_path):
    gate = tmp_path / "gate"
    with rc.executor() as ex:
        futures = [ex.submit(os.path.exists, str(gate)) for _ in range(5)]
        assert ex.task_count_submitted == 5  # the controller has all five
        assert ex.task_count_pending + ex.task_count_finished == 5
        for f in futures:
            f.result(timeout=30)
        wait_until(lambda: ex.task_count_finished == 5, what="the done callbacks")
        assert (ex.task_count_pending, ex.task_count_submitted) == (0, 5)


def test_a_batch_runs_today_and_is_collected_tomorrow_from_another_process(cluster, tmp_path):
    submitter = tmp_path / "submit.py"
    submitter.write_text(textwrap.dedent(f"""
        import os, signal
        from taskhub import Client

        def expensive_task(task_arg):
            return task_arg * 10

        gcc = Client({str(security_file(cluster.profile_dir, 'client'))!r})
        fn_id = gcc.register_function(expensive_task)
        batch = gcc.create_batch()
        for task_i in range(10):
            batch.add(fn_id, args=(task_i,))
        ids = gcc.batch_run(batch)
        print(batch.task_group_id, len(ids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)   # dies without closing anything
    """))
    proc = subprocess.run([sys.executable, str(submitter)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    group, count = proc.stdout.split()
    assert count == "10"
    with cluster.client() as rc:
        futures = rc.reload_tasks(group)
        assert [f.result(timeout=30) for f in futures] == [i * 10 for i in range(10)]


def test_a_batch_says_what_is_wrong(rc):
    batch = rc.create_batch()
    with pytest.raises(TypeError, match="args must be a tuple or list"):
        batch.add(abs, args=5)
    batch.add(abs, args=(-3,))
    [msg_id] = rc.batch_run(batch)
    assert rc.get_result(msg_id).get(timeout=30) == 3
    with pytest.raises(RuntimeError, match="already run"):
        rc.batch_run(batch)
    with pytest.raises(TypeError, match="rc.create_batch"):
        rc.batch_run([abs])
