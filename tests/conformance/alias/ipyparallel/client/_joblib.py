"""ipyparallel.client._joblib: taskhub's joblib backend under ipyparallel's name."""
from .._bind import bind

bind(globals(), "taskhub.joblib_backend", "IPythonParallelBackend=TaskhubBackend")
