"""Signed multipart messages: the one wire format every taskhub socket speaks.

    [routing ids…, DELIM, signature, header, parent_header, metadata, content, buffers…]

header/parent/metadata/content are JSON; the signature is the hex HMAC-SHA256, under the
key from the connection file, of every frame after it — the four dicts and the buffers (the
pickled function, arguments and results) — preceded by their lengths, so no byte that
decides what runs or what a result is can be changed, and no bytes moved between frames.
The header carries the sender (random per process) and its sequence number; a receiver
accepts each (sender, seq) once, ever (taskhub/replay.py). A message with a bad or missing
signature, or a replay, is dropped and counted in `Session.dropped` — never acted on (see
docs/messages.md and docs/security.md).
"""
import hashlib
import hmac
import itertools
import json
import logging
import os
import struct
import uuid
from collections import Counter
from datetime import datetime, timezone

from .jsonutil import gc_paused
from .replay import ReplayGuard

log = logging.getLogger("taskhub.session")

DELIM = b"<TH|MSG>"

# Requests that name tasks travel on the task channel, behind the tasks they name: one
# connection keeps order, two (task and query) do not, so an abort sent right after its
# task could otherwise arrive first and find nothing to abort. (Not under the pure scheme,
# whose task channel is a C device that only forwards.)
TASK_CHANNEL_REQUESTS = frozenset({"abort_request", "interrupt_request", "resubmit_request",
                                   "result_request", "result_status_request",
                                   "cancel_request"})
PROTOCOL_VERSION = "1.0"

# A batch carries many messages in one: a signed message of this type whose buffers are
# the messages, each packed into one frame (see pack_frames and docs/messages.md). Each
# packed message is checked on its own, as if it had come alone.
BATCH = "batch"
BATCH_MAX_PART = 65536  # a message at least this big travels alone, never packed (copied)
# A batch's own signature leaves out its buffers: each packed message in them is signed in
# full and checked on its own (a changed one fails its signature, a repeated one the replay
# guard), so hashing them twice would add cost, not safety. A header says it is a batch's
# by these bytes (JSON escapes every quote inside a string, so they cannot appear in a
# value); the sender decides by msg_type, so a header claiming it falsely fails the check.
_BATCH_HEADER = b'"msg_type":"batch"'
_U32 = struct.Struct(">I")


def pack_frames(frames):
    """One frame holding `frames`: their count (u32), each length (u32), then the data."""
    lens = [len(f) if f.__class__ is bytes else memoryview(f).nbytes for f in frames]
    return struct.pack(f">I{len(lens)}I", len(lens), *lens) + b"".join(frames)


def packable(frames):
    """Whether a message is small enough to travel packed in a batch."""
    total = 0
    for f in frames:
        total += len(f) if isinstance(f, (bytes, bytearray)) else memoryview(f).nbytes
    return total < BATCH_MAX_PART


def unpack_frames(blob):
    """The frames `pack_frames` made `blob` from (ValueError if it is not such a frame)."""
    if not isinstance(blob, bytes):
        blob = memoryview(blob).tobytes()
    try:
        (count,) = _U32.unpack_from(blob)
        if 4 + 4 * count > len(blob):
            raise ValueError("not a packed message")
        lens = struct.unpack_from(f">{count}I", blob, 4)
    except struct.error:
        raise ValueError("not a packed message") from None
    offset, frames = 4 + 4 * count, []
    for n in lens:
        frames.append(blob[offset:offset + n])
        offset += n
    if offset != len(blob):
        raise ValueError("not a packed message")
    return frames

def _encode_other(obj):
    if isinstance(obj, datetime):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} {obj!r:.60} cannot be sent in a message "
                    "(only JSON types and datetimes can)")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_encode_other).encode
_decoder = json.JSONDecoder()
_decode_json, _scan_json = _decoder.decode, _decoder.scan_once
# The C encoder JSONEncoder.encode builds anew for every call, made once: without the
# circular-reference check (a cycle ends in RecursionError, and then the full encoder
# below says what is wrong, as it does for anything else the fast one cannot encode)
_c_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode_fast = _c_encoder(None, _encode_other, json.encoder.encode_basestring_ascii, None,
                          ":", ",", False, False, True) if _c_encoder is not None else None


def _loads(frame):
    # str in: json.loads would otherwise sniff the encoding of every bytes frame
    text = frame.decode() if isinstance(frame, (bytes, bytearray)) else frame
    if len(text) >= _BIG_JSON:
        with gc_paused():  # e.g. a db_reply's records: see gc_paused
            return _decode_json(text)
    try:  # the scanner alone: what we send has no whitespace around the value
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except StopIteration:
        pass
    return _decode_json(text)  # whitespace around it, or not JSON: the full decoder decides


