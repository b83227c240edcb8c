"""ipyparallel.error: taskhub's exceptions under ipyparallel's names."""
from ._bind import bind

bind(globals(), "taskhub.error", "RemoteError CompositeError EngineError TaskAborted TaskTimeout"
     " TimeoutError UnmetDependency ImpossibleDependency DependencyTimeout InvalidDependency"
     " NoEnginesRegistered KernelError IPythonError=TaskhubError")
bind(globals(), "taskhub.magics", "AlreadyDisplayedError")
