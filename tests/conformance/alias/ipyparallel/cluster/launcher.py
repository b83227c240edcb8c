"""ipyparallel.cluster.launcher: taskhub's launchers under ipyparallel's names."""
from .._bind import bind

bind(globals(), "taskhub.cluster.launcher", "SIGKILL LocalProcessLauncher=LocalLauncher"
     " ProcessStateError ipcontroller_cmd_argv ipengine_cmd_argv LocalControllerLauncher"
     " LocalEngineLauncher LocalEngineSetLauncher BaseLauncher=Launcher ControllerLauncher"
     " EngineLauncher")
bind(globals(), "taskhub.cluster.launchernames", "find_launcher_class abbreviate_launcher_class"
     " all_launchers")
bind(globals(), "taskhub.cluster.launchers.batch", "BatchControllerLauncher"
     " BatchEngineSetLauncher SlurmControllerLauncher SlurmEngineSetLauncher"
     " PBSControllerLauncher PBSEngineSetLauncher SGEControllerLauncher SGEEngineSetLauncher")
bind(globals(), "taskhub.cluster.launchers.ssh", "SSHLauncher SSHControllerLauncher"
     " SSHEngineSetLauncher SSHEngineLauncher ssh_waitpid _ssh_outputs")
bind(globals(), "taskhub.cluster.launchers.mpi", "MPILauncher MPIControllerLauncher"
     " MPIEngineSetLauncher")
bind(globals(), "taskhub.cluster.launchers.winhpc", "WindowsHPCLauncher"
     " WindowsHPCControllerLauncher WindowsHPCEngineSetLauncher")
bind(globals(), "taskhub.cluster.launchers.lsf_condor", "LSFLauncher LSFControllerLauncher"
     " LSFEngineSetLauncher HTCondorLauncher HTCondorControllerLauncher"
     " HTCondorEngineSetLauncher")
