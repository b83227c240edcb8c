"""IPython magics that run cells on a cluster's engines, as ipyparallel's do.

    rc.activate()  or  view.activate(suffix="2")  or  %load_ext taskhub
    %px import numpy                 one line on every engine of the active view
    %%px --targets ::2 --noblock     a cell on some engines, without waiting
    %autopx                          every cell after this one runs on the engines, until
                                     the next %autopx
    %pxresult                        the outputs of the last %px that did not block
    %pxconfig --verbose --noblock    defaults for later %px

What the engines print is shown per engine, while the cell runs (--stream, the default) or
when it ends (--no-stream):

    [stdout:0] hello from 0          one line: after its header
    [stdout:1]                       several lines: below it
    a
    b
    [output:0] <a display() call's text>
    Out[0:3]: 5                      the value of the last expression (engine:count)

A remote error is printed once per engine, with its traceback, and the cell then raises
`AlreadyDisplayedError`, which IPython shows as one line: the tracebacks are not repeated.
The magics need IPython in the client; engines run the code through IPython when they
have it (see taskhub.engine.ipyshell).
"""
import shlex
import sys

from .error import CompositeError, RemoteError, TaskhubError

GROUPINGS = ("type", "engine", "order")


class AlreadyDisplayedError(TaskhubError):
    """Remote errors that a magic has printed already; IPython shows just this line."""

    def __init__(self, errors):
        self.errors = list(errors)
        n = len(self.errors)
        super().__init__(f"{n} remote error{'s' if n != 1 else ''} (shown above)")

    def render_traceback(self):
        return [str(self)]


class Options:
    """The %px options of a cell: the magics' defaults, then the cell's own flags."""

    def __init__(self, block=True, targets=None, group_outputs="type", stream=True,
                 verbose=False, local=False, save_name=None):
        self.block, self.targets, self.group_outputs = block, targets, group_outputs
        self.stream, self.verbose, self.local, self.save_name = stream, verbose, local, save_name

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
        takes_value = {"--targets", "-t", "--group-outputs", "-o", "--out"}
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
        elif name == "--group-outputs":
            if value not in GROUPINGS:
                raise ValueError(f"--group-outputs is one of {', '.join(GROUPINGS)}, "
                                 f"not {value!r}")
            self.group_outputs = value
        elif name in ("-o", "--out"):
            self.save_name = value
        else:
            raise ValueError(f"unknown %px option {name!r} (known: --targets, --block, "
                             f"--noblock, --group-outputs, --stream, --no-stream, --local, "
                             f"--verbose, -o NAME)")
        return used


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


def _result_text(md):
    result = md.get("execute_result")
    if not result:
        return None
    return result.get("data", {}).get("text/plain", "")


def display_outputs(ar, groupby="type", skip_streams=False, out=None, err=None):
    """Print each engine's stdout, stderr, display outputs and result, as ipyparallel does:
    grouped by kind of output ("type"), by engine ("engine"), or in engine order with each
    kind together ("order"). `skip_streams` leaves out what was streamed already."""
    out = out or sys.stdout
    err = err or sys.stderr
    mds = ar.metadata if isinstance(ar.metadata, list) else [ar.metadata]
    pairs = [(_engine_of(md, i), md) for i, md in enumerate(mds)]
    kinds = ("stdout", "stderr", "outputs", "result")
    if groupby == "type":
        for kind in kinds:
            for engine, md in pairs:
                _show(kind, engine, md, skip_streams, out, err)
    else:
        for engine, md in pairs:
            for kind in kinds:
                _show(kind, engine, md, skip_streams, out, err)


def _show(kind, engine, md, skip_streams, out, err):
    if kind in ("stdout", "stderr"):
        if not skip_streams:
            _write_block(out if kind == "stdout" else err, f"[{kind}:{engine}]",
                         md.get(kind) or "")
    elif kind == "outputs":
        for o in md.get("outputs") or ():
            _write_block(out, f"[output:{engine}]", _output_text(o))
    else:
        text = _result_text(md)
        if text is not None:
            count = (md.get("execute_result") or {}).get("execution_count")
            _write_block(out, f"Out[{engine}:{count}]:", text)


