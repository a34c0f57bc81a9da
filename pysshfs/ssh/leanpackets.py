"""The SFTP channel's SSH packets, read and written without paramiko's per-packet layers.

Every SFTP reply is one SSH packet of channel data, and paramiko's transport thread
spends more of the daemon's Python time on each than anything else: py-spy of random
4 KiB reads put 70 % of the GIL-holding samples in that thread, and of those well over
half in `Packetizer.read_message` (four to six reads of the socket buffer, a `Message`
built and parsed again), in `Transport.run`'s dispatch and in a handshake timer it
cancels after every packet. Here one function takes paramiko's `read_message` place:
while the connection is in its steady state (AES-GCM in, no key exchange asked for or
under way, nothing else unusual), it decrypts a packet straight from the read-ahead
socket's buffer, hands channel data for the SFTP channel to its consumer at once and
reads on; every other packet goes back to `Transport.run` as the `Message` paramiko
would have made, and outside the steady state paramiko's own `read_message` reads.

Sending, `LeanWriter.send` does for one packet of channel data what paramiko's
`send_message` does (under its write lock): pad, encrypt with AES-GCM, count, write;
without the Message, the command-name lookup, a random-padding syscall (the padding is
encrypted and authenticated: zeros leak nothing, as paramiko itself pads for CTR) and
the poll() before every send (the socket is non-blocking: one write() is tried first).
`send_many` does it for a big WRITE's 32 KiB pieces with one writev() for all of them.

The packetizer's state (IVs, sequence numbers, byte and packet counts that start a
re-key) is paramiko's own, read and written back packet by packet, so either way of
reading or writing can follow the other at any packet. tests/unit/test_private_hooks.py
checks the private names this needs are still there.

THREADS: `read_message` runs in paramiko's transport thread only, as paramiko's does;
`send` in any sender's, under the transport's `clear_to_send_lock` (see pushchannel).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from paramiko.common import MSG_CHANNEL_DATA
from paramiko.message import Message
from paramiko.ssh_exception import SSHException

from pysshfs.ssh.readahead import ReadAheadSocket

_U32 = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">BBII")  # padding length, message type, channel, data length
_GCM_TAG = 16
_MAX_PACKET = 1 << 20  # OpenSSH sends at most 256 KiB; past this the stream is garbage
_REKEY_MARGIN = 1 << 20  # leave the packet that crosses paramiko's re-key count to it
_SEAL_MAX = 4 + 4 + 16 + 16  # a packet's bytes beyond its payload: length, padding, tag
_IOV_MAX = 1024  # Linux's most buffers in one writev

# The packetizer's private fields, by their mangled names.
_P = "_Packetizer__"
AEAD_IN = _P + "aead_in"
ENGINE_IN = _P + "block_engine_in"
IV_IN = _P + "iv_in"
SEQ_IN = _P + "sequence_number_in"
BYTES_IN = _P + "received_bytes"
PACKETS_IN = _P + "received_packets"
NEED_REKEY = _P + "need_rekey"
REMAINDER = _P + "remainder"
COMPRESS_IN = _P + "compress_engine_in"
DUMP = _P + "dump_packets"
AEAD_OUT = _P + "aead_out"
ENGINE_OUT = _P + "block_engine_out"
BLOCK_OUT = _P + "block_size_out"
IV_OUT = _P + "iv_out"
SEQ_OUT = _P + "sequence_number_out"
BYTES_OUT = _P + "sent_bytes"
PACKETS_OUT = _P + "sent_packets"
COMPRESS_OUT = _P + "compress_engine_out"
WRITE_LOCK = _P + "write_lock"
SOCKET = _P + "socket"
KEEPALIVE_LAST = _P + "keepalive_last"
PRIVATE_FIELDS = (AEAD_IN, ENGINE_IN, IV_IN, SEQ_IN, BYTES_IN, PACKETS_IN, NEED_REKEY,
                  REMAINDER, COMPRESS_IN, DUMP)
PRIVATE_OUT_FIELDS = (AEAD_OUT, ENGINE_OUT, BLOCK_OUT, IV_OUT, SEQ_OUT, BYTES_OUT,
                      PACKETS_OUT, COMPRESS_OUT, WRITE_LOCK, SOCKET, KEEPALIVE_LAST, DUMP)


class Packed:
    """An SSH message already encoded: all paramiko's Packetizer.send_message asks of a
    Message is asbytes()."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def asbytes(self) -> bytes:
        return self._data


