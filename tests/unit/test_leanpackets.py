"""LeanReader and LeanWriter against paramiko's own packetizer, byte for byte.

Real paramiko Packetizers with AES-GCM keys on both ends of a socketpair: the bytes one
writes are read once by paramiko's `read_message` and once by a LeanReader, and both must
come out the same (messages, and the inbound state they leave behind); what a LeanWriter
writes, paramiko's reader must read, leaving the writer's state as paramiko's would be.
"""

from __future__ import annotations

import socket
import threading
import types
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from paramiko.common import (
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_WINDOW_ADJUST,
    MSG_IGNORE,
)
from paramiko.message import Message
from paramiko.packet import Packetizer

from pysshfs.ssh import leanpackets
from pysshfs.ssh.leanpackets import LeanReader, LeanWriter
from pysshfs.ssh.readahead import ReadAheadSocket

OPEN = types.SimpleNamespace(closed=False, eof_sent=False)  # a channel, as send() sees it
KEY = bytes(range(16))
IV = bytes(range(100, 112))
OURS = 3


def _data(chanid: int, payload: bytes) -> Message:
    m = Message()
    m.add_byte(bytes([MSG_CHANNEL_DATA]))
    m.add_int(chanid)
    m.add_string(payload)
    return m


def _other(ptype: int, *ints: int) -> Message:
    m = Message()
    m.add_byte(bytes([ptype]))
    for value in ints:
        m.add_int(value)
    return m


def _sender(sock: socket.socket) -> Packetizer:
    sender = Packetizer(sock)
    sender.set_outbound_cipher(AESGCM(KEY), 16, None, 16, b"", aead=True, iv_out=IV)
    sender._initial_kex_done = True
    return sender


def _wire(messages: list[Message], lean: bool = False,
          sender_state: list[Any] | None = None, together: bool = False) -> bytes:
    """What paramiko's packetizer (or a LeanWriter on it) sends for `messages` (`together`:
    in one LeanWriter.send_many)."""
    a, b = socket.socketpair()
    sender = _sender(ReadAheadSocket(a) if lean else a)
    writer = LeanWriter(sender)
    b.settimeout(5)
    out = bytearray()
    if together:
        assert writer.send_many([m.asbytes() for m in messages], OPEN)
        messages = []
        out += b.recv(1 << 20)
    for m in messages:
        if lean:
            writer.send(m.asbytes(), OPEN)
        else:
            sender.send_message(m)
        # (read as we go: the socketpair's buffer is smaller than a big message)
        b.setblocking(False)
        try:
            while True:
                chunk = b.recv(1 << 20)
                if not chunk:
                    break
                out += chunk
        except BlockingIOError:
            pass
    if sender_state is not None:
        sender_state.extend(_out_state(sender))
        sender_state.append(writer.lean_packets)
    sender.close()
    a.close()
    b.close()
    return bytes(out)


def _receiver(wire: bytes) -> tuple[Packetizer, Any, socket.socket]:
    a, b = socket.socketpair()
    # (from a thread: more than the socket buffer holds waits for the reader)
    threading.Thread(target=b.sendall, args=(wire,), daemon=True).start()
    ras = ReadAheadSocket(a)
    pk = Packetizer(ras)
    pk.set_inbound_cipher(AESGCM(KEY), 16, None, 16, b"", aead=True, iv_in=IV)
    pk._initial_kex_done = True
    transport = types.SimpleNamespace(packetizer=pk, sock=ras, in_kex=False,
                                      _expected_packet=(), active=True)
    return pk, transport, b


def _out_state(pk: Packetizer) -> tuple[Any, ...]:
    return tuple(pk.__dict__[name] for name in (leanpackets.IV_OUT, leanpackets.SEQ_OUT,
                                                leanpackets.BYTES_OUT, leanpackets.PACKETS_OUT))


def _state(pk: Packetizer) -> tuple[Any, ...]:
    return tuple(pk.__dict__[name] for name in (leanpackets.IV_IN, leanpackets.SEQ_IN,
                                                leanpackets.BYTES_IN, leanpackets.PACKETS_IN))