class _Streamer:
    """Prints engines' stdout/stderr while a request runs, each engine's new text under its
    header, by following what the client's IO thread appends to each task's metadata."""

    def __init__(self, ar, out=None, err=None):
        self.ar = ar
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.shown = {}  # (msg_id, stream name) -> characters printed

    def pump(self):
        self.ar._join_streamed()
        for i, msg_id in enumerate(self.ar.msg_ids):
            md = self.ar._metadata[msg_id]
            for name in ("stdout", "stderr"):
                text = md.get(name) or ""
                done = self.shown.get((msg_id, name), 0)
                cut = text.rfind("\n", done) + 1  # whole lines only, until the end
                if md.get("status") != "pending":
                    cut = len(text)
                if cut > done:
                    _write_block(self.out if name == "stdout" else self.err,
                                 f"[{name}:{_engine_of(md, i)}]", text[done:cut])
                    self.shown[(msg_id, name)] = cut

    def follow(self, poll=0.05):
        while not self.ar.done():
            self.ar.wait(poll)
            self.pump()
        self.pump()


# -- the magics -----------------------------------------------------------------------------
class ParallelMagics:
    """The %px family bound to one view; `register(shell, suffix)` names them px<suffix>…"""

    def __init__(self, view, shell=None):
        self.view = view
        self.shell = shell
        self.options = Options(block=getattr(view, "block", True) is not False)
        self.last_result = None
        self._autopx = False

    # -- registration ---------------------------------------------------------------------
    def register(self, shell, suffix=""):
        self.shell = shell
        shell.register_magic_function(self.px, "line_cell", f"px{suffix}")
        shell.register_magic_function(self.autopx, "line", f"autopx{suffix}")
        shell.register_magic_function(self.pxresult, "line", f"pxresult{suffix}")
        shell.register_magic_function(self.pxconfig, "line", f"pxconfig{suffix}")
        self.suffix = suffix
        return self

    # -- %px / %%px -----------------------------------------------------------------------
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
        if opts.verbose:
            kind = "Parallel" if opts.block else "Async parallel"
            sys.stdout.write(f"{kind} execution on engine(s): {_targets_text(view)}\n")
        ar = view.execute(code, silent=False, block=False)
        self.last_result = ar
        if opts.save_name and self.shell is not None:
            self.shell.user_ns[opts.save_name] = ar
        if opts.local and self.shell is not None:
            self.shell.run_cell(code)
        if not opts.block:
            return ar if opts.save_name is None else None
        return self._wait_and_show(ar, opts)

    def _view_for(self, opts):
        if opts.targets is None:
            return self.view
        client = self.view.client
        return client[:] if opts.targets == "all" else client[opts.targets]

    def _wait_and_show(self, ar, opts):
        streamer = _Streamer(ar) if opts.stream else None
        try:
            if streamer is not None:
                streamer.follow()
            else:
                ar.wait()
        except KeyboardInterrupt:
            sys.stderr.write("Interrupted: the engines' tasks were left running; "
                             "%pxresult shows them when they finish\n")
            return None
        display_outputs(ar, opts.group_outputs, skip_streams=streamer is not None)
        self._raise_errors(ar)
        return None

    def _raise_errors(self, ar):
        try:
            ar.get(0)
        except CompositeError as e:
            errors = e.errors
        except RemoteError as e:
            errors = [e]
        else:
            return
        for e in errors:
            text = e.render_traceback()
            text = text if isinstance(text, str) else "\n".join(text)
            sys.stderr.write(f"[{e.engine_id}:execute]:\n{text.rstrip()}\n")
        raise AlreadyDisplayedError(errors)

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
        """Show the outputs of the last %px (waiting for it to end)."""
        if self.last_result is None:
            raise TaskhubError("no %px has run yet: nothing to show")
        ar = self.last_result
        ar.wait()
        display_outputs(ar, self.options.group_outputs)
        self._raise_errors(ar)

    def pxconfig(self, line=""):
        """Defaults for later %px cells: --targets, --block/--noblock, --group-outputs,
        --stream/--no-stream, --verbose/--no-verbose."""
        self.options, rest = self.options.parse(line)
        if rest.strip():
            raise ValueError(f"%pxconfig takes only options, not {rest!r}")


def _targets_text(view):
    targets = getattr(view, "targets", None)
    if targets is None:
        targets = getattr(view, "_ids", None)
    return "all" if targets in (None, "all") else str(targets)


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


def load_ipython_extension(shell):
    """`%load_ext taskhub`: the magics on a view of every engine of the default profile's
    cluster, connected on the first %px."""
    magics = ParallelMagics(_LazyView())
    magics.register(shell)


class _LazyView:
    """A DirectView on all engines of the default cluster, made when first used."""

    block = True

    def __init__(self):
        self._view = None

    def __getattr__(self, name):
        if self._view is None:
            from .client import Client
            self._view = Client()[:]
        return getattr(self._view, name)
