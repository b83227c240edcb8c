"""ipyparallel.traitlets."""
from ._bind import bind

bind(globals(), "taskhub.cluster.launcher", "entry_points")
