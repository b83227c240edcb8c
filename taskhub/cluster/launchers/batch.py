"""Batch launchers: the controller or engines as jobs of Slurm, PBS/Torque or Grid Engine.

    template (../templates/<system>_<role>.sh, or the profile's own) ──render──▶
        <profile>/log/<system>-<role>-<tag>.sh ──submit (cwd: log/)──▶ job id, recorded
    poll: is the job still listed by the scheduler?     stop: cancel it, wait until gone

One job is one unit (see ../launcher.py): Slurm runs the N engines of a job as the tasks of
one `srun`, Grid Engine as an array job of N tasks, PBS as N background processes of one
job script (PBS array jobs are spelled differently by Torque and PBS Pro, and Slurm's
Torque wrappers report only their first subjob). `ipcluster stop` cancels exactly the job
ids recorded in pid/cluster.json, and waits (bounded) until the scheduler no longer lists
them.

Templates are shell scripts with these fields, written {name}; any other text, including
shell ${VARIABLES}, is left as it is:

    {n}           engines in the job (1 for the controller)
    {command}     the taskhub program and its arguments, shell-quoted
    {tag}         the unit's tag (its engines' uuids start with it)
    {job_name}    taskhub-engines or taskhub-controller
    {directives}  the scheduler options of `queue` and `batch_options`, one per line
    {profile_dir} {log_dir} {python}

Which template: `template` (the text itself) if set, else `template_file` (relative to the
profile directory), else <profile>/templates/<system>_<role>.sh if it exists, else the
default shipped with taskhub.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path

from traitlets import Float, List, Unicode

from ..launcher import (EXIT_UNKNOWN, ControllerLauncher, EngineSetLauncher, Launcher,
                        new_tag, wait_until)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FIELD = re.compile(r"\{(\w+)\}")


class BatchError(RuntimeError):
    """A scheduler command failed; the message has its command line and output."""


class BatchJob:
    """One submitted job: a unit of `n` engines (or the controller) tagged `tag`."""

    def __init__(self, job_id, tag, n=1, script="", where=None):
        self.job_id = str(job_id)
        self.tag = tag
        self.n = n
        self.script = str(script)
        self.where = dict(where or {})

    def info(self):
        return {"job_id": self.job_id, "tag": self.tag, "n": self.n, "script": self.script}

    @classmethod
    def from_info(cls, info):
        return cls(info["job_id"], info.get("tag"), int(info.get("n", 1)), info.get("script", ""))


def render(template, fields):
    """`template` with each {field} of `fields` filled in; other braces are left alone."""
    return FIELD.sub(lambda m: str(fields[m[1]]) if m[1] in fields else m[0], template)


class BatchLauncher(Launcher):
    """What every batch launcher shares: render, submit, list, cancel. A subclass per
    scheduler sets the commands and how to read their output."""

    system = None          # "slurm", "pbs", "sge": names the default templates
    directive = None       # the script prefix of scheduler options, e.g. "#SBATCH"
    queue_option = None    # the option naming a queue/partition, e.g. "--partition="
    SUBMIT = DELETE = STATUS = ()  # the scheduler's own commands, when not configured
    script_suffix = ".sh"  # HTCondor's job scripts are submit description files

    submit_command = List(Unicode(), [], help="""The command that submits a job script (its
        path is appended). Empty: `sbatch --parsable`, `qsub` (PBS) or `qsub -terse`
        (Grid Engine), found on PATH.""").tag(config=True)
    delete_command = List(Unicode(), [], help="""The command that cancels jobs (their ids
        are appended). Empty: `scancel` or `qdel`.""").tag(config=True)
    status_command = List(Unicode(), [], help="""The command that lists jobs still queued
        or running. Empty: `squeue --noheader --format="%i %T"` (the ids are appended) or
        `qstat`.""").tag(config=True)
    queue = Unicode("", help="""Queue (PBS, Grid Engine) or partition (Slurm) to submit to;
        empty: the scheduler's default.""").tag(config=True)
    batch_options = List(Unicode(), [], help="""More scheduler options, one per script
        directive, e.g. ["--time=02:00:00"] for Slurm or ["-l walltime=02:00:00"] for
        PBS.""").tag(config=True)
    template = Unicode("", help="""The job script itself (fields: see docs/launchers.md).
        Wins over template_file.""").tag(config=True)
    template_file = Unicode("", help="""A job script template file, relative to the profile
        directory. Default: the profile's templates/<system>_<role>.sh if it exists, else
        the one shipped with taskhub.""").tag(config=True)
    python = Unicode("", help="""Python on the compute nodes, by absolute path. Empty: the
        one running ipcluster (right when the nodes share its file system).
        """).tag(config=True)
    stop_wait = Float(30.0, help="""Seconds `stop` waits, after cancelling, for the
        scheduler to stop listing the jobs (it goes on to SIGKILL-cancel them first).
        """).tag(config=True)

    # -- the job script ------------------------------------------------------------------
    def template_name(self):
        role = "engines" if self.role == "engines" else "controller"
        return f"{self.system}_{role}{self.script_suffix}"

    def template_text(self):
        if self.template:
            return self.template
        custom = Path(self.profile_dir, self.template_file) if self.template_file else None
        if custom is None:
            own = Path(self.profile_dir, "templates", self.template_name())
            custom = own if own.is_file() else None
        return (custom or TEMPLATES / self.template_name()).read_text()

    def directives(self):
        options = [f"{self.queue_option}{self.queue}"] if self.queue else []
        return "\n".join(f"{self.directive} {o}" for o in [*options, *self.batch_options])

    def program(self, tag):
        """The argv the job runs (once per engine)."""
        module = "taskhub.engine" if self.role == "engines" else "taskhub.controller"
        tag_args = ["--tag", tag] if self.role == "engines" else []
        return [self.python_path(), "-m", module, "--profile-dir", self.profile_dir, *self.args,
                *tag_args]

    def render_script(self, n, tag):
        """The job script for `n` engines (or the controller) tagged `tag`."""
        return render(self.template_text(), self.script_fields(n, tag))

    def script_fields(self, n, tag):
        """The {fields} a template may use (see the module's docstring)."""
        return {"n": n, "tag": tag, "command": shlex.join(self.program(tag)),
                "job_name": f"taskhub-{'engines' if self.role == 'engines' else 'controller'}",
                "directives": self.directives(), "profile_dir": self.profile_dir,
                "log_dir": str(self.log_dir()), "python": self.python_path()}

    def write_script(self, n, tag):
        self.log_dir().mkdir(parents=True, exist_ok=True)
        path = self.log_dir() / f"{self.system}-{self.role}-{tag}{self.script_suffix}"
        path.write_text(self.render_script(n, tag))
        path.chmod(0o755)
        return path

    @property
    def batch_file_name(self):
        return self.template_name()

    @property
    def batch_file(self):
        """Where `write_batch_script` writes: `batch_file_name` in `work_dir`."""
        return str(Path(self.work_dir) / self.batch_file_name)

    def write_batch_script(self, n):
        """Write the job script for `n` engines (or the controller) to `batch_file`, to
        look at or submit by hand; return its path."""
        path = Path(self.batch_file)
        path.write_text(self.render_script(n, new_tag(self.kind)))
        path.chmod(0o755)
        return str(path)

    # -- the scheduler's commands --------------------------------------------------------
    def submitter(self):
        return list(self.submit_command or self.SUBMIT)

    def deleter(self):
        return list(self.delete_command or self.DELETE)

    def lister(self):
        return list(self.status_command or self.STATUS)

    def python_path(self):
        return self.python or sys.executable

    def run(self, argv, check=True):
        """Run a scheduler command in the log directory; its CompletedProcess."""
        try:
            done = subprocess.run(argv, cwd=self.log_dir(), capture_output=True, text=True,
                                  timeout=60)
        except FileNotFoundError:
            raise BatchError(f"{argv[0]} not found: is the {self.system} client installed and "
                             f"on PATH? (or set {type(self).__name__}.submit_command etc.)")
        if check and done.returncode != 0:
            raise BatchError(f"{shlex.join(argv)} failed with status {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()}")
        return done

    def submit(self, n):
        """Write and submit a job script for `n` engines; the BatchJob."""
        tag = new_tag(self.system)
        script = self.write_script(n, tag)
        out = self.run(self.submit_argv(script)).stdout
        job_id = self.parse_job_id(out)
        if not job_id:
            raise BatchError(f"{self.submitter()[0]} printed no job id: {out!r}")
        self.log.info("submitted %s job %s (%s)", self.system, job_id, script)
        return BatchJob(job_id, tag, n, script)

    def submit_argv(self, script):
        """The command line that submits job script `script`."""
        return [*self.submitter(), str(script)]

    def parse_job_id(self, output):
        words = output.split()
        return words[-1] if words else ""

    def alive(self, jobs):
        """The job ids of `jobs` the scheduler still lists (queued, running, ending)."""
        raise NotImplementedError

    def cancel(self, jobs):
        if jobs:
            self.run([*self.deleter(), *(j.job_id for j in jobs)], check=False)

    def kill(self, jobs):
        """Last resort when cancelling did not end `jobs` in time (default: cancel again)."""
        self.cancel(jobs)

    def stop_jobs(self, jobs, timeout):
        """Cancel `jobs` and wait until the scheduler lists none of them (bounded)."""
        if not jobs:
            return
        self.cancel(jobs)
        if wait_until(lambda: not self.alive(jobs), max(timeout, 1), interval=0.5):
            return
        self.kill(jobs)
        if not wait_until(lambda: not self.alive(jobs), self.stop_wait, interval=0.5):
            self.log.error("%s jobs %s are still listed %.0f s after cancelling them",
                           self.system, sorted(self.alive(jobs)), timeout + self.stop_wait)

    def signal_jobs(self, jobs, sig):
        raise NotImplementedError(f"{self.system} launchers cannot send signal {sig}")

    def log_files(self):
        """The jobs' output files (the default templates name them after the system)."""
        return sorted(str(p) for p in self.log_dir().glob(f"*{self.system}*")
                      if p.suffix != self.script_suffix)

    # -- info ----------------------------------------------------------------------------
    def info(self):
        return {**self.base_info(), "jobs": [j.info() for j in self.units]}

    def job_ids(self):
        return [j.job_id for j in self.units]


