"""IPython magics that run cells on a cluster's engines, as ipyparallel's do.

    rc.activate()  or  view.activate(suffix="2")  or  %load_ext taskhub
    %px import numpy                 one line on every engine of the active view
    %%px --targets ::2 --noblock     a cell on some engines, without waiting
    %autopx                          every cell after this one runs on the engines, until
                                     the next %autopx
    %pxresult                        the outputs of the last %px that did not block
    %pxconfig --verbose --noblock    defaults for later %px (--block and -t set the view's
                                     own block and targets, which every %px reads)

What the engines print is shown per engine, while the cell runs (--stream, the default) or
when it ends (--no-stream):

    [stdout:0] hello from 0          one line: after its header
    [stdout:1]                       several lines: below it
    a
    b
    [output:0] <a display() call: in IPython/Jupyter shown with its rich data (figures,
                HTML) as soon as the engine calls it; elsewhere its text>
    Out[0:3]: 5                      the value of the last expression (engine:count)

An engine's update_display() updates its output in place and its clear_output() clears
the cell (taskhub.displays), in order with its text, even when the reply overtakes them.
A remote error is printed once per engine, with its traceback, and the cell then raises
`AlreadyDisplayedError`, which IPython shows as one line: the tracebacks are not repeated.
Ctrl-C interrupts the cell's tasks (--signal-on-interrupt: or leaves or aborts them).
The magics need IPython in the client; engines run the code through IPython when they
have it (see taskhub.engine.ipyshell).
"""
import shlex
import sys
import threading
import time
from contextlib import contextmanager

from . import displays
from .error import CompositeError, RemoteError, TaskhubError

GROUPINGS = ("type", "engine", "order")
PROGRESS_AFTER = 2.0  # seconds a blocking cell waits before it shows a progress bar
LATE_OUTPUT_WAIT = 2.0  # seconds a done cell waits for display messages its replies overtook


class AlreadyDisplayedError(RemoteError):
    """Remote errors that a streaming %px cell has printed already (each engine's
    traceback, as it failed); IPython shows just this line: "3 errors"."""

    def __init__(self, original_error):
        self.original_error = original_error
        self.errors = list(getattr(original_error, "errors", None) or [original_error])
        self.n = len(self.errors)
        super().__init__(type(self).__name__, str(self))

    def __str__(self):
        return f"{self.n} errors"

    def __repr__(self):
        return f"<{type(self).__name__}({self.n} errors)>"

    def render_traceback(self):
        return [str(self)]


class Options:
    """The %px options of a cell: the magics' defaults, then the cell's own flags."""

    def __init__(self, block=None, targets=None, group_outputs="type", stream=True,
                 verbose=False, local=False, save_name=None, progress_after=PROGRESS_AFTER,
                 signal_on_interrupt="SIGINT", targets_text=None):
        # block and targets None: the view's own (view.block, view.targets), read per cell
        self.block, self.targets, self.group_outputs = block, targets, group_outputs
        self.stream, self.verbose, self.local, self.save_name = stream, verbose, local, save_name
        self.progress_after = progress_after
        self.signal_on_interrupt = signal_on_interrupt
        self.targets_text = targets_text

    def parse(self, line):
        """(a copy with the flags at the start of `line` applied, the rest of the line)."""
        opts = Options(**vars(self))
        words = shlex.split(line, posix=True) if line.strip() else []
        rest_at = 0
        while rest_at < len(words) and words[rest_at].startswith("-"):
            rest_at += opts._apply(words, rest_at)
        rest = line.split(None, rest_at)[rest_at] if rest_at < len(line.split()) else ""
        return opts, rest

    def _apply(self, words, i):
        word = words[i]
        name, eq, value = word.partition("=")
        takes_value = {"--targets", "-t", "--group-outputs", "-o", "--out", "--progress-after",
                       "--signal-on-interrupt"}
        if name in takes_value and not eq:
            if i + 1 >= len(words):
                raise ValueError(f"{name} needs a value")
            value, used = words[i + 1], 2
        else:
            used = 1
        flags = {"--block": ("block", True), "--noblock": ("block", False),
                 "--no-block": ("block", False), "--stream": ("stream", True),
                 "--no-stream": ("stream", False), "--verbose": ("verbose", True),
                 "--no-verbose": ("verbose", False), "--local": ("local", True)}
        if name in flags:
            setattr(self, *flags[name])
        elif name in ("--targets", "-t"):
            self.targets = parse_targets(value)
            self.targets_text = value
        elif name == "--group-outputs":
            if value not in GROUPINGS:
                raise ValueError(f"--group-outputs is one of {', '.join(GROUPINGS)}, "
                                 f"not {value!r}")
            self.group_outputs = value
        elif name in ("-o", "--out"):
            self.save_name = value
        elif name == "--progress-after":
            self.progress_after = _seconds(name, value)
        elif name == "--signal-on-interrupt":
            interrupt_action(value)  # an unknown signal is refused now, not at Ctrl-C
            self.signal_on_interrupt = value
        else:
            raise ValueError(f"unknown %px option {name!r} (known: --targets, --block, "
                             f"--noblock, --group-outputs, --stream, --no-stream, --local, "
                             f"--verbose, --progress-after SECONDS, --signal-on-interrupt "
                             f"SIGNAL, -o NAME)")
        return used


