"""Load-balancing schemes: which engine gets the next task.

Each scheme is a pure function ``(loads, rng) -> index``: `loads` lists the outstanding task
count of each candidate engine, ordered least recently used first; the result indexes that
list. They are registered in `SCHEMES`, the one place a scheme name is looked up.

`PURE` names the one scheme that is not a function here: a C-level zmq device that hands
tasks to engines in turn, with no Python on the path (see `pure.py`). `SCHEME_NAMES` lists
every name a controller accepts.
"""


def lru(loads, rng):
    """The least recently used engine, whatever its load."""
    return 0


def leastload(loads, rng):
    """Fewest outstanding tasks; least recently used breaks ties (the first minimum)."""
    return loads.index(min(loads))


def plainrandom(loads, rng):
    """Any engine, uniformly at random."""
    return rng.randrange(len(loads))


def twobin(loads, rng):
    """Two engines at random; the less recently used of the two (the lower index)."""
    if len(loads) == 1:
        return 0
    a, b = rng.sample(range(len(loads)), 2)
    return min(a, b)


def weighted(loads, rng):
    """Two engines drawn with weight 1/(1+load); the less loaded of the two."""
    if len(loads) == 1:
        return 0
    weights = [1.0 / (1 + load) for load in loads]
    a, b = rng.choices(range(len(loads)), weights=weights, k=2)
    return a if loads[a] <= loads[b] else b


SCHEMES = {f.__name__: f for f in (lru, leastload, plainrandom, twobin, weighted)}
PURE = "pure"
SCHEME_NAMES = (*sorted(SCHEMES), PURE)


def get_scheme(name):
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown scheduling scheme {name!r}; choose one of "
                         f"{', '.join(sorted(SCHEMES))}") from None
