"""Launcher pieces without any system behind them: host plans, templates, job ids, qstat
output, unit choice, lookup by name and by entry point, info round trips."""
import json
import sys
import textwrap

import pytest

from taskhub.cluster.launcher import EngineSetLauncher, Launcher, find_launcher
from taskhub.cluster.launchers.batch import (BatchJob, PBSEngineSetLauncher,
                                             SGEEngineSetLauncher, SlurmControllerLauncher,
                                             SlurmEngineSetLauncher, render)
from taskhub.cluster.launchers.ssh import SSHEngineSetLauncher, plan_hosts, remote_pid
from taskhub.cluster.scaling import choose_units


@pytest.mark.parametrize("spec, n, plan", [
    ("a,b:4", 6, [("a", 2), ("b", 4)]),
    ("a,b:4", None, [("a", 1), ("b", 4)]),
    ("a,b", 5, [("a", 3), ("b", 2)]),
    ("a:2,b:2", None, [("a", 2), ("b", 2)]),
    ("a:2,b:2", 4, [("a", 2), ("b", 2)]),
    ("a:2,a:1", None, [("a", 3)]),
    ("a,b:4", 4, [("b", 4)]),             # no engines left for a: it gets none
    (["a", "b:1"], 2, [("a", 1), ("b", 1)]),
])
def test_ssh_host_plans(spec, n, plan):
    assert plan_hosts(spec, n) == plan


@pytest.mark.parametrize("spec, n, message", [
    ("a:2,b:2", 5, "places 4 engines but -n asks for 5"),
    ("a,b:4", 3, "-n 3 is fewer than the 4 engines"),
    ("a:0", None, "bad engine count in ssh host 'a:0'"),
    ("a:x", None, "bad engine count"),
    ("", None, "no ssh hosts"),
    ("a,,b", None, "no ssh hosts"),
])
def test_bad_ssh_host_plans_say_what_is_wrong(spec, n, message):
    with pytest.raises(ValueError, match=message):
        plan_hosts(spec, n)


def test_remote_pid_is_the_first_log_line(tmp_path):
    log = tmp_path / "ssh.log"
    assert remote_pid(log) is None
    log.write_text("")
    assert remote_pid(log) is None
    log.write_text("taskhub-remote-pid 4242\nengine output\n")
    assert remote_pid(log) == 4242
    log.write_text("Warning: Permanently added 'h1' to the list of known hosts.\n")
    assert remote_pid(log) is None


def test_render_fills_known_fields_and_leaves_shell_braces():
    text = render("#SBATCH --ntasks={n}\necho ${HOME} {unknown} {n}{tag}", {"n": 3, "tag": "t"})
    assert text == "#SBATCH --ntasks=3\necho ${HOME} {unknown} 3t"


def test_rendered_slurm_script(tmp_path):
    launcher = SlurmEngineSetLauncher(tmp_path, ["--log-level", "DEBUG"], n=4, queue="short",
                                      batch_options=["--time=00:10:00"], python="/opt/py")
    script = launcher.write_script(4, "slurm-abc").read_text()
    assert "#SBATCH --ntasks=4\n" in script
    assert "#SBATCH --partition=short\n#SBATCH --time=00:10:00\n" in script
    assert (f"exec srun --ntasks=4 /opt/py -m taskhub.engine --profile-dir {tmp_path} "
            "--log-level DEBUG --tag slurm-abc\n") in script


def test_rendered_controller_script_has_no_tag(tmp_path):
    script = SlurmControllerLauncher(tmp_path, ["--ip", "0.0.0.0"]).write_script(1, "x")
    assert script.read_text().endswith(
        f"exec {sys.executable} -m taskhub.controller --profile-dir {tmp_path} --ip 0.0.0.0\n")


