"""ipyparallel.util: taskhub's helpers under ipyparallel's names."""
from ._bind import bind

bind(globals(), "taskhub.compat", "utc utcnow interactive disambiguate_ip_address")
