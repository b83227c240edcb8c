"""Limits before trust: the largest frame each socket the controller binds takes in.

ZeroMQ reads a frame's length before its bytes and, past the socket's MAXMSGSIZE,
disconnects the peer without allocating anything — so a peer without the cluster's key
cannot make the controller hold gigabytes by announcing them (the HMAC can only be checked
once a whole message is in memory; CurveZMQ, where on, refuses a keyless peer earlier still,
at the handshake). Task channels carry pickled functions, arguments and results (a numpy
array is one frame), so their limit is large; the others carry small JSON messages.
"""
CONTROL_DEFAULT = 64 << 20  # query, control, iopub, notification, heartbeat
DATA_DEFAULT = 4 << 30  # task and mux, client and engine side
DATA_CHANNELS = frozenset({"task", "mux", "e_task", "e_mux"})


def max_frame_size(channel, control=CONTROL_DEFAULT, data=DATA_DEFAULT):
    """MAXMSGSIZE for the controller's socket `channel` (-1: no limit, for a size ≤ 0)."""
    size = data if channel in DATA_CHANNELS else control
    return size if size > 0 else -1
