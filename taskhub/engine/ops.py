"""Functions a DirectView sends to engines to work on their namespace (`__main__`).

They are imported by name on the engine, so only their names travel."""
import sys


def _ns():
    return sys.modules["__main__"].__dict__


def execute(code, silent=True):
    """Run `code` in the engine's namespace: through IPython when the engine has it (magics,
    display(); an ExecuteReply back; `silent=False` keeps the last expression's value), as
    plain Python otherwise (None back). TASKHUB_ENGINE_IPYTHON=0 on the engine insists on
    plain Python."""
    if _use_ipython():
        from . import ipyshell
        return ipyshell.run_cell(code, silent=silent)
    exec(compile(code, "<execute>", "exec"), _ns())
    return None


def _use_ipython():
    import os
    if os.environ.get("TASKHUB_ENGINE_IPYTHON", "1") == "0":
        return False
    from . import ipyshell
    return ipyshell.available()


def push(namespace):
    """Bind each name; a dotted one ('a.b') sets the attribute of the object bound there."""
    ns = _ns()
    for name, value in namespace.items():
        head, _, attr = name.rpartition(".")
        if head:
            setattr(_lookup(ns, head), attr, value)
        else:
            ns[name] = value


def pull(names):
    """The value of each name; a dotted one ('a.b') is the attribute of the object."""
    ns = _ns()
    if isinstance(names, str):
        return _lookup(ns, names)
    return [_lookup(ns, n) for n in names]


def _lookup(ns, name):
    head, *attrs = name.split(".")
    if head not in ns:
        raise NameError(f"name {head!r} is not defined on this engine")
    value = ns[head]
    for attr in attrs:
        value = getattr(value, attr)
    return value


def clear():
    """Empty the engine's namespace (Client.clear): the user's names go; the module's
    dunder entries stay, and so do the names IPython keeps there (In, Out, _oh...) when
    the engine's IPython shell was started."""
    from . import ipyshell
    if ipyshell._shell is not None:
        ipyshell._shell.reset(new_session=False)
        return
    ns = _ns()
    for name in [n for n in ns if not (n.startswith("__") and n.endswith("__"))]:
        del ns[name]
