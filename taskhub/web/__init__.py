"""The web view: engines, live throughput and the searchable task history, in a browser.

Served by the controller process (see server.py) and guarded by a token derived from the
connection file (auth.py); everything it shows comes from hub requests, as for any client
(hub.py), so it works with every task-DB backend. docs/web.md documents the JSON endpoints.
The server (and tornado) is imported only when first used: the web-file helpers, which
`ipcluster` needs, live in webfile.py.
"""
from .auth import web_token
from .webfile import read_web_file, remove_web_file, web_file, write_web_file

__all__ = ["WebServer", "read_web_file", "remove_web_file", "web_file", "web_token",
           "write_web_file"]


def __getattr__(name):
    if name == "WebServer":
        from .server import WebServer
        return WebServer
    raise AttributeError(f"module 'taskhub.web' has no attribute {name!r}")
