"""Issue 14, integrity: every byte signed, no replay ever — tried as an attacker would.

Pure: the replay guard event by event. Loopback (CurveZMQ off, as it is by default there):
an attacker sits between a client and the controller's task port (a proxy thread the
client's connection file points at) and swaps the buffers of a request — the pickled
function and arguments — or of a reply — the pickled result; the controller, resp. the
client, refuses the message and nothing runs. A request captured on the wire and sent again
from a raw socket after many later messages (the replay window lowered to 4, so the old
window of recent signatures would have forgotten it) runs nothing, is logged with its
msg_id, and the controller keeps serving.
"""
import json
import logging
import threading

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LoopbackCluster, wait_until
from taskhub.appbase import write_connection_file
from taskhub.error import TimeoutError as TaskhubTimeout
from taskhub.paths import security_file
from taskhub.replay import ReplayGuard
from taskhub.session import BATCH, DELIM, Session, unpack_frames

pytestmark = pytest.mark.timeout(120)


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


# -- pure: the guard -------------------------------------------------------------------------
def test_each_sequence_number_is_accepted_once_in_any_order():
    g = ReplayGuard(window=8)
    assert [g.accept("a", n) for n in (3, 1, 2, 0, 3, 1)] == [None] * 4 + ["replayed"] * 2
    assert g.accept("b", 3) is None  # senders are apart


def test_a_replay_is_refused_however_many_messages_came_after():
    g = ReplayGuard(window=4)
    assert g.accept("a", 0) is None
    for n in range(1, 10_000):
        assert g.accept("a", n) is None
    assert g.accept("a", 0) == "replayed" and g.accept("a", 9_998) == "replayed"
    assert g.tracked_bytes() <= 2  # an in-order stream needs no bitmap


def test_the_window_bounds_how_far_a_genuine_message_may_be_overtaken():
    g = ReplayGuard(window=4)
    for n in (0, 2, 3, 4):  # 1 is late
        assert g.accept("a", n) is None
    assert g.accept("a", 1) is None  # within the window: still accepted, once
    for n in (5, 7, 8, 9, 10, 11, 12):  # 6 is late by more than the window
        assert g.accept("a", n) is None
    assert g.accept("a", 6) == "replayed"


