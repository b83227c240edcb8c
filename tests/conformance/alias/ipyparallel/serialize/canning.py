"""ipyparallel.serialize.canning."""
from .._bind import bind

bind(globals(), "taskhub.canning", "CannedObject CannedCell CannedFunction CannedPartial"
     " CannedClass CannedArray CannedBytes CannedMemoryView can can_map uncan"
     " uncan_map can_class can_dict uncan_dict can_sequence uncan_sequence istype")
bind(globals(), "taskhub.reference", "interactive Reference")