class BatchEngineSetLauncher(BatchLauncher, EngineSetLauncher):
    """N engines as one job (one unit); `engines add` submits another job."""

    watch_interval = 1.0

    def plan(self):
        return [(self.n, {})]

    def start_unit(self, n, where):
        return self.submit(n)

    def stop_units(self, units, timeout):
        self.stop_jobs(units, timeout)

    def unit_running(self, unit):
        return unit.job_id in self.alive([unit])

    def ended_units(self):
        alive = self.alive(self.units)
        return [u for u in self.units if u.job_id not in alive]

    def poll(self):
        return None if self.alive(self.units) else EXIT_UNKNOWN

    def signal(self, sig):
        self.signal_jobs(self.units, sig)

    def info(self):
        return {**super().info(), "n": self.n}

    @classmethod
    def _from_info(cls, info):
        launcher = cls.from_base_info(info, n=int(info.get("n", 0)))
        launcher.units = [BatchJob.from_info(j) for j in info.get("jobs", ())]
        return launcher

    def describe(self):
        return f"{self.system} job(s) {', '.join(self.job_ids())}: {self.engine_count()} engines"


class BatchControllerLauncher(BatchLauncher, ControllerLauncher):
    """The controller as a one-task job; its connection files appear in the profile (the
    compute nodes must share the profile directory's file system)."""

    def __init__(self, profile_dir, args=(), config=None, **options):
        super().__init__(profile_dir, args, config=config, **options)
        self.units = []

    def start(self):
        self.units = [self.submit(1)]

    def stop(self, timeout=10):
        self.stop_jobs(self.units, timeout)

    def poll(self):
        return None if self.alive(self.units) else EXIT_UNKNOWN

    def signal(self, sig):
        self.signal_jobs(self.units, sig)

    @classmethod
    def _from_info(cls, info):
        launcher = cls.from_base_info(info)
        launcher.units = [BatchJob.from_info(j) for j in info.get("jobs", ())]
        return launcher

    def describe(self):
        return f"{self.system} job {', '.join(self.job_ids())}"


