"""The web view's token: derived from the connection file's key, so whoever may use the
cluster may look at it, and nobody else.

    token = HMAC-SHA256(key, "taskhub web view")   (hex)

A request carries it in an `Authorization: token …` header (what the pages send) or as
`?token=…` (for scripts; logs show it redacted). Never a cookie: browsers send a cookie to
every port of a host, so any other local server would receive it. Comparison is
constant-time.
"""
import hashlib
import hmac
import logging
from urllib.parse import parse_qsl, urlencode

access_log = logging.getLogger("tornado.access")

LABEL = b"taskhub web view"


def web_token(key):
    """The web token for the connection key `key` (str or bytes)."""
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, LABEL, hashlib.sha256).hexdigest()


def redacted(uri):
    """`uri` with the value of any token in its query string replaced: what logs may show."""
    path, sep, query = uri.partition("?")
    if not sep:
        return uri
    pairs = parse_qsl(query, keep_blank_values=True)
    return f"{path}?{urlencode([(k, 'REDACTED' if k == 'token' else v) for k, v in pairs])}"


def log_request(handler):
    """The web view's access log line: tornado's, with the token redacted from the URL (the
    `log_function` of the Application, so it covers every handler, 404s included)."""
    status, request = handler.get_status(), handler.request
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method,
                   redacted(request.uri), request.remote_ip, 1000.0 * request.request_time())


def given(request, token):
    """Whether the tornado `request` carries `token` (header or query string)."""
    offered = [request.query_arguments.get("token", [b""])[-1].decode("utf8", "replace")]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "token":
        offered.append(value.strip())
    return any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered)
