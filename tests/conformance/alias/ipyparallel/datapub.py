"""ipyparallel.datapub."""
from ._bind import bind

bind(globals(), "taskhub.datapub", "publish_data")
