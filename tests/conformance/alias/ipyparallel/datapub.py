"""ipyparallel.datapub: taskhub's publish_data under ipyparallel's name."""
from ._bind import bind

bind(globals(), "taskhub.datapub", "publish_data")
