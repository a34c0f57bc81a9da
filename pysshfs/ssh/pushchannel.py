"""Hand a paramiko channel's incoming data straight to its consumer.

paramiko buffers channel data in a BufferedPipe that the transport thread fills and a
reader thread drains: every SFTP reply then costs one more thread wake-up and GIL
hand-over before the waiting caller even hears of it. `PushStream` puts a consumer in
place of that buffer, so the transport thread that decrypted the data also cuts it into
SFTP replies and resolves their futures. Measured on loopback: the round trip of a
LSTAT goes from ~140 us to ~117 us.

The one thing the transport thread must not do is send: a WINDOW_ADJUST sent from it
during a key re-exchange would wait for itself. Window acknowledgements therefore go
through a small thread that only wakes once every window/10 bytes.

The channel's stderr is pushed the same way: its bytes share the channel's window, so
nobody reading them would wedge the channel once a window's worth was written (4 MiB:
~12,000 requests of `sftp-server -e -l DEBUG3`), and paramiko would keep a flood in
memory without bound. Lines are logged (escaped, rate-limited), the rest dropped.

THREADS.
  * paramiko's transport thread (`Transport.run`, one per connection): reads and
    decrypts every packet (the SFTP channel's data through leanpackets.LeanReader,
    which calls `_deliver` itself); through `_ConsumerPipe.feed` it runs `_deliver` (the SFTP
    client's `_consume`: replies cut out, futures resolved, their callbacks run) and
    `_stderr`; it also handles the server's WINDOW_ADJUST, which is what lets a blocked
    send go on. So nothing it runs may wait for a lock that a sender can hold while
    blocked (fileio.py, "THE RULE"), and it never sends.
  * `ssh-window <channel id>`: sends our WINDOW_ADJUSTs (`_ack_loop`), queued by the
    transport thread; it may block while a key re-exchange holds the transport's
    sending side, which is why the transport thread does not send them itself.
  * `sftp-stream-end`: started once when the channel ends, runs the consumer's
    `on_end` (the SFTP client fails its pending requests there): paramiko calls
    `close()` on the pipe holding `channel.lock`.
  * Senders: whatever thread calls `sendall` (the SFTP client, under its send lock).
    `paramiko.Channel.sendall` blocks while the server's window is 0, until the transport
    thread has read a WINDOW_ADJUST. What fits the window (every request but the
    biggest writes) takes a short way: the window taken under `channel.lock`, the
    packets sent under `transport.clear_to_send_lock` (no key exchange under way) by
    leanpackets.LeanWriter (under the packetizer's write lock), as paramiko's own layers
    do, without them; a request's packets in one write.
  * `before_wait`: the SFTP client's hook, run by the transport thread in
    `ReadAheadSocket.recv` right before each recv() that may wait for the network.

LOCKS. paramiko's `channel.lock` is taken once by `push_to` to swap the channel's
buffers, and by `sendall` to take its share of the window; `_acks` is a thread-safe
queue. The stderr budget fields are touched by the transport thread only.
"""

from __future__ import annotations

import errno
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.common import MSG_CHANNEL_DATA, cMSG_CHANNEL_WINDOW_ADJUST
from paramiko.message import Message

from pysshfs.ssh.leanpackets import LeanReader, LeanWriter, Packed
from pysshfs.ssh.readahead import ReadAheadSocket

log = logging.getLogger(__name__)

_CHANNEL_DATA = struct.Struct(">BII")  # SSH_MSG_CHANNEL_DATA, recipient channel, length

STDERR_LINES_PER_MINUTE = 20  # server stderr lines logged; beyond that, counted
STDERR_LINE_MAX = 300  # characters of one line that are logged
_STDERR_TAIL_MAX = 1024  # bytes kept of a line still being written


