"""ipyparallel.serialize.canning."""
from .._bind import bind

bind(globals(), "taskhub.serialize", "can uncan CannedArray CannedClass")
