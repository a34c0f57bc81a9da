"""A TCP socket for paramiko that reads ahead: one recv() per burst, not two per packet.

paramiko's packetizer asks the socket for exactly what it needs next: the first cipher
block of a packet, then the rest, then (ctr + hmac) the MAC. With the timeout paramiko
sets, each of those recv() calls is a poll() and a recv(), and every one lets go of the
GIL: four to six hand-overs per SSH packet in the thread that every reply waits for,
each a chance for a FUSE or prefetch thread to take the GIL and make the transport
thread queue behind it. Here recv() reads up to READ_SIZE bytes at once and serves the
packetizer's small reads from that, so a reply (or several that arrived together)
costs one poll() and one recv(). Right before a recv() that may wait, `before_wait`
runs (the SFTP client wakes the callers whose replies it resolved: see pushchannel).

Only paramiko's transport thread reads (its packetizer says so); everything else is
the socket's own (send, settimeout, close, ...).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

READ_SIZE = 256 * 1024  # at least one whole SSH packet (paramiko's are up to 32 KiB + 2 KiB)
_U32 = struct.Struct(">I")


class ReadAheadSocket:
    """`sock` with a read buffer in front of recv()."""

    def __init__(self, sock: socket.socket, read_size: int = READ_SIZE) -> None:
        self._sock = sock
        self._read_size = read_size
        self._data = b""  # what was read and not yet handed out: _data[_pos:]
        self._pos = 0
        # Run (in the reading thread) before each recv() that may wait for the network:
        # what was held back until this thread lets go of the GIL (see pushchannel).
        self.before_wait: Callable[[], None] | None = None

    def recv(self, n: int) -> bytes:
        held = len(self._data) - self._pos
        if held > 0:
            return self.buffered(min(n, held)) or b""  # (never None: all of it is held)
        if self.before_wait is not None:
            self.before_wait()
        data = self._sock.recv(max(n, self._read_size))
        if len(data) <= n:
            return data
        self._data, self._pos = data, n
        return data[:n]

    def buffered(self, n: int) -> bytes | None:
        """The next `n` bytes if they were read already, else None (nothing taken)."""
        data, pos = self._data, self._pos
        end = pos + n
        if end > len(data):
            return None
        if end == len(data):
            self._data, self._pos = b"", 0
            return data[pos:] if pos else data
        self._pos = end
        return data[pos:end]

    def buffered_frame(self, trailer: int) -> tuple[bytes, bytes] | None:
        """A frame read already, in one call (the lean reader's every packet): its 4-byte
        big-endian length field and the length + `trailer` bytes after it; else None
        (nothing taken). The length is not judged here: the caller does."""
        data, pos = self._data, self._pos
        if len(data) - pos < 4:
            return None
        end = pos + 4 + _U32.unpack_from(data, pos)[0] + trailer
        if end > len(data):
            return None
        if end == len(data):
            self._data, self._pos = b"", 0
        else:
            self._pos = end
        return data[pos:pos + 4], data[pos + 4:end]

    def fileno(self) -> int:
        # (asked at every leanpackets write: not through __getattr__; never cached, a
        # closed socket's number may be another file's by then)
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def read_ahead(sock: Any) -> Any:
    """A TCP socket wrapped to read ahead; any other stream (ProxyCommand, a channel of a
    jump host) as it is: its recv() has its own semantics."""
    if isinstance(sock, socket.socket):
        return ReadAheadSocket(sock)
    return sock
