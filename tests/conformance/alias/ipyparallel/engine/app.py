"""ipyparallel.engine.app."""
from .._bind import bind

bind(globals(), "taskhub.engine.app", "IPEngine=IPEngineApp IPEngineApp main launch_new_instance=main")
