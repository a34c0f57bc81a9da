"""SFTPClient._consume cuts replies out of the stream however the SSH packets split it."""

from __future__ import annotations

import struct

import pytest

from pysshfs.sftp.client import SFTPClient
from pysshfs.sftp.codec import ProtocolError


class _NoStream:
    def sendall(self, data: bytes) -> None:  # pragma: no cover - nothing is sent here
        raise AssertionError("nothing is sent")

    def recv(self, n: int) -> bytes:  # pragma: no cover
        return b""

    def close(self) -> None:
        pass


def _client() -> tuple[SFTPClient, list[bytes]]:
    client = SFTPClient(_NoStream())
    client._awaiting_version = False
    got: list[bytes] = []
    client._dispatch = got.append  # type: ignore[method-assign]
    return client, got


def _packet(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


REPLIES = [bytes([101]) + struct.pack(">I", 7) + b"x" * n for n in (0, 3, 40000, 9, 70000)]
STREAM = b"".join(_packet(r) for r in REPLIES)


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 4096, 32768, 65536, len(STREAM)])
def test_replies_come_out_whole_and_in_order_however_cut(piece: int) -> None:
    client, got = _client()
    for at in range(0, len(STREAM), piece):
        client._consume(STREAM[at:at + piece])
    assert got == REPLIES
    assert not client._parts and client._have == 0 and client._need == 0


def test_cut_at_every_position_of_the_first_replies() -> None:
    head = b"".join(_packet(r) for r in REPLIES[:3])
    for cut in range(1, len(head)):
        client, got = _client()
        client._consume(head[:cut])
        client._consume(bytearray(head[cut:]))  # (not only bytes come)
        assert got == REPLIES[:3], cut


def test_a_bad_length_fails_even_before_the_packet_is_whole() -> None:
    client, _ = _client()
    with pytest.raises(ProtocolError):
        client._consume(struct.pack(">I", 2) + b"\x65")
    client, _ = _client()
    client._consume(b"\x00\x00")
    with pytest.raises(ProtocolError):
        client._consume(b"\x00\x01")  # length 1, told once the field is whole
