"""The web view: engines, live throughput and the searchable task history, in a browser.

Served by the controller process (see server.py) and guarded by a token derived from the
connection file (auth.py); everything it shows comes from hub requests, as for any client
(hub.py), so it works with every task-DB backend. docs/web.md documents the JSON endpoints.
"""
from .auth import web_token
from .server import WebServer, read_web_file, remove_web_file, web_file, write_web_file

__all__ = ["WebServer", "read_web_file", "remove_web_file", "web_file", "web_token",
           "write_web_file"]
