"""Launcher classes by the names ipyparallel profiles and code use for them.

    find_launcher_class("MPI", "EngineSet")        -> MPIEngineSetLauncher
    find_launcher_class("slurm", "controller")     -> SlurmControllerLauncher
    find_launcher_class("pkg.mod.MyLauncher", ...) -> that class, imported
    abbreviate_launcher_class(cls)                 -> "mpi" (or "pkg.mod.Class")

The lookup itself is launcher.find_launcher: this only maps the spellings onto it.
"""
import importlib

from .launcher import Launcher, find_launcher, known_launchers

# ipyparallel's kind spellings -> taskhub's launcher roles
_ROLES = {"controller": "controller", "engine": "engines", "engines": "engines",
          "engineset": "engines"}
_SUFFIXES = ("EngineSetLauncher", "ControllerLauncher", "Launcher")
_SPELLINGS = {"windowshpc": "winhpc"}  # ipyparallel's short names that differ from ours


def _role(kind):
    role = _ROLES.get(str(kind).lower())
    if role is None:
        raise ValueError(f"launcher kind must be 'controller' or 'engine', not {kind!r}")
    return role


def find_launcher_class(name, kind):
    """The launcher class `name` means for `kind` ("controller" or "engine"/"EngineSet"):
    a class (returned as is), a dotted import path, or a short name in any case, with or
    without ipyparallel's "EngineSetLauncher"/"ControllerLauncher" suffix."""
    role = _role(kind)
    if isinstance(name, type):
        return name
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot import launcher {name!r}: {e}") from e
    short = name
    for suffix in _SUFFIXES:
        if short.endswith(suffix) and short != suffix:
            short = short[:-len(suffix)]
            break
    return find_launcher(role, _SPELLINGS.get(short.lower(), short.lower()))


def abbreviate_launcher_class(cls):
    """The short name `find_launcher_class` takes back for `cls`, else "module.Class"."""
    role = getattr(cls, "role", None)
    if role in ("controller", "engines") and getattr(cls, "kind", None) in known_launchers(role):
        try:
            if find_launcher(role, cls.kind) is cls:
                return cls.kind
        except ValueError:
            pass
    return f"{cls.__module__}.{cls.__name__}"


def _all_launchers():
    """Every launcher class that can be loaded, controllers first."""
    found = []
    for role in ("controller", "engines"):
        for name in known_launchers(role):
            try:
                found.append(find_launcher(role, name))
            except ValueError:
                continue  # an entry point that does not load
    return [cls for cls in found if issubclass(cls, Launcher)]


def __getattr__(name):
    # `all_launchers` is a list, as ipyparallel's is, made on first use: building it
    # imports every launcher module and reads the entry points
    if name == "all_launchers":
        return _all_launchers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
