"""The web view's token: derived from the connection file's key, so whoever may use the
cluster may look at it, and nobody else.

    token = HMAC-SHA256(key, "taskhub web view")   (hex)

A request carries it as `?token=…`, an `Authorization: token …` header, or (GET only)
the cookie a page sets when it was opened with `?token=`. Comparison is constant-time.
"""
import hashlib
import hmac

LABEL = b"taskhub web view"


def web_token(key):
    """The web token for the connection key `key` (str or bytes)."""
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, LABEL, hashlib.sha256).hexdigest()


def given(request, token, cookie_name):
    """Whether the tornado `request` carries `token` (the cookie counts if cookie_name)."""
    offered = [request.query_arguments.get("token", [b""])[-1].decode("utf8", "replace")]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "token":
        offered.append(value.strip())
    if cookie_name and cookie_name in request.cookies:
        offered.append(request.cookies[cookie_name].value)
    return any(o and hmac.compare_digest(o.encode(), token.encode()) for o in offered)
