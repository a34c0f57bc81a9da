"""LeanReader reads what paramiko's own packetizer wrote, as paramiko's reader would.

Real paramiko Packetizers with AES-GCM keys on both ends of a socketpair: the bytes one
writes are read once by paramiko's `read_message` and once by a LeanReader, and both must
come out the same (messages, and the inbound state they leave behind).
"""

from __future__ import annotations

import socket
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

from pysshfs.ssh import leanread
from pysshfs.ssh.leanread import LeanReader
from pysshfs.ssh.readahead import ReadAheadSocket

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


def _wire(messages: list[Message]) -> bytes:
    """What paramiko's packetizer sends for `messages`, with AES-GCM."""
    a, b = socket.socketpair()
    sender = Packetizer(a)
    sender.set_outbound_cipher(AESGCM(KEY), 16, None, 16, b"", aead=True, iv_out=IV)
    b.settimeout(5)
    out = bytearray()
    for m in messages:
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
    sender.close()
    a.close()
    b.close()
    return bytes(out)


def _receiver(wire: bytes) -> tuple[Packetizer, Any, socket.socket]:
    a, b = socket.socketpair()
    b.sendall(wire)
    ras = ReadAheadSocket(a)
    pk = Packetizer(ras)
    pk.set_inbound_cipher(AESGCM(KEY), 16, None, 16, b"", aead=True, iv_in=IV)
    pk._initial_kex_done = True
    transport = types.SimpleNamespace(packetizer=pk, sock=ras, in_kex=False,
                                      _expected_packet=(), active=True)
    return pk, transport, b


def _state(pk: Packetizer) -> tuple[Any, ...]:
    return tuple(pk.__dict__[name] for name in (leanread.IV_IN, leanread.SEQ_IN,
                                                leanread.BYTES_IN, leanread.PACKETS_IN))


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
    pk.__dict__[leanread.NEED_REKEY] = True  # asked for: paramiko's reader reads on
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
