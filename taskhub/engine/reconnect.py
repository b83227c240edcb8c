"""An engine that outlives its controller: wait for it to come back, then reconnect to it.

    pings ──▶ ControllerClock.pinged(payload): the controller's incarnation (in front of
              every ping) changed? ─▶ it was started again: reconnect(engine, socks)
    silence ─▶ ControllerClock.silent_too_long(now): past controller_timeout + grace ─▶ stop

A controller started again on its profile (controller/restart.py) binds the same ports with
the same keys, so the engine's sockets reconnect by themselves; what the new hub lacks is
the engine's registration. `reconnect` registers again under the same uuid, asking for its
old id, and names every task it holds — queued, running, or finished with a reply the dead
controller may never have read (kept in a `ReplyLog`) — so the hub lets it finish those
instead of running them again elsewhere. Then it says hello on its task channels and sends
the kept replies once more, signed anew: the replay guard of the new hub may have taken the
old copies in (zmq flushes what was queued as soon as the connection is back) and dropped
them, as they came before the registration.
"""
import collections
import logging
import os
import socket
import threading
import time

from .. import versions
from ..session import Session

log = logging.getLogger("taskhub.engine")

KEEP_SECONDS = 10.0   # replies kept after they were sent while the controller answers pings
KEEP_BYTES = 64 << 20  # at most this many bytes of them: older ones go (and may run again)
REGISTRATION_TIMEOUT = 10.0


class ControllerClock:
    """Which controller incarnation pings this engine, and how long it has been silent.
    No I/O: events in (`pinged`, `silent_too_long`), verdicts out."""

    def __init__(self, timeout, grace, now, incarnation=None):
        self.timeout = timeout    # silence that makes the controller "gone"
        self.grace = grace        # how much longer a gone controller may take to come back
        # the registration reply says it: a controller killed before its first ping reached
        # this engine is still told apart from the one started after it
        self.incarnation = incarnation.encode() if isinstance(incarnation, str) else None
        self.last_ping = now
        self.unregistered = None  # since when a controller started again has not taken
        # this engine back (None: it has)

    def pinged(self, payload, now):
        """Whether this ping comes from a controller started again since the last one."""
        self.last_ping = now
        incarnation = payload.split(b":", 1)[0] if b":" in payload else b""
        if self.incarnation is None or incarnation == self.incarnation:
            self.incarnation = incarnation
            return False
        self.incarnation = incarnation
        self.unregistered = now
        return True

    def silent_too_long(self, now):
        """Past the grace: the controller did not come back, or came back and never took
        this engine back (it refused it, or never answered its registration)."""
        if self.unregistered is not None and now - self.unregistered > self.grace:
            return True
        return now - self.last_ping > self.timeout + self.grace

    def gone(self, now):
        return now - self.last_ping > self.timeout


class ReplyLog:
    """Replies sent lately, by msg_id: those the dead controller may not have read.
    Thread-safe: the main thread and the IO thread both send replies."""

    def __init__(self, keep=KEEP_SECONDS, max_bytes=KEEP_BYTES):
        self.keep, self.max_bytes = keep, max_bytes
        self._entries = collections.OrderedDict()  # msg_id -> (sent at, channel, frames)
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, msg_id, channel, frames, now):
        size = sum(len(f) for f in frames)
        with self._lock:
            self._entries[msg_id] = (now, channel, frames, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._entries:
                self._bytes -= self._entries.popitem(last=False)[1][3]

    def prune(self, now):
        """Forget replies sent more than `keep` seconds before `now` (the controller was
        alive since, answering pings: they reached it, or it died reading them)."""
        with self._lock:
            while self._entries:
                sent, _, _, size = next(iter(self._entries.values()))
                if now - sent <= self.keep:
                    break
                self._entries.popitem(last=False)
                self._bytes -= size

    def ids(self):
        with self._lock:
            return list(self._entries)

    def replies(self):
        """[(channel, frames)] in the order they were sent."""
        with self._lock:
            return [(channel, frames) for _, channel, frames, _ in self._entries.values()]


def on_ping(engine, clock, ping, socks):
    """(IO thread) A ping came: reconnect if it is from a controller started again (or an
    earlier try failed), else forget the replies it has had time to read."""
    if clock.pinged(ping, time.monotonic()) or clock.unregistered is not None:
        if reconnect(engine, socks):
            clock.unregistered = None  # else the next ping tries again
    else:
        engine.reply_log.prune(clock.last_ping)


def holding(engine):
    """msg_ids of what `engine` still has to answer or has answered lately (IO thread,
    holding the task sockets)."""
    state = engine.state
    with engine._cond:
        engine._read_requests()
        ids = [item[2].msg_id for item in state.queue if item[3] == state.generation]
        ids += [held[1] for held in state.held]
    running = state.running
    if running is not None:
        ids.append(running[0])
    return sorted(set(ids + engine.reply_log.ids()))


def reconnect(engine, socks):
    """(IO thread) Register again with the controller started again; whether it worked
    (if not, the next ping of the new incarnation tries again)."""
    if not engine.sockets.take(timeout=10.0):
        log.error("the controller was started again, but the main thread did not lend the "
                  "task sockets to reconnect; trying again")
        return False
    try:
        held = holding(engine)
        reply = engine._request("registration_request", {
            "uuid": engine.uuid, "hostname": socket.gethostname(), "pid": os.getpid(),
            "batches": True, "versions": versions.local(), **engine.extra_info,
            "resume": {"id": engine.id, "holding": held}}, REGISTRATION_TIMEOUT)
        if reply["content"].get("status") != "ok":
            log.error("the restarted controller refused this engine: %s",
                      reply["content"].get("evalue"))
            return False
        old, engine.id = engine.id, reply["content"]["id"]
        for name in ("mux", "task", "control"):
            engine.session.send(socks[name], "engine_ready", {"id": engine.id})
        for channel, frames in engine.reply_log.replies():
            socks[channel].send_multipart(resigned(engine.session, frames), copy=False)
        log.warning("the controller was started again: engine %s reconnected as engine %s "
                    "holding %d tasks", old, engine.id, len(held))
        return True
    except Exception as e:  # no answer in time: try again at the next ping
        log.error("could not reconnect to the restarted controller: %s", e)
        return False
    finally:
        engine.sockets.give_back()


def resigned(session: Session, frames):
    """The reply in `frames` with a new header sequence number and signature."""
    idents, msg_frames = Session.split(frames)
    msg = session.decode(msg_frames)
    new, _ = session.serialize("apply_reply", bytes(msg_frames[4]),
                               parent=bytes(msg_frames[2]), metadata=msg["metadata"],
                               buffers=msg_frames[5:], idents=idents)
    return new

