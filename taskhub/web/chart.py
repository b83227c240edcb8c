"""The throughput chart's past, from the task DB: what the page would have drawn had it been
open all along.

The page samples "tasks completed in the last `window` seconds / window" every `step`
seconds. Opened later, it asks for the samples it missed; each is one range count on the
indexed `completed` key (cheap however many tasks ran), at times going back from now:

    now - (samples)*step ... now - 2*step, now - step   (oldest first; the page's own first
                                                          poll adds the sample at now)
"""
from datetime import timedelta

MAX_SAMPLES = 600


def check_history_args(window, step, samples):
    """(window, step, samples) as numbers, or ValueError saying which is wrong."""
    for name, value in (("window", window), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value <= 3600:
            raise ValueError(f"{name} must be a number of seconds in (0, 3600], not {value!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) \
            or not 0 < samples <= MAX_SAMPLES:
        raise ValueError(f"samples must be an integer in [1, {MAX_SAMPLES}], not {samples!r}")
    return window, step, samples


def sample_windows(now, window, step, samples):
    """[(start, end)] of each past sample's window, oldest first (see the module docstring)."""
    ends = [now - timedelta(seconds=step * k) for k in range(samples, 0, -1)]
    return [(end - timedelta(seconds=window), end) for end in ends]


def history(count, now, window, step, samples):
    """The rates of the past samples; `count(query)` counts task records."""
    window, step, samples = check_history_args(window, step, samples)
    return [count({"completed": {"$gt": start, "$lte": end}}) / window
            for start, end in sample_windows(now, window, step, samples)]
