"""SFTPClient's batches: held requests go out together, and never behind a wait of their own."""

from __future__ import annotations

import struct

from pysshfs.remote import Attrs
from pysshfs.sftp.client import SFTPClient

_STATUS_OK = 101


class _AnsweringStream:
    """Records each write and answers every request in it with SSH_FX_OK, as a server
    would once the bytes arrive."""

    def __init__(self) -> None:
        self.client: SFTPClient | None = None
        self.writes: list[list[int]] = []  # the request ids of each write

    def sendall(self, data: bytes) -> None:
        ids = []
        at = 0
        while at < len(data):
            length, _kind, request_id = struct.unpack_from(">IBI", data, at)
            ids.append(request_id)
            at += 4 + length
        self.writes.append(ids)
        assert self.client is not None
        for request_id in ids:
            body = struct.pack(">BII", _STATUS_OK, request_id, 0) + struct.pack(">I", 0) * 2
            self.client._consume(struct.pack(">I", len(body)) + body)

    def recv(self, n: int) -> bytes:  # pragma: no cover - replies come through _consume
        return b""

    def close(self) -> None:
        pass


def _client() -> tuple[SFTPClient, _AnsweringStream]:
    stream = _AnsweringStream()
    client = SFTPClient(stream)
    client._awaiting_version = False
    stream.client = client
    return client, stream


def test_a_batch_goes_out_in_one_write() -> None:
    client, stream = _client()
    with client.batched():
        first = client.fsetstat_async(b"h", Attrs(mtime=1, atime=1))
        second = client.fsetstat_async(b"h", Attrs(mode=0o644))
        assert stream.writes == []  # held
    assert len(stream.writes) == 1 and len(stream.writes[0]) == 2
    assert first.result(1) is None and second.result(1) is None


def test_a_wait_inside_a_batch_sends_what_it_holds_first() -> None:
    """A waiting call inside a batch (a write sent again after a reconnect, inside a
    utime's batch) would otherwise wait for a reply to a request that never left."""
    client, stream = _client()
    with client.batched():
        held = client.fsetstat_async(b"h", Attrs(mtime=1, atime=1))
        client.fsetstat(b"h", Attrs(mode=0o600), timeout=2)  # answered: it went out
        assert held.done()
        after = client.fsetstat_async(b"h", Attrs(mode=0o644))
        assert not after.done()  # the batch holds again what comes after the wait
    assert [len(ids) for ids in stream.writes] == [2, 1]  # (the waited one with them)
    assert after.result(1) is None
