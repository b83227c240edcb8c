"""How many tasks each engine may hold (running + queued there): adaptive prefetch.

Tasks wait at the hub, where priorities order them and any engine may take them, unless
an engine is expected to need them soon. An engine's *depth* is how many tasks it may
have outstanding: enough that the tasks queued there cover `horizon` seconds of its work
(the time the hub needs to notice a reply and send more), from the durations it measured:

    depth = clamp(ceil(horizon / duration), 1, max_depth)      (hwm > 0 caps it too)

so 100 µs tasks go out deep (the engine never waits for the hub) and 1 s tasks one at a
time (none waits behind another). A duration is measured at the hub, without the
engine's help: the time from when the engine became busy (the task was sent to an idle
engine, or its previous reply came) to the reply, averaged (EWMA, weight `alpha`) — a
replies batch of n tasks counts as n samples whose mean is the batch's time / n.

An engine is *stalled* while its current work has taken longer than `stall` times its
usual duration (and longer than `horizon`): it is running something long, so it gets no
more until it answers (depth 1), and the tasks already queued there are worth stealing
(scheduler.py). Before an engine's first reply its depth is 1.

`eager` mode (the pre-adaptive behaviour): every engine's depth is `hwm`, or unbounded.
Pure state: times come in as arguments; tested event by event in tests/test_prefetch.py.
"""
import math

ADAPTIVE, EAGER = "adaptive", "eager"
MODES = (ADAPTIVE, EAGER)
HORIZON = 0.05     # seconds of work to keep queued on an engine (0.02 lost ~5-10% of
# eager mode's no-op map throughput on 2 engines in bench.ab; 0.05 keeps it)
MAX_DEPTH = 1024   # most tasks one engine may hold under adaptive prefetch (256 kept a
# 2,000 no-op map on 2 engines ~10-20% below eager mode: the hub refilled in small batches)
ALPHA = 0.1        # weight of a new duration sample in the average
STALL = 4.0        # an engine is stalled after this many times its usual duration
UNBOUNDED = float("inf")


class _Engine:
    __slots__ = ("duration", "busy_since")

    def __init__(self):
        self.duration = None    # average seconds per task, or None before the first reply
        self.busy_since = None  # when its current stretch of work began; None: idle


class Prefetch:
    def __init__(self, mode=ADAPTIVE, hwm=0, horizon=HORIZON, max_depth=MAX_DEPTH,
                 alpha=ALPHA, stall=STALL):
        if mode not in MODES:
            raise ValueError(f"unknown prefetch mode {mode!r}; choose one of "
                             f"{', '.join(MODES)}")
        self.mode, self.hwm = mode, hwm
        self.horizon, self.max_depth = horizon, max_depth
        self.alpha, self.stall = alpha, stall
        self.engines = {}

    @property
    def adaptive(self):
        return self.mode == ADAPTIVE

    def add(self, engine):
        self.engines.setdefault(engine, _Engine())

    def remove(self, engine):
        self.engines.pop(engine, None)

    def sent(self, engine, load_before, now):
        """A task went to `engine`, which had `load_before` tasks outstanding."""
        e = self.engines.get(engine)
        if e is not None and load_before == 0:
            e.busy_since = now

    def finished(self, engine, load_after, now):
        """`engine` answered a task; it has `load_after` outstanding now."""
        e = self.engines.get(engine)
        if e is None or e.busy_since is None:
            return
        sample = max(0.0, now - e.busy_since)
        e.duration = sample if e.duration is None else \
            e.duration + self.alpha * (sample - e.duration)
        e.busy_since = now if load_after else None

    def stalled(self, engine, now):
        """Whether `engine`'s current work has run far longer than its usual task."""
        e = self.engines.get(engine)
        if e is None or e.busy_since is None or e.duration is None:
            return False
        return now - e.busy_since > max(self.horizon, self.stall * e.duration)

    def depth(self, engine, now):
        """How many tasks `engine` may have outstanding now."""
        cap = self.hwm or UNBOUNDED
        if not self.adaptive:
            return cap
        e = self.engines.get(engine)
        if e is None or e.duration is None or self.stalled(engine, now):
            return 1
        if e.duration <= 0:
            return min(cap, self.max_depth)
        return min(cap, self.max_depth, max(1, math.ceil(self.horizon / e.duration)))

    def backlog(self, engine, queued):
        """Seconds of work `queued` not-started tasks are expected to be on `engine`."""
        e = self.engines.get(engine)
        duration = e.duration if e is not None and e.duration is not None else self.horizon
        return queued * duration
