"""Names resolved on the engine: `Reference` and `@interactive`.

    view.apply_sync(f, Reference("data"))   # f gets the engine's own `data`

A Reference pickles as "look `name` up in the engine's namespace (`__main__`)", so it turns
into the engine's object wherever it travels: an argument, a map element, or the function
itself. `a.b` looks up attribute `b` of the engine's `a`.
"""
import sys


def _resolve(name):
    head, *attrs = name.split(".")
    ns = sys.modules["__main__"].__dict__
    if head not in ns:
        raise NameError(f"name {head!r} is not defined on this engine")
    value = ns[head]
    for attr in attrs:
        value = getattr(value, attr)
    return value


class Reference:
    """The object bound to `name` in the namespace of the engine the task runs on."""

    def __init__(self, name):
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise TypeError(f"Reference takes a (dotted) Python name, not {name!r}")
        self.name = name

    def __reduce__(self):
        return _resolve, (self.name,)

    def __call__(self, *args, **kwargs):
        """A Reference may stand for a function (view.apply(Reference('f'), x)); it is
        called on the engine, never here."""
        raise TypeError(f"Reference({self.name!r}) is resolved on an engine; call it there")

    def __repr__(self):
        return f"Reference({self.name!r})"


def interactive(f):
    """Make `f` run against the engine's namespace, as if defined there (`__main__`): its
    global names are looked up on the engine, not in the module that defined it."""
    f.__module__ = "__main__"
    return f
