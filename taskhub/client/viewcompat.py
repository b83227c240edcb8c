"""View methods ipyparallel code calls: len(view), history, wait, use_pickle / use_dill,
sync_imports, run, get, remote / parallel decorators.

Mixed into View (and DirectView), written from the view's own apply/execute/pull.
"""
import builtins
import contextlib
import functools

from .. import strategies


class ViewCompat:

    def __len__(self):
        """How many engines the view's tasks can run on."""
        targets = getattr(self, "targets", None)
        if targets is None or targets == "all":
            return len(self.client.ids)
        return 1 if isinstance(targets, int) else len(targets)

    @property
    def history(self):
        """msg_ids sent through this view (or its executor), oldest first."""
        return list(self.__dict__.setdefault("_history", []))

    def _note_history(self, msg_ids):
        self.__dict__.setdefault("_history", []).extend(msg_ids)

    def wait(self, jobs=None, timeout=None):
        """Wait for `jobs` (default: what this view has outstanding); True if all done."""
        return self.client.wait(sorted(self.outstanding) if jobs is None else jobs, timeout)

    def get_result(self, msg_ids=-1, block=None, owner=True):
        """Results of tasks by msg_id (see Client.get_result), or by their index in this
        view's history (-1: the last task sent)."""
        history = self.history
        if isinstance(msg_ids, int) and not isinstance(msg_ids, bool):
            msg_ids = history[msg_ids]
        elif isinstance(msg_ids, (list, tuple)):
            msg_ids = [history[m] if isinstance(m, int) else m for m in msg_ids]
        return self.client.get_result(msg_ids, block=block, owner=owner)

    def _use(self, serializer):
        self.client.serializer = serializer

    def use_dill(self):
        """Send functions and arguments with dill (taskhub's default: lambdas, closures and
        interactively defined functions travel by value)."""
        self._use(strategies.Serializer())

    def use_pickle(self):
        """ipyparallel's default serialization; taskhub's default (dill-based) does the
        same job: functions defined interactively travel by value."""
        self._use(strategies.Serializer())

    def use_cloudpickle(self):
        raise NotImplementedError("taskhub has no cloudpickle strategy: use_dill() (the "
                                  "default) sends what cloudpickle would")

    def remote(self, block=None, **flags):
        """Decorator: calling the function runs it through this view, with `flags`."""
        return lambda f: RemoteFunction(self, f, block, flags)

    def parallel(self, dist="b", block=None, **flags):
        """Decorator: `f.map(*seqs)` and `f(*seqs)` map f over the sequences through this
        view (element by element; `dist` is accepted for ipyparallel code)."""
        return lambda f: ParallelFunction(self, f, block, flags)


def remote(view, block=None, **flags):
    """`@remote(view)`: as `@view.remote()`."""
    return view.remote(block, **flags)


def parallel(view, dist="b", block=None, **flags):
    """`@parallel(view)`: as `@view.parallel()`."""
    return view.parallel(dist, block, **flags)


class RemoteFunction:
    """A function whose calls run through a view (what @view.remote() returns)."""

    def __init__(self, view, f, block, flags):
        self.view, self.f, self.block, self.flags = view, f, block, flags
        functools.update_wrapper(self, f)
        self.__doc__ = f"{type(self).__name__} of {f.__name__} on {view!r}\n\n{f.__doc__ or ''}"

    def _block(self):
        return self.view.block if self.block is None else self.block

    def __call__(self, *args, **kwargs):
        with self.view.temp_flags(**self.flags):
            return self.view._apply(self.f, args, kwargs, self._block())


class ParallelFunction(RemoteFunction):
    """A function mapped over sequences through a view (what @view.parallel() returns)."""

    def map(self, *sequences):
        with self.view.temp_flags(**self.flags):
            return self.view.map(self.f, *sequences, block=self._block())

    __call__ = map


class DirectViewCompat:

    def clear(self, block=None):
        """Empty the namespace of this view's engines (see Client.clear)."""
        return self.client.clear(self.targets, self.block if block is None else block)

    def get(self, name):
        """The value of `name` on each engine (blocking pull)."""
        return self.pull(name, block=True)

    def run(self, filename, block=None):
        """Execute the Python file `filename` (read here) in each engine's namespace."""
        with open(filename) as f:
            code = f.read()
        return self.execute(code if code.endswith("\n") else code + "\n", block=block)

    @property
    def importer(self):
        """`with view.importer: import re`: sync_imports() as a property."""
        return self.sync_imports(True)

    @contextlib.contextmanager
    def sync_imports(self, local=True, quiet=False):
        """`with view.sync_imports(): import numpy` imports here and on the engines, which
        bind the same names (local is accepted for ipyparallel code; the import is always
        done here too)."""
        real_import = builtins.__import__
        done, depth = [], [0]

        def remote_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and depth[0] == 0:  # the block's own imports, not their imports
                names = ", ".join(fromlist or ())
                done.append(f"from {name} import {names}" if names else f"import {name}")
                if not quiet:
                    print(f"importing {names} from {name} on engine(s)" if names
                          else f"importing {name} on engine(s)")
            depth[0] += 1
            try:
                return real_import(name, globals, locals, fromlist, level)
            finally:
                depth[0] -= 1

        builtins.__import__ = remote_import
        try:
            yield
        finally:
            builtins.__import__ = real_import
        for stmt in done:
            self.execute(stmt, block=True)