MESSAGES = [
    _data(OURS, b"hello"),
    _data(7, b"for another channel"),
    _other(MSG_CHANNEL_WINDOW_ADJUST, OURS, 65536),
    _data(OURS, bytes(range(256)) * 120),  # 30 KiB: more than one read of the socket
    _data(OURS, b""),
    _other(MSG_IGNORE),
]


def _read_with_paramiko(wire: bytes) -> tuple[list[tuple[int, bytes, int]], list[bytes], Any]:
    pk, _, peer = _receiver(wire)
    others, data = [], []
    for _ in MESSAGES:
        ptype, m = pk.read_message()
        if ptype == MSG_CHANNEL_DATA and m.get_int() == OURS:
            data.append(m.get_binary())
        else:
            others.append((ptype, m.asbytes(), m.seqno))
    peer.close()
    return others, data, _state(pk)


def test_lean_reader_reads_as_paramiko_does() -> None:
    wire = _wire(MESSAGES)
    want_others, want_data, want_state = _read_with_paramiko(wire)

    pk, transport, peer = _receiver(wire)
    delivered: list[bytes] = []
    assert LeanReader.attach(transport, OURS, delivered.append)
    others = []
    for _ in want_others:
        ptype, m = pk.read_message()  # the LeanReader now
        others.append((ptype, m.asbytes(), m.seqno))
    peer.close()

    assert others == want_others
    assert delivered == want_data
    assert _state(pk) == want_state
    reader = pk.read_message.__self__
    assert reader.lean_packets == len(MESSAGES)  # nothing went through paramiko's reader


def test_lean_reader_leaves_a_rekey_to_paramiko() -> None:
    wire = _wire(MESSAGES)
    want_others, want_data, want_state = _read_with_paramiko(wire)
    pk, transport, peer = _receiver(wire)
    delivered: list[bytes] = []
    LeanReader.attach(transport, OURS, delivered.append)
    pk.__dict__[leanpackets.NEED_REKEY] = True  # asked for: paramiko's reader reads on
    ptype, m = pk.read_message()
    peer.close()
    assert pk.read_message.__self__.lean_packets == 0
    assert delivered == []
    assert (ptype, m.get_int()) == (MSG_CHANNEL_DATA, OURS)  # as paramiko hands it over


def test_detached_channel_goes_back_to_paramiko() -> None:
    wire = _wire(MESSAGES)
    pk, transport, peer = _receiver(wire)
    delivered: list[bytes] = []
    LeanReader.attach(transport, OURS, delivered.append)
    LeanReader.detach(transport, OURS)
    ptype, m = pk.read_message()
    peer.close()
    assert delivered == []
    assert (ptype, m.get_int(), m.get_binary()) == (MSG_CHANNEL_DATA, OURS, b"hello")


def test_a_tampered_packet_fails_like_a_bad_mac() -> None:
    wire = bytearray(_wire(MESSAGES[:1]))
    wire[10] ^= 1
    pk, transport, peer = _receiver(bytes(wire))
    LeanReader.attach(transport, OURS, lambda data: None)
    with pytest.raises(paramiko.SSHException, match="Mismatched MAC"):
        pk.read_message()
    peer.close()


def test_an_absurd_length_fails_before_reading_it() -> None:
    pk, transport, peer = _receiver(b"\x7f\xff\xff\xff" + bytes(28))
    LeanReader.attach(transport, OURS, lambda data: None)
    with pytest.raises(paramiko.SSHException, match="packet length"):
        pk.read_message()
    peer.close()


def test_no_lean_reader_on_a_socket_that_does_not_read_ahead() -> None:
    a, b = socket.socketpair()
    pk = Packetizer(a)
    transport = types.SimpleNamespace(packetizer=pk, sock=a, in_kex=False,
                                      _expected_packet=(), active=True)
    assert not LeanReader.attach(transport, OURS, lambda data: None)
    assert "read_message" not in pk.__dict__
    a.close()
    b.close()