def _seconds(name, value):
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} takes seconds (-1: never), not {value!r}") from None


def interrupt_action(sig):
    """What Ctrl-C in a blocking %px cell does to its unfinished tasks, for the signal
    named by --signal-on-interrupt: "interrupt" (SIGINT: KeyboardInterrupt raised in
    them, the engine carries on), "none" (signal 0: they go on running) or "abort" (any
    other, e.g. SIGTERM or SIGKILL: stopped, ending with TaskAborted; taskhub does not kill
    the engine processes from a cell)."""
    import signal
    text = str(sig).strip().upper()
    try:
        number = int(text) if text.lstrip("-").isdigit() else \
            signal.Signals[text if text.startswith("SIG") else "SIG" + text].value
    except KeyError:
        raise ValueError(f"--signal-on-interrupt takes a signal name or number, "
                         f"not {sig!r}") from None
    if number == 0:
        return "none"
    return "interrupt" if number == signal.SIGINT else "abort"


def parse_targets(text):
    """'all', '3', '1,2', '::2', '-1' or '1:4' as what a view's targets take."""
    text = text.strip()
    if text == "all":
        return "all"
    if ":" in text:
        return slice(*(int(p) if p else None for p in text.split(":")))
    if "," in text:
        return [int(p) for p in text.split(",") if p]
    return int(text)


# -- showing what the engines did ------------------------------------------------------------
def _engine_of(md, fallback):
    engine = md.get("engine_id")
    return fallback if engine is None else engine


def _write_block(stream, header, text):
    text = text.rstrip("\n")
    if not text:
        return
    stream.write(f"{header} {text}\n" if "\n" not in text else f"{header}\n{text}\n")


def _output_text(out):
    data = out.get("data", {})
    return data.get("text/plain", ", ".join(sorted(data)))


def _in_kernel(shell):
    return getattr(shell, "kernel", None) is not None


def _transient(engine, content):
    """The display_id an engine's output gets in the notebook: the engine's own id, made
    the engine's (two engines that both update display "p" each update their own)."""
    display_id = displays.display_id(content)
    return None if display_id is None else {"display_id": f"{display_id}@engine{engine}"}


def show_display(engine, kind, content, out, header=True):
    """One display message of an engine (display_data, update_display_data, clear_output).
    In Jupyter: published again with all its data (figures, HTML), an update updating that
    same output in place, a clear_output clearing the cell's output; in a terminal IPython
    or plain Python: the text, under the engine's header (a clear shows nothing)."""
    shell = _ipython()
    if kind == displays.CLEAR:
        if _in_kernel(shell):
            out.flush()
            shell.display_pub.clear_output(wait=bool(content.get("wait")))
        return
    if shell is None:
        _write_block(out, f"[output:{engine}]", _output_text(content))
        return
    from IPython.display import publish_display_data
    update = kind == displays.UPDATE
    if update and not _in_kernel(shell):
        header = True  # a terminal prints the new text: say whose it is
    elif update:
        header = False  # updated in place, under the header it was first shown with
    if header:
        out.write(f"[output:{engine}]\n")
        out.flush()  # a kernel sends its stdout later, in batches: the header goes first
    metadata = dict(content.get("metadata") or {}, engine=engine)
    publish_display_data(content.get("data", {}), metadata,
                         transient=_transient(engine, content), update=update)


