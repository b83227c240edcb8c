"""ipyparallel.serialize.serialize."""
from .._bind import bind

bind(globals(), "taskhub.canning", "serialize_object deserialize_object pack_apply_message"
     " unpack_apply_message MAX_BYTES MAX_ITEMS")
