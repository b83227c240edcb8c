"""Functions a DirectView sends to engines to work on their namespace (`__main__`).

They are imported by name on the engine, so only their names travel."""
import sys


def _ns():
    return sys.modules["__main__"].__dict__


def execute(code):
    exec(compile(code, "<execute>", "exec"), _ns())


def push(namespace):
    _ns().update(namespace)


def pull(names):
    ns = _ns()
    missing = [n for n in ([names] if isinstance(names, str) else names) if n not in ns]
    if missing:
        raise NameError(f"name {missing[0]!r} is not defined on this engine")
    return ns[names] if isinstance(names, str) else [ns[n] for n in names]
