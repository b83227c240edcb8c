"""What a task's display() outputs are after each display message, as a notebook shows them.

    display(x)                          "display_data"         appended
    display(x, display_id="p")          "display_data"         appended, with its transient
                                                               {"display_id": "p"}
    update_display(y, display_id="p")   "update_display_data"  every earlier output with
                                                               display_id "p" shows y now
    clear_output()                      "clear_output"         no outputs any more
    clear_output(wait=True)             "clear_output"         no outputs once the next one
                                                               comes (none comes: they stay)

The engine applies them to the task's `outputs` (the reply and the task record keep what is
displayed at the end) and publishes each message on iopub as it happens; the client
applies the same ones to `ar.outputs` while the task runs, and a %px cell forwards each to
the notebook (taskhub.magics). Pure functions: no I/O here.
"""
DISPLAY = "display_data"
UPDATE = "update_display_data"
CLEAR = "clear_output"
KINDS = (DISPLAY, UPDATE, CLEAR)


def display_id(content):
    """The display_id an output or an update names, or None."""
    return (content.get("transient") or {}).get("display_id")


def output_of(content):
    """The entry `outputs` keeps for a display_data message's content."""
    out = {"data": dict(content.get("data") or {}),
           "metadata": dict(content.get("metadata") or {})}
    if display_id(content) is not None:
        out["transient"] = {"display_id": display_id(content)}
    return out


def apply(outputs, kind, content, clear_pending=False):
    """(the outputs after message `kind` with `content`, whether a clear_output(wait=True)
    waits for the next output). `outputs` is not changed: a new list is returned."""
    if kind == CLEAR:
        if content.get("wait"):
            return list(outputs), True
        return [], False
    if kind == UPDATE:
        wanted = display_id(content)
        if wanted is None:
            return list(outputs), clear_pending
        new = output_of(content)
        return [dict(out, data=new["data"], metadata=new["metadata"])
                if display_id(out) == wanted else out for out in outputs], clear_pending
    if kind == DISPLAY:
        return ([] if clear_pending else list(outputs)) + [output_of(content)], False
    raise ValueError(f"not a display message: {kind!r}")


def log_event(log, kind, content, seq, *where):
    """Append display message `kind` (number `seq`, after `where`: the stdout/stderr chars
    that came before it) to `log`, a list of (seq, kind, content, *where) that a streaming
    cell replays in seq order, and keep the log as short as what it shows allows, so that
    a task that updates a progress display a million times holds no million messages:
    an update right after an update of the same display_id replaces it (a new seq: one
    shown already is shown again), and what came before the clear_output before this one
    is dropped (cleared from the notebook by then)."""
    last = log[-1] if log else None
    if kind == UPDATE and last is not None and last[1] == UPDATE and \
            display_id(last[2]) == display_id(content) is not None:
        log[-1] = (seq, kind, content, *where)
        return
    if kind == CLEAR:
        clears = [i for i, entry in enumerate(log) if entry[1] == CLEAR]
        if clears:
            del log[:clears[-1]]
    log.append((seq, kind, content, *where))
