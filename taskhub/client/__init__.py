"""The client side: Client, views and AsyncResult."""
from .asyncresult import AsyncHubResult, AsyncResult
from .client import Client
from .view import DirectView, LoadBalancedView

__all__ = ["Client", "AsyncResult", "AsyncHubResult", "DirectView", "LoadBalancedView"]
