"""Dependencies of load-balanced tasks: graph (`Dependency`) and functional (`dependent`).

Graph dependencies say *when* and *where* a task may run, in terms of other tasks:

    lview.apply_with_flags(f, after=[ar1, ar2])                # after both succeeded
    lview.apply_with_flags(g, follow=Dependency([ar1], failure=True))   # where ar1 ran
    lview.apply_with_flags(h, after=Dependency(ids, all=False), timeout=30)

The scheduler judges them (see `taskhub.controller.scheduler`); on the wire a `Dependency`
is the dict of `Dependency.as_dict()` in the request's metadata.

Functional dependencies say *whether* an engine can run a task: the wrapped check runs on
the engine first, and if it is unmet the engine raises `UnmetDependency` and the scheduler
sends the task to another engine (never the same one twice):

    @require("numpy", helper)          # numpy importable here; helper in f's namespace
    @depend(has_gpu, min_memory=8)     # has_gpu(min_memory=8) is not False here
    def f(x): ...
    g = dependent(f, has_gpu)          # the same without a decorator
"""
import importlib
import sys

from .error import UnmetDependency


class Dependency(set):
    """A set of msg_ids plus how to judge them.

    all:     met when every task is done (True, the default) or when any one is.
    success: a task that succeeded counts as done (default True).
    failure: a task that failed counts as done (default False).

    `dependencies` may hold msg_ids, AsyncResults (all their msg_ids) and Dependencies
    (their msg_ids); one msg_id or AsyncResult alone is fine too.
    """

    def __init__(self, dependencies=(), all=True, success=True, failure=False):  # noqa: A002
        for name, value in (("all", all), ("success", success), ("failure", failure)):
            if not isinstance(value, bool):
                raise TypeError(f"Dependency {name}= must be True or False, not {value!r}")
        if not (success or failure):
            raise ValueError("a Dependency with success=False and failure=False can never "
                             "be met")
        super().__init__(msg_ids_of(dependencies, "a Dependency"))
        self.all, self.success, self.failure = all, success, failure

    @classmethod
    def coerce(cls, value, name="dependency"):
        """`value` (msg_ids, AsyncResults, a Dependency, or None) as a Dependency or None."""
        if value is None or isinstance(value, Dependency):
            return value if value else None
        return cls(msg_ids_of(value, name)) or None

    def check(self, succeeded, failed=()):
        """Whether this dependency is met, given the msg_ids that `succeeded` and `failed`
        so far (the scheduler's judgement, for code that judges one itself)."""
        if not self:
            return True
        done = self._accepted(succeeded, failed)
        return self.issubset(done) if self.all else not self.isdisjoint(done)

    def unreachable(self, succeeded, failed=()):
        """Whether this dependency can never be met, given the same."""
        if not self:
            return False
        spoiled = self._accepted(succeeded, failed, want=False)
        return not self.isdisjoint(spoiled) if self.all else self.issubset(spoiled)

    def _accepted(self, succeeded, failed, want=True):
        """The finished msg_ids whose outcome this dependency accepts (or, with want=False,
        does not accept)."""
        ids = set()
        if self.success is want:
            ids.update(succeeded)
        if self.failure is want:
            ids.update(failed)
        return ids

    def as_dict(self):
        """The wire form carried in a task's metadata."""
        return {"msg_ids": sorted(self), "all": self.all, "success": self.success,
                "failure": self.failure}

    def __repr__(self):
        return (f"Dependency({sorted(self)!r}, all={self.all}, success={self.success}, "
                f"failure={self.failure})")

    def __reduce__(self):
        return type(self), (list(self), self.all, self.success, self.failure)


def msg_ids_of(value, name="jobs"):
    """The msg_ids named by a msg_id, an AsyncResult, or an iterable of those."""
    if isinstance(value, str) or hasattr(value, "msg_ids"):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be msg_ids, AsyncResults or a Dependency, not "
                        f"{type(value).__name__}") from None
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(item)
        elif hasattr(item, "msg_ids"):
            ids.extend(item.msg_ids)
        elif isinstance(item, Dependency):
            ids.extend(item)
        else:
            raise TypeError(f"{name} must be msg_ids, AsyncResults or a Dependency; got "
                            f"{type(item).__name__} {item!r:.60}")
    return ids


class dependent:  # noqa: N801 - named like the decorator it implements, as in IPython
    """`f` wrapped so that, on the engine, `df(*dargs, **dkwargs)` runs first; if it returns
    False the task raises UnmetDependency and the scheduler tries another engine."""

    def __init__(self, f, df, *dargs, **dkwargs):
        for what, g in (("the task", f), ("the dependency check", df)):
            if not callable(g):
                raise TypeError(f"dependent needs a callable for {what}, not {g!r:.60}")
        self.f, self.df, self.dargs, self.dkwargs = f, df, dargs, dkwargs
        self.__name__ = getattr(f, "__name__", type(f).__name__)
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *args, **kwargs):
        if self.df(*self.dargs, **self.dkwargs) is False:
            check = getattr(self.df, "__name__", "the dependency check")
            raise UnmetDependency(f"{check} returned False on this engine")
        return self.f(*args, **kwargs)

    def __repr__(self):
        return f"<dependent {self.__name__} on {getattr(self.df, '__name__', self.df)!r}>"


def depend(df, *dargs, **dkwargs):
    """Decorator: the task runs only where `df(*dargs, **dkwargs)` does not return False."""
    def decorate(f):
        return dependent(f, df, *dargs, **dkwargs)
    return decorate


def require(*objects, **mapping):
    """Decorator: the task runs only where every named module imports.

    Strings and modules name modules to import; they are bound in the task's namespace as
    an ``import`` statement would bind them. Functions (and `mapping`'s name=value pairs)
    are put in the task's namespace, so the task can call them."""
    modules, names = [], dict(mapping)
    for obj in objects:
        if isinstance(obj, str):
            modules.append(obj)
        elif type(obj) is type(sys):
            modules.append(obj.__name__)
        elif callable(obj) and hasattr(obj, "__name__"):
            names[obj.__name__] = obj
        else:
            raise TypeError(f"require takes module names, modules and named functions, "
                            f"not {obj!r:.60}")

    def decorate(f):
        return dependent(f, _require, f, modules, names)
    return decorate


def _require(f, modules, names):
    """On the engine: import `modules` and bind them and `names` where `f` looks up globals."""
    while isinstance(f, dependent):
        f = f.f
    namespace = getattr(f, "__globals__", None)
    if namespace is None:  # an empty namespace is still the one f looks names up in
        namespace = sys.modules["__main__"].__dict__
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UnmetDependency(f"cannot import {name!r} on this engine: {e}") from None
        top = name.partition(".")[0]
        namespace[top] = sys.modules[top]
    namespace.update(names)
    return True