def _rekey_limit(packetizer: Any) -> int:
    """Bytes or packets (either way) past which a packet is left to paramiko, which
    counts it and asks for new keys."""
    return min(packetizer.REKEY_BYTES, packetizer.REKEY_PACKETS) - _REKEY_MARGIN


_IV = struct.Struct(">4sQ")  # AES-GCM's nonce: fixed field, invocation counter


def _next_iv(iv: bytes) -> bytes:
    """AES-GCM's invocation counter (RFC 5647 7.1): the last 8 bytes of the IV, plus one."""
    fixed, counter = _IV.unpack(iv)
    return _IV.pack(fixed, (counter + 1) & 0xFFFFFFFFFFFFFFFF)


# A packet's padding-length byte and its zero padding, by padding length (4 to 4 + a block).
_PAD_HEAD = [bytes((n,)) for n in range(256)]
_PAD_ZEROS = [bytes(n) for n in range(256)]


class LeanWriter:
    """Sends one packet as paramiko's `send_message` would (see the module docstring)."""

    def __init__(self, packetizer: Any) -> None:
        self._pk = packetizer
        self._rekey_at = _rekey_limit(packetizer)
        self._lean = all(hasattr(packetizer, name) for name in PRIVATE_OUT_FIELDS)
        self.lean_packets = 0  # written here (the rest went through paramiko's send_message)

    def send(self, payload: bytes, channel: Any) -> bool:
        """Send the SSH message `payload` (message type first) of `channel`; False, and
        nothing sent, once the channel is closed. Looked at under the packetizer's write
        lock: paramiko marks a channel closed before it sends the CLOSE, which needs that
        lock, so a packet that found it open goes out before the CLOSE. (Sent after it,
        OpenSSH, having freed the channel, drops the whole connection: "data packet
        referred to nonexistent channel".)"""
        return self.send_many((payload,), channel)

    def send_many(self, payloads: Sequence[bytes], channel: Any) -> bool:
        """`send` for several messages of `channel` in a row (a big WRITE's 32 KiB
        pieces: OpenSSH drops bigger channel packets), sealed one by one and written
        together: one writev(2), and one wake-up of sshd, instead of one a piece.
        Measured on loopback, 512 MiB with dd conv=fsync: 4.18–4.94 s written a piece at
        a time, 3.32–3.86 s together; the daemon's user CPU 3.8–4.0 → 2.6–2.7 s a GiB."""
        pk = self._pk
        d = pk.__dict__
        with d.get(WRITE_LOCK) or contextlib.nullcontext():
            if channel.closed or channel.eof_sent:
                return False
            sock = d[SOCKET]
            wire = sum(map(len, payloads)) + _SEAL_MAX * len(payloads)
            if not self._lean or not d[AEAD_OUT] or d[COMPRESS_OUT] is not None \
                    or d[DUMP] or d[BYTES_OUT] + wire >= self._rekey_at \
                    or d[PACKETS_OUT] + len(payloads) >= self._rekey_at:
                for payload in payloads:
                    pk.send_message(Packed(payload))  # (the lock is an RLock)
                return True
            parts: list[bytes] = []
            for payload in payloads:
                parts += self._seal(d, payload)
            d[KEEPALIVE_LAST] = time.time()
            total = sum(map(len, parts))
            sent = 0
            if isinstance(sock, ReadAheadSocket) and len(parts) <= _IOV_MAX:  # a TCP socket
                try:  # non-blocking: no poll() first
                    sent = os.writev(sock.fileno(), parts)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    raise EOFError(str(exc)) from None  # as paramiko's write_all: lost link
            if sent < total:  # a full socket buffer (or no socket): paramiko's waiting loop
                pk.write_all(b"".join(parts)[sent:])
            d[BYTES_OUT] += total
            d[PACKETS_OUT] += len(payloads)
            self.lean_packets += len(payloads)
            return True

    @staticmethod
    def _seal(d: dict[str, Any], payload: bytes) -> tuple[bytes, bytes]:
        """One packet as it goes on the wire, (length, ciphertext and tag), counted in the
        packetizer's IV and sequence number; the caller counts the bytes."""
        size = len(payload)
        block = d[BLOCK_OUT]
        padding = 3 + block - ((size + 4) % block)
        head = _U32.pack(size + padding + 1)
        iv = d[IV_OUT]
        sealed = d[ENGINE_OUT].encrypt(iv, _PAD_HEAD[padding] + payload + _PAD_ZEROS[padding],
                                       head)
        d[IV_OUT] = _next_iv(iv)
        d[SEQ_OUT] = (d[SEQ_OUT] + 1) & 0xFFFFFFFF
        return head, sealed


