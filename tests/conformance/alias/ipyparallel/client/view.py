"""ipyparallel.client.view."""
from .._bind import bind

bind(globals(), "taskhub.client.view", "View DirectView LoadBalancedView BroadcastView=DirectView")
bind(globals(), "taskhub.client.imap", "LazyMapIterator")
