"""The client side: Client, views and AsyncResult."""
from .asyncresult import AsyncHubResult, AsyncResult
from .client import Client
from .executor import Batch, Executor
from .taskfuture import TaskFuture
from .view import DirectView, LoadBalancedView

__all__ = ["Client", "AsyncResult", "AsyncHubResult", "DirectView", "LoadBalancedView",
           "Executor", "Batch", "TaskFuture"]
