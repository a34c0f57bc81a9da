"""SFTP codec: attrs round trips, hostile input, the status map, a client facing a bad server."""

from __future__ import annotations

import errno
import itertools
import logging
import queue
import random
import struct
import threading
import time

import pytest

from pysshfs.sftp import codec
from pysshfs.sftp.client import SFTPClient
from pysshfs.sftp.codec import Attrs, ProtocolError, Reader
from pysshfs.sftp.errors import STATUS_ERRNO, SFTPError, status_error

FIELDS = {
    codec.SSH_FILEXFER_ATTR_SIZE: {"size": 5 * 2**30 + 7},
    codec.SSH_FILEXFER_ATTR_UIDGID: {"uid": 1000, "gid": 2**32 - 2},
    codec.SSH_FILEXFER_ATTR_PERMISSIONS: {"mode": 0o100644},
    codec.SSH_FILEXFER_ATTR_ACMODTIME: {"atime": 1_700_000_000, "mtime": 2**32 - 1},
}


def all_attr_combinations() -> list[Attrs]:
    result = []
    for n in range(len(FIELDS) + 1):
        for combo in itertools.combinations(FIELDS.values(), n):
            kwargs: dict[str, int] = {}
            for part in combo:
                kwargs.update(part)
            result.append(Attrs(**kwargs))
    return result


@pytest.mark.parametrize("attrs", all_attr_combinations(), ids=repr)
def test_attrs_round_trip(attrs: Attrs) -> None:
    wire = codec.encode_attrs(attrs) + b"TAIL"
    r = Reader(wire)
    assert codec.decode_attrs(r) == attrs
    assert r.rest() == b"TAIL"


def test_attrs_wire_format_is_exact() -> None:
    wire = codec.encode_attrs(Attrs(size=1, uid=2, gid=3, mode=4, atime=5, mtime=6))
    assert wire == struct.pack(">IQIIIII", 0xF, 1, 2, 3, 4, 5, 6)
    assert codec.encode_attrs(None) == b"\0\0\0\0"
    assert codec.encode_attrs(Attrs()) == b"\0\0\0\0"


