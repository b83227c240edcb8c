"""A packet capture (tcpdump) on one interface, read back as the bytes of each TCP stream.

    with Capture("veth0", path) as cap:   # returns once tcpdump is listening
        ...traffic...
    streams = cap.tcp_streams()           # {(src, sport, dst, dport): payload bytes}

Markers are searched in each stream's payload joined in capture order, so a string split
across two segments is still found (the veth pairs the tests capture on do not reorder).
Needs root and tcpdump (tests/infra/setup_batch_systems.sh installs it).
"""
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

LINKTYPE_ETHERNET = 1
ETH_IPV4 = 0x0800
PROTO_TCP = 6


class Capture:
    def __init__(self, interface, path, timeout=10.0):
        self.interface, self.path, self.timeout = interface, Path(path), timeout
        self.proc = None

    def __enter__(self):
        if shutil.which("tcpdump") is None:
            raise RuntimeError("no tcpdump: run tests/infra/setup_batch_systems.sh (as root)")
        self._log = self.path.with_suffix(".log")
        with open(self._log, "w") as log:
            self.proc = subprocess.Popen(["tcpdump", "-i", self.interface, "-n", "-s", "0",
                                          "-U", "-w", str(self.path), "tcp"],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + self.timeout
        while "listening on" not in self._log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tcpdump did not start: {self._log.read_text()}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """End tcpdump (SIGINT: it writes out what it holds) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tcp_streams(self):
        """The TCP payload of each direction of each connection, in capture order."""
        return tcp_streams(self.path.read_bytes())


def tcp_streams(data):
    """Parse a classic pcap file of Ethernet/IPv4 frames into {flow: payload bytes}."""
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}.get(magic)
    if endian is None:
        raise ValueError(f"not a classic pcap file (magic {magic!r})")
    if struct.unpack(endian + "I", data[20:24])[0] != LINKTYPE_ETHERNET:
        raise ValueError("expected an Ethernet capture")
    streams, offset = {}, 24
    while offset + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        flow, payload = _tcp_payload(frame)
        if flow is not None and payload:
            streams[flow] = streams.get(flow, b"") + payload
    return streams


def _tcp_payload(frame):
    if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != ETH_IPV4:
        return None, b""
    ip = frame[14:]
    ihl, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
    if ip[9] != PROTO_TCP:
        return None, b""
    tcp = ip[ihl:total]
    sport, dport = struct.unpack("!HH", tcp[:4])
    header = (tcp[12] >> 4) * 4
    src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    return (src, sport, dst, dport), bytes(tcp[header:])
