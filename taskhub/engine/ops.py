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
    _ns().update(namespace)


def pull(names):
    ns = _ns()
    missing = [n for n in ([names] if isinstance(names, str) else names) if n not in ns]
    if missing:
        raise NameError(f"name {missing[0]!r} is not defined on this engine")
    return ns[names] if isinstance(names, str) else [ns[n] for n in names]


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
