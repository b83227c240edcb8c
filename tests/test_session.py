"""Pure tests of message signing, checking and decoding."""
import pytest

from taskhub.session import BATCH, DELIM, Session, pack_frames, unpack_frames


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


def test_replay_memory_is_bounded_and_old_replays_still_refused():
    key = b"k"
    a, b = Session(key), Session(key, replay_window=4)
    sent = [a.serialize("x_request", {})[0] for _ in range(10)]
    for frames in sent[1::2]:  # every other one: holes the receiver must keep track of
        assert b.feed(frames)[1] is not None
    assert b.replay_guard.tracked_bytes() <= 2
    assert all(b.feed(frames) == (None, None) for frames in sent[1::2])
    # of the ones never received, those overtaken by more than the window are refused too
    assert [b.feed(frames)[1] is not None for frames in sent[0::2]] == [False] * 3 + [True] * 2
    assert b.dropped["replayed"] == 8


def test_session_needs_a_bytes_key():
    with pytest.raises(ValueError, match="bytes key"):
        Session("text")


def test_packed_frames_round_trip():
    frames = [b"client", DELIM, b"", b"x" * 1000, memoryview(b"tail")]
    assert unpack_frames(pack_frames(frames)) == [bytes(f) for f in frames]
    assert unpack_frames(pack_frames([])) == []


@pytest.mark.parametrize("blob", [b"", b"\x00\x00", b"\x00\x00\x00\x02\x00\x00\x00\x01x",
                                  b"\xff\xff\xff\xff", b"\x00\x00\x00\x01\x00\x00\x00\x01xy"])
def test_a_blob_that_is_not_a_packed_message_is_refused(blob):
    with pytest.raises(ValueError):
        unpack_frames(blob)


def test_a_batch_carries_messages_each_checked_on_its_own(pair):
    a, b = pair
    parts = [a.serialize("apply_request", {"i": i}, idents=[b"c"])[0] for i in range(3)]
    parts[1][-1] = b'{"i":9}'  # tampered: dropped, the others stand
    frames, _ = a.serialize(BATCH, {"n": 3}, buffers=[pack_frames(p) for p in parts])
    _, batch = b.feed(frames)
    assert batch.msg_type == BATCH
    got = [b.feed(unpack_frames(part)) for part in batch["buffers"]]
    assert [msg["content"]["i"] for _, msg in got if msg is not None] == [0, 2]
    assert got[0][0] == [b"c"] and b.dropped["bad signature"] == 1


def test_msg_ids_are_unique_32_hex_digits(pair):
    a, _ = pair
    ids = {a.header("x")["msg_id"] for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_msg_ids_differ_in_their_first_eight_digits(pair):
    """The short form people read (the demo's table, a prefix typed to get_result) tells
    tasks apart: the changing part of an id comes first."""
    a, b = pair
    ids = [a.header("x")["msg_id"] for _ in range(1000)]
    assert len({i[:8] for i in ids}) == 1000
    assert {i[:8] for i in ids}.isdisjoint(b.header("x")["msg_id"][:8] for _ in range(100))


def test_content_given_as_json_bytes_is_sent_as_it_is_and_signed(pair):
    """A db_reply's content is made as JSON text (records never decoded by the hub)."""
    a, b = pair
    text = b'{"status":"ok","rows":[[1, {"a":  null}]]}'
    frames, _ = a.serialize("db_reply", text, buffers=[b"x"])
    assert frames[5] == text
    _, msg = b.feed(frames)
    assert msg["content"] == {"status": "ok", "rows": [[1, {"a": None}]]}


def test_a_big_content_decodes_the_same_and_leaves_the_collector_as_it_was(pair):
    import gc
    a, b = pair
    content = {"rows": [[i, {"k": [i, None]}] for i in range(100_000)]}
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            frames, _ = a.serialize("db_reply", content)
            assert len(frames[5]) > 1 << 20
            _, msg = b.feed(frames)
            assert msg["content"] == content and gc.isenabled() is enabled
        finally:
            gc.enable()
