"""The web view's server: tornado on a thread of its own, in the controller process.

    controller process
      main thread:  Controller.run() — the zmq loop; the web view never touches its state
      web thread:   tornado IOLoop ── handlers.py ── Hub (a Client of this controller,
                                                         over the client connection file)

`WebServer(connection_file, ip, port).start()` binds at once (so a taken port fails
`ipcontroller` at start, not later) and serves on the thread; `stop()` ends it.
`write_web_file` puts the URL, with its token, in the profile's security/taskhub-web.json,
which `ipcluster start` prints and `ipcluster dashboard` opens.
"""
import asyncio
import socket
import threading
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets
from tornado.web import Application

from ..appbase import read_connection_file
from . import auth, handlers
from .auth import web_token
from .hub import Hub
from .webfile import read_web_file, remove_web_file, web_file, write_web_file  # noqa: F401

HERE = Path(__file__).parent


def make_app(hub, token, port, title=""):
    """The tornado Application: routes, templates, token-guarded static files."""
    return Application(handlers.ROUTES, hub=hub, token=token, title=title,
                       log_function=auth.log_request,
                       template_path=str(HERE / "templates"),
                       static_path=str(HERE / "static"), static_handler_class=handlers.Static)


class WebServer:
    """Serves the web view of the controller whose client connection file is given."""

    def __init__(self, connection_file, ip="127.0.0.1", port=0, title=""):
        self.connection_file = Path(connection_file)
        self.ip, self.port, self.title = ip, port, title
        self.token = web_token(read_connection_file(connection_file)["key"])
        self._thread = self._loop = None

    @property
    def url(self):
        """The URL to open, the token in its fragment (which the browser never sends)."""
        host = socket.gethostname() if self.ip in ("0.0.0.0", "::", "") else self.ip
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/#token={self.token}"

    def start(self):
        sockets = bind_sockets(self.port, self.ip)
        self.port = sockets[0].getsockname()[1]
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sockets, started),
                                        name="taskhub-web", daemon=True)
        self._thread.start()
        started.wait()
        return self

    def _serve(self, sockets, started):
        asyncio.set_event_loop(asyncio.new_event_loop())
        self._loop = IOLoop.current()
        hub = Hub(self.connection_file)
        server = HTTPServer(make_app(hub, self.token, self.port, self.title))
        server.add_sockets(sockets)
        started.set()
        try:
            self._loop.start()
        finally:
            server.stop()
            hub.close()
            self._loop.close(all_fds=True)

    def stop(self):
        """Stop serving and close the web view's client; safe from any thread."""
        if self._thread is None:
            return
        self._loop.add_callback(self._loop.stop)
        self._thread.join(10)
        self._thread = None
