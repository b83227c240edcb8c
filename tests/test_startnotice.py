"""When an engine announces a started task (taskhub/engine/startnotice.py), with a fake
clock: only tasks still running START_NOTICE_AFTER after they started, once each."""
from taskhub.engine.startnotice import StartNotices


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_short_task_is_never_announced():
    clock = Clock()
    n = StartNotices(after=0.005, clock=clock)
    n.begin("task", [b"client"], {"msg_id": "a"})
    clock.t += 0.001
    assert n.take_due() is None
    n.end()
    clock.t += 1.0
    assert n.take_due() is None and n.wait_ms(100) == 100


def test_a_long_task_is_announced_once_on_its_channel():
    clock = Clock()
    n = StartNotices(after=0.005, clock=clock)
    n.begin("mux", [b"client"], {"msg_id": "b"})
    assert 5 <= n.wait_ms(100) <= 6  # the IO thread wakes when the notice is due
    clock.t += 0.006
    channel, idents, header, started = n.take_due()
    assert (channel, idents, header["msg_id"]) == ("mux", [b"client"], "b")
    assert started.endswith("+00:00")  # an aware ISO time, as replies carry
    assert n.take_due() is None and n.wait_ms(100) == 100  # once


def test_the_next_task_replaces_the_last():
    clock = Clock()
    n = StartNotices(after=0.005, clock=clock)
    n.begin("task", [b"c"], {"msg_id": "x"})
    n.end()
    n.begin("task", [b"c"], {"msg_id": "y"})
    clock.t += 0.01
    assert n.take_due()[2]["msg_id"] == "y"


def test_the_notice_carries_the_start_time_the_reply_will_carry():
    clock = Clock()
    n = StartNotices(after=0.005, clock=clock)
    n.begin("task", [b"c"], {"msg_id": "z"}, "2026-12-04T18:00:00.000001+00:00")
    clock.t += 0.01
    assert n.take_due()[3] == "2026-12-04T18:00:00.000001+00:00"
