"""ipyparallel.controller.dictdb."""
from .._bind import bind

bind(globals(), "taskhub.controller.db.compat", "DictDB")
