"""Read the SFTP channel's data without paramiko's per-packet layers.

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

The packetizer's inbound state (IV, sequence number, received counts that start a
re-key) is paramiko's own, read and written back packet by packet, so either way of
reading can follow the other at any packet. tests/unit/test_private_hooks.py checks the
private names this needs are still there.

THREADS: `read_message` runs in paramiko's transport thread only, as paramiko's does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from paramiko.common import MSG_CHANNEL_DATA
from paramiko.message import Message
from paramiko.ssh_exception import SSHException

from pysshfs.ssh.readahead import ReadAheadSocket

log = logging.getLogger(__name__)

_U32 = struct.Struct(">I")
_DATA_HEAD = struct.Struct(">BBII")  # padding length, message type, channel, data length
_GCM_TAG = 16
_MAX_PACKET = 1 << 20  # OpenSSH sends at most 256 KiB; past this the stream is garbage
_REKEY_MARGIN = 1 << 20  # leave the packet that crosses paramiko's re-key count to it

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
PRIVATE_FIELDS = (AEAD_IN, ENGINE_IN, IV_IN, SEQ_IN, BYTES_IN, PACKETS_IN, NEED_REKEY,
                  REMAINDER, COMPRESS_IN, DUMP)


class LeanReader:
    """Stands in for `transport.packetizer.read_message` (see the module docstring)."""

    def __init__(self, transport: Any, sock: ReadAheadSocket) -> None:
        self._transport = transport
        self._pk = transport.packetizer
        self._sock = sock
        self._channels: dict[int, Callable[[bytes], None]] = {}  # our channel id: consumer
        self._original: Callable[[], tuple[int, Message]] = self._pk.read_message
        self._rekey_at = min(self._pk.REKEY_BYTES, self._pk.REKEY_PACKETS) - _REKEY_MARGIN
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
        installed = getattr(pk.__dict__.get("read_message"), "__self__", None)
        reader = installed if isinstance(installed, LeanReader) else cls(transport, sock)
        reader._channels[chanid] = deliver
        pk.read_message = reader.read_message
        return True

    @staticmethod
    def detach(transport: Any, chanid: int) -> None:
        """Channel `chanid`'s data goes through paramiko again (its consumer is gone)."""
        pk = getattr(transport, "packetizer", None)
        reader = getattr(getattr(pk, "__dict__", {}).get("read_message"), "__self__", None)
        if isinstance(reader, LeanReader):
            reader._channels.pop(chanid, None)

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
        head = self._take(4, check_rekey=True)
        size = _U32.unpack(head)[0]
        if size > _MAX_PACKET or size < 2:
            raise SSHException(f"Invalid packet length {size}")
        body = self._take(size + _GCM_TAG)
        iv = d[IV_IN]
        try:
            plain = d[ENGINE_IN].decrypt(iv, body, head)
        except InvalidTag:
            raise SSHException("Mismatched MAC") from None
        counter = int.from_bytes(iv[4:], "big") + 1
        d[IV_IN] = iv[:4] + counter.to_bytes(8, "big")
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
