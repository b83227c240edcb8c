"""ipyparallel.controller.sqlitedb."""
from .._bind import bind

bind(globals(), "taskhub.controller.db.compat", "SQLiteDB")
