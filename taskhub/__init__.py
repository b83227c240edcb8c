"""taskhub: run Python functions in parallel on a cluster that remembers every task.

The names below are imported on first use (PEP 562), so a process that needs only part of
the package — an engine, the controller — does not pay for the rest at start-up (the
client alone pulls in asyncio and concurrent.futures).
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    ".client": ("AsyncHubResult", "AsyncResult", "Client", "DirectView", "LoadBalancedView",
                "Batch", "Executor", "TaskFuture"),
    ".cluster.cluster": ("Cluster",),
    ".dependency": ("Dependency", "depend", "dependent", "require"),
    ".reference": ("Reference", "interactive"),
    ".nesting": ("engine_client",),
    ".strategies": ("Serializer", "check_strategies"),
    ".error": ("CompositeError", "EngineError", "RemoteError", "TaskAborted", "TaskhubError",
               "TimeoutError", "ShellCommandFailed"),
    ".shell": ("ShellFunction", "MPIFunction", "ShellResult"),
    ".versions": ("VersionMismatchWarning",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'taskhub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__():
    return sorted({*globals(), *__all__})


def load_ipython_extension(shell):
    """`%load_ext taskhub`: the %px magics on every engine of the default cluster."""
    from .magics import load_ipython_extension as load
    load(shell)


def register_joblib_backend(name="taskhub", make_default=False):
    """joblib's backend `name` on the default cluster's engines (connected on first use);
    see taskhub.joblib_backend."""
    from .joblib_backend import register
    register(None, name, make_default)