def show_output(engine, output, out):
    """One display() output of an engine under its header (see show_display)."""
    show_display(engine, displays.DISPLAY, output, out)


def _ipython():
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython
    return get_ipython()


def _result_text(md):
    result = md.get("execute_result")
    if not result:
        return None
    return result.get("data", {}).get("text/plain", "")


def display_outputs(ar, groupby="type", skip_streams=False, out=None, err=None):
    """Print each engine's stdout, stderr, display outputs and result, as ipyparallel does:
    grouped by kind of output ("type"), by engine ("engine"), or like "type" but with the
    engines' first outputs together, then their second ones, ... ("order"). Each engine's
    outputs come under one `[output:N]` header. `skip_streams` leaves out what was
    streamed already (only the results are shown)."""
    if groupby not in GROUPINGS:
        raise ValueError(f"groupby is one of {', '.join(GROUPINGS)}, not {groupby!r}")
    out = out or sys.stdout
    err = err or sys.stderr
    mds = ar.metadata if isinstance(ar.metadata, list) else [ar.metadata]
    pairs = [(_engine_of(md, i), md) for i, md in enumerate(mds)]

    def streams(engine, md, names=("stdout", "stderr")):
        for name in names:
            if not skip_streams:
                _write_block(out if name == "stdout" else err, f"[{name}:{engine}]",
                             md.get(name) or "")

    def outputs(engine, md, which=slice(None)):
        chosen = (md.get("outputs") or [])[which]
        if skip_streams or not chosen:
            return
        show_display(engine, displays.DISPLAY, chosen[0], out)
        for o in chosen[1:]:
            show_display(engine, displays.DISPLAY, o, out, header=False)

    if groupby == "engine":
        for engine, md in pairs:
            streams(engine, md)
            outputs(engine, md)
            _show_result(engine, md, out)
        return
    for name in ("stdout", "stderr"):
        for engine, md in pairs:
            streams(engine, md, (name,))
    if groupby == "type":
        for engine, md in pairs:
            outputs(engine, md)
    else:
        most = max((len(md.get("outputs") or []) for _, md in pairs), default=0)
        for i in range(most):
            for engine, md in pairs:
                outputs(engine, md, slice(i, i + 1))
    for engine, md in pairs:
        _show_result(engine, md, out)


def _show_result(engine, md, out):
    text = _result_text(md)
    if text is not None:
        count = (md.get("execute_result") or {}).get("execution_count")
        _write_block(out, f"Out[{engine}:{count}]:", text)


def _show_error(engine, error, err):
    text = error.render_traceback()
    text = text if isinstance(text, str) else "\n".join(text)
    err.write(f"[{engine}:execute]:\n{text.rstrip()}\n")