def test_lean_writer_writes_what_paramiko_reads() -> None:
    paramiko_state: list[Any] = []
    lean_state: list[Any] = []
    paramiko_wire = _wire(MESSAGES, sender_state=paramiko_state)
    lean_wire = _wire(MESSAGES, lean=True, sender_state=lean_state)
    assert len(lean_wire) == len(paramiko_wire)  # (the padding differs: random there)
    assert lean_state[:-1] == paramiko_state[:-1]
    assert lean_state[-1] == len(MESSAGES)  # every one written the lean way
    pk, _, peer = _receiver(lean_wire)
    got = []
    for _ in MESSAGES:
        ptype, m = pk.read_message()  # paramiko's own reader
        got.append(bytes([ptype]) + m.asbytes())
    peer.close()
    assert got == [m.asbytes() for m in MESSAGES]


@pytest.mark.parametrize("together", [False, True], ids=["one", "together"])
def test_lean_writer_leaves_the_packet_that_asks_for_new_keys_to_paramiko(together: bool) -> None:
    a, b = socket.socketpair()
    sender = _sender(a)
    writer = LeanWriter(sender)
    if together:  # the batch would cross the count: all of it goes to paramiko
        sender.__dict__[leanpackets.BYTES_OUT] = writer._rekey_at - 1000
        writer.send_many([_data(OURS, b"x" * 600).asbytes()] * 2, OPEN)
        assert sender.__dict__[leanpackets.PACKETS_OUT] == 2
        sender.__dict__[leanpackets.BYTES_OUT] = sender.REKEY_BYTES - 10
        writer.send_many([_data(OURS, b"x" * 100).asbytes()], OPEN)
    else:
        sender.__dict__[leanpackets.BYTES_OUT] = sender.REKEY_BYTES - 10
        writer.send(_data(OURS, b"x" * 100).asbytes(), OPEN)
    assert writer.lean_packets == 0
    assert sender.need_rekey()  # paramiko's send_message counted it and asked
    sender.close()
    a.close()
    b.close()


def test_lean_writer_sends_many_as_it_sends_them_one_by_one() -> None:
    """One write for a big WRITE's pieces: the same bytes, the same packetizer state."""
    one_state: list[Any] = []
    many_state: list[Any] = []
    one = _wire(MESSAGES, lean=True, sender_state=one_state)
    many = _wire(MESSAGES, lean=True, sender_state=many_state, together=True)
    assert many == one
    assert many_state == one_state


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "together"])
def test_lean_writer_waits_out_a_full_socket(together: bool) -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender = _sender(ReadAheadSocket(a))
    writer = LeanWriter(sender)
    big = [_data(OURS, bytes([i]) * 30000) for i in range(20)]  # far more than the buffer
    received = bytearray()

    def drain() -> None:
        b.settimeout(10)
        while True:
            chunk = b.recv(1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    if together:
        writer.send_many([m.asbytes() for m in big], OPEN)
    else:
        for m in big:
            writer.send(m.asbytes(), OPEN)
    sender.close()
    a.close()
    t.join(10)
    b.close()
    pk, _, peer = _receiver(bytes(received))
    got = [bytes([ptype]) + m.asbytes() for ptype, m in (pk.read_message() for _ in big)]
    peer.close()
    assert got == [m.asbytes() for m in big]


def test_lean_writer_on_a_stream_that_is_no_socket_writes_through_paramiko() -> None:
    a, b = socket.socketpair()
    sender = _sender(a)  # (a jump host's channel or a ProxyCommand stands here in life)
    writer = LeanWriter(sender)
    written: list[bytes] = []
    sender.write_all = written.append  # type: ignore[method-assign]
    writer.send(_data(OURS, b"x").asbytes(), OPEN)
    assert len(written) == 1 and writer.lean_packets == 1
    sender.close()
    a.close()
    b.close()


def test_lean_writer_sends_nothing_on_a_closed_channel() -> None:
    """Looked at under the write lock the CLOSE needs: nothing may follow a CLOSE (OpenSSH
    drops the connection for data on a channel it freed)."""
    a, b = socket.socketpair()
    sender = _sender(ReadAheadSocket(a))
    writer = LeanWriter(sender)
    state = _out_state(sender)
    for closed, eof_sent in ((True, False), (False, True)):
        channel = types.SimpleNamespace(closed=closed, eof_sent=eof_sent)
        assert writer.send(_data(OURS, b"late").asbytes(), channel) is False
    assert _out_state(sender) == state and writer.lean_packets == 0
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(100)  # not a byte went out
    sender.close()
    a.close()
    b.close()
