"""LSF and HTCondor launchers against stand-in scheduler commands (neither scheduler is
packaged here): the job scripts they write and how they submit, watch and cancel jobs."""
import os
import sys
import textwrap

import pytest

from taskhub.cluster.launcher import find_launcher
from taskhub.cluster.launchers.lsf_condor import (HTCondorControllerLauncher,
                                                  HTCondorEngineSetLauncher,
                                                  LSFControllerLauncher,
                                                  LSFEngineSetLauncher, condor_arguments)

# Each stand-in records its argv (and bsub its stdin); a job runs until cancelled.
FAKES = {
    "bsub": 'record(sys.stdin.read()); print("Job <7> is submitted to queue <normal>.")',
    "bjobs": 'print("7 " + ("EXIT" if cancelled() else "RUN")) if sys.argv[-1] == "7" '
             'else sys.exit("Job <%s> is not found" % sys.argv[-1])',
    "bkill": 'pass',
    "condor_submit": 'print("Submitting job(s)..\\n2 job(s) submitted to cluster 9.")',
    "condor_q": 'print("" if cancelled() else "9 2\\n9 1")',
    "condor_rm": 'pass',
}
PRELUDE = textwrap.dedent("""\
    #!{python}
    import pathlib, sys
    log = pathlib.Path(sys.argv[0]).with_name("calls")
    def record(text):
        with log.open("a") as f:
            f.write(text + "\\n")
    def cancelled():
        return any(line.startswith(("bkill ", "condor_rm "))
                   for line in log.read_text().splitlines())
    record(pathlib.Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:]))
    """)


@pytest.fixture
def calls(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text(PRELUDE.format(python=sys.executable) + body + "\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "calls"


def test_lsf_submits_the_script_on_stdin_and_cancels_the_job(tmp_path, calls):
    launcher = LSFEngineSetLauncher(tmp_path / "profile", n=3, queue="short")
    launcher.start()
    assert launcher.job_ids() == ["7"] and launcher.poll() is None
    launcher.stop(timeout=5)
    assert launcher.poll() is not None
    log = calls.read_text()
    assert "#BSUB -n 3" in log and "#BSUB -q short" in log and "-m taskhub.engine" in log
    assert "bkill 7" in log


def test_htcondor_queues_one_job_per_engine_and_removes_them(tmp_path, calls):
    launcher = HTCondorEngineSetLauncher(tmp_path / "profile", n=2,
                                         batch_options=["request_memory = 2GB"])
    launcher.start()
    assert launcher.job_ids() == ["9"] and launcher.poll() is None
    [script] = (tmp_path / "profile" / "log").glob("htcondor-engines-*.sub")
    text = script.read_text()
    assert "queue 2" in text and "request_memory = 2GB" in text
    assert f"executable            = {sys.executable}" in text
    launcher.stop(timeout=5)
    assert launcher.poll() is not None and "condor_rm 9" in calls.read_text()


def test_htcondor_has_no_queues(tmp_path):
    launcher = HTCondorControllerLauncher(tmp_path, queue="long", work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="HTCondor has no queues"):
        launcher.write_batch_script(1)


def test_condor_arguments_quoting():
    assert condor_arguments(["-m", "taskhub.engine"]) == '"-m taskhub.engine"'
    assert condor_arguments(["a b", "it's", 'say "hi"']) == \
        '"\'a b\' \'it\'\'s\' say""hi"""'.replace('say""hi"""', '\'say ""hi""\'"')


def test_job_scripts_for_write_batch_script(tmp_path):
    for cls, name in ((LSFControllerLauncher, "lsf_controller.sh"),
                      (HTCondorControllerLauncher, "htcondor_controller.sub")):
        launcher = cls(tmp_path / "profile", work_dir=str(tmp_path))
        assert launcher.batch_file == str(tmp_path / name)
        assert "taskhub.controller" in open(launcher.write_batch_script(1)).read()
    assert find_launcher("engines", "lsf") is LSFEngineSetLauncher
    assert find_launcher("controller", "htcondor") is HTCondorControllerLauncher
