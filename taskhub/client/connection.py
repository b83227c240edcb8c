"""The client's link to its controller: noticing that the controller is gone, and failing
everything that was waiting for it instead of leaving it waiting forever.

    query socket ── ZMTP heartbeats every HEARTBEAT_IVL ──▶ controller (libzmq answers them
                    on its own I/O thread: a controller busy in Python still answers)
    its monitor ──▶ HANDSHAKE_SUCCEEDED: up
                    DISCONNECTED: down — the TCP connection closed (the controller died or
                    shut down) or nothing came back for `controller_timeout` seconds
                    (a frozen controller or host, a cut network)
    down for LOST_GRACE ──▶ lost: the IO thread fails every pending result and hub request
                    with ControllerLost, and new requests raise it until the link is up again

Why the socket monitor and zmq's own heartbeats rather than pinging the hub: they cost no
message on the task path and no work in the controller's loop, and a controller that is
slow (a long query, a flood of output) still answers them, so it is never taken for dead.
A controller whose Python loop hangs while its process lives is not "lost": requests to it
end with their own timeout (`Client.request_timeout`).

Once the controller's connection has dropped, nothing it had queued for this client will
come (its ROUTER drops what it cannot route), so failing what is pending loses no reply
that could still arrive. LOST_GRACE lets replies already received on the other sockets
(each its own TCP connection) be handled first.

`LinkState` decides, with no I/O (tests drive it event by event); `ControllerWatch` is the
thin shell around the monitor socket; `fail_pending` settles what a client waits for.
"""
import logging
import time
from concurrent.futures import InvalidStateError
from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

from .. import error
from ..session import Session

LOST_GRACE = 0.25  # s between a drop and failing what is pending (see above)
HEARTBEAT_IVL = 1.0  # s between heartbeats (at most; less for a short controller_timeout)

log = logging.getLogger("taskhub.client")

_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class LinkState:
    """Is the controller there? Events in (`up`, `down`, `tick`), a verdict out.

    States: connecting (before the first handshake: the connect's own timeout applies),
    up, down (dropped, not yet declared lost), lost. `tick` returns True exactly once per
    loss: when the IO thread must fail what is pending."""

    def __init__(self, grace=LOST_GRACE):
        self.grace = grace
        self.state = "connecting"
        self.deadline = None  # monotonic time at which "down" becomes "lost"
        self.since = None     # when the link last went down

    def up(self, now):
        self.state, self.deadline = "up", None

    def down(self, now):
        if self.state == "up":
            self.state, self.since, self.deadline = "down", now, now + self.grace

    def tick(self, now):
        if self.state == "down" and now >= self.deadline:
            self.state, self.deadline = "lost", None
            return True
        return False

    def wait_ms(self, now):
        """How long the IO thread may sleep before `tick` is due (None: until a message)."""
        return None if self.deadline is None else max(0, int((self.deadline - now) * 1000) + 1)


class ControllerWatch:
    """Heartbeats and a monitor on the client's query socket (call before it connects)."""

    def __init__(self, sock, controller_timeout, state=None):
        self.state = state or LinkState()
        if controller_timeout is not None:
            sock.setsockopt(zmq.HEARTBEAT_IVL, int(min(HEARTBEAT_IVL, controller_timeout / 4)
                                                   * 1000) or 1)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(controller_timeout * 1000)))
        self._sock = sock
        self.socket = sock.get_monitor_socket(_WATCHED)

    def read_events(self):
        """Feed every monitor event waiting to the state."""
        while self.socket.poll(0):
            event = recv_monitor_message(self.socket)["event"]
            now = time.monotonic()
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.state.up(now)
            elif event == zmq.EVENT_DISCONNECTED:
                self.state.down(now)

    def close(self):
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.socket.close(linger=0)


def seconds_or_none(name, value):
    """`value` if it is a number of seconds > 0 or None, else a clear error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r:.60}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds (or None: no bound), not {value!r}")
    return value


# -- settling what the client waits for ---------------------------------------------------

def fail_pending(client, error_for):
    """Fail every result and hub request `client` waits for with `error_for(msg_id)`, and
    make new ones fail at once (until `client._gone` is reset). Returns how many failed."""
    with client._lock:
        client._gone = error_for
        pending, client._pending = client._pending, {}
        if client._unanswered is not None:  # nothing will be sent again
            client._unanswered.clear()
        client._abandoned.update(pending)  # a controller that was only frozen may still
        # answer them once reconnected: nobody waits for those replies any more
    failed = 0
    for msg_id in list(client._requests):
        future = client._requests.pop(msg_id, None)
        if future is None:  # answered meanwhile
            continue
        try:
            future.set_exception(error_for(msg_id))
            failed += 1
        except InvalidStateError:  # resolved meanwhile (close() racing the IO thread)
            pass
    results = {id(ar): ar for ars in pending.values() for ar in ars}
    for ar in results.values():
        failed += ar._abandon(error_for)
    throttle = client._throttle
    for msg_id in list(throttle._ids):  # senders waiting for room must not wait forever
        throttle.release(msg_id)
    client._partial.clear()
    with client._engines_changed:  # wakes wait_for_engines, to raise
        client._engines_changed.notify_all()
    return failed


def lost_error(client, timeout):
    """A function msg_id -> ControllerLost naming `client`'s controller and what to do."""
    why = (f"its connection closed, or it answered no heartbeat for {timeout:g}s"
           if timeout is not None else "its connection closed")
    text = (f"lost the controller at {client._url('query')} ({_profile(client)}): {why} — "
            f"it died, froze or the network is cut. Start the cluster again and connect a "
            f"new Client: the task DB keeps the results of tasks that finished (get_result, "
            f"db_query), and rc.resubmit(msg_ids) runs the others again")
    return lambda msg_id: error.ControllerLost("ControllerLost", text, task=msg_id)


