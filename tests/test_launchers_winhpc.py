"""The Windows HPC Pack launchers against a stand-in `job` command (no HPC head node runs
on Linux): the job file they write, and how they submit, watch and cancel a job."""
import os
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

from taskhub.cluster.launcher import find_launcher
from taskhub.cluster.launchernames import find_launcher_class
from taskhub.cluster.launchers.winhpc import (SCHEMA, WindowsHPCControllerLauncher,
                                              WindowsHPCEngineSetLauncher)

FAKE_JOB = textwrap.dedent("""\
    #!{python}
    # `job` as HPC Pack's: records each call; a job is Running until cancelled
    import pathlib, sys
    state = pathlib.Path(sys.argv[0]).with_name("calls")
    with state.open("a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    calls = state.read_text()
    verb, *rest = sys.argv[1:]
    if verb == "submit":
        print("Job has been submitted. ID: 42.")
    elif verb == "view" and rest[0] != "42":
        print(f"Job {{rest[0]}} not found.", file=sys.stderr); sys.exit(1)
    elif verb == "view":
        print("Id                    : 42")
        print("State                 : " + ("Canceled" if "cancel 42" in calls else "Running"))
    """)


@pytest.fixture
def fake_job(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    job = bin_dir / "job"
    job.write_text(FAKE_JOB.format(python=sys.executable))
    job.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "calls"


def test_the_job_file_has_one_task_per_engine(tmp_path):
    launcher = WindowsHPCEngineSetLauncher(tmp_path / "profile", ["--log-level=DEBUG"], n=3,
                                           work_dir=str(tmp_path), queue="Engines",
                                           batch_options=["Priority=Highest"])
    assert launcher.job_file == str(tmp_path / "ipengineset_job.xml")
    job = ET.parse(launcher.write_job_file(3)).getroot()
    assert job.tag == f"{{{SCHEMA}}}Job" and job.get("MinCores") == "3"
    assert (job.get("JobTemplate"), job.get("Priority")) == ("Engines", "Highest")
    tasks = job.findall(f"{{{SCHEMA}}}Tasks/{{{SCHEMA}}}Task")
    assert len(tasks) == 3
    assert all("-m taskhub.engine" in t.get("CommandLine") and "--log-level=DEBUG" in
               t.get("CommandLine") for t in tasks)


def test_batch_options_must_be_job_attributes(tmp_path):
    launcher = WindowsHPCControllerLauncher(tmp_path, batch_options=["--time=1"],
                                            work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="written Name=Value"):
        launcher.write_job_file(1)


def test_submit_watch_and_cancel_through_the_job_command(tmp_path, fake_job):
    launcher = WindowsHPCControllerLauncher(tmp_path / "profile", scheduler="head")
    launcher.start()
    assert launcher.job_ids() == ["42"] and launcher.poll() is None
    launcher.stop(timeout=5)
    assert launcher.poll() is not None
    calls = fake_job.read_text().splitlines()
    assert calls[0].startswith("submit /jobfile:") and calls[0].endswith("/scheduler:head")
    assert "cancel 42 /scheduler:head" in calls


def test_found_by_taskhub_and_ipyparallel_names():
    assert find_launcher("engines", "winhpc") is WindowsHPCEngineSetLauncher
    assert find_launcher_class("WindowsHPC", "controller") is WindowsHPCControllerLauncher
