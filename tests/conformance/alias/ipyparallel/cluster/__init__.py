"""ipyparallel.cluster."""
from .._bind import bind

bind(globals(), "taskhub.cluster.cluster", "Cluster ClusterManager")
