"""Progress bars for waiting on tasks: one line on a terminal, a widget in Jupyter.

    bar = progress_bar(total=100, label="map f")   # TextBar, or WidgetBar in a notebook
    bar.update(done=37, elapsed=3.1)                # "map f [#######.............]  37/100 ..."
    bar.close(done=100, elapsed=8.0)

`AsyncResult.wait_interactive()` and `map(..., progress=True)` / `imap(..., progress=True)`
draw with these. The text bar rewrites one line of stderr in place when it is a terminal,
and otherwise (a log file, CI) writes a line every LOG_EVERY seconds and a last one at the
end, so logs are not flooded with redraws. Each line is a single write.
"""
import sys
import time

WIDTH = 30
LOG_EVERY = 10.0  # seconds between lines when the stream is not a terminal
REDRAW_EVERY = 0.1  # seconds between redraws on a terminal


def progress_bar(total, label="", widget=None, stream=None):
    """A bar for `total` tasks (None: unknown). widget: None picks a Jupyter widget when in
    a notebook kernel with ipywidgets importable; True insists; False wants text."""
    if widget is None:
        widget = _in_notebook() and _has_ipywidgets()
    if widget:
        return WidgetBar(total, label)
    return TextBar(total, label, stream if stream is not None else sys.stderr)


def summary(done, total, elapsed):
    """'37/100 tasks, 12.0 tasks/s, 3.1 s' (no total: '37 tasks, ...')."""
    rate = done / elapsed if elapsed > 0 else 0.0
    count = f"{done}/{total}" if total is not None else f"{done}"
    return f"{count} tasks, {rate:.1f} tasks/s, {_clock(elapsed)}"


def _clock(seconds):
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


class TextBar:
    def __init__(self, total, label, stream):
        self.total, self.label, self.stream = total, label, stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        # a terminal shows the bar at once; a log gets its first line after LOG_EVERY
        self._last_line = float("-inf") if self.live else time.monotonic()
        self._width = 0

    def text(self, done, elapsed):
        head = f"{self.label} " if self.label else ""
        if not self.total:
            return head + summary(done, self.total, elapsed)
        filled = int(WIDTH * min(done, self.total) / self.total)
        return f"{head}[{'#' * filled}{'.' * (WIDTH - filled)}] {summary(done, self.total, elapsed)}"

    def update(self, done, elapsed):
        now = time.monotonic()
        if now - self._last_line < (REDRAW_EVERY if self.live else LOG_EVERY):
            return
        self._last_line = now
        line = self.text(done, elapsed)
        if self.live:
            self._write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self._write(line + "\n")

    def close(self, done, elapsed):
        line = self.text(done, elapsed)
        self._write(("\r" + line.ljust(self._width) if self.live else line) + "\n")

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


class WidgetBar:
    """An ipywidgets progress bar with the same summary line beside it."""

    def __init__(self, total, label):
        import ipywidgets
        from IPython.display import display
        self.total = total
        self.bar = ipywidgets.IntProgress(min=0, max=max(total or 1, 1), description=label)
        self.info = ipywidgets.HTML()
        self.box = ipywidgets.HBox([self.bar, self.info])
        display(self.box)

    def update(self, done, elapsed):
        self.bar.value = min(done, self.bar.max) if self.total else 0
        self.info.value = summary(done, self.total, elapsed)

    def close(self, done, elapsed):
        self.update(done, elapsed)
        self.bar.bar_style = "success" if self.total is None or done >= self.total else "warning"


def _in_notebook():
    shell = sys.modules.get("IPython") and _ipython_shell()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _ipython_shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _has_ipywidgets():
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def iterate(items, total, label="", widget=None):
    """Yield from `items`, drawing a bar of how many were yielded (for imap)."""
    bar, start, done = progress_bar(total, label, widget), time.monotonic(), 0
    try:
        for item in items:
            done += 1
            bar.update(done, time.monotonic() - start)
            yield item
    finally:  # also when the caller stops early: close `items` now, not when collected
        bar.close(done, time.monotonic() - start)
        if hasattr(items, "close"):
            items.close()
