"""ipyparallel's names bound to taskhub's (conformance runs only; see _bind.py)."""
from ._bind import bind
from . import error, util  # noqa: F401 - upstream uses ipp.error and ipp.util

bind(globals(), "taskhub", "__version__ Client Cluster ClusterManager DirectView LoadBalancedView"
     " BroadcastView=DirectView AsyncResult AsyncHubResult require depend dependent Dependency"
     " RemoteError CompositeError register_joblib_backend bind_kernel"
     " AsyncMapResult=AsyncResult")
bind(globals(), "taskhub.reference", "Reference interactive")
bind(globals(), "taskhub.client.viewcompat", "remote parallel")
bind(globals(), "concurrent.futures", "FIRST_EXCEPTION FIRST_COMPLETED ALL_COMPLETED")
