"""Batch launchers for IBM Spectrum LSF and HTCondor (the life cycle is batch.py's).

    LSF:      bsub < script (bsub reads #BSUB directives only from stdin) -> "Job <42> ..."
              bjobs -noheader -o "jobid stat" 42     bkill 42
    HTCondor: condor_submit file.sub -> "... submitted to cluster 42."
              condor_q 42 -af ClusterId JobStatus    condor_rm 42

HTCondor's job script is a submit description file (templates/htcondor_<role>.sub): it
runs {python} with {arguments} (the taskhub program's arguments, quoted as HTCondor wants),
`queue {n}` jobs of one engine each. It has no queues: give requirements and the like as
`batch_options` lines ("request_memory = 2GB").
"""
import re
import shlex

from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher

# LSF job states after which nothing of the job runs
LSF_ENDED = {"DONE", "EXIT"}
# HTCondor JobStatus codes: 3 removed (leaving the queue), 4 completed
CONDOR_ENDED = {"3", "4"}


class LSFLauncher(BatchLauncher):
    system, directive, queue_option = "lsf", "#BSUB", "-q "

    SUBMIT, DELETE, STATUS = ["bsub"], ["bkill"], ["bjobs", "-noheader", "-o", "jobid stat"]

    def submit_argv(self, script):
        """bsub honours #BSUB lines only in a script read from its stdin."""
        return ["/bin/sh", "-c", f'exec {shlex.join(self.submitter())} < "$1"', "sh",
                str(script)]

    def parse_job_id(self, output):
        """bsub says "Job <42> is submitted to queue <normal>."."""
        found = re.search(r"Job <(\d+)>", output)
        return found[1] if found else ""

    def alive(self, jobs):
        alive = set()
        for job in jobs:  # one at a time: bjobs fails as a whole on an id it has forgotten
            out = self.run([*self.lister(), job.job_id], check=False)
            states = [line.split()[1] for line in out.stdout.splitlines()
                      if len(line.split()) >= 2 and line.split()[0] == job.job_id]
            if states and states[0] not in LSF_ENDED:
                alive.add(job.job_id)
            elif not states and out.returncode != 0 and "not found" not in out.stderr:
                alive.add(job.job_id)  # the master did not answer: no news is not an end
        return alive

    def kill(self, jobs):
        self.run([*self.deleter(), "-s", "KILL", *(j.job_id for j in jobs)], check=False)

    def signal_jobs(self, jobs, sig):
        name = sig.name if hasattr(sig, "name") else f"{int(sig)}"
        self.run([*self.deleter(), "-s", name, *(j.job_id for j in jobs)], check=False)


class LSFEngineSetLauncher(LSFLauncher, BatchEngineSetLauncher):
    """N engines as one LSF job of N slots on one host."""

    kind = "lsf"


class LSFControllerLauncher(LSFLauncher, BatchControllerLauncher):
    """The controller as an LSF job."""

    kind = "lsf"


def condor_arguments(argv):
    """`argv` as the value of an HTCondor `arguments` line (its new syntax: the whole in
    double quotes, an argument with spaces in single quotes, quotes doubled)."""
    def one(arg):
        arg = arg.replace('"', '""')
        if not arg or any(c in arg for c in " \t'"):
            return "'" + arg.replace("'", "''") + "'"
        return arg
    return '"' + " ".join(one(a) for a in argv) + '"'


class HTCondorLauncher(BatchLauncher):
    system = "htcondor"
    script_suffix = ".sub"

    SUBMIT, DELETE, STATUS = ["condor_submit"], ["condor_rm"], ["condor_q"]

    def directives(self):
        if self.queue:
            raise ValueError("HTCondor has no queues: give HTCondorLauncher.batch_options "
                             "lines such as 'requirements = ...' instead of queue")
        return "\n".join(self.batch_options)

    def script_fields(self, n, tag):
        program = self.program(tag)
        return {**super().script_fields(n, tag), "arguments": condor_arguments(program[1:])}

    def parse_job_id(self, output):
        """condor_submit says "N job(s) submitted to cluster 42."."""
        found = re.search(r"submitted to cluster (\d+)", output)
        return found[1] if found else ""

    def alive(self, jobs):
        alive = set()
        for job in jobs:
            out = self.run([*self.lister(), job.job_id, "-af", "ClusterId", "JobStatus"],
                           check=False)
            if out.returncode != 0:
                alive.add(job.job_id)  # the schedd did not answer: no news is not an end
                continue
            statuses = [line.split()[1] for line in out.stdout.splitlines()
                        if len(line.split()) >= 2 and line.split()[0] == job.job_id]
            if any(status not in CONDOR_ENDED for status in statuses):
                alive.add(job.job_id)
        return alive

    def kill(self, jobs):
        self.run([*self.deleter(), "-forcex", *(j.job_id for j in jobs)], check=False)


class HTCondorEngineSetLauncher(HTCondorLauncher, BatchEngineSetLauncher):
    """N engines as one HTCondor cluster of N jobs."""

    kind = "htcondor"


class HTCondorControllerLauncher(HTCondorLauncher, BatchControllerLauncher):
    """The controller as an HTCondor job."""

    kind = "htcondor"
