"""What the web view asks the controller, as an ordinary client: one `Client`, hub requests.

The handlers call these methods on a small thread pool (each blocks until the hub
answers), so the web server's IOLoop keeps serving while a query runs. The Client is made
on first use: a controller nobody looks at pays for no connection and decodes no
notifications for the web view. Every method returns JSON-able dicts.
"""
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from ..client import Client, prefixes
from ..error import NoTaskDB, TaskDBWarning, UnknownTaskError
from . import chart, tasktable

# the page's header shows a failing task DB (from throughput_request): not a warning per query
warnings.filterwarnings("ignore", category=TaskDBWarning, module=__name__)

# Seconds a hub request may take before the page gets a 504. A worker waiting on a
# controller that is stopping holds up the process's exit this long at most.
HUB_TIMEOUT = 10.0


class Hub:
    def __init__(self, connection_file, workers=4):
        self.connection_file = connection_file
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="taskhub-web-hub")
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = Client(self.connection_file, timeout=HUB_TIMEOUT)
            return self._client

    def _ask(self, msg_type, content):
        content = self.client._hub_request(msg_type, content, timeout=HUB_TIMEOUT)
        content.pop("_buffers", None)
        content.pop("status", None)
        return content

    def engines(self):
        return self._ask("engines_request", {})

    def throughput(self, window):
        return self._ask("throughput_request", {"window": window})

    def throughput_history(self, window, step, samples):
        """The throughput chart's samples before the page opened (see chart.py); [] when
        the controller keeps no task DB."""
        now = datetime.now(timezone.utc)
        try:
            rates = chart.history(self.client.db_count, now, window, step, samples)
        except NoTaskDB:
            rates = []
        return {"time": now.isoformat(), "window": window, "step": step, "rates": rates}

    def table(self, args):
        """One page of the task table for the URL parameters `args`."""
        req = tasktable.table_request(args)
        total = self.client.db_count(req.query)
        records = self.client.db_query(req.query, tasktable.ROW_KEYS, sort=req.sort,
                                       limit=req.limit, skip=req.skip)
        return {"total": total, "skip": req.skip, "limit": req.limit,
                "sort": [f"{'-' if d < 0 else ''}{k}" for k, d in req.sort],
                "tasks": [tasktable.row(r) for r in records]}

    def task(self, msg_id):
        """Everything about one task but its buffers, and the task it was resubmitted from."""
        try:
            msg_id = prefixes.full_id(self.client, msg_id)  # /task/9f3c: as git takes a prefix
        except UnknownTaskError:
            return None
        found = self.client.db_query({"msg_id": msg_id})
        if not found:
            return None
        origin = self.client.db_query({"resubmitted": msg_id}, keys=["msg_id"], limit=1)
        return {"task": tasktable.jsonable_record(found[0]),
                "resubmitted_from": origin[0]["msg_id"] if origin else None}

    def resubmit(self, msg_id):
        """Run a finished task again; the new task's msg_id. Its result stays in the DB."""
        ar = self.client.resubmit([prefixes.full_id(self.client, msg_id)])
        return {"msg_id": ar.msg_ids[0]}

    def abort(self, msg_id):
        self.client.abort([msg_id])
        return {"aborted": msg_id}

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
