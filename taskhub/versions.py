"""Which Python and serializers a process runs, and what to say when two processes differ.

Functions and arguments travel pickled (dill, or cloudpickle when chosen), and pickles are
made at the bytecode level: a client on Python 3.12 sending to an engine on 3.11, or dill
0.3.6 to dill 0.3.8, can fail to deserialize, crash a worker, or — worst — give wrong
results. So engines report their versions when they register, clients when they connect;
a client warns (`VersionMismatchWarning`) when an engine's differ from its own, the
controller logs it, and a task an engine cannot deserialize says what that engine runs.

Python's micro version (3.11.7 vs 3.11.9) is usually safe and is not reported; its
major.minor and any serializer version are.
"""
import functools
import platform
import warnings
from importlib import metadata

SERIALIZERS = ("dill", "cloudpickle")
UNPACK_NOTE = "the task's function or arguments could not be deserialized on this engine"


class VersionMismatchWarning(UserWarning):
    """A client and an engine run different Python or serializer versions."""


def local():
    """{"python": "3.11.7", "dill": "0.3.8", "cloudpickle": None or a version}."""
    return dict(_read())


@functools.lru_cache(maxsize=1)
def _read():
    found = {"python": platform.python_version()}
    for name in SERIALIZERS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _key(name, version):
    if name == "python" and version:
        return ".".join(version.split(".")[:2])
    return version


def differences(mine, theirs):
    """[(name, mine, theirs)] for each version that differs in a way that matters; a
    serializer one side lacks is not a difference (it is only used when both have it)."""
    if not isinstance(theirs, dict):
        return []
    out = []
    for name in ("python", *SERIALIZERS):
        a, b = mine.get(name), theirs.get(name)
        if name != "python" and (a is None or b is None):
            continue
        if _key(name, a) != _key(name, b):
            out.append((name, a, b))
    return out


def describe(diffs, mine="this client", theirs="the engine"):
    """One sentence naming each difference."""
    parts = [f"{name} {a} on {mine}, {b} on {theirs}" for name, a, b in diffs]
    return (f"{mine} and {theirs} run different versions ({'; '.join(parts)}): tasks may "
            f"fail to deserialize, crash or return wrong results; use the same Python and "
            f"serializer versions on both")


class Checker:
    """Warns once per distinct set of differences a client sees among engines."""

    def __init__(self, mine=None):
        self.mine = local() if mine is None else mine
        self._warned = set()

    def check(self, theirs, who):
        """Warn if `theirs` (an engine's versions) differs from ours; the differences."""
        diffs = differences(self.mine, theirs)
        key = tuple(diffs)
        if diffs and key not in self._warned:
            self._warned.add(key)
            warnings.warn(describe(diffs, theirs=who), VersionMismatchWarning, stacklevel=3)
        return diffs


def explain_unpack_failure(content, mine):
    """The error text of a task an engine could not deserialize, with the differences
    between that engine's versions (in the reply) and `mine` added."""
    evalue = content.get("evalue", "")
    theirs = content.get("versions")
    if not isinstance(theirs, dict):
        return evalue
    diffs = differences(mine, theirs)
    running = ", ".join(f"{k} {v}" for k, v in theirs.items() if v)
    if diffs:
        return f"{evalue} [{describe(diffs, theirs='that engine')}]"
    return f"{evalue} [the engine runs {running}, as this client does]"
