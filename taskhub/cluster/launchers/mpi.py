"""`--engines=mpi`: N engines started as one `mpiexec -n N`, one unit.

Each engine runs `ipengine --mpi`: it initializes MPI through mpi4py and registers its rank
and the world size, so tasks can use `mpi4py.MPI.COMM_WORLD` with the other engines of the
run. The whole mpiexec is one unit: MPI ends every rank when one of them dies, so the
watcher notices the run, not single engines.
"""
import os
import sys

from traitlets import Bool, List, Unicode

from ..launcher import (ControllerLauncher, Launcher, LocalControllerLauncher,
                        LocalEngineUnits, LocalProcess, new_tag)


class MPIOptions(Launcher):
    """The mpiexec command, its options and environment, of both MPI launchers."""

    mpiexec = List(Unicode(), ["mpiexec"], help="""The MPI launcher command. Give the full
        path to pick one MPI among several installed.""").tag(config=True)
    mpi_args = List(Unicode(), [], help="""Extra mpiexec options before the program, e.g.
        ["--hostfile", "/etc/hosts.mpi"] to place ranks on other machines.""").tag(config=True)
    oversubscribe = Bool(True, help="""Let Open MPI start more ranks than this machine has
        cores (engines mostly wait). Off: Open MPI refuses -n above the core count, which
        stops CPU-bound engines from sharing cores.""").tag(config=True)

    def get_env(self):
        """Open MPI refuses root and more ranks than cores unless told; other MPIs ignore
        these variables."""
        env = super().get_env()
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        if self.oversubscribe:
            env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        return env


class MPIEngineSetLauncher(MPIOptions, LocalEngineUnits):
    """`mpiexec -n N python -m taskhub.engine --mpi ...` on this machine (or, with
    `mpi_args` naming a hostfile, wherever mpiexec places the ranks)."""

    kind = "mpi"
    module = "taskhub.engine"
    log_name = "mpiexec"

    def plan(self):
        return [(self.n, {})]

    def command(self):
        return [sys.executable, "-m", self.module, "--profile-dir", self.profile_dir, "--mpi",
                *self.args]

    def mpi_command(self, n, tag):
        return [*self.mpiexec, "-n", str(n), *self.mpi_args, *self.command(),
                *self.tag_args(tag)]

    def start_unit(self, n, where):
        tag = new_tag(self.kind)
        return LocalProcess.spawn(self.mpi_command(n, tag), self.log_dir(), self.log_name,
                                  env=self.get_env(), tag=tag, n=n)

    def describe(self):
        return f"mpi: {self.engine_count()} engines in {len(self.units)} mpiexec run(s)"


class MPIControllerLauncher(MPIOptions, LocalControllerLauncher):
    """The controller as `mpiexec -n 1 python -m taskhub.controller ...` (for sites where
    programs must start through MPI); its pid is mpiexec's."""

    kind = "mpi"
    log_name = "mpiexec-controller"

    def start(self):
        cmd = [*self.mpiexec, "-n", "1", *self.mpi_args, *self.command()]
        self.processes.append(LocalProcess.spawn(cmd, self.log_dir(), self.log_name,
                                                 env=self.get_env()))

    def connection_ready(self):
        # The connection files name the controller's pid, a child of mpiexec.
        return ControllerLauncher.connection_ready(self)

    def describe(self):
        return f"mpi: mpiexec pid {self.pid}"