def test_a_sparse_stream_holds_at_most_a_window_of_bits():
    g = ReplayGuard(window=64)
    for n in range(0, 100_000, 3):  # a receiver that sees every third message
        assert g.accept("a", n) is None
    assert g.tracked_bytes() <= 2 * 64 // 8 + 1
    assert g.accept("a", 99_998) is None and g.accept("a", 99_998) == "replayed"


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 40), seqs=st.lists(st.integers(0, 120), max_size=200))
def test_the_guard_agrees_with_its_rule_stated_plainly(window, seqs):
    """Refused exactly when accepted before, or at most `top - window` (top: the highest
    number accepted so far)."""
    g, accepted, top = ReplayGuard(window), set(), None
    for n in seqs:
        refuse = n in accepted or (top is not None and n <= top - window)
        assert (g.accept("a", n) is not None) == refuse, (n, sorted(accepted), top)
        if not refuse:
            accepted.add(n)
            top = n if top is None else max(top, n)
    assert g.tracked_bytes() <= 2 * (window // 8 + 2)  # live bits, and as many dead


@pytest.mark.parametrize("sender, seq", [(None, 1), ("a", None), ("a", "1"), ("a", -1),
                                         ("a", 1.0), (["a"], 1)])
def test_a_message_without_a_usable_sequence_number_is_refused(sender, seq):
    assert ReplayGuard().accept(sender, seq) == "unsequenced"


def test_swapped_or_moved_buffer_bytes_break_the_signature():
    a, b = Session(b"k"), Session(b"k")
    frames, _ = a.serialize("apply_reply", {"status": "ok"}, buffers=[b"ab", b"cd"])
    for bufs in ([b"cd", b"ab"], [b"abc", b"d"], [b"ab"], [b"ab", b"cd", b""]):
        assert b.feed(frames[:6] + bufs) == (None, None)
    assert b.dropped["bad signature"] == 4
    assert b.feed(frames)[1]["buffers"] == [b"ab", b"cd"]


def test_a_batch_delivers_only_its_genuine_unseen_parts():
    """A batch's own signature leaves its parts out; each part is checked on its own."""
    from taskhub.session import pack_frames
    a, b = Session(b"k"), Session(b"k")
    parts = [a.serialize("apply_request", {"i": i}, buffers=[b"f", b"x"])[0] for i in range(3)]
    b.feed(parts[0])  # seen before: in a batch it is a replay
    parts[1] = parts[1][:-1] + [b"evil"]  # its buffers swapped
    frames, _ = a.serialize(BATCH, {"n": 3}, buffers=[pack_frames(p) for p in parts])
    _, batch = b.feed(frames)
    got = [b.feed(part)[1] for part in b.batch_parts(batch)]
    assert [m["content"]["i"] for m in got if m is not None] == [2]
    assert b.dropped == {"replayed": 1, "bad signature": 1}
    forged = [*frames[:2], frames[2].replace(b'"msg_type":"batch"',
                                             b'"msg_type":"apply_request"'), *frames[3:]]
    assert b.feed(forged) == (None, None)  # a header cannot change which rule signs it


# -- loopback: an attacker between the client and the controller ----------------------------
class Attacker:
    """A proxy in front of the controller's client task port. Batches are taken apart and
    each message sent alone (so the message checked is the one tampered with, not its batch);
    with `evil_request` set, every apply_request gets those buffers; with `evil_reply` set,
    every apply_reply those. The first apply_request is kept in `captured`."""

    def __init__(self, upstream_url):
        ctx = zmq.Context.instance()
        self.front = ctx.socket(zmq.ROUTER)
        self.port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.upstream_url, self.back, self.client = upstream_url, None, None
        self.evil_request = self.evil_reply = self.captured = None
        self.last_reply_buffers = None
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _messages(self, frames):
        """The messages in `frames` (a batch's parts one by one), as [DELIM, sig, ...]."""
        _, body = Session.split(frames)
        header = json.loads(bytes(body[1]))
        if header["msg_type"] != BATCH:
            return [[DELIM, *body]]
        return [m for part in body[5:] for m in self._messages(unpack_frames(part))]

    def _tamper(self, msg):
        msg_type = json.loads(bytes(msg[2]))["msg_type"]
        if msg_type == "apply_request":
            if self.captured is None:
                self.captured = list(msg)
            if self.evil_request is not None:
                return msg[:6] + self.evil_request
        if msg_type == "apply_reply":
            if self.evil_reply is not None:
                return msg[:6] + self.evil_reply
            self.last_reply_buffers = msg[6:]
        return msg

    def _run(self):
        ctx, poller = zmq.Context.instance(), zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        while not self._stop:
            for sock, _ in poller.poll(50):
                frames = [bytes(f) for f in sock.recv_multipart()]
                if sock is self.front:
                    if self.back is None:
                        self.client = frames[0]
                        self.back = ctx.socket(zmq.DEALER)
                        self.back.routing_id = self.client
                        self.back.connect(self.upstream_url)
                        poller.register(self.back, zmq.POLLIN)
                    for msg in self._messages(frames[1:]):
                        self.back.send_multipart(self._tamper(msg))
                else:
                    for msg in self._messages(frames):
                        self.front.send_multipart([self.client, *self._tamper(msg)])
        for sock in (self.front, self.back):
            if sock is not None:
                sock.close(linger=0)

    def stop(self):
        self._stop = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("profile"), n=1).start()
    yield c
    c.stop()


