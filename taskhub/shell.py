"""Shell and MPI commands as tasks, in the shape Globus Compute users know.

    sf = ShellFunction("echo {message}", walltime=30)
    fut = ex.submit(sf, message="hi")     the engine formats the command with the keyword
    fut.result()                          arguments, runs it in a shell, and returns a
      -> ShellResult(returncode=0, stdout="hi\\n", stderr="", cmd="echo hi")

A non-zero exit raises `ShellCommandFailed` (a RemoteError carrying the same fields), and a
command still running after `walltime` seconds has its whole process group killed and fails
the same way with returncode 124 (as coreutils' `timeout` reports it). What the command
prints is copied to the task's stdout/stderr as it comes, so it streams to subscribed clients
and lands in the task record like any task's output; the result holds the last
`snippet_lines` lines of each.

`MPIFunction` runs its command under `mpiexec`, with as many ranks as the task's
`resource_specification` asks for ({"num_nodes": N, "ranks_per_node": R}), on the hosts of
the engine's batch allocation (Slurm, PBS, SGE) or, for one node, on the engine's own host.
When that cannot be done (no mpiexec on the engine, more nodes asked for than the allocation
has), it fails with a message saying what it found.

Both are classes of this module, so they travel as a reference plus their fields under
every code serializer; nothing of the client's environment is needed on the engine.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass

from .error import ShellCommandFailed

WALLTIME_RETURNCODE = 124


@dataclass(frozen=True)
class ShellResult:
    """What a shell task returns: the command as run, its exit code and the last lines of
    its output."""
    cmd: str
    returncode: int
    stdout: str
    stderr: str

    def __str__(self):
        return self.stdout


class ShellFunction:
    """A shell command template run on an engine: `cmd` formatted with the call's keyword
    arguments (str.format), run by /bin/sh in the engine's working directory (or `cwd`).
    `walltime` (seconds) stops it; `snippet_lines` lines of stdout/stderr are kept in the
    result (all of it still reaches the task's output); `name` labels it."""

    def __init__(self, cmd, *, walltime=None, snippet_lines=1000, name=None, cwd=None,
                 env=None):
        if not isinstance(cmd, str) or not cmd.strip():
            raise TypeError(f"a ShellFunction's cmd is a non-empty command string, not "
                            f"{cmd!r:.60}")
        if walltime is not None and not (isinstance(walltime, (int, float)) and walltime > 0):
            raise ValueError(f"walltime must be a positive number of seconds, not {walltime!r}")
        if not isinstance(snippet_lines, int) or snippet_lines < 0:
            raise ValueError(f"snippet_lines must be a non-negative int, not {snippet_lines!r}")
        self.cmd = cmd
        self.walltime = walltime
        self.snippet_lines = snippet_lines
        self.name = name or cmd.split()[0]
        self.cwd = cwd
        self.env = dict(env) if env else None

    @property
    def __name__(self):  # how task records and error messages name the call
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}({self.cmd!r})"

    def format(self, **kwargs):
        """The command line this call runs; KeyError names a placeholder left unfilled."""
        try:
            return self.cmd.format(**kwargs)
        except KeyError as e:
            raise KeyError(f"the command {self.cmd!r} needs a value for {{{e.args[0]}}}: pass "
                           f"it as a keyword argument") from None

    def __call__(self, *args, **kwargs):
        if args:
            raise TypeError(f"{self!r} takes keyword arguments only (they fill the command's "
                            f"{{placeholders}}), got {len(args)} positional")
        return self._run(self.format(**kwargs), self.env)

    def _run(self, cmdline, extra_env):
        env = {**os.environ, **extra_env} if extra_env else None
        proc = subprocess.Popen(cmdline, shell=True, cwd=self.cwd, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)  # its own group: walltime kills all
        tails = _pump(proc, self.snippet_lines)
        timed_out = False
        try:
            proc.wait(self.walltime)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:  # the task was aborted or interrupted: the command goes too
            _kill_group(proc)
            raise
        out, err = (t.result() for t in tails)
        if timed_out:
            raise ShellCommandFailed.of(
                ShellResult(cmdline, WALLTIME_RETURNCODE, out, err),
                f"command exceeded its walltime of {self.walltime:g}s and was killed")
        result = ShellResult(cmdline, proc.returncode, out, err)
        if proc.returncode != 0:
            raise ShellCommandFailed.of(result, f"command exited with returncode "
                                                f"{proc.returncode}")
        return result


