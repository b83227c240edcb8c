"""Which of an engine's two threads may use its task and mux sockets, and their hand-over.

zmq sockets are not thread-safe: at any moment one thread uses them. `owner` says which:

    IO ──serve()──▶ MAIN ──release()──▶ TASK ──reclaim()──▶ MAIN      (per task)
                      │                   (the IO thread may use them under `cond`,
                      │                    or take() them while the task runs)
                      └──lend()──▶ LENT ──give_back()──▶ MAIN          (rejoin, stop)
    MAIN ──stop_serving()──▶ IO; close() by the IO thread: closed for good

The main thread owns them while it waits for work, takes it and sends replies, so a
request it is idle for and the reply to it wake no other thread. It lends them for as long
as it runs a task (TASK): the IO thread may then read requests into the queue and send
replies held back, under `cond`. When the IO thread needs them to itself, outside `cond`
(to rejoin, to stop), it `take`s them: at once unless the main thread owns them; else it
asks (`io_wants`) and wakes the main thread, which `lend`s them until `give_back`. The
caller also holds `cond` around the engine's shared state (state.py).
"""
import threading

MAIN, TASK, LENT, IO = "main", "task", "lent", "io"


class TaskSockets:
    def __init__(self, stopping, wake_main):
        self.cond = threading.Condition()
        self.owner = IO
        self.io_busy = False         # the IO thread uses them outside `cond` (take)
        self.io_wants = False        # the IO thread waits for the idle main thread's
        self.closed = False          # the IO thread has closed them: stopping
        self.socks = {}              # {"task": socket, "mux": socket}; {} while rejoining
        self.version = 0             # changes with `socks`: the main thread polls anew
        self._stopping = stopping    # a threading.Event: the engine is shutting down
        self._wake_main = wake_main  # () -> None: wake the main thread from its poll

    def replace(self, socks):
        """(IO thread, holding them or before serve) The sockets of a new registration."""
        self.socks = socks
        self.version += 1

    # -- the main thread --------------------------------------------------------------------
    def serve(self):
        """run() begins: the main thread's once the IO thread is done with them; False if
        they are closed (nothing to serve)."""
        with self.cond:
            self.cond.wait_for(lambda: not self.io_busy or self.closed)
            if self.closed:
                return False
            self.owner = MAIN
        return True

    def lend(self):
        """The IO thread asked for them: they are its until it gives them back; whether the
        main thread has them again (False: closed, or the engine is stopping)."""
        with self.cond:
            self.owner = LENT
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.owner == MAIN or self.closed
                               or self._stopping.is_set())
            return self.owner == MAIN

    def release(self):
        """A task begins: the IO thread may use them until `reclaim`."""
        with self.cond:
            self.owner = TASK

    def reclaim(self):
        """The task ended: the main thread's again once the IO thread is done with them;
        False if they were closed meanwhile, or the engine is stopping."""
        with self.cond:
            if self.io_busy and not self.closed:
                self.cond.wait_for(lambda: not self.io_busy or self.closed)
            if self.closed or self._stopping.is_set():
                return False
            self.owner = MAIN
        return True

    def stop_serving(self, flush):
        """run() ends: `flush()` (under `cond`) if the main thread still has them open, then
        they are the IO thread's for good."""
        with self.cond:
            if not self.closed and self.owner == MAIN:
                flush()
            self.owner = IO
            self.cond.notify_all()

    # -- the IO thread ----------------------------------------------------------------------
    def shared(self):
        """(under `cond`) Whether the IO thread may use them now, under `cond`: the main
        thread runs a task (or does not serve) and they are open."""
        return self.owner != MAIN and not self.closed

    def take(self, timeout=None):
        """Have them to itself, outside `cond`: at once unless the main thread owns them,
        else the main thread is woken to lend them (up to `timeout` seconds). Whether it
        has them; `give_back` ends it."""
        with self.cond:
            if self.owner == MAIN:
                self.io_wants = True
                self._wake_main()
                self.cond.wait_for(lambda: self.owner != MAIN, timeout)
                self.io_wants = False
            if self.owner == MAIN:
                return False
            self.io_busy = True
            return True

    def give_back(self):
        with self.cond:
            self.io_busy = False
            if self.owner == LENT:
                self.owner = MAIN
            self.cond.notify_all()

    def close(self, socks, owned, linger=500):
        """(under `cond`) Close `socks` (the IO thread's) for good; the task and mux
        sockets among them only if `owned` (taken: else the main thread is using them)."""
        for name, sock in socks.items():
            if owned or name not in self.socks:
                sock.close(linger=linger)
        self.closed = True
        self.cond.notify_all()

    def notify(self):
        """Wake whoever waits on `cond` (the engine is stopping)."""
        with self.cond:
            self.cond.notify_all()
