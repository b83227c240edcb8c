"""ipyparallel.controller.mongodb."""
from .._bind import bind

bind(globals(), "taskhub.controller.db.compat", "MongoDB")
