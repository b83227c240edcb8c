"""Client methods ipyparallel code calls that taskhub's own API spells otherwise.

Mixed into Client so client.py stays about connections and requests: each method here is
written from the methods Client already has.
"""
import difflib
import threading
from concurrent.futures import Future

from ..engine import ops
from .asyncresult import new_metadata


class _LocalMetadata(dict):
    """rc.metadata: a result's metadata by msg_id; a new msg_id gets an empty record."""

    def __missing__(self, msg_id):
        self[msg_id] = md = new_metadata(msg_id)
        return md


class ClientCompat:
    """ipyparallel's Client spellings: clear, len(rc), iteration, negative ids, spin,
    history, results, metadata, purge_*, wait_interactive."""

    block = False  # the default `block` of the views this client makes

    def __setattr__(self, name, value):
        """A connected client refuses a new public attribute spelled like one it has:
        `rc.blok = 3` is a typo to report, not a setting to ignore. (Other new names are
        let through: code hangs its own things on clients.)"""
        if (not name.startswith("_") and "_thread" in self.__dict__
                and name not in self.__dict__ and not hasattr(type(self), name)):
            close = difflib.get_close_matches(name, _public_names(self), n=1, cutoff=0.85)
            if close:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute "
                                     f"{name!r} (did you mean {close[0]!r}?)")
        super().__setattr__(name, value)

    def __len__(self):
        """How many engines are registered now."""
        return len(self._engines)

    def __iter__(self):
        """A DirectView per engine, in id order."""
        return iter([self[i] for i in self.ids])

    def _engine_id(self, key):
        """An engine id from an index that may count from the end (rc[-1])."""
        if isinstance(key, int) and not isinstance(key, bool) and key < 0:
            ids = self.ids
            if -key > len(ids):
                raise IndexError(f"no engine at index {key}; registered ids: {ids}")
            return ids[key]
        return key

    def clear(self, targets=None, block=None):
        """Empty the namespace of engines `targets` (default: all); an AsyncResult, or None
        once done with block=True."""
        view = self.direct_view("all" if targets is None else targets)
        ar = view.apply_async(ops.clear)
        if block:
            ar.get()
            return None
        return ar

    def send_signal(self, sig, targets=None, block=None):
        """Send signal `sig` (a number or a name, "SIGINT") to engines `targets` (default:
        all). SIGINT interrupts their running tasks (KeyboardInterrupt), as in an IPython
        kernel; any other signal goes to the engine processes. Each engine's answer is
        waited for (block=False: a Future of that instead)."""
        if not (getattr(self, "block", True) if block is None else block):
            return self._in_background(self.send_signal, sig, targets, True)
        ids = self.ids if targets in ("all", None) else (
            [self._engine_id(targets)] if isinstance(targets, int) else list(targets))
        for uuid in self._uuids(ids):
            self._hub_request("signal_request", {"sig": sig}, None, "control", [uuid.encode()])

    def broadcast_view(self, targets="all", is_coalescing=False, **flags):
        """ipyparallel's BroadcastView runs each call on every target through a broadcast
        scheduler; taskhub sends to each engine directly, with the same results: this is
        a DirectView of `targets` with `flags` set (`is_coalescing` changes nothing)."""
        return self._direct_view(targets).set_flags(**flags)

    def _in_background(self, call, *args):
        """A Future of call(*args), run on a thread of its own."""
        future = Future()

        def run():
            try:
                future.set_result(call(*args))
            except BaseException as e:  # noqa: B036 - handed to whoever waits
                future.set_exception(e)
        threading.Thread(target=run, daemon=True, name="taskhub-client-wait").start()
        return future

    def _wait_unregistered(self, ids, timeout):
        with self._engines_changed:
            self._engines_changed.wait_for(
                lambda: not set(ids) & set(self._engines) or self._gone is not None, timeout)

    def spin(self):
        """Send whatever is queued. Replies need no spinning here: the IO thread delivers
        them as they come."""
        self._flush()

    # -- local bookkeeping ------------------------------------------------------------------
    def _compat_state(self):
        state = self.__dict__.get("_compat")
        if state is None:
            state = self.__dict__.setdefault("_compat", {
                "history": [], "results": {}, "metadata": _LocalMetadata()})
        return state

    def _note_sent(self, msg_id):
        """(On the send path: one append, atomic under the GIL, no lock.)"""
        state = self._compat_state()
        state["history"].append(msg_id)

    @property
    def history(self):
        """msg_ids of the tasks this client submitted, oldest first."""
        return list(self._compat_state()["history"])

    @property
    def results(self):
        """Results kept by this client outside any AsyncResult, by msg_id. Replies go to
        their AsyncResult, so this holds only what code put here."""
        return self._compat_state()["results"]

    @property
    def metadata(self):
        """Metadata kept by this client outside any AsyncResult, by msg_id."""
        return self._compat_state()["metadata"]

    def purge_local_results(self, jobs=(), targets=()):
        """Forget local results and metadata (msg_ids, AsyncResults or 'all'); a task
        still outstanding raises RuntimeError."""
        state = self._compat_state()
        if jobs == "all":
            if self.outstanding:
                raise RuntimeError(f"cannot purge while {len(self.outstanding)} tasks are "
                                   "outstanding")
            state["results"].clear()
            state["metadata"].clear()
            return
        ids = [j for job in ([jobs] if isinstance(jobs, (str, Future)) else jobs)
               for j in ([job] if isinstance(job, str) else job.msg_ids)]
        busy = [m for m in ids if m in self.outstanding]
        if busy:
            raise RuntimeError(f"task {busy[0]} is still outstanding")
        for msg_id in ids:
            state["results"].pop(msg_id, None)
            state["metadata"].pop(msg_id, None)

    def purge_hub_results(self, jobs=(), targets=()):
        """Drop finished records from the task DB (see purge_results)."""
        return self.purge_results(jobs, targets)

    def purge_everything(self):
        """Forget everything: local results, this client's history, the task DB's finished
        records."""
        self.purge_local_results("all")
        self._compat_state()["history"].clear()
        return self.purge_results("all")

    def wait_interactive(self, jobs=None, interval=0.1, timeout=None):
        """Wait for `jobs` (default: all outstanding) showing a progress bar."""
        from .asyncresult import AsyncResult
        ids = sorted(self.outstanding) if jobs is None else self._msg_id_list(jobs, "wait")
        if not ids:
            return True
        return self._follow(ids, "list", [], AsyncResult).wait_interactive(interval, timeout)

    def _follow(self, msg_ids, kind, sources, cls):
        """A new `cls` result over msg_ids that other results (`sources`) or this client
        may already be waiting for: it gets the replies in, and those still to come."""
        ar = cls(self, msg_ids, kind)
        have = {}
        for src in sources:
            have.update(src._values)
        later = []
        with self._lock:
            for msg_id in msg_ids:
                if msg_id in have:
                    continue
                if msg_id in self._pending:
                    self._pending[msg_id].append(ar)
                else:
                    later.append(msg_id)  # being delivered to a source right now
        for msg_id in msg_ids:
            if msg_id in have:
                ar._receive(msg_id, have[msg_id], _metadata_of(sources, msg_id))
        for msg_id in later:
            src = next((s for s in sources if msg_id in s.msg_ids), None)
            if src is not None:
                ar._receive(msg_id, src._wait_for(msg_id), src._metadata[msg_id])
        return ar


def _public_names(obj):
    return [n for n in {*dir(type(obj)), *obj.__dict__} if not n.startswith("_")]


def _metadata_of(sources, msg_id):
    return next(s._metadata[msg_id] for s in sources if msg_id in s._metadata)