class _Streamer:
    """Shows engines' stdout/stderr and display messages while a request runs, each
    engine's new text under its header and each display message in the order it came
    among that text, by following what the client's IO thread adds to each task's
    metadata and display log. With `show_errors`, each task's error as it fails. At the
    end it shows what is left, so nothing is shown twice or missed (the reply's outputs
    start with those that were streamed)."""

    def __init__(self, ar, engines=None, out=None, err=None, show_errors=False):
        self.ar = ar
        # the engine of each task while its reply (which says) is not in: the view's order
        self.engines = list(engines) if engines is not None else list(range(len(ar.msg_ids)))
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.show_errors = show_errors
        self.shown = {}  # (msg_id, stream name) -> chars printed; (msg_id, "events") -> how
        # many display messages; (msg_id, "final") once its reply's leftovers were shown
        self.errors_shown = 0

    def pump(self, force=False):
        """Show what came since the last pump. A finished task whose reply counts display
        messages that have not come yet (the reply overtook them) is finished later, or
        now with `force` (the reply's outputs stand in for the missing ones)."""
        self.ar._join_streamed()
        for i, msg_id in enumerate(self.ar.msg_ids):
            if (msg_id, "final") in self.shown:
                continue
            md = self.ar._metadata[msg_id]
            finished = md.get("status") != "pending"  # first: no display message after it
            engine = _engine_of(md, self.engines[i])
            # text read before the display log came on iopub before the messages not read
            before = {name: md.get(name) or "" for name in ("stdout", "stderr")}
            got, events = self.ar._display_events(msg_id)
            self.ar._join_streamed()  # what came before each message read is in md now
            last = self.shown.get((msg_id, "events"), 0)
            for seq, kind, content, n_stdout, n_stderr in events:
                if seq > last:
                    self._text(msg_id, md, engine, {"stdout": n_stdout, "stderr": n_stderr})
                    show_display(engine, kind, content, self.out)
            self.shown[(msg_id, "events")] = got
            self.shown[(msg_id, "plain")] = self.shown.get((msg_id, "plain"), True) and \
                all(e[1] == displays.DISPLAY for e in events)
            # the events read above are all the reply counts (more may have come since)
            missing = finished and got < (md.get("display_messages") or 0)
            if not missing or force:  # else the text waits: a late message may come first
                self._text(msg_id, before, engine, None, finished)
            if finished and (force or not missing):
                self._finish(msg_id, md, engine, got)

    def settled(self):
        """Every task finished and shown to its end."""
        return all((m, "final") in self.shown for m in self.ar.msg_ids)

    def drain(self, timeout=LATE_OUTPUT_WAIT, poll=0.02):
        """Once the tasks are done: pump until the display messages their replies count
        have all come and been shown (at most `timeout` s), then show what is left."""
        deadline = time.monotonic() + timeout
        while self.ar.done() and not self.settled() and time.monotonic() < deadline:
            self.pump()
            time.sleep(poll)
        self.pump(force=self.ar.done())

    def _text(self, msg_id, md, engine, upto, finished=False):
        for name in ("stdout", "stderr"):
            text = md.get(name) or ""
            done = self.shown.get((msg_id, name), 0)
            if upto is not None:
                cut = min(upto[name], len(text))  # all that came before a display message
            elif finished:
                cut = len(text)
            else:
                cut = text.rfind("\n", done) + 1  # whole lines only, until the end
            if cut > done:
                _write_block(self.out if name == "stdout" else self.err,
                             f"[{name}:{engine}]", text[done:cut])
                self.shown[(msg_id, name)] = cut

    def _finish(self, msg_id, md, engine, got):
        self.shown[(msg_id, "final")] = True
        if self.shown.get((msg_id, "plain"), True):
            # displays the reply has that iopub did not bring (dropped: iopub was full)
            for o in (md.get("outputs") or [])[got:]:
                show_display(engine, displays.DISPLAY, o, self.out)
        error = self.ar._values.get(msg_id)
        if self.show_errors and isinstance(error, RemoteError):
            _show_error(_engine_of(md, engine), error, self.err)
            self.errors_shown += 1


@contextmanager
def stream_output(ar, engines=None, poll=0.05):
    """While the block runs, a thread shows `ar`'s output as it comes (as a streaming %px
    cell does); on leaving, what is left of it if the tasks are done by then."""
    streamer, stop = _Streamer(ar, engines), threading.Event()

    def follow():
        while not stop.is_set():
            done = ar.done()
            streamer.pump()
            if done and streamer.settled():  # nothing more will come
                return
            stop.wait(poll)
    thread = threading.Thread(target=follow, name="taskhub-stream-output", daemon=True)
    thread.start()
    try:
        yield streamer
    finally:
        stop.set()
        thread.join()
        streamer.drain()


class CellWait:
    """Waits for a blocking cell's tasks: pumps the streamer (if any) and, once the cell
    has waited `progress_after` seconds (negative: never), draws a progress bar of its
    tasks — an ipywidgets bar in Jupyter, a text line elsewhere, as wait_interactive."""

    def __init__(self, ar, streamer=None, progress_after=PROGRESS_AFTER, widget=None):
        self.ar, self.streamer = ar, streamer
        self.progress_after, self.widget = progress_after, widget
        self.bar = None

    def run(self, poll=0.05):
        start = time.monotonic()
        try:
            while not self.ar.wait(poll):
                self._turn(time.monotonic() - start)
            self._turn(time.monotonic() - start)
            if self.streamer is not None:
                self.streamer.drain()
        finally:
            if self.bar is not None:
                self.bar.close(self.ar.progress, time.monotonic() - start)

    def _turn(self, waited):
        # the bar first: output shown after it came while the bar was already up
        if self.bar is None and not self.ar.done() and \
                0 <= self.progress_after <= waited:
            from .client.progress import progress_bar
            self.bar = progress_bar(len(self.ar.msg_ids), "%px", self.widget,
                                    stream=sys.stdout)  # where ipyparallel draws it
        if self.bar is not None:
            self.bar.update(self.ar.progress, waited)
        if self.streamer is not None:
            self.streamer.pump()


