"""`--engines=mpi` against Open MPI and mpi4py: one mpiexec, engines that know their rank."""
import os
import signal

import pytest

from infra.clusters import Profile, squares_on_all_engines, wait_engines
from infra.systems import require
from taskhub.cluster.cluster import read_record

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def profile(tmp_path):
    require("mpiexec")
    pytest.importorskip("mpi4py", reason="mpi4py is in the test extra: pip install -e '.[test]'")
    p = Profile(tmp_path / "taskhub")
    yield p
    p.clean_up()


def mpi_world():
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    # A collective call across the engines proves they share one MPI job.
    return world.Get_rank(), world.Get_size(), world.allreduce(1)


def test_mpi_engines_know_their_rank_and_run_a_map(profile):
    started = profile.start("-n", "3", "--engines", "mpi", "--curve")  # encrypted too
    assert "mpi: 3 engines in 1 mpiexec run" in started.stdout
    rc = profile.client()
    try:
        wait_engines(rc, 3, 30, "start")
        assert sorted(rc[:].apply_sync(mpi_world)) == [(0, 3, 3), (1, 3, 3), (2, 3, 3)]
        assert len(squares_on_all_engines(rc, 3, tasks=60)) >= 2
        [unit] = read_record(profile.dir)["engines"]["processes"]
        assert unit["n"] == 3 and "mpiexec" in unit["cmd"][0]
    finally:
        rc.close()
    assert profile.ipcluster("stop").returncode == 0
    profile.assert_nothing_left()


def test_an_ended_mpi_run_unregisters_all_its_engines_at_once(profile):
    profile.start("-n", "2", "--engines", "mpi")
    rc = profile.client()
    try:
        wait_engines(rc, 2, 30, "start")
        [unit] = read_record(profile.dir)["engines"]["processes"]
        os.killpg(unit["pid"], signal.SIGKILL)   # mpiexec and its ranks, as a node crash
        wait_engines(rc, 0, 3.0, "the engines of the killed mpiexec unregistered")
    finally:
        rc.close()
    profile.ipcluster("stop")
    profile.assert_nothing_left()


def test_mpi_engines_register_their_rank_with_the_hub(tmp_path):
    """The hub's record of each engine carries {"mpi": {"rank", "size"}}."""
    require("mpiexec")
    pytest.importorskip("mpi4py", reason="mpi4py is in the test extra: pip install -e '.[test]'")
    from conftest import LoopbackCluster
    from taskhub.cluster.launchers.mpi import MPIEngineSetLauncher
    cluster = LoopbackCluster(tmp_path / "profile", n=0).start()
    engines = MPIEngineSetLauncher(cluster.profile_dir, n=2)
    try:
        engines.start()
        with cluster.client() as rc:
            rc.wait_for_engines(2, timeout=30)
        records = list(cluster.controller.hub.engines.values())
        assert sorted(r.info["mpi"]["rank"] for r in records) == [0, 1]
        assert {r.info["mpi"]["size"] for r in records} == {2}
        assert all(r.uuid.startswith(engines.units[0].tag + ".") for r in records)
    finally:
        engines.stop(timeout=5)
        cluster.stop()
