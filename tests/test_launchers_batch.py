"""Batch launchers against the real schedulers: a one-node Slurm (slurmctld, slurmd, munge),
PBS-style qsub/qstat/qdel (Slurm's Torque wrappers, on the same Slurm), and Grid Engine
(sge_qmaster, sge_execd). Each test starts a cluster through ipcluster, runs a
load-balanced map, stops it, and checks that no job and no process is left.

Slurm's torque wrappers stand in for PBS because no PBS/Torque server is packaged for
Debian 12, and the wrappers' package conflicts with Grid Engine's client (both own
/usr/bin/qsub): setup_batch_systems.sh unpacks the wrappers into /opt/taskhub-pbs/bin.
"""
import pytest

from infra.clusters import Profile, squares_on_all_engines, wait_engines
from infra.systems import PBS_BIN, GridEngine, Slurm, require, run, wait_for
from taskhub.cluster.cluster import read_record

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def slurm():
    daemons = Slurm()
    try:
        yield daemons.start()
    finally:
        daemons.stop()


@pytest.fixture(scope="module")
def sge():
    daemons = GridEngine()
    try:
        yield daemons.start()
    finally:
        daemons.stop()


@pytest.fixture
def make_profile(tmp_path):
    made = []

    def make(batch, config=""):
        made.append((Profile(tmp_path / "taskhub", config=config), batch))
        return made[-1][0]
    yield make
    for profile, batch in made:
        profile.clean_up(batch)


def run_a_map_and_stop(profile, batch, n, jobs, outputs=None):
    """Check the recorded jobs, map over `n` engines, stop; nothing may be left. The jobs'
    output files are in the profile's log/ (`outputs`: their glob and count)."""
    assert sorted(batch.jobs()) == sorted(jobs), (batch.jobs(), jobs)
    rc = profile.client()
    try:
        wait_engines(rc, n, 60, "the engines of the job(s)")
        assert len(squares_on_all_engines(rc, n, tasks=20 * n)) >= 2
    finally:
        rc.close()
    stopped = profile.ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    profile.assert_nothing_left(batch)
    if outputs is not None:
        pattern, count = outputs
        assert len(list((profile.dir / "log").glob(pattern))) == count, \
            sorted(p.name for p in (profile.dir / "log").iterdir())


def recorded_jobs(profile, side="engines"):
    record = read_record(profile.dir)
    sets = [record[side]] + (record["added_engines"] if side == "engines" else [])
    return [job["job_id"] for s in sets for job in s["jobs"]]


def test_slurm_engines_grow_shrink_and_stop(make_profile, slurm):
    profile = make_profile(slurm)
    started = profile.start("-n", "3", "--engines", "slurm")
    assert "slurm job(s)" in started.stdout
    [job] = recorded_jobs(profile)
    added = profile.ipcluster("engines", "add", "-n", "2")
    assert added.returncode == 0, added.stderr
    assert sorted(slurm.jobs()) == sorted(recorded_jobs(profile))
    removed = profile.ipcluster("engines", "remove", "-n", "2")   # the added job
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: slurm.jobs() == [job], 30, "the added job to be cancelled")
    run_a_map_and_stop(profile, slurm, 3, [job], outputs=("slurm-engines-*.log", 2))


def test_slurm_controller_and_engines(make_profile, slurm):
    profile = make_profile(slurm)
    started = profile.start("-n", "2", "--engines", "slurm", "--controller", "slurm",
                            "--curve")  # the keys travel with the jobs
    assert "controller: slurm job" in started.stdout
    jobs = recorded_jobs(profile, "controller") + recorded_jobs(profile)
    run_a_map_and_stop(profile, slurm, 2, jobs, outputs=("slurm-*-*.log", 2))


def test_a_killed_slurm_job_is_noticed_and_resubmitted(make_profile, slurm):
    profile = make_profile(slurm)
    profile.start("-n", "2", "--engines", "slurm", "--restart-engines")
    [job] = recorded_jobs(profile)
    rc = profile.client()
    try:
        wait_engines(rc, 2, 60, "start")
        # SIGKILL: the engines cannot say goodbye; only the watcher can tell the hub.
        run(["scancel", "--signal=KILL", "--full", job])
        wait_engines(rc, 0, 5.0, "the killed job's engines unregistered")
        wait_for(lambda: recorded_jobs(profile) != [job], 10, "a new job to be submitted")
        [new_job] = recorded_jobs(profile)
        wait_engines(rc, 2, 60, "the new job's engines")
    finally:
        rc.close()
    run_a_map_and_stop(profile, slurm, 2, [new_job])


def test_pbs_engines_through_qsub(make_profile, slurm):
    require(str(PBS_BIN / "qsub"))
    profile = make_profile(slurm, config="".join(
        f"c.PBSEngineSetLauncher.{option} = ['{PBS_BIN / command}']\n"
        for option, command in (("submit_command", "qsub"), ("delete_command", "qdel"),
                                ("status_command", "qstat"))))
    started = profile.start("-n", "3", "--engines", "pbs", "--curve")
    assert "pbs job(s)" in started.stdout
    run_a_map_and_stop(profile, slurm, 3, recorded_jobs(profile),
                       outputs=("pbs-engines-*.o*", 1))   # the wrappers name it so


def test_sge_engines_as_an_array_job(make_profile, sge):
    profile = make_profile(sge)
    started = profile.start("-n", "3", "--engines", "sge", "--curve")
    assert "sge job(s)" in started.stdout
    tasks = run(["qstat"]).stdout.splitlines()[2:]
    assert len(tasks) == 3 and {t.split()[0] for t in tasks} == set(recorded_jobs(profile))
    run_a_map_and_stop(profile, sge, 3, recorded_jobs(profile),
                       outputs=("sge-engines.*.*.log", 3))
