"""How many engines one controller can take, said out loud.

Each engine holds several TCP connections to the controller (task, mux, control, iopub,
heartbeat ping and pong: FDS_PER_ENGINE descriptors on the controller's side), so the
process's descriptor limit bounds the engines it can serve. Past it, connections fail
inside libzmq and nobody hears of it: engines just never appear. So the controller raises
its soft limit to the hard one when it starts, works out how many engines that allows
(keeping RESERVED_FDS for clients, the task DB, the web view and zmq itself), and refuses
registrations beyond it — or beyond a configured `max_engines` — with a message naming the
limit, which the refused engine logs and `ipcluster start` shows.
"""
import resource

FDS_PER_ENGINE = 7
RESERVED_FDS = 128


def raise_fd_limit():
    """Raise this process's soft descriptor limit to the hard one; (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # e.g. a hard limit above the kernel's nr_open
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def engine_capacity(max_engines=0, fd_limits=None):
    """(most engines this controller accepts, why that number) for its current descriptor
    limit and `max_engines` (0: no limit of its own)."""
    soft, hard = fd_limits or resource.getrlimit(resource.RLIMIT_NOFILE)
    by_fds = max(0, (soft - RESERVED_FDS) // FDS_PER_ENGINE)
    if max_engines and max_engines <= by_fds:
        return max_engines, f"its max_engines setting is {max_engines}"
    return by_fds, (f"its file-descriptor limit of {soft} allows {by_fds} engines at "
                    f"{FDS_PER_ENGINE} descriptors each (raise it with `ulimit -n`, up to "
                    f"the hard limit {hard}, before starting the controller)")
