"""Ctrl-C during a blocking call: what happens to the tasks the call was waiting for.

    map_sync, apply_sync, a view with block=True, scatter/gather/push/pull/execute:
        the call submitted its tasks and waits for them, so an interrupt aborts those not
        done (waiting ones end with TaskAborted at once, running ones are stopped on their
        engine and end so too) and the KeyboardInterrupt says how many it aborted.
    ar.get(), ar.wait(), ar.wait_interactive(), rc.wait():
        the tasks were submitted by an earlier call that handed back `ar`: they go on
        running (the caller may wait again), and the KeyboardInterrupt says how to abort
        them — ``rc.abort(ar)``.
"""
from ..error import TaskhubError


def unfinished(ar):
    """msg_ids of `ar` whose reply has not come."""
    return [m for m in ar.msg_ids if m not in ar._values]


def still_running_text(ar):
    """The KeyboardInterrupt message of a wait on `ar` that keeps its tasks running."""
    left = unfinished(ar)
    if not left:
        return "stopped waiting; every task of the result had finished"
    return (f"stopped waiting; {len(left)} of the {len(ar.msg_ids)} tasks of this result are "
            f"not done and go on running on the cluster: rc.abort(ar) stops them")


def wait_or_abort(ar, progress=False):
    """`ar.get()` for a call that blocks on the tasks it submitted; Ctrl-C aborts them."""
    try:
        if progress:
            ar.wait_interactive()
        return ar.get()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(abort_unfinished(ar)) from None


def abort_unfinished(ar):
    """Abort what `ar` still waits for; the sentence that says what was done."""
    left = unfinished(ar)
    if not left:
        return "interrupted; every task of the call had finished"
    try:
        ar._client.abort(left)
    except TaskhubError as e:
        return (f"interrupted; could not abort the {len(left)} unfinished tasks of the call "
                f"({type(e).__name__}: {e}); they may still run: rc.abort({left!r:.200})")
    return (f"interrupted: aborted the {len(left)} of the call's {len(ar.msg_ids)} tasks "
            f"not done yet (they end with TaskAborted, and are recorded so in the task DB)")