_BIG_JSON = 1 << 20


def dumps(obj):
    if _encode_fast is None:
        return _dumps(obj).encode()
    try:
        return "".join(_encode_fast(obj, 0)).encode()
    except Exception:  # noqa: BLE001 - the full encoder raises what is wrong, if anything
        return _dumps(obj).encode()


def utcnow():
    return datetime.now(timezone.utc)


_ID_MASK = (1 << 48) - 1
_ID_MIX = 0x9E3779B97F4B  # odd, near 2**48 / golden ratio: consecutive counts land far apart


def new_id():
    return uuid.uuid4().hex


class Message(dict):
    """A decoded message: header, parent_header, metadata, content, buffers, and `raw` — the
    frames from the signature on, so a relay forwards exactly what it received."""

    __slots__ = ()

    @property
    def msg_id(self):
        return self["header"]["msg_id"]

    @property
    def msg_type(self):
        return self["header"]["msg_type"]

    @property
    def parent_id(self):
        return self["parent_header"].get("msg_id")


class Session:
    """Builds, signs, checks and decodes messages for one participant (client, hub, engine).

    `key` is the shared secret (bytes). `replay_window`: how far (in sequence numbers) a
    sender's message may be overtaken by its later ones and still be accepted; replays are
    refused whatever it is, it bounds memory (about window / 4 bytes per sender at most; see
    taskhub/replay.py).
    """

    def __init__(self, key, session_id=None, replay_window=1 << 16):
        if not isinstance(key, bytes) or not key:
            raise ValueError("a session needs a non-empty bytes key")
        self.key = key
        self.session_id = session_id or new_id()
        self.bsession = self.session_id.encode()
        self.session = self.session_id  # the name ipyparallel's docs use (rc.session.session)
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self.replay_guard = ReplayGuard(replay_window)
        self._sender = None  # (pid, sender id, seq counter) behind header()
        self.dropped = Counter()  # reason -> how many messages were dropped for it
        self._ids = None  # (pid, 80 random bits as hex, counter) behind next_msg_id

    def next_msg_id(self):
        """A new msg_id: 32 hex digits like a uuid4's, but 80 random bits drawn once per
        session (and process) after a counter — a uuid4 per message cost a system call for
        its randomness. The counter is scrambled (times an odd constant, xor a random
        offset: a bijection of 48 bits) and goes first, so that the first few digits, the
        short form people read and type, differ from task to task."""
        ids = self._ids
        if ids is None or ids[0] != os.getpid():
            offset = int.from_bytes(os.urandom(6), "big")
            ids = self._ids = (os.getpid(), os.urandom(10).hex(), itertools.count(), offset)
        return f"{((next(ids[2]) * _ID_MIX) & _ID_MASK) ^ ids[3]:012x}{ids[1]}"

    # -- building ---------------------------------------------------------------------------
    def header(self, msg_type, msg_id=None):
        sender = self._sender
        if sender is None or sender[0] != os.getpid():  # a forked child is a new sender
            sender = self._sender = (os.getpid(), os.urandom(12).hex(), itertools.count())
        header = {"msg_id": msg_id or self.next_msg_id(), "msg_type": msg_type,
                  "session": self.session_id, "date": utcnow().isoformat(),
                  "version": PROTOCOL_VERSION, "sender": sender[1]}
        if msg_type != BATCH:  # a batch is signed after its parts: see fresh()
            header["seq"] = next(sender[2])
        return header

    def sign(self, parts, buffers=()):
        """The signature of the four dict frames `parts` and the `buffers` after them."""
        h = self._hmac.copy()
        if not buffers:  # four JSON objects: where one ends is in its own bytes
            h.update(b"".join(parts))
            return h.hexdigest().encode()
        # buffers are any bytes: their count and lengths go first (a first byte 0, where
        # JSON starts with "{"), so no byte can be moved from one frame to another
        lens = [len(f) if f.__class__ is bytes else memoryview(f).nbytes for f in buffers]
        h.update(struct.pack(f">I{len(lens)}Q", len(lens), *lens))
        if sum(lens) < 4096:  # small: one update is cheaper than one per frame
            h.update(b"".join((*parts, *buffers)))
        else:  # not joined: a 100 MB buffer is hashed where it lies
            h.update(b"".join(parts))
            for buf in buffers:
                h.update(buf)
        return h.hexdigest().encode()

    def serialize(self, msg_type, content=None, parent=None, metadata=None, buffers=(),
                  idents=(), header=None):
        """Frames for a new message; returns (frames, header). `parent` may be the parent's
        header frame as received (bytes): a reply then sends it back as is. `content` is a
        dict, or the JSON bytes of one (sent as they are: a db_reply's records are never
        decoded)."""
        header = header or self.header(msg_type)
        parts = [dumps(header), parent if parent.__class__ is bytes else dumps(parent or {}),
                 dumps(metadata or {}),
                 content if content.__class__ is bytes else dumps(content or {})]
        signed = () if msg_type == BATCH else buffers  # see _BATCH_HEADER
        return [*idents, DELIM, self.sign(parts, signed), *parts, *buffers], header

    def send(self, socket, msg_type, content=None, parent=None, metadata=None, buffers=(),
             idents=(), header=None):
        frames, header = self.serialize(msg_type, content, parent, metadata, buffers, idents,
                                        header)
        socket.send_multipart(frames, copy=False)
        return header

    # -- receiving --------------------------------------------------------------------------
    @staticmethod
    def split(frames):
        """(routing ids, message frames from the signature on); ValueError without DELIM."""
        for i, f in enumerate(frames):
            if f == DELIM:
                return frames[:i], frames[i + 1:]
        raise ValueError("no delimiter frame")

    def check(self, msg_frames):
        """Verify the signature of [sig, header, parent, metadata, content, buffers...].

        Returns True, or counts the reason in `dropped` and returns False. Freshness is
        checked on the decoded header (`fresh`); `feed` does both.
        """
        if len(msg_frames) < 5:
            return self._drop("too few frames")
        sig = msg_frames[0]
        if not sig:
            return self._drop("unsigned")
        head = msg_frames[1]
        head = head if head.__class__ is bytes else memoryview(head).tobytes()
        signed = () if _BATCH_HEADER in head else msg_frames[5:]
        if not hmac.compare_digest(sig, self.sign(msg_frames[1:5], signed)):
            return self._drop("bad signature")
        return True

    def fresh(self, header):
        """Whether a signed header's (sender, seq) is new here; a replay is counted and
        logged (only a holder of the key can get this far, so the log cannot be flooded
        by anyone without it). A batch has no number of its own: it only carries messages,
        each checked here as it is taken out, so a replayed batch delivers nothing; and
        numbered after its parts, it would make them look overtaken by it."""
        if header.get("msg_type") == BATCH and "seq" not in header:
            return True
        reason = self.replay_guard.accept(header.get("sender"), header.get("seq"))
        if reason is None:
            return True
        msg_type = header.get("msg_type")
        # a replayed request is what could run something: said out loud; anything else
        # seen twice decides nothing that runs
        level = logging.WARNING if str(msg_type).endswith("_request") else logging.DEBUG
        log.log(level, "dropped a %s message: %s (msg_id %s, sender %s, seq %s)", msg_type,
                reason, header.get("msg_id"), header.get("sender"), header.get("seq"))
        return self._drop(reason)

    def _drop(self, reason):
        self.dropped[reason] += 1
        return False

    def decode(self, msg_frames, content=True):
        """A `Message` from checked frames (content left raw as bytes when `content` is False)."""
        try:
            msg = Message(header=_loads(msg_frames[1]), parent_header=_loads(msg_frames[2]),
                          metadata=_loads(msg_frames[3]),
                          content=_loads(msg_frames[4]) if content else msg_frames[4],
                          buffers=msg_frames[5:], raw=msg_frames)
            if not isinstance(msg["header"], dict) or "msg_id" not in msg["header"] \
                    or "msg_type" not in msg["header"]:
                raise ValueError("header lacks msg_id/msg_type")
            return msg
        except (ValueError, TypeError, UnicodeDecodeError):
            self._drop("undecodable")
            return None

    def feed(self, frames, content=True):
        """Check and decode a whole received message: (idents, Message) or (None, None)."""
        try:
            idents, msg_frames = self.split(frames)
        except ValueError:
            self._drop("no delimiter")
            return None, None
        if not self.check(msg_frames):
            return None, None
        msg = self.decode(msg_frames, content)
        if msg is None or not self.fresh(msg["header"]):
            return None, None
        return idents, msg

    def batch_parts(self, batch):
        """The frames of each message packed in the BATCH message `batch`, in order; a part
        that is not a packed message is counted as undecodable and skipped."""
        for part in batch["buffers"]:
            try:
                yield unpack_frames(part)
            except ValueError:
                self._drop("undecodable")


def new_key():
    return os.urandom(32).hex().encode()
