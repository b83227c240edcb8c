"""`signal_request` on an engine's control channel (the client's `send_signal`).

SIGINT interrupts the running task, as Ctrl-C does in an IPython kernel: the task ends with
KeyboardInterrupt and the engine carries on (it is the signal the engine itself uses to
stop a task, so it is not sent to the process, whose own SIGINT handler stops the engine).
Any other signal is sent to the engine's process, as `kill` would.
"""
import os
import signal


def resolve(sig):
    """`sig` (a number or a name such as "SIGTERM" or "TERM") as a signal.Signals."""
    try:
        if isinstance(sig, str):
            return signal.Signals[sig if sig.startswith("SIG") else f"SIG{sig}"]
        if isinstance(sig, int) and not isinstance(sig, bool):
            return signal.Signals(sig)
    except (KeyError, ValueError):
        pass
    raise ValueError(f"no signal {sig!r} on this engine")


def deliver(sig, stop_running):
    """Carry out a signal_request; the reply's content. `stop_running(exc)` raises `exc`
    in the running task, if any."""
    try:
        signum = resolve(sig)
    except ValueError as e:
        return {"status": "error", "ename": "ValueError", "evalue": str(e)}
    if signum == signal.SIGINT:
        stop_running(KeyboardInterrupt())
    else:
        os.kill(os.getpid(), signum)
    return {"status": "ok", "sig": int(signum)}
