"""ipyparallel._async."""
from ._bind import bind

bind(globals(), "taskhub.compat", "AsyncFirst")