# -- the magics -----------------------------------------------------------------------------
class ParallelMagics:
    """The %px family bound to one view; `register(shell, suffix)` names them px<suffix>…
    Whether a cell blocks and where it runs are the view's own `block` and `targets`, read
    per cell (`%pxconfig --block -t ::2` sets them on the view); the other defaults are
    the magics' (`options`)."""

    def __init__(self, view, shell=None):
        self.view = view
        self.shell = shell
        self.options = Options()
        self.last_result = None
        self._autopx = False
        self.suffix = ""

    # -- registration ---------------------------------------------------------------------
    def register(self, shell, suffix=""):
        self.shell = shell
        shell.register_magic_function(self.px_line, "line", f"px{suffix}")
        shell.register_magic_function(self.px_cell, "cell", f"px{suffix}")
        shell.register_magic_function(self.autopx, "line", f"autopx{suffix}")
        shell.register_magic_function(self.pxresult, "line", f"pxresult{suffix}")
        shell.register_magic_function(self.pxconfig, "line", f"pxconfig{suffix}")
        self.suffix = suffix
        return self

    # -- %px / %%px -----------------------------------------------------------------------
    def px_line(self, line):
        """%px CODE: run one line on the active view's engines ({x} in it is the engines'
        f-string, not expanded here)."""
        return self.px(line)

    px_line._ipython_magic_no_var_expand = True  # IPython: the line is the engines' code

    def px_cell(self, line, cell):
        """%%px [options]: run the cell on the engines."""
        return self.px(line, cell)

    def px(self, line, cell=None):
        """%px CODE: run a line on the active view's engines; %%px [options]: the cell."""
        if cell is None:
            opts, code = self.options, line
        else:
            opts, code = self.options.parse(line)
            code = cell
        if not code.strip():
            return None
        return self._run(code, opts)

    def _run(self, code, opts):
        view = self._view_for(opts)
        block = getattr(self.view, "block", True) if opts.block is None else opts.block
        if opts.verbose:
            kind = "Parallel" if block else "Async parallel"
            targets = _targets_text(self.view) if opts.targets is None else opts.targets_text
            sys.stdout.write(f"{kind} execution on engine(s): {targets}\n")
        ar = view.execute(code, silent=False, block=False)
        self.last_result = ar
        engines = getattr(view, "_ids", None)
        if opts.save_name and self.shell is not None:
            self.shell.user_ns[opts.save_name] = ar
        if opts.local and self.shell is not None:
            self.shell.run_cell(code)
        if not block:
            return ar if opts.save_name is None else None
        return self._wait_and_show(ar, opts, engines)

    def _view_for(self, opts):
        if opts.targets is None:
            return self.view
        client = self.view.client
        return client[:] if opts.targets == "all" else client[opts.targets]

    def _wait_and_show(self, ar, opts, engines=None):
        if engines is not None and len(engines) != len(ar.msg_ids):
            engines = None
        streamer = _Streamer(ar, engines, show_errors=ar.kind != "single") \
            if opts.stream else None
        try:
            CellWait(ar, streamer, opts.progress_after).run()
        except KeyboardInterrupt:
            self._interrupt(ar, opts.signal_on_interrupt)
            return None
        display_outputs(ar, opts.group_outputs, skip_streams=streamer is not None)
        self._raise_errors(ar, streamer)
        return None

    def _interrupt(self, ar, sig):
        """Ctrl-C while a blocking cell waits: what --signal-on-interrupt says is done to
        the cell's unfinished tasks (see interrupt_action); the cell then ends."""
        from .client.interrupt import unfinished
        sys.stderr.write(f"Received Keyboard Interrupt. Sending signal {sig} to engines...\n")
        action, left = interrupt_action(sig), unfinished(ar)
        if left and action == "interrupt":
            ar._client.interrupt(left)
        elif left and action == "abort":
            ar._client.abort(left)

    def _raise_errors(self, ar, streamer=None):
        """A failed cell raises: after streaming, AlreadyDisplayedError (the tracebacks
        were printed as the engines failed); otherwise the error itself, which IPython
        shows (a CompositeError: each engine's traceback)."""
        try:
            ar.get(0)
        except CompositeError as e:
            if streamer is None:
                raise
            if not streamer.errors_shown:
                for err in e.errors:
                    _show_error(err.engine_id, err, sys.stderr)
            raise AlreadyDisplayedError(e) from None

    # -- %autopx, %pxresult, %pxconfig ----------------------------------------------------
    def autopx(self, line=""):
        """Toggle: run every following cell on the engines (as %%px) until %autopx again."""
        if self._autopx:
            self.shell.input_transformers_post.remove(self._to_px)
            self._autopx = False
            sys.stdout.write("%autopx disabled\n")
        else:
            self.shell.input_transformers_post.append(self._to_px)
            self._autopx = True
            sys.stdout.write("%autopx enabled\n")

    def _to_px(self, lines):
        source = "".join(lines)
        if source.lstrip().startswith(("%autopx", "get_ipython().run_line_magic('autopx")):
            return lines
        return [f"get_ipython().run_cell_magic('px{self.suffix}', '', {source!r})\n"]

    def pxresult(self, line=""):
        """Show the outputs of the last %px (waiting for it to end); options as %%px's
        (--group-outputs)."""
        if self.last_result is None:
            raise TaskhubError("no %px has run yet: nothing to show")
        opts, _ = self.options.parse(line)
        ar = self.last_result
        ar.wait()
        display_outputs(ar, opts.group_outputs)
        self._raise_errors(ar)

    def pxconfig(self, line=""):
        """Defaults for later %px cells: --targets and --block/--noblock (set on the view),
        --group-outputs, --stream/--no-stream, --verbose/--no-verbose, --progress-after,
        --signal-on-interrupt."""
        opts, rest = self.options.parse(line)
        if rest.strip():
            raise ValueError(f"%pxconfig takes only options, not {rest!r}")
        if opts.targets is not None:
            self.view.targets = _view_targets(self.view.client, opts.targets)
        if opts.block is not None:
            self.view.block = opts.block
        opts.targets = opts.block = None  # the view has them now
        self.options = opts


