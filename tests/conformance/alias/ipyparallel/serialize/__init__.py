"""ipyparallel.serialize."""
from .._bind import bind

bind(globals(), "taskhub.serialize", "serialize_object=serialize deserialize_object=deserialize"
     " pack_apply_message=pack_apply unpack_apply_message=unpack_apply can uncan")