def _escaped(raw: bytes) -> str:
    """A server's bytes as one harmless line: control characters as \\xNN."""
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class _ConsumerPipe:
    """Stands in for the channel's BufferedPipe (the methods paramiko calls on it)."""

    def __init__(self, stream: PushStream) -> None:
        self._stream = stream

    def feed(self, data: bytes) -> None:
        self._stream._deliver(data)

    def close(self) -> None:
        self._stream._eof()

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        return b""  # nobody pulls: everything was pushed

    def read_ready(self) -> bool:
        return False

    def set_event(self, event: threading.Event) -> None:
        pass

    def empty(self) -> bytes:
        return b""

    def __len__(self) -> int:
        return 0


class _StderrPipe(_ConsumerPipe):
    """Stands in for the channel's stderr BufferedPipe: log a little, keep nothing."""

    def feed(self, data: bytes) -> None:
        self._stream._stderr(data)

    def close(self) -> None:
        pass


class PushStream:
    """A channel whose data is pushed to `consume(data)`; `closed(reason)` at the end.

    Also the write side (`sendall`, `close`) so it can stand wherever a stream does.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel
        self._consume: Callable[[bytes], None] | None = None
        self._on_end: Callable[[BaseException | None], None] | None = None
        self._ended = False
        self._acks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._acker = threading.Thread(target=self._ack_loop, daemon=True,
                                       name=f"ssh-window {channel.get_id()}")
        self._stderr_tail = bytearray()
        self._stderr_window = (0.0, 0)  # (minute started, lines logged in it)
        self._stderr_dropped = 0  # bytes not logged since the last line that was
        self._writer: LeanWriter | None = None  # made at the first send

    def push_to(self, consume: Callable[[bytes], None],
                on_end: Callable[[BaseException | None], None]) -> None:
        """From now on, incoming data goes to `consume` (called in paramiko's thread)."""
        self._consume, self._on_end = consume, on_end
        self._acker.start()
        with self.channel.lock:
            pending = self.channel.in_buffer.empty()  # anything that came before
            pending_err = self.channel.in_stderr_buffer.empty()
            # stand-ins for paramiko's BufferedPipes (test_private_hooks checks the methods)
            self.channel.in_buffer = _ConsumerPipe(self)  # type: ignore[assignment]
            self.channel.in_stderr_buffer = _StderrPipe(self)  # type: ignore[assignment]
            already_closed = self.channel.closed or self.channel.eof_received
        # from now on, the channel's data packets are read and handed to us directly
        LeanReader.attach(self.channel.transport, self.channel.get_id(), self._deliver)
        if pending_err:
            self._stderr(pending_err)
        if pending:
            self._deliver(pending)
        if already_closed:
            self._eof()

    def before_wait(self, hook: Callable[[], None]) -> bool:
        """Have the transport thread call `hook` each time before it waits for the
        network (the SFTP client wakes the callers whose replies it resolved then);
        False when the connection's socket cannot (a ProxyCommand, a jump host's
        channel): the caller must not hold anything back then."""
        sock = getattr(self.channel.transport, "sock", None)
        if not isinstance(sock, ReadAheadSocket):
            return False
        sock.before_wait = hook
        return True

    # --- called in the transport thread -------------------------------------------------
    def _deliver(self, data: bytes) -> None:
        if self._ended or self._consume is None:
            return
        try:
            self._consume(data)
        except Exception as exc:  # noqa: BLE001 - the consumer's failure ends this stream
            self._finish(exc)
            return
        ack = self.channel._check_add_window(len(data))  # type: ignore[attr-defined]
        if ack > 0:
            self._acks.put(ack)

    def _stderr(self, data: bytes) -> None:
        """The server's stderr: credit the window, log whole lines within the budget."""
        ack = self.channel._check_add_window(len(data))  # type: ignore[attr-defined]
        if ack > 0:
            self._acks.put(ack)
        now = time.monotonic()
        started, logged = self._stderr_window
        if now - started >= 60.0:
            started, logged = now, 0
        if logged >= STDERR_LINES_PER_MINUTE:
            self._stderr_dropped += len(data)  # over budget: not even split into lines
            self._stderr_tail.clear()
            self._stderr_window = (started, logged)
            return
        tail = self._stderr_tail
        tail += data
        *lines, rest = tail.split(b"\n")
        for line in lines:
            if logged >= STDERR_LINES_PER_MINUTE:
                self._stderr_dropped += len(line) + 1
                continue
            logged += 1
            if self._stderr_dropped:
                log.info("(%d bytes of server stderr not logged)", self._stderr_dropped)
                self._stderr_dropped = 0
            log.info("server stderr: %s", _escaped(bytes(line[:STDERR_LINE_MAX * 4]))
                     [:STDERR_LINE_MAX])
        self._stderr_tail = bytearray(rest[-_STDERR_TAIL_MAX:])
        self._stderr_window = (started, logged)

    def _eof(self) -> None:
        self._finish(None)

    def _finish(self, reason: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        LeanReader.detach(self.channel.transport, self.channel.get_id())
        self._acks.put(None)
        if self._on_end is not None:
            # paramiko calls close() on us holding the channel's lock, and the consumer's
            # clean-up closes the channel: tell it from another thread.
            threading.Thread(target=self._on_end, args=(reason,), daemon=True,
                             name="sftp-stream-end").start()

    # --- window acknowledgements, from their own thread ---------------------------------
    def _ack_loop(self) -> None:
        while True:
            ack = self._acks.get()
            if ack is None:
                return
            m = Message()
            m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
            m.add_int(self.channel.remote_chanid)
            m.add_int(ack)
            try:
                self.channel.transport._send_user_message(m)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - the transport is gone: so are we
                log.debug("window adjust not sent: %s", exc)
                return

    # --- the sending side ---------------------------------------------------------------
    def sendall(self, data: Any) -> None:
        """paramiko's Channel.sendall, with a short way for what fits in the window
        (every request but the biggest writes): the same window bookkeeping and the same
        locks, without the layers between (Channel.send, Message building,
        _send_user_message's wait loop, send_message: see leanpackets), on the path
        every FUSE request waits on."""
        channel = self.channel
        n = len(data)
        with channel.lock:
            fits = not channel.closed and not channel.eof_sent and n <= channel.out_window_size
            if fits:
                channel.out_window_size -= n
            most = channel.out_max_packet_size - 64  # data bytes in one SSH packet
        if not fits:  # window full, a closed channel: paramiko's way
            channel.sendall(data)
            return
        chanid = channel.remote_chanid
        if n <= most:
            self._send_packets([_CHANNEL_DATA.pack(MSG_CHANNEL_DATA, chanid, n) + bytes(data)])
            return
        with memoryview(data) as view:  # (the SFTP client's send lock keeps them together)
            self._send_packets([_CHANNEL_DATA.pack(MSG_CHANNEL_DATA, chanid, len(piece)) + piece
                                for piece in (view[at:at + most] for at in range(0, n, most))])

    def _send_packets(self, payloads: list[bytes]) -> None:
        """Packets of the channel's data, in one write; OSError once the channel is closed
        (checked where no CLOSE can have gone out before them: see LeanWriter.send)."""
        transport: Any = self.channel.transport
        if transport.active and transport.clear_to_send.is_set():
            with transport.clear_to_send_lock:
                # (as _send_user_message: no key exchange started since we looked)
                if transport.clear_to_send.is_set():
                    if self._writer is None:
                        self._writer = LeanWriter(transport.packetizer)
                    if not self._writer.send_many(payloads, self.channel):
                        raise OSError(errno.EPIPE, "the channel is closed")
                    return
        for payload in payloads:  # a key exchange under way: paramiko waits it out
            if self.channel.closed:
                raise OSError(errno.EPIPE, "the channel is closed")
            transport._send_user_message(Packed(payload))

    def recv(self, n: int) -> bytes:
        raise OSError("PushStream delivers data through push_to(), not recv()")

    def close(self) -> None:
        self._acks.put(None)
        self.channel.close()
