"""ipyparallel.serialize."""
from .._bind import bind

bind(globals(), "taskhub.canning", "can can_map uncan uncan_map serialize_object"
     " deserialize_object pack_apply_message unpack_apply_message")
bind(globals(), "taskhub.reference", "Reference")
