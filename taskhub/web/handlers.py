"""The web view's pages and JSON endpoints (docs/web.md lists the endpoints).

    GET  /                          the cluster page: engines, throughput, the task table
    GET  /task/<msg_id>             one task: timings, output, traceback, dependencies
    GET  /api/engines               GET /api/throughput?window=10
    GET  /api/throughput/history?window=10&step=2&samples=59   the chart's past, from the DB
    GET  /api/tasks?status=…        GET /api/tasks/<msg_id>
    POST /api/tasks/<msg_id>/resubmit           POST /api/tasks/<msg_id>/abort

Every request needs the token (see auth.py) or gets 403. The pages are thin HTML shells;
their script (static/app.js) fills them from the JSON endpoints. A hub error becomes an
HTTP status with the hub's message: a bad filter 400, an unknown task 404, no task DB 503.
"""
import json

from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from .. import error
from . import auth

# The hub's refusals, by the HTTP status that says the same thing.
_STATUS = ((error.UnknownTaskError, 404), (error.NoTaskDB, 503), (error.TimeoutError, 504),
           (ValueError, 400), (TypeError, 400), (error.TaskhubError, 502))


class _Redacted:
    """Logs (uncaught errors included) show this request's URL without its token."""

    def prepare(self):
        self.request.uri = auth.redacted(self.request.uri)


class _Guarded(_Redacted):
    """Refuses (403) a request without the token, in a header or the URL; there is no
    cookie, which the browser would also send to every other server on this host."""

    def prepare(self):
        super().prepare()  # before anything can fail
        if not auth.given(self.request, self.settings["token"]):
            raise HTTPError(403, reason="this request needs the web view's token: open the "
                                        "URL that `ipcluster dashboard` prints")


class Page(_Redacted, RequestHandler):
    """A page's HTML shell: no data and no token in it, so it needs none. Its script takes
    the token from the URL's fragment (never sent to a server), keeps it in the tab's
    sessionStorage (this origin only) and sends it in a header with every API call."""

    def get(self, msg_id=None):
        template = "task.html" if msg_id else "index.html"
        self.render(template, msg_id=msg_id, cluster=self.settings["title"])

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code}: {self._reason}\n")


class Static(_Redacted, StaticFileHandler):
    """The static files (scripts, styles): code and looks, no data; they need no token."""


class Api(_Guarded, RequestHandler):
    """A JSON endpoint: runs a Hub method on the pool and writes its answer."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    async def answer(self, method, *args):
        hub = self.settings["hub"]
        try:
            result = await IOLoop.current().run_in_executor(hub.pool, method, *args)
        except Exception as e:
            status = next((code for cls, code in _STATUS if isinstance(e, cls)), None)
            if status is None:
                raise
            return self.fail(status, _one_line(e))
        if result is None:
            return self.fail(404, "no such task in the task database")
        self.finish(json.dumps(result))

    def fail(self, status, message):
        # the message goes in the body: an HTTP reason phrase cannot hold any text
        self.set_status(status)
        self.finish(json.dumps({"error": message, "status": status}))

    def write_error(self, status_code, **kwargs):
        self.finish(json.dumps({"error": self._reason, "status": status_code}))


def _one_line(exc):
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())


class Engines(Api):
    async def get(self):
        await self.answer(self.settings["hub"].engines)


class Throughput(Api):
    async def get(self):
        try:
            window = float(self.get_query_argument("window", "10"))
        except ValueError:
            return self.fail(400, "window must be a number of seconds")
        await self.answer(self.settings["hub"].throughput, window)


class ThroughputHistory(Api):
    async def get(self):
        try:
            args = (float(self.get_query_argument("window", "10")),
                    float(self.get_query_argument("step", "2")),
                    int(self.get_query_argument("samples", "59")))
        except ValueError:
            return self.fail(400, "window and step must be numbers of seconds, samples an "
                                  "integer")
        await self.answer(self.settings["hub"].throughput_history, *args)


class Tasks(Api):
    async def get(self):
        args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        args.pop("token", None)
        await self.answer(self.settings["hub"].table, args)


class Task(Api):
    async def get(self, msg_id):
        await self.answer(self.settings["hub"].task, msg_id)


class Resubmit(Api):
    async def post(self, msg_id):
        await self.answer(self.settings["hub"].resubmit, msg_id)


class Abort(Api):
    async def post(self, msg_id):
        await self.answer(self.settings["hub"].abort, msg_id)


MSG_ID = r"([^/]+)"
ROUTES = [
    (r"/", Page), (rf"/task/{MSG_ID}", Page),
    (r"/api/engines", Engines), (r"/api/throughput", Throughput),
    (r"/api/throughput/history", ThroughputHistory),
    (r"/api/tasks", Tasks), (rf"/api/tasks/{MSG_ID}", Task),
    (rf"/api/tasks/{MSG_ID}/resubmit", Resubmit), (rf"/api/tasks/{MSG_ID}/abort", Abort),
]
