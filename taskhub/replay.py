"""Replay guard: which (sender, sequence number) pairs a receiver has already accepted.

Every message's signed header names its sender (random per process) and a sequence number
that sender never reuses. A receiver accepts a (sender, seq) pair once, ever:

    seq ≤ floor                  refused: "replayed" (seen, or older than the window)
    floor < seq, bit set         refused: "replayed"
    floor < seq, bit clear       accepted; the bit is set

`floor` only rises: past every pair accepted without a gap, and to `top - window` (top: the
highest seq accepted), so at most `window` sequence numbers below the newest are tracked
bit by bit. A replay never becomes acceptable again, however many messages come after it;
what the window costs is the other way round: a genuine message overtaken by more than
`window` later ones of the same sender is refused too. Streams a receiver gets straight
from their signer are in order up to a few messages (threads racing to send), so the floor
follows the top and the bitmap stays a few bytes; where a receiver sees only some of a
sender's messages (an engine its share of a client's tasks) the bitmap holds up to
`window` live bits per sender (window / 8 bytes, and at most as many again not yet
compacted away).

No I/O here: `accept` is the only way the state changes, and the tests drive it event by
event (tests/test_security_sign.py).
"""


class _Stream:
    """One sender's accepted sequence numbers: all ≤ floor, plus a bitmap above it."""

    __slots__ = ("floor", "base", "bits", "top", "pending")

    def __init__(self, floor):
        self.floor = floor  # every seq ≤ floor is refused
        self.top = floor
        self._clear()

    def _clear(self):
        self.base = self.floor + 1  # the seq bit 0 of bits[0] stands for
        self.bits = bytearray()
        self.pending = 0  # bits set above the floor

    def _bit(self, seq):
        i = seq - self.base
        return 0 <= i < 8 * len(self.bits) and self.bits[i >> 3] & (1 << (i & 7))

    def _count(self, lo, hi):
        """How many seqs in [lo, hi) are marked."""
        lo, hi = max(lo - self.base, 0), min(hi - self.base, 8 * len(self.bits))
        if hi <= lo:
            return 0
        chunk = int.from_bytes(self.bits[lo >> 3:(hi + 7) >> 3], "little") >> (lo & 7)
        return (chunk & ((1 << (hi - lo)) - 1)).bit_count()

    def seen(self, seq):
        return seq <= self.floor or bool(self.pending and self._bit(seq))

    def mark(self, seq, window):
        if seq == self.floor + 1 and not self.pending:  # the common case: next in order
            self.floor = seq
            self.top = max(self.top, seq)
            if self.bits:
                self._clear()
            return
        i = seq - self.base
        if i >= 8 * len(self.bits):
            self.bits.extend(bytes((i >> 3) + 1 - len(self.bits)))
        self.bits[i >> 3] |= 1 << (i & 7)
        self.pending += 1
        self.top = max(self.top, seq)
        self._raise_floor(self.top - window)

    def _raise_floor(self, forced):
        """Past `forced` (older than the window), then on past every seq already marked."""
        floor = self.floor
        if forced > floor:  # the marks in (floor, forced] leave the bitmap
            self.pending -= self._count(floor + 1, forced + 1)
            floor = forced
        while self.pending and self._bit(floor + 1):
            floor += 1
            self.pending -= 1
        self.floor = floor
        if not self.pending:
            self._clear()
            return
        whole = min((floor + 1 - self.base) >> 3, len(self.bits))
        if whole and whole * 2 >= len(self.bits):  # compact once half the bytes are dead
            del self.bits[:whole]
            self.base += 8 * whole


class ReplayGuard:
    """Per-sender record of accepted sequence numbers; see the module docstring."""

    def __init__(self, window=1 << 16):
        if window < 1:
            raise ValueError("the replay window must be at least 1")
        self.window = window
        self._streams = {}

    def accept(self, sender, seq):
        """None if (sender, seq) is new — it is then recorded — else why it is refused."""
        if seq.__class__ is not int or sender.__class__ is not str or seq < 0:
            return "unsequenced"
        stream = self._streams.get(sender)
        if stream is None:
            # a sender's first message here: earlier numbers it sent elsewhere, or that
            # are still on their way, stay acceptable within the window
            stream = self._streams[sender] = _Stream(max(-1, seq - self.window - 1))
        if stream.seen(seq):
            return "replayed"
        stream.mark(seq, self.window)
        return None

    def seed(self, sender, floor):
        """Refuse `sender`'s seqs up to `floor` from now on (what a controller started again
        knows its dead predecessor took in: taskhub/controller/resume.py)."""
        stream = self._streams.get(sender)
        if stream is None:
            self._streams[sender] = _Stream(floor)
        elif floor > stream.floor:
            stream.top = max(stream.top, floor)
            stream._raise_floor(floor)

    def tracked_bytes(self):
        """Bytes held by the bitmaps (for tests and stats)."""
        return sum(len(s.bits) for s in self._streams.values())
