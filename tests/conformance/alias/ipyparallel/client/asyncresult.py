"""ipyparallel.client.asyncresult."""
from .._bind import bind

bind(globals(), "taskhub.client.asyncresult", "AsyncResult AsyncHubResult AsyncMapResult=AsyncResult")
