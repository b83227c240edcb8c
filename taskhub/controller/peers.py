"""Clients that leave without a goodbye (killed, crashed, cut off) leave nothing behind.

A closing client says goodbye on the query socket and the hub forgets what it kept for it
(queries.py `forget_client`: its batch flag, the tasks it watched). One that never says it
would be remembered for ever. The query socket's monitor reports each connection that
closes, by its file descriptor; every message read from that socket carries the descriptor
it came through (ZMQ_SRCFD), so the last client identity seen on a descriptor is the one to
forget when it closes:

    query ROUTER ── message (ident, fd) ──▶ recv(): by_fd[fd] = ident ──▶ the loop's handler
         └─ monitor PAIR ── DISCONNECTED(fd) ──▶ on_event(): forget(by_fd.pop(fd))

A closed descriptor may be reused at once by a new connection. The monitor's events are
read before each message (recv), and libzmq's I/O thread (one: the context's default)
posts a connection's DISCONNECTED before it can accept the next one on that descriptor, so
an event is never applied to a message that came after it. (The other way round is left
open: a message still queued when its client's close was read maps a descriptor that
will report no more closes for that client, so what that message made the hub keep (a
batch flag, a watch: a few hundred bytes) stays. It takes a client killed with a request
in flight.)

Only the query socket is read this way (copy=False, to see the descriptor): the task path
keeps its plain reads.
"""
import logging

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("taskhub.controller")


class PeerWatch:
    """Calls forget(ident) when the connection a client identity last spoke on closes."""

    def __init__(self, sock, forget):
        self.sock = sock
        self.monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._forget = forget
        self._by_fd = {}  # descriptor -> identity of the last message read through it
        self.gone = 0     # connections closed whose client was forgotten

    def recv(self, flags=0):
        """One message from the watched socket, as recv_multipart gives it."""
        self.poll()  # first the closes that happened before it (module docstring)
        frames = self.sock.recv_multipart(flags, copy=False)
        self._by_fd[frames[0].get(zmq.SRCFD)] = frames[0].bytes
        return [frame.bytes for frame in frames]

    def poll(self):
        """Handle the monitor's events already there."""
        while True:
            try:
                event = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.on_event(event)

    def on_event(self, frames):
        event = parse_monitor_message(frames)
        if event["event"] != zmq.EVENT_DISCONNECTED:
            return
        ident = self._by_fd.pop(event["value"], None)
        if ident is None:
            return
        self.gone += 1
        log.debug("client %r disconnected; forgetting what was kept for it", ident)
        self._forget(ident)

    def close(self):
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:  # the socket closed first: its monitor went with it
            pass
        self.monitor.close(linger=0)