# -- Slurm ---------------------------------------------------------------------------------
class SlurmLauncher(BatchLauncher):
    system, directive, queue_option = "slurm", "#SBATCH", "--partition="

    SUBMIT, DELETE = ["sbatch", "--parsable"], ["scancel"]
    STATUS = ["squeue", "--noheader", "--format=%i %T"]

    def parse_job_id(self, output):
        """sbatch --parsable prints "id" or "id;cluster"."""
        words = output.split()
        return words[-1].split(";")[0] if words else ""

    def alive(self, jobs):
        if not jobs:
            return set()
        ids = [j.job_id for j in jobs]
        out = self.run([*self.lister(), "--jobs=" + ",".join(ids)], check=False)
        # squeue lists only jobs not yet finished; an id it forgot makes it fail, so ask
        # again one by one rather than take the failure for "all ended". Any other failure
        # (slurmctld busy or down) says nothing about the jobs: they count as alive.
        if out.returncode != 0 and len(ids) > 1:
            return set().union(*(self.alive([j]) for j in jobs))
        if out.returncode != 0:
            return set() if "Invalid job id" in out.stderr else set(ids)
        listed = {line.split()[0].split("_")[0] for line in out.stdout.splitlines() if line}
        return listed & set(ids)

    def kill(self, jobs):
        self.run([*self.deleter(), "--signal=KILL", "--full",
                  *(j.job_id for j in jobs)], check=False)

    def signal_jobs(self, jobs, sig):
        name = sig.name if hasattr(sig, "name") else f"{int(sig)}"
        self.run([*self.deleter(), f"--signal={name}", "--full",
                  *(j.job_id for j in jobs)], check=False)