class MPIFunction(ShellFunction):
    """A ShellFunction run under `mpiexec` with the ranks a resource specification asks for:
    {"num_nodes": N, "ranks_per_node": R} (default 1 and 1). Give it here, or as the
    executor's `resource_specification` (which applies to MPIFunctions submitted without
    one). `mpiexec` is the launcher command (list or string)."""

    def __init__(self, cmd, *, resource_specification=None, mpiexec="mpiexec", **options):
        super().__init__(cmd, **options)
        self.resource_specification = (None if resource_specification is None
                                       else check_resources(resource_specification))
        self.mpiexec = shlex.split(mpiexec) if isinstance(mpiexec, str) else list(mpiexec)

    def with_resources(self, spec):
        """A copy of this function with `spec` as its resource specification."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__, resource_specification=check_resources(spec))
        return clone

    def __call__(self, *args, **kwargs):
        if args:
            raise TypeError(f"{self!r} takes keyword arguments only, got {len(args)} "
                            f"positional")
        spec = self.resource_specification or {"num_nodes": 1, "ranks_per_node": 1}
        prefix, env = mpi_prefix(self.mpiexec, spec, allocation_hosts())
        cmdline = f"{prefix} {self.format(**kwargs)}"
        return self._run(cmdline, {**(self.env or {}), **env})


def check_resources(spec):
    """`spec` checked: a dict of positive ints under num_nodes/ranks_per_node (or num_ranks)."""
    if not isinstance(spec, dict):
        raise TypeError(f"resource_specification is a dict such as {{'num_nodes': 2, "
                        f"'ranks_per_node': 4}}, not {type(spec).__name__}")
    unknown = set(spec) - {"num_nodes", "ranks_per_node", "num_ranks"}
    if unknown:
        raise ValueError(f"unknown resource_specification keys {sorted(unknown)} (known: "
                         f"num_nodes, ranks_per_node, num_ranks)")
    for key, value in spec.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"resource_specification[{key!r}] must be a positive int, "
                             f"not {value!r}")
    return dict(spec)


def bind_resources(f, spec):
    """`f` with the executor's resource specification, if it is an MPIFunction without one."""
    if spec is not None and isinstance(f, MPIFunction) and f.resource_specification is None:
        return f.with_resources(spec)
    return f


def allocation_hosts(environ=None):
    """The hosts of the batch allocation this engine runs in (one entry per host, in order),
    or [] outside one. Read from what Slurm, PBS and SGE put in a job's environment."""
    environ = os.environ if environ is None else environ
    if environ.get("PBS_NODEFILE") and os.path.exists(environ["PBS_NODEFILE"]):
        return _unique(_lines(environ["PBS_NODEFILE"]))
    if environ.get("PE_HOSTFILE") and os.path.exists(environ["PE_HOSTFILE"]):
        return _unique(line.split()[0] for line in _lines(environ["PE_HOSTFILE"]))
    if environ.get("SLURM_JOB_NODELIST"):
        return _slurm_hosts(environ["SLURM_JOB_NODELIST"])
    return []


def mpi_prefix(mpiexec, spec, hosts):
    """(command prefix, extra environment) that start the ranks `spec` asks for."""
    nodes = spec.get("num_nodes", 1)
    per_node = spec.get("ranks_per_node", 1)
    ranks = spec.get("num_ranks", nodes * per_node)
    if shutil.which(mpiexec[0]) is None:
        raise FileNotFoundError(f"MPIFunction needs {mpiexec[0]!r} on the engine's PATH, and "
                                f"this engine has none (PATH={os.environ.get('PATH', '')}); "
                                f"install an MPI or give MPIFunction(mpiexec='/path/to/mpiexec')")
    if nodes > max(len(hosts), 1):
        where = (f"its allocation has {len(hosts)}: {', '.join(hosts)}" if hosts else
                 "it runs outside a batch allocation, so it has only its own host")
        raise ValueError(f"the task asks for {nodes} nodes, but {where}; start the cluster "
                         f"with --engines=slurm/pbs/sge (or mpi) on enough nodes, or ask for "
                         f"fewer")
    args = [*mpiexec, "-n", str(ranks)]
    if hosts and nodes > 1:
        args += ["--host", ",".join(f"{h}:{per_node}" for h in hosts[:nodes])]
    env = {"OMPI_MCA_rmaps_base_oversubscribe": "1"}  # ranks beyond the cores Slurm gave
    if os.geteuid() == 0:  # Open MPI refuses root unless told twice; other MPIs ignore it
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return shlex.join(args), env


# -- helpers --------------------------------------------------------------------------------
class _Tail:
    """Copies a pipe to one of this process's streams (the task's captured output) line by
    line on a thread, keeping the last `keep` lines."""

    def __init__(self, pipe, stream_name, keep):
        self._lines = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._copy, args=(pipe, stream_name),
                                        daemon=True, name=f"taskhub-shell-{stream_name}")
        self._thread.start()

    def _copy(self, pipe, stream_name):
        with pipe:
            for line in pipe:
                getattr(sys, stream_name).write(line)
                if self._lines.maxlen:
                    self._lines.append(line)

    def result(self):
        self._thread.join()
        return "".join(self._lines)


def _pump(proc, keep):
    return _Tail(proc.stdout, "stdout", keep), _Tail(proc.stderr, "stderr", keep)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _unique(names):
    return list(dict.fromkeys(names))


def _slurm_hosts(nodelist):
    """Slurm's compressed node list ('n[01-03,07],login1') as host names, without scontrol."""
    hosts, depth, part = [], 0, ""
    for ch in nodelist + ",":
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            hosts += _expand(part)
            part = ""
        else:
            part += ch
    return hosts


def _expand(part):
    if "[" not in part:
        return [part] if part else []
    stem, _, rest = part.partition("[")
    ranges, _, tail = rest.partition("]")
    out = []
    for r in ranges.split(","):
        lo, _, hi = r.partition("-")
        for i in range(int(lo), int(hi or lo) + 1):
            out.append(f"{stem}{str(i).zfill(len(lo))}{tail}")
    return out
