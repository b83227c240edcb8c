"""Names resolved on the engine: `Reference` and `@interactive`.

    view.apply_sync(f, Reference("data"))   # f gets the engine's own `data`

A Reference pickles as "look `name` up in the engine's namespace (`__main__`)", so it turns
into the engine's object wherever it travels: an argument, a map element, or the function
itself. The name may be any expression over the engine's names: `a.b`, `g[0]`.
It is a CannedObject too (taskhub.canning): `uncan(Reference("a"), namespace)` looks it up
in `namespace`, as ipyparallel's does.
"""
import sys
import types

from .canning import CannedObject


def _resolve(expression):
    return eval(expression, sys.modules["__main__"].__dict__)


class Reference(CannedObject):
    """The value of `name` (an expression) in the namespace of the engine the task runs on."""

    def __init__(self, name):
        if not isinstance(name, str):
            raise TypeError(f"Reference takes a name or expression (str), not {name!r}")
        compile(name, "<Reference>", "eval")  # a SyntaxError here, not on every engine
        self.name = name

    def __reduce__(self):
        return _resolve, (self.name,)

    def get_object(self, g=None):
        """The value of the name in namespace `g` (the engine's `__main__` by default)."""
        return _resolve(self.name) if g is None else eval(self.name, g)

    def __call__(self, *args, **kwargs):
        """A Reference may stand for a function (view.apply(Reference('f'), x)); it is
        called on the engine, never here."""
        raise TypeError(f"Reference({self.name!r}) is resolved on an engine; call it there")

    def as_function(self):
        """What a view sends when the Reference is the function: looked up at each call,
        since engines keep the functions they were sent (a name's value may change)."""
        return CallReference(self.name)

    def __repr__(self):
        return f"Reference({self.name!r})"


class CallReference:
    """Calls the engine's `name` (an expression) with the arguments it is given."""

    def __init__(self, name):
        self.name = name
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return _resolve(self.name)(*args, **kwargs)

    def __repr__(self):
        return f"Reference({self.name!r})"


def interactive(f):
    """Make `f` run against the engine's namespace, as if defined there (`__main__`): its
    global names are looked up on the engine, not in the module that defined it.

    A function comes back as a copy whose globals are this process's `__main__` (as
    ipyparallel's does), so the defining module's names do not travel with it; anything
    else just gets `__module__ = "__main__"`."""
    if isinstance(f, types.FunctionType):
        g = types.FunctionType(f.__code__, sys.modules["__main__"].__dict__, f.__name__,
                               f.__defaults__, f.__closure__)
        g.__kwdefaults__, g.__annotations__ = f.__kwdefaults__, f.__annotations__
        g.__qualname__, g.__doc__ = f.__qualname__, f.__doc__
        g.__dict__.update(f.__dict__)
        f = g
    f.__module__ = "__main__"
    return f
