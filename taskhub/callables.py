"""Callables that travel as names, and short descriptions of calls for error messages.

    submit("pkg.mod:func", 1)  ─▶ ByName("pkg.mod:func"): a few bytes ─▶ the engine imports
                                   pkg.mod and calls func(1)
    fid = rc.register_function(f) ─▶ the hub keeps f's frame under fid ("fn-<hash>")
    apply(fid, 1) ─▶ Registered(fid) ─▶ the engine fetches f from the hub once, then calls it

Both stand-ins are classes of this module, so they pickle by reference under every code
strategy. A name under `__main__` in a process run as ``python -m pkg.tool`` means
``pkg.tool`` (engines cannot see a client's `__main__`); in a plain script it means the
engine's own namespace, where a DirectView pushes names.
"""
import hashlib
import importlib
import os
import pickle
import re
import reprlib
import sys
import threading

from .reference import Reference

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FID = re.compile(r"^fn-[0-9a-f]{32}$")


def as_callable(f):
    """`f`, or the stand-in for a callable given by name ('pkg.mod:func') or by the id
    register_function returned; a Reference calls the engine's function of that name.
    Other values are returned as they are."""
    if isinstance(f, Reference):
        return f.as_function()
    if isinstance(f, str):
        if _FID.match(f):
            return Registered(f)
        if ":" in f:
            return ByName(f)
    return f


# -- by name --------------------------------------------------------------------------------
class ByName:
    """Calls the function named 'package.module:qualified.name', imported where it runs."""

    def __init__(self, spec):
        if not _NAME.match(spec):
            raise ValueError(f"{spec!r} is not a callable's name: expected "
                             "'package.module:function' (or 'package.module:Class.method')")
        module, _, attr = spec.partition(":")
        if module == "__main__":
            main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            if main_spec is not None:  # run with `python -m`: the module has a real name
                module = main_spec.name
        self.spec = f"{module}:{attr}"

    @property
    def __name__(self):
        return self.spec

    def __call__(self, *args, **kwargs):
        return resolve(self.spec)(*args, **kwargs)

    def __repr__(self):
        return f"ByName({self.spec!r})"


def _is_part_of(missing, module_name):
    """Whether `missing` is `module_name` or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")


def _not_found(spec, module_name, error):
    """Where this process looked for a module it could not find, and how to put it there."""
    top = module_name.split(".")[0]
    places = "\n".join(f"    {p or '(the working directory)'}" for p in sys.path)
    return (f"cannot import module {module_name!r} for the callable {spec!r}: {error}.\n"
            f"This process (pid {os.getpid()}) runs in {os.getcwd()} and looked on sys.path:\n"
            f"{places}\n"
            f"To make {top!r} importable where tasks run: install it into the engines' Python "
            f"(pip install ...), or start the engines with the directory that holds it: "
            f"`ipcluster start --work-dir DIR` / `ipengine --work-dir DIR`, or "
            f"PYTHONPATH=DIR in their environment.")


def resolve(spec):
    """The callable 'package.module:qualified.name' names, imported here."""
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not _is_part_of(e.name, module_name):
            raise  # the module was found; something it imports was not: its own traceback
        raise ModuleNotFoundError(_not_found(spec, module_name, e), name=e.name) from None
    except ImportError as e:
        raise ImportError(f"cannot import module {module_name!r} for the callable {spec!r}: "
                          f"{e}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"cannot find {attr!r} in module {module_name!r} (the "
                                 f"callable {spec!r})") from None
    if not callable(obj):
        raise TypeError(f"{spec!r} names a {type(obj).__name__}, which is not callable")
    return obj


# -- registered functions -------------------------------------------------------------------
def function_id(fbytes):
    """The id of a serialized function: the same bytes always get the same id."""
    return "fn-" + hashlib.sha256(fbytes).hexdigest()[:32]


def register(client, f):
    """Send `f` to the hub once; the id to pass to apply/map/submit in its place."""
    f = as_callable(f)
    if not callable(f):
        raise TypeError(f"register_function expects a callable, got {type(f).__name__}")
    fbytes = client.serializer.serialize_function(f)
    return client._hub_request("register_function_request", {}, buffers=[fbytes])["fid"]


_loaded = {}  # fid -> function, in each engine process
_loading = threading.Lock()


class Registered:
    """Calls the function registered under `fid`, fetched from the hub on first use."""

    def __init__(self, fid):
        self.fid = fid

    @property
    def __name__(self):
        return self.fid

    def __call__(self, *args, **kwargs):
        f = _loaded.get(self.fid)
        if f is None:
            f = _fetch(self.fid)
        return f(*args, **kwargs)

    def __repr__(self):
        return f"Registered({self.fid!r})"


def _fetch(fid):
    from .nesting import engine_client
    with _loading:
        if fid not in _loaded:
            reply = engine_client()._hub_request("function_request", {"fid": fid})
            _loaded[fid] = pickle.loads(bytes(reply["_buffers"][0]))
        return _loaded[fid]


# -- describing calls -----------------------------------------------------------------------
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxtuple, _repr.maxdict = 24, 24, 3, 3, 3
MAX_ARGS = 4


def describe_call(f, args=(), kwargs=None):
    """'name(arg, …, key=value)', short enough for one line of an error message."""
    if isinstance(f, (ByName, Registered)):
        name = f.__name__
    else:
        name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None) \
            or type(f).__name__
        name = name.rpartition("<locals>.")[2]  # where a closure was made is noise here
    parts = [_repr.repr(a) for a in list(args)[:MAX_ARGS]]
    parts += [f"{k}={_repr.repr(v)}" for k, v in list((kwargs or {}).items())[:MAX_ARGS]]
    more = len(args) + len(kwargs or {}) > len(parts)
    return f"{name}({', '.join(parts)}{', …' if more else ''})"


def run_map(f, sequences):
    """[f(*xs) for xs in zip(*sequences)], noting on an error which item raised it."""
    results = []
    for i, xs in enumerate(zip(*sequences)):
        try:
            results.append(f(*xs))
        except BaseException as e:  # noqa: B902 - re-raised at once
            try:
                e._taskhub_call = (f"{describe_call(f, xs)}, item {i + 1} of "
                                   f"{min(map(len, sequences))} in a map chunk")
            except AttributeError:  # an exception type without a __dict__
                pass
            raise
    return results


def describe_failure(exc, f, args, kwargs):
    """The description of the call that raised `exc` ("" if the function never loaded)."""
    noted = getattr(exc, "_taskhub_call", None)
    if noted:
        return noted
    return describe_call(f, args, kwargs) if f is not None else ""