class LeanReader:
    """Stands in for `transport.packetizer.read_message` (see the module docstring)."""

    def __init__(self, transport: Any, sock: ReadAheadSocket) -> None:
        self._transport = transport
        self._pk = transport.packetizer
        self._sock = sock
        self._channels: dict[int, Callable[[bytes], None]] = {}  # our channel id: consumer
        self._original: Callable[[], tuple[int, Message]] = self._pk.read_message
        self._rekey_at = _rekey_limit(self._pk)
        self.lean_packets = 0  # read here (the rest went through paramiko's reader)

    @classmethod
    def attach(cls, transport: Any, chanid: int, deliver: Callable[[bytes], None]) -> bool:
        """Have channel `chanid`'s data go to `deliver` (in the transport thread), read
        here; False where a LeanReader cannot stand (a ProxyCommand or a jump host's
        channel as the socket, a paramiko without the fields it needs): paramiko's
        channel buffer gets the data then."""
        sock = getattr(transport, "sock", None)
        pk = getattr(transport, "packetizer", None)
        if not isinstance(sock, ReadAheadSocket) or pk is None \
                or not all(hasattr(pk, name) for name in PRIVATE_FIELDS):
            return False
        reader = cls._installed(pk) or cls(transport, sock)
        reader._channels[chanid] = deliver
        pk.read_message = reader.read_message
        return True

    @classmethod
    def detach(cls, transport: Any, chanid: int) -> None:
        """Channel `chanid`'s data goes through paramiko again (its consumer is gone)."""
        reader = cls._installed(getattr(transport, "packetizer", None))
        if reader is not None:
            reader._channels.pop(chanid, None)

    @staticmethod
    def _installed(packetizer: Any) -> LeanReader | None:
        """The LeanReader standing in for `packetizer.read_message`, if one is."""
        method = getattr(packetizer, "__dict__", {}).get("read_message")
        reader = getattr(method, "__self__", None)
        return reader if isinstance(reader, LeanReader) else None

    def _steady(self) -> bool:
        """Whether the next packet may be read here: the state paramiko's reader has
        no special case for."""
        pk = self._pk
        d = pk.__dict__
        t = self._transport
        return (d[AEAD_IN] and not d[NEED_REKEY] and d[COMPRESS_IN] is None
                and not d[DUMP] and not d[REMAINDER] and pk._initial_kex_done
                and not t.in_kex and not t._expected_packet and t.active
                and d[BYTES_IN] < self._rekey_at and d[PACKETS_IN] < self._rekey_at)

    def read_message(self) -> tuple[int, Message]:
        """The next packet that is not channel data for our channel, as paramiko's
        `read_message` returns it; channel data for our channel is delivered on the way."""
        while True:
            if not self._steady():
                return self._original()
            got = self._one()
            if got is not None:
                return got

    def _take(self, n: int, check_rekey: bool = False) -> bytes:
        data = self._sock.buffered(n)
        if data is None:  # waits for the network: paramiko's loop (timeouts, keepalive)
            data = self._pk.read_all(n, check_rekey=check_rekey)
        return data

    def _one(self) -> tuple[int, Message] | None:
        d = self._pk.__dict__
        frame = self._sock.buffered_frame(_GCM_TAG)  # the whole packet read already
        if frame is not None:
            head, body = frame
            size = len(body) - _GCM_TAG
        else:
            head = self._take(4, check_rekey=True)
            size = _U32.unpack(head)[0]
        if size > _MAX_PACKET or size < 2:
            raise SSHException(f"Invalid packet length {size}")
        if frame is None:
            body = self._take(size + _GCM_TAG)
        iv = d[IV_IN]
        try:
            plain = d[ENGINE_IN].decrypt(iv, body, head)
        except InvalidTag:
            raise SSHException("Mismatched MAC") from None
        d[IV_IN] = _next_iv(iv)
        seq = d[SEQ_IN]
        d[SEQ_IN] = (seq + 1) & 0xFFFFFFFF
        d[BYTES_IN] += size + _GCM_TAG + 4
        d[PACKETS_IN] += 1
        self.lean_packets += 1
        padding = plain[0]
        end = size - padding
        if end < 2:
            raise SSHException("Invalid packet padding")
        if plain[1] == MSG_CHANNEL_DATA and end >= 10:
            _, _, chanid, length = _DATA_HEAD.unpack_from(plain)
            deliver = self._channels.get(chanid)
            if deliver is not None and 10 + length <= end:
                deliver(plain[10:10 + length])
                return None
        msg = Message(plain[2:end])
        msg.seqno = seq
        return plain[1], msg
