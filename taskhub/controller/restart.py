"""A controller started again on a profile whose controller died: take over its ports and
keys, and resume its unfinished tasks.

    security/taskhub-client.json, taskhub-engine.json ─▶ ports, HMAC key, CurveZMQ keys
    security/taskhub-controller-key.json (0600)       ─▶ the server's CurveZMQ secret
    task DB: unfinished records ─▶ resuming.Resumer;  recent headers ─▶ replay floors;
             highest engine id  ─▶ ids the reconnecting engines may keep

Engines and clients that outlived the dead controller keep their sockets: zmq reconnects
them to the same ports, and the same keys let them in. What they sent the dead controller
is not sent again as it was, so the new replay guard starts each known sender above the
last sequence number recorded (resume.replay_floors): a replay of recorded traffic is
refused, their new messages are accepted.
"""
import json
import logging
from dataclasses import dataclass
from typing import Optional

from .. import curve as _curve, filemodes, paths
from ..appbase import read_connection_file
from ..error import ConnectionFileError, NoTaskDB
from . import resume as rs
from .resuming import RECORD_KEYS, Resumer

log = logging.getLogger("taskhub.controller")

SERVER_KEY_FILE = "taskhub-controller-key.json"
RECENT_HEADERS = 20000  # recent records whose senders' replay floors are restored
ENGINE_PORTS = {"task": "e_task", "mux": "e_mux", "control": "e_control",
                "iopub": "e_iopub", "hb_ping": "hb_ping", "hb_pong": "hb_pong", "query": "query"}


@dataclass(frozen=True)
class Previous:
    key: bytes
    ports: dict                      # controller socket name -> port
    curve: Optional[_curve.ClusterKeys]


def read_previous(location, ip, scheme, db):
    """(Previous, None) from the dead controller's connection files, or (None, why not)."""
    if scheme == "pure":
        return None, "the pure scheme's device keeps no request to resume"
    if db == "none":
        return None, "with db=none there is no record of its tasks"
    try:
        client = read_connection_file(paths.security_file(location, "client"))
        engine = read_connection_file(paths.security_file(location, "engine"))
    except ConnectionFileError as e:
        return None, str(e)
    if client["key"] != engine["key"] or client.get("task_scheme") != scheme:
        return None, "its connection files disagree with each other or with --scheme"
    ports = dict(client["ports"])
    ports.update({ENGINE_PORTS[k]: v for k, v in engine["ports"].items() if k in ENGINE_PORTS})
    keys = None
    if client.get("curve"):
        keys = _read_curve(location, client["curve"], engine.get("curve") or {})
        if keys is None:
            return None, f"its CurveZMQ server key ({SERVER_KEY_FILE}) is missing"
    return Previous(client["key"].encode(), ports, keys), None


def _read_curve(location, client, engine):
    try:
        server = json.loads((location / "security" / SERVER_KEY_FILE).read_text())
        return _curve.ClusterKeys(
            _curve.KeyPair(server["public"], server["secret"]),
            _curve.KeyPair(client["public_key"], client["secret_key"]),
            _curve.KeyPair(engine["public_key"], engine["secret_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_server_key(location, keys):
    """Keep the server's CurveZMQ key pair beside the connection files (owner-only), so a
    controller started again can take over; none without CurveZMQ."""
    path = location / "security" / SERVER_KEY_FILE
    if keys is None:
        path.unlink(missing_ok=True)
        return
    with filemodes.open_private(path, "w") as f:
        json.dump({"public": keys.server.public, "secret": keys.server.secret}, f)


def resume(controller, now, wait):
    """Set `controller` (bound, not yet running) to resume what its predecessor left."""
    db = controller.db
    try:
        records = db.find_records({"completed": None}, RECORD_KEYS)
        recent = db.find_records({}, ["header"], sort="-submitted", limit=RECENT_HEADERS)
        top = db.find_records({"engine_id": {"$ne": None}}, ["engine_id"],
                              sort="-engine_id", limit=1)
    except NoTaskDB:
        return
    guard = controller.session.replay_guard
    for sender, floor in rs.replay_floors(r.get("header") for r in records + recent).items():
        guard.seed(sender, floor)
    if top:
        controller.hub.next_id = controller.hub.resumable_below = top[0]["engine_id"] + 1
    controller.resumer = Resumer(controller, records, now, wait)
    controller.resumer.start()
    log.warning("resuming %d unfinished tasks of the dead controller", len(records))