def test_sge_and_pbs_scripts_use_their_directives(tmp_path):
    sge = SGEEngineSetLauncher(tmp_path, n=3, queue="all.q").write_script(3, "t").read_text()
    assert "#$ -t 1-3\n" in sge and "#$ -q all.q\n" in sge
    pbs = PBSEngineSetLauncher(tmp_path, n=3, queue="batch").write_script(3, "t").read_text()
    assert "#PBS -l nodes=1:ppn=3\n" in pbs and "#PBS -q batch\n" in pbs
    assert "for i in $(seq 3); do" in pbs


def test_template_lookup_order(tmp_path):
    own = tmp_path / "templates" / "slurm_engines.sh"
    own.parent.mkdir()
    own.write_text("#!/bin/sh\n# profile's own {n}\n")
    (tmp_path / "mine.sh").write_text("#!/bin/sh\n# from template_file {n}\n")
    assert "profile's own 2" in SlurmEngineSetLauncher(tmp_path).write_script(2, "t").read_text()
    by_file = SlurmEngineSetLauncher(tmp_path, template_file="mine.sh")
    assert "from template_file 2" in by_file.write_script(2, "t").read_text()
    inline = SlurmEngineSetLauncher(tmp_path, template_file="mine.sh", template="inline {n}")
    assert inline.write_script(2, "t").read_text() == "inline 2"


@pytest.mark.parametrize("cls, output, job_id", [
    (SlurmEngineSetLauncher, "12345\n", "12345"),
    (SlurmEngineSetLauncher, "12345;cluster2\n", "12345"),
    (SGEEngineSetLauncher, "77.1-4:1\n", "77"),
    (SGEEngineSetLauncher, "78\n", "78"),
    (PBSEngineSetLauncher, "4321.pbs-server\n", "4321.pbs-server"),
    (PBSEngineSetLauncher, "13\n", "13"),
])
def test_job_ids_from_submit_output(tmp_path, cls, output, job_id):
    assert cls(tmp_path).parse_job_id(output) == job_id


def test_pbs_state_column():
    table = textwrap.dedent("""\
        Job id              Name             Username        Time Use S Queue
        ------------------- ---------------- --------------- -------- - ---------------
        13.server           taskhub-engines  root            00:00:00 R debug
        14                  other            root            00:00:00 C debug
        """)
    assert PBSEngineSetLauncher._state(table, "13.server") == "R"
    assert PBSEngineSetLauncher._state(table, "13") == "R"
    assert PBSEngineSetLauncher._state(table, "14") == "C"
    assert PBSEngineSetLauncher._state(table, "15") == ""


def test_a_missing_scheduler_command_is_a_clear_error(tmp_path):
    launcher = SlurmEngineSetLauncher(tmp_path, n=1, submit_command=["no-such-sbatch"])
    with pytest.raises(RuntimeError, match="no-such-sbatch not found: is the slurm client"):
        launcher.start()


class FakeSet:
    def __init__(self, kind, sizes):
        self.kind = kind
        self.units = [BatchJob(str(i), f"{kind}-{i}", n) for i, n in enumerate(sizes)]


def test_units_to_remove_are_the_newest_whole_ones():
    first, added = FakeSet("local", [1, 1, 1]), FakeSet("slurm", [4])
    chosen = choose_units([first, added], 6)
    assert [u.tag for _, u in chosen] == ["slurm-0", "local-2", "local-1"]
    with pytest.raises(ValueError, match="runs 4 engines together.*remove 4 instead"):
        choose_units([first, added], 2)
    with pytest.raises(ValueError, match="the cluster has only 7"):
        choose_units([first, added], 8)


def test_launchers_by_name_and_unknown_names():
    assert find_launcher("engines", "sge") is SGEEngineSetLauncher
    assert find_launcher("controller", "slurm") is SlurmControllerLauncher
    with pytest.raises(ValueError, match="unknown engines launcher 'nope'; known: htcondor, "
                                         "local, lsf, mpi, pbs, sge, slurm, ssh, winhpc"):
        find_launcher("engines", "nope")
    with pytest.raises(ValueError, match="unknown controller launcher 'pbspro'"):
        find_launcher("controller", "pbspro")


