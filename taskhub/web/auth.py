"""The web view's token: derived from the connection file's key, so whoever may use the
cluster may look at it, and nobody else.

    token = HMAC-SHA256(key, "taskhub web view")   (hex)

A request carries it as `?token=…`, an `Authorization: token …` header, or (GET only)
the cookie a page sets when it was opened with `?token=`. Comparison is constant-time.
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


def given(request, token, cookie_name):
    """Whether the tornado `request` carries `token` (the cookie counts if cookie_name)."""
    offered = [request.query_arguments.get("token", [b""])[-1].decode("utf8", "replace")]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "token":
        offered.append(value.strip())
    if cookie_name and cookie_name in request.cookies:
        offered.append(request.cookies[cookie_name].value)
    return any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered)