class SlurmEngineSetLauncher(SlurmLauncher, BatchEngineSetLauncher):
    """N engines as one Slurm job: `srun` runs one engine per task."""

    kind = "slurm"


class SlurmControllerLauncher(SlurmLauncher, BatchControllerLauncher):
    """The controller as a one-task Slurm job."""

    kind = "slurm"


# -- PBS / Torque --------------------------------------------------------------------------
class PBSLauncher(BatchLauncher):
    system, directive, queue_option = "pbs", "#PBS", "-q "
    # qstat's state column: Queued, Running, Held, Waiting, Exiting, Suspended, Transit,
    # Begun (array). C (completed) and F (finished) are no longer alive.
    ALIVE = set("QRHWESTB")

    SUBMIT, DELETE, STATUS = ["qsub"], ["qdel"], ["qstat"]

    # what qstat says of an id it has forgotten (Torque, PBS Pro; Slurm's wrapper says nothing)
    FORGOTTEN = ("Unknown Job Id", "Job has finished")

    def alive(self, jobs):
        alive = set()
        for job in jobs:  # one at a time: qstat fails as a whole on an id it has forgotten
            out = self.run([*self.lister(), job.job_id], check=False)
            if out.returncode == 0:
                if self._state(out.stdout, job.job_id) in self.ALIVE:
                    alive.add(job.job_id)
            elif out.stderr.strip() and not any(m in out.stderr for m in self.FORGOTTEN):
                alive.add(job.job_id)  # the server did not answer: no news is not an end
        return alive

    @staticmethod
    def _state(qstat_output, job_id):
        """The S column of `job_id`'s row in qstat's table ("" if it has no row)."""
        short = job_id.split(".")[0]
        for line in qstat_output.splitlines():
            cols = line.split()
            if len(cols) >= 6 and cols[0].split(".")[0] == short:
                return cols[4]
        return ""

    def signal_jobs(self, jobs, sig):
        name = sig.name if hasattr(sig, "name") else f"{int(sig)}"
        for job in jobs:
            self.run(["qsig", "-s", name, job.job_id])


class PBSEngineSetLauncher(PBSLauncher, BatchEngineSetLauncher):
    """N engines as one PBS job (#PBS -l nodes=1:ppn=N) of N background processes."""

    kind = "pbs"


class PBSControllerLauncher(PBSLauncher, BatchControllerLauncher):
    """The controller as a PBS job."""

    kind = "pbs"


# -- Grid Engine ---------------------------------------------------------------------------
class SGELauncher(BatchLauncher):
    system, directive, queue_option = "sge", "#$", "-q "

    SUBMIT, DELETE, STATUS = ["qsub", "-terse"], ["qdel"], ["qstat"]

    def parse_job_id(self, output):
        """qsub -terse prints "id" or, for an array job, "id.first-last:step"."""
        words = output.split()
        return words[-1].split(".")[0] if words else ""

    def alive(self, jobs):
        """Ids in the first column of qstat's table (this user's pending, running and
        deleting jobs); a job leaves it once it has ended."""
        if not jobs:
            return set()
        out = self.run(self.lister(), check=False)
        if out.returncode != 0:  # the qmaster did not answer: no news is not an end
            return {j.job_id for j in jobs}
        listed = {line.split()[0] for line in out.stdout.splitlines()[2:] if line.strip()}
        return listed & {j.job_id for j in jobs}

    def kill(self, jobs):
        self.run([*self.deleter(), "-f", *(j.job_id for j in jobs)], check=False)

    def signal_jobs(self, jobs, sig):
        if int(sig) not in (15, 9):
            super().signal_jobs(jobs, sig)
        self.cancel(jobs)


class SGEEngineSetLauncher(SGELauncher, BatchEngineSetLauncher):
    """N engines as a Grid Engine array job (#$ -t 1-N), one engine per task."""

    kind = "sge"


class SGEControllerLauncher(SGELauncher, BatchControllerLauncher):
    """The controller as a Grid Engine job."""

    kind = "sge"
