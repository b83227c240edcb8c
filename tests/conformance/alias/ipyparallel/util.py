"""ipyparallel.util: taskhub's helpers under ipyparallel's names."""
from ._bind import bind

bind(globals(), "taskhub.reference", "interactive")
bind(globals(), "taskhub.client.asyncresult", "utcnow")
bind(globals(), "taskhub.controller.db.compat",
     "_disable_session_extract_dates=disable_session_extract_dates")
bind(globals(), "datetime", "utc=UTC")