def test_a_package_adds_a_launcher_through_an_entry_point(tmp_path, monkeypatch):
    """A distribution on sys.path with a taskhub.engine_launchers entry point: found by name."""
    (tmp_path / "mylaunchers.py").write_text(textwrap.dedent("""\
        from taskhub.cluster.launcher import LocalEngineSetLauncher

        class TenEngines(LocalEngineSetLauncher):
            kind = "ten"
        """))
    dist = tmp_path / "mylaunchers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mylaunchers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[taskhub.engine_launchers]\nten = mylaunchers:TenEngines\n"
        "[taskhub.controller_launchers]\nwrong = mylaunchers:TenEngines\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = find_launcher("engines", "ten")
    assert cls.__name__ == "TenEngines" and issubclass(cls, EngineSetLauncher)
    with pytest.raises(ValueError, match="controller launcher 'wrong'.*is not a controller"):
        find_launcher("controller", "wrong")


def test_batch_and_ssh_launchers_rebuild_from_info(tmp_path):
    slurm = SlurmEngineSetLauncher(tmp_path, ["--log-level", "INFO"], n=2, queue="q")
    slurm.units = [BatchJob("17", "slurm-1", 2, "/x.sh")]
    again = Launcher.from_info(json.loads(json.dumps(slurm.info())))
    assert type(again) is SlurmEngineSetLauncher
    assert (again.queue, again.args, again.n, again.set_id) == ("q", slurm.args, 2, slurm.set_id)
    assert [(u.job_id, u.tag, u.n) for u in again.units] == [("17", "slurm-1", 2)]
    ssh = SSHEngineSetLauncher(tmp_path, n=1, hosts=["h1:1"], ssh_args=["-F", "cfg"])
    again = Launcher.from_info(json.loads(json.dumps(ssh.info())))
    assert (again.hosts, again.ssh_args) == (["h1:1"], ["-F", "cfg"])


def _status_command(stdout, stderr, code):
    """A status command (in place of squeue/qstat) that answers with exactly this."""
    script = (f"import sys; sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r}); "
              f"sys.exit({code})")
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("cls, stdout, stderr, code, alive", [
    # Slurm: a forgotten id fails squeue; an unreachable slurmctld fails it too, and then
    # the job may well be running: only the first is an end
    (SlurmEngineSetLauncher, "", "slurm_load_jobs error: Invalid job id specified\n", 1, False),
    (SlurmEngineSetLauncher, "", "slurm_load_jobs error: Socket timed out on send/recv "
                                 "operation\n", 1, True),
    (SlurmEngineSetLauncher, "7 RUNNING\n", "", 0, True),
    (SlurmEngineSetLauncher, "", "", 0, False),
    (PBSEngineSetLauncher, "", "qstat: Unknown Job Id 7.server\n", 153, False),
    (PBSEngineSetLauncher, "", "qstat: 7.server Job has finished, use -x\n", 35, False),
    (PBSEngineSetLauncher, "", "", 1, False),  # Slurm's qstat wrapper: no row, no message
    (PBSEngineSetLauncher, "", "Problem loading jobs.\n", 255, True),
    (SGEEngineSetLauncher, "", "error: commlib error: got select error (Connection "
                               "refused)\n", 1, True),
    (SGEEngineSetLauncher, "job-ID prior name\n-----\n", "", 0, False),
])
def test_a_status_command_that_cannot_answer_does_not_end_a_job(tmp_path, cls, stdout,
                                                                 stderr, code, alive):
    launcher = cls(tmp_path, n=1, status_command=_status_command(stdout, stderr, code))
    (tmp_path / "log").mkdir(exist_ok=True)
    assert launcher.alive([BatchJob("7", "t", 1)]) == ({"7"} if alive else set())
