"""ExecuteReply: what `view.execute(code)` returns from an engine that runs IPython.

It is made on the engine and travels pickled (plain fields only), so it reads the same in a
client with or without IPython. In a notebook it displays as the cell's value would have:
`_repr_html_`, `_repr_png_` and the rest return the engine's formatted data.
"""


class ExecuteReply:
    """`execution_count`, `execute_result` ({"data": mimebundle, "metadata": ...} of the
    cell's last expression, or None when silent), `outputs` (display() calls), and the
    cell's `stdout`/`stderr`."""

    def __init__(self, execution_count, execute_result=None, outputs=(), stdout="",
                 stderr=""):
        self.execution_count = execution_count
        self.execute_result = execute_result
        self.outputs = list(outputs)
        self.stdout = stdout
        self.stderr = stderr

    @property
    def data(self):
        """The mimebundle of the cell's value ({} when it had none)."""
        return (self.execute_result or {}).get("data", {})

    @property
    def metadata(self):
        return (self.execute_result or {}).get("metadata", {})

    def __getitem__(self, key):
        return getattr(self, key)

    def _fields(self):
        return (self.execution_count, self.execute_result, self.outputs, self.stdout,
                self.stderr)

    def __eq__(self, other):
        """Equal when every field is: the same reply fetched twice (from the client's
        results and from the task DB) compares equal."""
        if not isinstance(other, ExecuteReply):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # mutable, compared by value

    def _repr_mime(self, mime):
        if mime not in self.data:
            return None
        if mime in self.metadata:
            return self.data[mime], self.metadata[mime]
        return self.data[mime]

    def __repr__(self):
        text = self.data.get("text/plain", "")
        if "\n" in text:
            text = "\n" + text
        return f"<ExecuteReply[{self.execution_count}]: {text}>"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))


def _mime_repr(mime):
    def method(self):
        return self._repr_mime(mime)
    method.__name__ = method.__qualname__ = f"_repr_{_REPRS[mime]}_"
    return method


# IPython's display looks for these methods: each returns the engine's data of its mime type
_REPRS = {"text/html": "html", "text/latex": "latex", "application/json": "json",
          "application/javascript": "javascript", "image/png": "png", "image/jpeg": "jpeg",
          "image/svg+xml": "svg", "text/markdown": "markdown"}
for _mime, _name in _REPRS.items():
    setattr(ExecuteReply, f"_repr_{_name}_", _mime_repr(_mime))
