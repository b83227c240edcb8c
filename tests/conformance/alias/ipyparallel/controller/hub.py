"""ipyparallel.controller.hub."""
from .._bind import bind

bind(globals(), "taskhub.controller.db.compat", "init_record")
