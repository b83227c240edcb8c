"""ipyparallel.cluster.shellcmd."""
from .._bind import bind

bind(globals(), "taskhub.cluster.launchers.shellcmd", "ShellCommandSend")
