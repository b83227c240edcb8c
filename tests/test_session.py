"""Pure tests of message signing, checking and decoding."""
import pytest

from taskhub.session import DELIM, Session


@pytest.fixture
def pair():
    key = b"secret-key"
    return Session(key), Session(key)


def test_round_trip(pair):
    a, b = pair
    frames, header = a.serialize("apply_request", {"x": 1}, metadata={"label": "L"},
                                 buffers=[b"payload"], idents=[b"client"])
    idents, msg = b.feed(frames)
    assert idents == [b"client"]
    assert msg.msg_id == header["msg_id"] and msg.msg_type == "apply_request"
    assert msg["content"] == {"x": 1} and msg["metadata"] == {"label": "L"}
    assert msg["buffers"] == [b"payload"]
    assert msg["raw"][0] == frames[2]  # the signature, forwarded unchanged by relays


def test_tampered_content_is_dropped_and_counted(pair):
    a, b = pair
    frames, _ = a.serialize("apply_request", {"x": 1})
    frames[-1] = b'{"x":2}'
    assert b.feed(frames) == (None, None)
    assert b.dropped["bad signature"] == 1


def test_wrong_key_is_dropped():
    frames, _ = Session(b"k1").serialize("x_request", {})
    other = Session(b"k2")
    assert other.feed(frames) == (None, None)
    assert other.dropped["bad signature"] == 1


def test_unsigned_and_replayed_messages_are_dropped(pair):
    a, b = pair
    frames, _ = a.serialize("x_request", {})
    unsigned = list(frames)
    unsigned[1] = b""
    assert b.feed(unsigned) == (None, None)
    assert b.feed(frames)[1] is not None
    assert b.feed(frames) == (None, None)
    assert b.dropped == {"unsigned": 1, "replayed": 1}


@pytest.mark.parametrize("frames,reason", [
    ([b"garbage"], "no delimiter"),
    ([DELIM, b"sig"], "too few frames"),
    ([], "no delimiter"),
])
def test_garbage_is_counted_by_reason(pair, frames, reason):
    _, b = pair
    assert b.feed(frames) == (None, None)
    assert b.dropped[reason] == 1


def test_signed_nonsense_is_undecodable(pair):
    a, b = pair
    parts = [b"not json", b"{}", b"{}", b"{}"]
    frames = [DELIM, a.sign(parts), *parts]
    assert b.feed(frames) == (None, None)
    assert b.dropped["undecodable"] == 1
    parts = [b"[1, 2]", b"{}", b"{}", b"{}"]  # JSON, but no header dict
    assert b.feed([DELIM, a.sign(parts), *parts]) == (None, None)
    assert b.dropped["undecodable"] == 2


def test_replay_window_is_bounded():
    key = b"k"
    a, b = Session(key), Session(key, replay_window=4)
    for _ in range(10):
        frames, _ = a.serialize("x_request", {})
        assert b.feed(frames)[1] is not None
    assert len(b._seen) == 4


def test_session_needs_a_bytes_key():
    with pytest.raises(ValueError, match="bytes key"):
        Session("text")
