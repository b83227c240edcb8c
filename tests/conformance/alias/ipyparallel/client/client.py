"""ipyparallel.client.client."""
from .._bind import bind

bind(globals(), "taskhub.client.client", "Client")
bind(globals(), "taskhub.client", "AsyncResult AsyncHubResult")
