"""ipyparallel's names bound to taskhub's (conformance runs only; see _bind.py)."""
from ._bind import bind
from . import error, util  # noqa: F401 - upstream uses ipp.error and ipp.util

bind(globals(), "taskhub", "__version__ Client Cluster ClusterManager DirectView LoadBalancedView"
     " BroadcastView AsyncResult AsyncMapResult AsyncHubResult Reference interactive"
     " require depend dependent Dependency RemoteError CompositeError remote parallel"
     " register_joblib_backend FIRST_EXCEPTION FIRST_COMPLETED ALL_COMPLETED bind_kernel"
     " ViewExecutor=Executor")
