"""ipyparallel.util: taskhub's helpers under ipyparallel's names."""
from ._bind import bind

bind(globals(), "taskhub.reference", "interactive")
bind(globals(), "taskhub.client.asyncresult", "utcnow")
bind(globals(), "datetime", "utc=UTC")
