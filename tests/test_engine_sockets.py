"""Which engine thread may use the task and mux sockets (taskhub/engine/sockets.py): the
hand-overs, with real threads and stand-in sockets; every wait is on a condition with a
timeout."""
import threading

import pytest

from taskhub.engine.sockets import IO, LENT, MAIN, TASK, TaskSockets

WAIT = 10.0


class FakeSocket:
    def __init__(self):
        self.closed_with = None

    def close(self, linger=None):
        self.closed_with = linger


class Main:
    """A main thread: serves, and lends the sockets whenever the IO thread asks (woken)."""

    def __init__(self, sockets):
        self.sockets = sockets
        self.woken = threading.Event()
        self.lent = []  # what each lend() returned

    def wake(self):
        self.woken.set()

    def serve_until(self, done):
        """Lend whenever woken, until `done` is set or a lend fails."""
        while not done.is_set():
            if self.woken.wait(0.01):
                self.woken.clear()
                if self.sockets.io_wants:
                    self.lent.append(self.sockets.lend())
                    if not self.lent[-1]:
                        return


@pytest.fixture
def parts():
    stopping = threading.Event()
    main = Main(None)
    sockets = TaskSockets(stopping, main.wake)
    main.sockets = sockets
    sockets.replace({"task": FakeSocket(), "mux": FakeSocket()})
    return sockets, main, stopping


def run(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def joined(thread):
    thread.join(WAIT)
    return not thread.is_alive()


def test_the_io_thread_takes_them_from_an_idle_main_thread_which_has_them_back_after(parts):
    sockets, main, _ = parts
    assert (sockets.owner, sockets.version) == (IO, 1)
    assert sockets.serve() and sockets.owner == MAIN
    done = threading.Event()
    serving = run(main.serve_until, done)
    took = []
    io = run(lambda: took.append((sockets.take(timeout=WAIT), sockets.owner, sockets.io_busy)))
    assert joined(io)
    assert took == [(True, LENT, True)]
    assert not sockets.io_wants
    sockets.give_back()
    done.set()
    assert joined(serving)
    assert main.lent == [True]
    assert (sockets.owner, sockets.io_busy) == (MAIN, False)


def test_while_a_task_runs_the_io_thread_takes_them_at_once_and_the_task_waits_for_them(parts):
    sockets, main, _ = parts
    sockets.serve()
    sockets.release()
    assert sockets.owner == TASK
    with sockets.cond:
        assert sockets.shared()  # the IO thread may use them under cond meanwhile
    assert sockets.take(timeout=0)  # no waiting, nobody woken
    assert not main.woken.is_set()
    order = []
    task_end = run(lambda: order.append(("reclaimed", sockets.reclaim())))
    order.append("given back")
    sockets.give_back()
    assert joined(task_end)
    assert order == ["given back", ("reclaimed", True)] and sockets.owner == MAIN
    with sockets.cond:
        assert not sockets.shared()


def test_taking_times_out_when_the_main_thread_never_lends(parts):
    sockets, main, _ = parts
    sockets.serve()
    assert not sockets.take(timeout=0.05)
    assert main.woken.is_set()  # it was asked
    assert (sockets.owner, sockets.io_busy, sockets.io_wants) == (MAIN, False, False)


def test_closing_while_lent_ends_the_main_thread_serving(parts):
    sockets, main, _ = parts
    sockets.serve()
    done = threading.Event()
    serving = run(main.serve_until, done)
    assert sockets.take(timeout=WAIT)
    io_only = {"control": FakeSocket(), **sockets.socks}
    with sockets.cond:
        sockets.close(io_only, owned=True)
    assert joined(serving)
    assert main.lent == [False]
    assert all(sock.closed_with == 500 for sock in io_only.values())
    assert not sockets.reclaim() and not sockets.serve()


def test_closing_leaves_the_task_sockets_to_a_main_thread_that_kept_them(parts):
    sockets, main, _ = parts
    sockets.serve()
    assert not sockets.take(timeout=0.01)
    control = FakeSocket()
    with sockets.cond:
        sockets.close({"control": control, **sockets.socks}, owned=False)
    assert control.closed_with == 500
    assert all(sock.closed_with is None for sock in sockets.socks.values())
    flushed = []
    sockets.stop_serving(lambda: flushed.append(1))
    assert flushed == [] and sockets.owner == IO  # closed: nothing more is sent


def test_a_task_that_ends_while_the_engine_stops_does_not_get_them_back(parts):
    sockets, main, stopping = parts
    sockets.serve()
    sockets.release()
    assert sockets.take(timeout=0)
    order = []
    task_end = run(lambda: order.append(("reclaimed", sockets.reclaim())))
    stopping.set()
    order.append("given back")
    sockets.give_back()
    assert joined(task_end)
    assert order == ["given back", ("reclaimed", False)]


def test_stopping_wakes_a_main_thread_that_lent_them(parts):
    sockets, main, stopping = parts
    sockets.serve()
    done = threading.Event()
    serving = run(main.serve_until, done)
    assert sockets.take(timeout=WAIT)
    stopping.set()
    sockets.notify()
    assert joined(serving)
    assert main.lent == [False]


def test_serving_waits_for_the_io_thread_to_be_done_and_ends_with_a_flush(parts):
    sockets, main, _ = parts
    assert sockets.take(timeout=0)  # before run(): the IO thread's (connecting, rejoining)
    order = []
    main_thread = run(lambda: order.append(("served", sockets.serve())))
    sockets.replace({"task": FakeSocket(), "mux": FakeSocket()})
    order.append("given back")
    sockets.give_back()
    assert joined(main_thread)
    assert order == ["given back", ("served", True)] and sockets.version == 2
    flushed = []
    sockets.stop_serving(lambda: flushed.append(sockets.owner))
    assert flushed == [MAIN] and sockets.owner == IO
