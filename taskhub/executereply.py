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

    def _repr_mime(self, mime):
        if mime not in self.data:
            return None
        if mime in self.metadata:
            return self.data[mime], self.metadata[mime]
        return self.data[mime]

    def _repr_html_(self):
        return self._repr_mime("text/html")

    def _repr_latex_(self):
        return self._repr_mime("text/latex")

    def _repr_json_(self):
        return self._repr_mime("application/json")

    def _repr_javascript_(self):
        return self._repr_mime("application/javascript")

    def _repr_png_(self):
        return self._repr_mime("image/png")

    def _repr_jpeg_(self):
        return self._repr_mime("image/jpeg")

    def _repr_svg_(self):
        return self._repr_mime("image/svg+xml")

    def _repr_markdown_(self):
        return self._repr_mime("text/markdown")

    def __repr__(self):
        text = self.data.get("text/plain", "")
        if "\n" in text:
            text = "\n" + text
        return f"<ExecuteReply[{self.execution_count}]: {text}>"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))
