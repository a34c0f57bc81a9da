"""ReadAheadSocket: the packetizer's small reads served from one big recv, byte-exact."""

from __future__ import annotations

import socket

from pysshfs.ssh.readahead import ReadAheadSocket, read_ahead


class CountingSocket:
    """A socket stand-in that counts recv() calls and hands out what it was given."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0
        self.timeout = None

    def recv(self, n: int) -> bytes:
        self.calls += 1
        out, self.data = self.data[:n], self.data[n:]
        return out

    def settimeout(self, t: float) -> None:
        self.timeout = t


def test_small_reads_come_from_one_recv_in_order() -> None:
    raw = CountingSocket(bytes(range(256)) * 4)
    s = ReadAheadSocket(raw, read_size=4096)  # type: ignore[arg-type]
    got = [s.recv(16), s.recv(100), s.recv(1), s.recv(5000), s.recv(16)]
    assert b"".join(got[:4]) == bytes(range(256)) * 4
    assert [len(g) for g in got[:4]] == [16, 100, 1, 1024 - 117]
    assert got[4] == b"" and raw.calls == 2  # one read ahead, then the end of the stream


def test_never_more_than_asked_and_other_calls_pass_through() -> None:
    raw = CountingSocket(b"x" * 10)
    s = ReadAheadSocket(raw, read_size=4)  # type: ignore[arg-type]
    assert s.recv(3) == b"xxx"  # read 4, kept 1
    assert s.recv(3) == b"x"  # what was kept, no recv
    assert raw.calls == 1
    s.settimeout(0.1)
    assert raw.timeout == 0.1


def test_only_real_sockets_are_wrapped() -> None:
    a, b = socket.socketpair()
    try:
        wrapped = read_ahead(a)
        assert isinstance(wrapped, ReadAheadSocket)
        b.sendall(b"hello world")
        assert wrapped.recv(5) == b"hello" and wrapped.recv(100) == b" world"
        other = CountingSocket(b"")
        assert read_ahead(other) is other
    finally:
        a.close()
        b.close()
