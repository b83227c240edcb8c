"""The functions the benchmarks run remotely. Importable by every worker (PYTHONPATH is
the repository), so systems that pickle functions by reference can do so."""

NAMESPACE = {}  # a worker's variables, for systems without one of their own (zmq floor)


def noop(x=None):
    return x


def sleep(seconds):
    """An uneven-work task: sleeps `seconds`, returns them (bench/uneven.py)."""
    import time
    time.sleep(seconds)
    return seconds


def payload(i, nbytes):
    """A result of `nbytes` bytes (the memory workload's 100 KB results)."""
    return bytes(nbytes)


def identity(x):
    return x


def push(namespace):
    NAMESPACE.update(namespace)


def pull(name):
    return NAMESPACE[name]