def _view_targets(client, targets):
    """What a DirectView's `targets` becomes for %pxconfig -t: "all" stays, a slice is
    the engine ids it picks, an id or list of ids is checked (negative ids count from the
    end)."""
    if isinstance(targets, slice):
        targets = list(client.ids[targets])
    if targets == "all":
        return "all"
    return client.direct_view(targets).targets


def _targets_text(view):
    targets = getattr(view, "targets", None)
    if targets is None or targets == "all":
        return "all"
    if isinstance(targets, list) and len(targets) > 10:
        return str(targets[:4])[:-1] + ", ..., " + str(targets[-4:])[1:]
    return str(targets)


def activate(view, suffix=""):
    """Register the %px magics for `view` in the running IPython (raises outside one)."""
    try:
        from IPython import get_ipython
    except ImportError:
        raise TaskhubError("the %px magics need IPython: pip install ipython") from None
    shell = get_ipython()
    if shell is None:
        raise TaskhubError("activate() registers IPython magics: run it in IPython or "
                           "Jupyter")
    return ParallelMagics(view).register(shell, suffix)


def activate_first_client(client):
    """A client made in IPython when no %px magic is registered yet activates one, on all
    engines (as ipyparallel's Client does). Outside IPython: nothing, IPython not imported."""
    shell = _ipython()
    if shell is None or "px" in shell.magics_manager.magics["line"]:
        return
    client.activate()


def load_ipython_extension(shell):
    """`%load_ext taskhub`: the magics on a view of every engine of the default profile's
    cluster, connected on the first %px."""
    magics = ParallelMagics(_LazyView())
    magics.register(shell)


class _LazyView:
    """A DirectView on all engines of the default cluster, made when first used (reading
    or setting any of its attributes: %pxconfig sets the real view's block and targets)."""

    def __init__(self):
        object.__setattr__(self, "_view", None)

    def _real(self):
        if self._view is None:
            from .client import Client
            view = Client()[:]
            view.block = True  # as rc.activate() makes it
            object.__setattr__(self, "_view", view)
        return self._view

    def __getattr__(self, name):
        return getattr(self._real(), name)

    def __setattr__(self, name, value):
        setattr(self._real(), name, value)
