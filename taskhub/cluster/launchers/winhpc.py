"""Windows HPC Server (HPC Pack) launchers: the controller or engines as one HPC job.

    job file (XML: one Task per engine, or the controller's one) ──▶ <profile>/log/...xml
        ──`job submit /jobfile:<file> [/scheduler:<head node>]`──▶ "... ID: 42", recorded
    poll: `job view 42` — its State is not yet Finished, Failed or Canceled
    stop: `job cancel 42`

The batch launchers' life cycle (batch.py) with HPC Pack's job file in place of a shell
script: there is no template to render, the XML is built from the same fields (the taskhub
command, the profile's log directory for the tasks' output). `queue` names the HPC job
template to submit under, `batch_options` are more attributes of the <Job> element
("Priority=Highest"). The compute nodes must share the profile directory with this machine,
as for every batch launcher.
"""
import re
import subprocess
import xml.etree.ElementTree as ET

from traitlets import Unicode, default

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher

SCHEMA = "http://schemas.microsoft.com/HPCS2008R2/scheduler/"
ENDED = {"finished", "failed", "canceled"}  # HPC Pack job states after which nothing runs


class WindowsHPCLauncher(BatchLauncher):
    """What the controller and engine launchers for HPC Pack share."""

    system = "winhpc"
    SUBMIT, DELETE, STATUS = ["job", "submit"], ["job", "cancel"], ["job", "view"]

    scheduler = Unicode("", help="""The HPC Pack head node to submit to (/scheduler:);
        empty: the CCP_SCHEDULER environment variable's, as the job command
        defaults.""").tag(config=True)
    job_file_name = Unicode(help="""The name `write_job_file` gives the job file in
        work_dir (jobs submitted by ipcluster get a file of their own in the profile's
        log/). Default: ipcontroller_job.xml or ipengineset_job.xml.""").tag(config=True)

    @default("job_file_name")
    def _default_job_file_name(self):
        return "ipengineset_job.xml" if self.role == "engines" else "ipcontroller_job.xml"

    def template_name(self):
        return self.job_file_name

    @property
    def job_file(self):
        """Where `write_job_file` writes: `job_file_name` in `work_dir`."""
        return self.batch_file

    def write_job_file(self, n):
        """Write the job file for `n` engines (or the controller) to `job_file`."""
        return self.write_batch_script(n)

    def render_script(self, n, tag):
        """The XML job file: one Task per engine (the controller: one Task)."""
        ET.register_namespace("", SCHEMA)
        job = ET.Element(f"{{{SCHEMA}}}Job", self._job_attributes(n))
        tasks = ET.SubElement(job, f"{{{SCHEMA}}}Tasks")
        command = subprocess.list2cmdline(self.program(tag))
        for i in range(1, n + 1):
            name = f"{self.role}-{tag}-{i}"
            ET.SubElement(tasks, f"{{{SCHEMA}}}Task", {
                "Name": name, "CommandLine": command, "MinCores": "1", "MaxCores": "1",
                "WorkDirectory": str(self.log_dir()),
                "StdOutFilePath": str(self.log_dir() / f"winhpc-{name}.out"),
                "StdErrFilePath": str(self.log_dir() / f"winhpc-{name}.err")})
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(job, "unicode") + "\n"

    def _job_attributes(self, n):
        attributes = {"Name": f"taskhub-{self.role}", "MinCores": str(n), "MaxCores": str(n),
                      "UnitType": "Core", "IsExclusive": "false"}
        if self.queue:
            attributes["JobTemplate"] = self.queue
        for option in self.batch_options:
            key, eq, value = option.partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][\w.]*", key.strip()):
                raise ValueError(f"{type(self).__name__}.batch_options are Job attributes "
                                 f"written Name=Value, not {option!r}")
            attributes[key.strip()] = value.strip()
        return attributes

    def write_script(self, n, tag):
        self.log_dir().mkdir(parents=True, exist_ok=True)
        path = self.log_dir() / f"winhpc-{self.role}-{tag}.xml"
        path.write_text(self.render_script(n, tag))
        return path

    # -- the job command -----------------------------------------------------------------
    def _scheduler_args(self):
        return [f"/scheduler:{self.scheduler}"] if self.scheduler else []

    def submit_argv(self, script):
        return [*self.submitter(), f"/jobfile:{script}", *self._scheduler_args()]

    def parse_job_id(self, output):
        """`job submit` says "Job has been submitted. ID: 42."."""
        found = re.search(r"ID:\s*(\d+)", output) or re.search(r"(\d+)", output)
        return found[1] if found else ""

    def alive(self, jobs):
        alive = set()
        for job in jobs:
            out = self.run([*self.lister(), job.job_id, *self._scheduler_args()], check=False)
            state = re.search(r"^\s*State\s*:\s*(\w+)", out.stdout, re.MULTILINE)
            if out.returncode != 0 and "not found" not in (out.stderr + out.stdout).lower():
                alive.add(job.job_id)  # the head node did not answer: no news is not an end
            elif state and state[1].lower() not in ENDED:
                alive.add(job.job_id)
        return alive

    def cancel(self, jobs):
        for job in jobs:
            self.run([*self.deleter(), job.job_id, *self._scheduler_args()], check=False)

    def log_files(self):
        return sorted(str(p) for p in self.log_dir().glob("winhpc-*") if p.suffix != ".xml")


class WindowsHPCEngineSetLauncher(WindowsHPCLauncher, BatchEngineSetLauncher):
    """N engines as one HPC Pack job of N single-core tasks."""

    kind = "winhpc"


class WindowsHPCControllerLauncher(WindowsHPCLauncher, BatchControllerLauncher):
    """The controller as a one-task HPC Pack job."""

    kind = "winhpc"