def _profile(client):
    """'profile NAME' or 'connection file PATH', for messages."""
    path = Path(client.connection_file)
    profile_dir = path.parent.parent
    if path.parent.name == "security" and profile_dir.name.startswith("profile_"):
        return f"profile '{profile_dir.name[len('profile_'):]}'"
    return f"connection file {path}"


def closed_error(client):
    """A function msg_id -> ClientClosed for what `client` waited for when it was closed
    (msg_id None: a request made after)."""
    def error_for(msg_id):
        if msg_id is None:
            return error.ClientClosed("ClientClosed", f"this client of "
                                      f"{client.connection_file} is closed: connect a new one")
        return error.ClientClosed("ClientClosed", text, task=msg_id)

    text = (f"the client of {client.connection_file} was closed before this reply came; "
            "a task still runs on the cluster: another Client can get_result(msg_id) it")
    return error_for


# -- reconnecting to a controller started again -------------------------------------------

def resubscribe(client, msg_ids, settle=1.0):
    """(a thread of its own) The controller came back within `reconnect_timeout`: a
    controller started again on the profile (controller/restart.py) answers the tasks it
    resumed to this client's session by itself; what it cannot send is the reply the dead
    one had already recorded but not delivered, and the tasks it took in without writing
    them down. So ask the task DB which of `msg_ids` (pending when the link dropped)
    finished, and fetch those; send again, signed anew, those it has no record of (after
    `settle` seconds for requests still on their way to be taken in); a task still unknown
    then fails with TaskLost."""
    try:
        unknown = _fetch_finished(client, msg_ids)
        if unknown:
            time.sleep(settle)  # a request flushed on another socket: see the docstring
            unknown = _fetch_finished(client, unknown)
        if unknown:
            unknown = _send_again(client, unknown)
            time.sleep(settle)
            unknown = _fetch_finished(client, unknown)
    except error.TaskhubError as e:  # lost again, closed, or the hub refused: nothing to add
        return log.warning("could not check the pending tasks after reconnecting: "
                                   "%s", e)
    for msg_id in unknown:
        client._deliver(msg_id, error.TaskLost(
            "TaskLost", "the controller died before it recorded this task, and the one "
                        "started again on the profile has no trace of it: submit it again",
            task=msg_id), {"status": "error"})


def _fetch_finished(client, msg_ids):
    """Deliver the stored results of those of `msg_ids` that finished; the unknown ones."""
    msg_ids = [m for m in msg_ids if m in client._pending]
    if not msg_ids:
        return []
    records = client.db_query({"msg_id": {"$in": msg_ids}}, keys=["completed"])
    done = [r["msg_id"] for r in records if r.get("completed") is not None]
    known = {r["msg_id"] for r in records}
    if done:
        client.get_result(done)  # delivers to every AsyncResult waiting for them
    return [m for m in msg_ids if m not in known]


def _send_again(client, msg_ids):
    """Send the kept requests of `msg_ids` again, under the same msg_id with a new
    sequence number (the new controller's replay guard refuses the old one's); the ids
    of those not kept."""
    missing = []
    for msg_id in msg_ids:
        kept = (client._unanswered or {}).get(msg_id)
        if kept is None:
            missing.append(msg_id)
            continue
        channel, frames = kept
        idents, msg_frames = Session.split(frames)
        msg = client.session.decode(msg_frames)
        fresh = client.session.header("apply_request", msg_id=msg_id)
        header = {**msg["header"], **{k: fresh[k] for k in ("sender", "seq", "date")}}
        again, _ = client.session.serialize(
            "apply_request", bytes(msg_frames[4]), metadata=msg["metadata"],
            buffers=msg_frames[5:], idents=idents, header=header)
        client._send(channel, again)
    log.warning("sent %d tasks again that the controller started again had no record of",
                len(msg_ids) - len(missing))
    return missing