def extended_attrs(pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = struct.pack(">IQ", codec.SSH_FILEXFER_ATTR_SIZE | codec.SSH_FILEXFER_ATTR_EXTENDED, 9)
    body += struct.pack(">I", len(pairs))
    for kind, data in pairs:
        body += codec.string(kind) + codec.string(data)
    return body


def test_extended_attrs_are_skipped() -> None:
    wire = extended_attrs([(b"acl@example.com", b"x" * 40), (b"", b"")]) + b"NEXT"
    r = Reader(wire)
    assert codec.decode_attrs(r) == Attrs(size=9)
    assert r.rest() == b"NEXT"


def test_pairs_must_be_complete_when_encoding() -> None:
    with pytest.raises(OSError) as info:
        codec.encode_attrs(Attrs(uid=1))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        codec.encode_attrs(Attrs(mtime=1))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        codec.encode_attrs(Attrs(size=-1))
    assert info.value.errno == errno.EINVAL


def test_times_outside_uint32_are_clamped() -> None:
    wire = codec.encode_attrs(Attrs(atime=-5, mtime=2**40))
    assert codec.decode_attrs(Reader(wire)) == Attrs(atime=0, mtime=2**32 - 1)


def name_reply(entries: list[tuple[bytes, bytes, Attrs]]) -> bytes:
    body = struct.pack(">I", len(entries))
    for name, longname, attrs in entries:
        body += codec.string(name) + codec.string(longname) + codec.encode_attrs(attrs)
    return body


VALID_BODIES = {
    "attrs": (extended_attrs([(b"a", b"b")]), codec.decode_attrs),
    "names": (name_reply([(b"a", b"-rw a", Attrs(size=1, mode=0o100600)),
                          (b"full", b"-rw full", Attrs(2, 3, 4, 0o100644, 5, 6)),
                          (b"\xff\xfe", b"", Attrs())]), codec.decode_names),
    "statvfs": (b"".join(codec.u64(i) for i in range(11)), codec.decode_statvfs),
    "limits": (b"".join(codec.u64(i) for i in range(4)), codec.decode_limits),
    "string": (codec.string(b"hello"), Reader.string),
}


@pytest.mark.parametrize("kind", sorted(VALID_BODIES))
def test_every_truncation_raises_protocol_error(kind: str) -> None:
    body, decode = VALID_BODIES[kind]
    decode(Reader(body))  # the whole thing is fine
    for cut in range(len(body)):
        with pytest.raises(ProtocolError) as info:
            decode(Reader(body[:cut]))
        assert info.value.errno == errno.EIO


def test_hostile_counts_and_lengths_fail_before_allocating() -> None:
    with pytest.raises(ProtocolError):
        codec.decode_names(Reader(struct.pack(">I", 0xFFFFFFFF)))
    with pytest.raises(ProtocolError):
        codec.decode_attrs(Reader(struct.pack(">II", codec.SSH_FILEXFER_ATTR_EXTENDED,
                                              0xFFFFFFFF)))
    with pytest.raises(ProtocolError):
        Reader(struct.pack(">I", 0xFFFFFFF0) + b"abc").string()
    with pytest.raises(ProtocolError):  # v4+ attribute bits on a v3 session
        codec.decode_attrs(Reader(struct.pack(">I", 0x100) + b"\0" * 64))


def test_random_garbage_only_ever_raises_protocol_error() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        for decode in (codec.decode_attrs, codec.decode_names, codec.decode_statvfs,
                       codec.decode_status):
            try:
                decode(Reader(blob))
            except ProtocolError:
                pass


def test_status_without_message_is_accepted() -> None:
    assert codec.decode_status(Reader(struct.pack(">I", 2))) == (2, "")
    body = struct.pack(">I", 4) + codec.string(b"boom") + codec.string(b"en")
    assert codec.decode_status(Reader(body)) == (4, "boom")


def test_version_and_packet_building() -> None:
    payload = struct.pack(">I", 3) + codec.string(b"limits@openssh.com") + codec.string(b"1")
    assert codec.decode_version(payload) == (3, {"limits@openssh.com": b"1"})
    assert codec.build_init() == b"\0\0\0\x05\x01\0\0\0\x03"
    pkt = codec.build_packet(codec.SSH_FXP_WRITE, 7, [b"ab", memoryview(b"cde")])
    assert pkt == struct.pack(">IBI", 10, codec.SSH_FXP_WRITE, 7) + b"abcde"


# --- the errno map -----------------------------------------------------------------------
@pytest.mark.parametrize("code,err", [
    (2, errno.ENOENT), (3, errno.EACCES), (4, errno.EIO), (5, errno.EBADMSG),
    (6, errno.EIO), (7, errno.EIO), (8, errno.EOPNOTSUPP),
    (9, errno.EBADF), (10, errno.ENOENT), (11, errno.EEXIST), (12, errno.EROFS),
    (13, errno.ENODEV), (14, errno.ENOSPC), (15, errno.EDQUOT), (18, errno.ENOTEMPTY),
    (19, errno.ENOTDIR), (21, errno.ELOOP), (24, errno.EISDIR), (999, errno.EIO),
])
def test_status_map(code: int, err: int) -> None:
    exc = status_error(code, "server says no", b"/a/b")
    assert isinstance(exc, OSError) and isinstance(exc, SFTPError)
    assert exc.errno == err
    assert exc.status == code
    assert exc.strerror == "server says no"
    assert exc.filename == "/a/b"


def test_status_error_details() -> None:
    exc = status_error(18, "", b"/x\xff")  # SSH_FX_DIR_NOT_EMPTY (a v4+ code)
    assert exc.errno == errno.ENOTEMPTY
    assert exc.strerror == "Directory not empty"
    assert exc.filename == "/x\udcff"
    assert exc.filename.encode("utf-8", "surrogateescape") == b"/x\xff"
    assert status_error(2, "gone").filename is None
    assert all(code in STATUS_ERRNO for code in range(1, 32))


# --- a client facing a scripted, hostile server --------------------------------------------
VERSION_REPLY = (struct.pack(">IBI", 5, codec.SSH_FXP_VERSION, 3))


class ScriptedServer:
    """A byte stream whose replies come from `answer(type, id, body) -> bytes | None`."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.inbox = bytearray()
        self.outbox: queue.Queue[bytes] = queue.Queue()
        self.closed = threading.Event()

    def sendall(self, data: bytes) -> None:
        self.inbox += data
        while len(self.inbox) >= 4:
            length = int.from_bytes(self.inbox[:4], "big")
            if len(self.inbox) < 4 + length:
                return
            packet = bytes(self.inbox[4:4 + length])
            del self.inbox[:4 + length]
            if packet[0] == codec.SSH_FXP_INIT:
                self.outbox.put(VERSION_REPLY)
                continue
            request_id = int.from_bytes(packet[1:5], "big")
            reply = self.answer(packet[0], request_id, packet[5:])
            if reply is not None:
                self.outbox.put(reply)

    def recv(self, n: int) -> bytes:
        data = self.outbox.get()
        if not data:
            self.outbox.put(b"")
        return data

    def close(self) -> None:
        self.closed.set()
        self.outbox.put(b"")


def reply(ptype: int, request_id: int, body: bytes) -> bytes:
    return struct.pack(">IBI", len(body) + 5, ptype, request_id) + body


def started(server: ScriptedServer) -> tuple[SFTPClient, list]:
    client = SFTPClient(server, name="scripted")
    closed: list = []
    client.on_closed = closed.append
    client.start(timeout=5)
    return client, closed


def test_malformed_reply_fails_only_its_request() -> None:
    def answer(ptype: int, rid: int, body: bytes) -> bytes:
        if ptype == codec.SSH_FXP_STAT:  # ATTRS claiming a size but carrying none
            return reply(codec.SSH_FXP_ATTRS, rid, struct.pack(">I", 1))
        return reply(codec.SSH_FXP_ATTRS, rid, codec.encode_attrs(Attrs(size=3)))

    client, closed = started(ScriptedServer(answer))
    with pytest.raises(ProtocolError) as info:
        client.stat(b"/x", timeout=5)
    assert info.value.errno == errno.EIO
    assert client.lstat(b"/x", timeout=5) == Attrs(size=3)
    assert not client.closed and not closed
    client.close()


def test_oversized_packet_closes_client_and_fails_pending() -> None:
    def answer(ptype: int, rid: int, body: bytes) -> bytes | None:
        if ptype == codec.SSH_FXP_LSTAT:
            return None  # never answered: stays pending
        return struct.pack(">I", 0x7FFFFFFF) + b"\x67"  # a 2 GiB "packet"

    client, closed = started(ScriptedServer(answer))
    pending = client.lstat_async(b"/y")
    with pytest.raises(OSError) as info:
        client.stat(b"/x", timeout=5)
    # what was in flight drew garbage: EIO, final (not "lost", which is sent again)
    assert info.value.errno == errno.EIO
    assert pending.exception(timeout=5).errno == errno.EIO
    assert client.closed
    assert len(closed) == 1 and isinstance(closed[0], ProtocolError)
    with pytest.raises(OSError) as info:
        client.stat(b"/x")
    assert info.value.errno == errno.ECONNABORTED


def test_read_reply_longer_than_asked_is_refused() -> None:
    def answer(ptype: int, rid: int, body: bytes) -> bytes:
        return reply(codec.SSH_FXP_DATA, rid, codec.string(b"z" * 100))

    client, _ = started(ScriptedServer(answer))
    with pytest.raises(ProtocolError):
        client.read(b"h", 0, 10, timeout=5)
    assert client.read(b"h", 0, 100, timeout=5) == b"z" * 100
    client.close()


def test_unknown_reply_ids_and_wrong_types_do_not_hang() -> None:
    def answer(ptype: int, rid: int, body: bytes) -> bytes:
        stray = reply(codec.SSH_FXP_STATUS, rid + 1000, struct.pack(">I", 0))
        return stray + reply(codec.SSH_FXP_HANDLE, rid, codec.string(b"h"))

    client, _ = started(ScriptedServer(answer))
    with pytest.raises(ProtocolError):
        client.stat(b"/x", timeout=5)  # HANDLE is no answer to STAT
    assert client.open(b"/x", codec.SSH_FXF_READ, timeout=5) == b"h"
    client.close()


def test_random_replies_never_kill_the_reader_silently() -> None:
    rng = random.Random(99)
    hooks: list = []
    old_hook = threading.excepthook
    threading.excepthook = hooks.append
    try:
        for _ in range(200):
            def answer(ptype: int, rid: int, body: bytes) -> bytes:
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
                return reply(rng.choice([101, 102, 103, 104, 105, 201, 77]), rid, junk)

            client, closed = started(ScriptedServer(answer))
            calls = [(client.stat, (b"/a",)), (client.read, (b"h", 0, 10)),
                     (client.listdir_attr, (b"/d",)), (client.realpath, (b".",))]
            for method, args in calls:
                try:
                    method(*args, timeout=5)
                except OSError as exc:
                    assert exc.errno is not None
            client.close()
    finally:
        threading.excepthook = old_hook
    assert hooks == []


def test_no_version_reply_times_out() -> None:
    class Silent(ScriptedServer):
        def sendall(self, data: bytes) -> None:
            pass

    client = SFTPClient(Silent(lambda *a: None))
    with pytest.raises(OSError) as info:
        client.start(timeout=0.2)
    assert info.value.errno == errno.ETIMEDOUT
    assert client.closed


# --- deadlines (issue 14) -------------------------------------------------------------------
def _deadline_client(answer, limit: float) -> tuple[SFTPClient, list]:
    client = SFTPClient(ScriptedServer(answer), name="scripted", request_timeout=limit)
    closed: list = []
    client.on_closed = closed.append
    client.start(timeout=5)
    return client, closed


def test_a_silent_server_is_a_broken_connection() -> None:
    client, closed = _deadline_client(lambda ptype, rid, body: None, 0.3)
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        client.stat(b"/x")  # no timeout of its own: the watchdog ends it
    assert info.value.errno == errno.ECONNABORTED  # a cut: the session reconnects
    assert time.monotonic() - t0 < 0.3 + 1.5
    assert client.closed
    assert len(closed) == 1 and closed[0].errno == errno.ETIMEDOUT


def test_a_session_whose_loss_is_quiet_says_so_at_its_own_level(
        caplog: pytest.LogCaptureFixture) -> None:
    """A bulk channel given up by its watchdog (its writes go elsewhere) must not add a
    warning to a failing mount's one error line: it says so at the level it was given."""
    for level in (logging.INFO, logging.WARNING):
        caplog.clear()
        client = SFTPClient(ScriptedServer(lambda ptype, rid, body: None), name="quiet",
                            request_timeout=0.2, overdue_level=level)
        client.start(timeout=5)
        with caplog.at_level(logging.DEBUG, logger="pysshfs.sftp.client"):
            with pytest.raises(OSError):
                client.stat(b"/x")
        told = [r for r in caplog.records if r.getMessage().startswith("quiet: no reply")]
        assert [r.levelno for r in told] == [level], told


def test_replies_that_keep_flowing_are_progress_but_one_never_answered_is_not() -> None:
    def answer(ptype: int, rid: int, body: bytes) -> bytes | None:
        if ptype == codec.SSH_FXP_READLINK:
            return None  # this one never comes
        return reply(codec.SSH_FXP_ATTRS, rid, codec.encode_attrs(Attrs(size=1)))

    limit = 0.3
    client, closed = _deadline_client(answer, limit)
    stuck = client._send(codec.SSH_FXP_READLINK, [codec.string(b"/l")],
                         lambda *a: None, "READLINK", b"/l")
    t0 = time.monotonic()
    while not client.closed and time.monotonic() - t0 < 5:
        client.stat(b"/x", timeout=5)  # others are answered all along
        time.sleep(0.02)
    took = time.monotonic() - t0
    assert client.closed
    assert 2 * limit < took < 3 * limit + 1.5, took
    assert stuck.exception(timeout=1).errno == errno.ECONNABORTED


def test_names_decode_to_what_was_encoded_whatever_the_attribute_flags() -> None:
    entries = [(b"a", b"-rw a", Attrs(size=1, mode=0o100600)),
               (b"full", b"-rw full", Attrs(2, 3, 4, 0o100644, 5, 6)),
               (b"none", b"", Attrs()),
               (b"big", b"x" * 300, Attrs(2**40, 2**32 - 1, 0, 0o40755, 0, 2**32 - 1))]
    r = Reader(name_reply(entries) + b"tail")
    assert codec.decode_names(r) == entries
    assert r.rest() == b"tail"  # the cursor stops right after the last entry
