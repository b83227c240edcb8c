"""ipyparallel.error: taskhub's exceptions under ipyparallel's names."""
from ._bind import bind

bind(globals(), "taskhub.error", "RemoteError CompositeError EngineError TaskAborted TaskTimeout"
     " TimeoutError UnmetDependency ImpossibleDependency DependencyTimeout InvalidDependency"
     " AlreadyDisplayedError NoEnginesRegistered TaskRejectError KernelError"
     " IPythonError=TaskhubError")
