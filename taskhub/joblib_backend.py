"""joblib on a taskhub cluster: `Parallel` (and scikit-learn's `n_jobs`) run on the engines.

    view.register_joblib_backend()               or taskhub.register_joblib_backend()
    with joblib.parallel_config(backend="taskhub"):
        Parallel(n_jobs=-1)(delayed(f)(i) for i in range(100))

joblib hands the backend batches of calls; each batch is one load-balanced task (so one
record in the task DB, labelled with joblib's batch), and its future is the TaskFuture the
executor returns, which joblib waits on like any future. `n_jobs=-1` means every engine.
"""
from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, register_parallel_backend


class TaskhubBackend(AutoBatchingMixin, ParallelBackendBase):
    """A joblib backend that sends each batch of calls to a LoadBalancedView's engines."""

    supports_retrieve_callback = True
    supports_timeout = True
    uses_threads = False
    supports_sharedmem = False

    def __init__(self, view=None, **kwargs):
        super().__init__(**kwargs)
        self._view = view
        self._owned_client = None
        self._executor = None

    @property
    def view(self):
        if self._view is None:  # registered without a view: the default cluster's
            from .client import Client
            self._owned_client = Client()
            self._view = self._owned_client.load_balanced_view()
        return self._view

    def effective_n_jobs(self, n_jobs):
        engines = len(self.view.client.ids)
        if n_jobs is None or n_jobs < 0:
            return max(engines, 1)
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return min(n_jobs, engines) if engines else n_jobs

    def configure(self, n_jobs=1, parallel=None, **backend_kwargs):
        self.parallel = parallel
        self._executor = self.view.executor
        return self.effective_n_jobs(n_jobs)

    def submit(self, func, callback=None):
        future = self._executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future):
        return future.result()

    def abort_everything(self, ensure_ready=True):
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if ensure_ready:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

    def terminate(self):
        self._executor = None


def register(view=None, name="taskhub", make_default=False):
    """Register `view` (a LoadBalancedView; None: the default cluster's, connected on first
    use) as joblib's backend `name`."""
    register_parallel_backend(name, lambda **kw: TaskhubBackend(view, **kw),
                              make_default=make_default)
