"""Processes seen through /proc (Linux): trees, resident memory, and the benchmark's token.

Every driver and everything it starts inherits the environment variable `TOKEN_VAR`, with a
value unique to that driver. That is how the runner finds, and if need be kills, exactly
the processes one system started (daemonized ones included), and nothing else.
"""
import os
import signal
import time
from pathlib import Path

TOKEN_VAR = "TASKHUB_BENCH_TOKEN"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _all_pids():
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _stat(pid):
    """(state, ppid) of `pid`, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[1])


def alive(pid):
    """Is `pid` running (a zombie is not)?"""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def tree(root):
    """`root` and all its live descendants."""
    children = {}
    for pid in _all_pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], [root] if alive(root) else []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rss_bytes(pid):
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_memory(root):
    """{"rss_mb": summed RSS of `root`'s tree, "processes": its size}."""
    pids = tree(root)
    return {"rss_mb": sum(map(rss_bytes, pids)) / 1e6, "processes": len(pids)}


def with_token(token, exclude=()):
    """Live pids whose environment holds TOKEN_VAR=`token`."""
    needle = f"{TOKEN_VAR}={token}".encode() + b"\0"
    found = []
    for pid in _all_pids():
        if pid in exclude or not alive(pid):
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in env or env.endswith(needle[:-1]):
            found.append(pid)
    return found


# Helpers multiprocessing starts for the driver itself; they live as long as the driver.
_DRIVER_HELPERS = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")


def started_by_me():
    """The live processes this driver's system started (its token, not it, not its
    multiprocessing helpers): what a "stop" must end."""
    mine = []
    for pid in with_token(os.environ[TOKEN_VAR], exclude={os.getpid()}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if not any(helper in cmdline for helper in _DRIVER_HELPERS):
            mine.append(pid)
    return mine


def wait_gone(pids, timeout, interval=0.01):
    """Wait until none of `pids` is alive; True if that happened within `timeout`."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def kill_all(pids):
    """SIGKILL each pid (one by one, by id); the ones already gone are skipped."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class PeakRss:
    """Samples the RSS of a process tree on a thread while in use: `with PeakRss(pid) as p`."""

    def __init__(self, root, interval=0.05):
        import threading
        self.root = root
        self.interval = interval
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while True:
            self.peak_mb = max(self.peak_mb, tree_memory(self.root)["rss_mb"])
            if self._done.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