@pytest.fixture
def attacked(plain, tmp_path):
    """(a client whose task channel passes through an Attacker, the attacker)."""
    path = security_file(plain.profile_dir, "client")
    info = json.loads(path.read_text())
    attacker = Attacker(f"tcp://127.0.0.1:{info['ports']['task']}")
    info["ports"]["task"] = attacker.port
    rerouted = tmp_path / "via-attacker.json"
    write_connection_file(rerouted, info)
    from taskhub.client import Client
    rc = Client(str(rerouted))
    yield rc, attacker
    rc.close()
    attacker.stop()


def test_the_attacker_passes_untouched_traffic(attacked, tmp_path):
    rc, attacker = attacked
    log = tmp_path / "ran.txt"
    assert rc.load_balanced_view().apply_sync(append_line, str(log), "hello") == "hello"
    assert attacker.captured is not None and log.read_text() == "hello\n"


def test_a_request_with_swapped_buffers_runs_nothing(attacked, plain, tmp_path):
    rc, attacker = attacked
    ran = tmp_path / "ran.txt"
    attacker.evil_request = rc.serializer.pack_apply(append_line, (str(ran), "EVIL"), {})
    before = plain.controller.session.dropped["bad signature"]
    ar = rc.load_balanced_view().apply_async(append_line, str(ran), "meant")
    wait_until(lambda: plain.controller.session.dropped["bad signature"] > before, 10,
               what="the controller to refuse the tampered request")
    with pytest.raises(TaskhubTimeout):
        ar.get(timeout=1)
    assert not ran.exists()
    with plain.client() as honest:  # the cluster keeps serving, and recorded nothing forged
        assert honest.load_balanced_view().apply_sync(append_line, str(ran), "ok") == "ok"
        assert honest.db_query({"msg_id": ar.msg_ids[0]}, keys=["msg_id"]) == []
    assert ran.read_text() == "ok\n"


def test_a_reply_with_swapped_buffers_is_refused_by_the_client(attacked, tmp_path):
    rc, attacker = attacked
    view = rc.load_balanced_view()
    assert view.apply_sync(append_line, str(tmp_path / "a"), "first") == "first"
    attacker.evil_reply = attacker.last_reply_buffers  # "first", swapped into the next
    ar = view.apply_async(append_line, str(tmp_path / "b"), "second")
    wait_until(lambda: rc.session.dropped["bad signature"] > 0, 10,
               what="the client to refuse the tampered reply")
    with pytest.raises(TaskhubTimeout):
        ar.get(timeout=1)
    assert (tmp_path / "b").read_text() == "second\n"  # it ran; its forged answer is refused


def test_a_captured_request_replayed_after_many_later_ones_runs_nothing(attacked, plain,
                                                                        tmp_path, caplog):
    rc, attacker = attacked
    plain.controller.session.replay_guard.window = 4  # the old window would forget it
    ran = tmp_path / "ran.txt"
    view = rc.load_balanced_view()
    assert view.apply_sync(append_line, str(ran), "once") == "once"
    captured = attacker.captured
    msg_id = json.loads(captured[2])["msg_id"]
    assert view.map_sync(len, ["ab"] * 20) == [2] * 20  # many later messages
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.connect(f"tcp://127.0.0.1:{json.loads(security_file(plain.profile_dir, 'client').read_text())['ports']['task']}")
    before = plain.controller.session.dropped["replayed"]
    with caplog.at_level(logging.WARNING, logger="taskhub.session"):
        for _ in range(3):
            raw.send_multipart(captured)
        wait_until(lambda: plain.controller.session.dropped["replayed"] >= before + 3, 10,
                   what="the controller to refuse the replays")
    raw.close(linger=0)
    assert msg_id in caplog.text
    with plain.client() as honest:
        assert honest.load_balanced_view().apply_sync(append_line, str(ran), "later") == \
            "later"
        assert len(honest.db_query({"msg_id": msg_id}, keys=["msg_id"])) == 1
    assert ran.read_text() == "once\nlater\n"
