"""taskhub: run Python functions in parallel on a cluster that remembers every task."""
__version__ = "0.1.0"

from .client import AsyncHubResult, AsyncResult, Client, DirectView, LoadBalancedView  # noqa: E402,F401
from .cluster.cluster import Cluster  # noqa: E402,F401
from .client import Batch, Executor, TaskFuture  # noqa: E402,F401
from .dependency import Dependency, depend, dependent, require  # noqa: E402,F401
from .nesting import engine_client  # noqa: E402,F401
from .strategies import Serializer, check_strategies  # noqa: E402,F401
from .error import (CompositeError, EngineError, RemoteError, TaskAborted,  # noqa: E402,F401
                    TaskhubError, TimeoutError)
