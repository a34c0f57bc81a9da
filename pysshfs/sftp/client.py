"""SFTP v3 client over any byte stream: request ids, one reader thread, futures.

Many FUSE threads share one channel. A request registers a Future under a fresh id (small
lock), goes out whole under the send lock, and its caller waits on the Future with no lock
held; a single reader thread cuts replies out of the stream and resolves them. Anything
wrong with the stream or the framing closes the client and fails every pending request
with ECONNABORTED, so callers always get an errno, never a hang or a dead thread.

Deadlines: with `request_timeout`, a watchdog thread looks once a tick at the oldest
request still waiting (requests are kept in the order they were sent, so that is one
look, no timer per request). The connection is broken, whatever keepalives say, when
requests wait and nothing at all has been answered for the limit, or when the oldest has
waited OVERDUE_FACTOR times the limit while others were answered (a reply that never
comes). Replies that keep flowing on a slow link (16 MiB of writes in flight at 100 KB/s
take minutes) are progress, not a broken connection. Broken, it is closed exactly as if
the stream had been cut. A stream
that carried garbage is closed too, but its requests fail with EIO (not "lost"), so that
nobody sends them again into the same garbage.

THREADS.
  * Senders: any thread calling a request method (libfuse workers through the session,
    the session's reconnect thread, prefetch workers, openahead's expiry thread (CLOSE),
    fileio's refill thread).
    `_send` registers the request under `_lock`, then writes the packet under
    `_send_lock`; `sendall` may block there for as long as the SSH window is full (see
    ssh/pushchannel.py), and every other sender queues behind it on `_send_lock`.
  * The reply thread: with a pushing stream (`PushStream`, the normal case) paramiko's
    transport thread runs `_consume`/`_dispatch` and so resolves the futures and runs
    their done-callbacks; over a plain stream (`PipeStream`: a local sftp-server
    process, as the tests use) our own `<name>-reader` thread does. That thread is also the one that
    reads the server's window adjustments (pushing stream): a callback must never block
    on a lock that a thread blocked in a send may hold, nor send itself. The callbacks
    today (fileio's `_observe`/`_write_done`, the session's `acknowledged`) take only
    locks that are never held across a send or a wait for a reply. The callers blocked
    in a reply's result() are woken by this thread only right before it next waits for
    the network (`_wake_later`, emptied by `_wake_held`: the pushing stream's
    `before_wait` hook, the top of `_read_loop`, `_shutdown`): woken earlier, they
    would only wait for the GIL this thread keeps until then.
  * `<name>-deadlines` (with `request_timeout`): the watchdog above; it only looks at the
    oldest request under `_lock` and, when the connection is overdue, `_shutdown`s it.
  * `_shutdown` fails the pending futures on the thread that calls it (the watchdog,
    the stream-end thread, a sender whose send failed, a closing session): callbacks
    then run there, with no lock of ours held.

LOCKS. `_lock` guards `_pending`, `_ids`, `closed`, `_close_reason` and `_told_closed`;
`_wake_later` is a list appended to by the reply thread and emptied with pop() (atomic)
by it or by `_shutdown`;
it is held for bookkeeping only, never across I/O or a future's callbacks. `_send_lock`
keeps one packet whole on the stream; it is held across a possibly blocking send, so
the reply thread must never take it (it does not). The counters (`replies`,
`bytes_moved`, `_last_reply`, `traffic`) are written without a lock: figures for
`pysshfs status` and the watchdog, where a lost increment does not matter.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pysshfs.lograte import RateLimitedLog
from pysshfs.sftp.codec import (
    DEFAULT_MAX_READ,
    DEFAULT_MAX_WRITE,
    MAX_PACKET_LENGTH,
    PACKET_NAMES,
    SFTP_VERSION,
    SSH_FXP_ATTRS,
    SSH_FXP_CLOSE,
    SSH_FXP_DATA,
    SSH_FXP_EXTENDED,
    SSH_FXP_EXTENDED_REPLY,
    SSH_FXP_FSETSTAT,
    SSH_FXP_FSTAT,
    SSH_FXP_HANDLE,
    SSH_FXP_LSTAT,
    SSH_FXP_MKDIR,
    SSH_FXP_NAME,
    SSH_FXP_OPEN,
    SSH_FXP_OPENDIR,
    SSH_FXP_READ,
    SSH_FXP_READDIR,
    SSH_FXP_READLINK,
    SSH_FXP_REALPATH,
    SSH_FXP_REMOVE,
    SSH_FXP_RENAME,
    SSH_FXP_RMDIR,
    SSH_FXP_SETSTAT,
    SSH_FXP_STAT,
    SSH_FXP_STATUS,
    SSH_FXP_SYMLINK,
    SSH_FXP_VERSION,
    SSH_FXP_WRITE,
    Attrs,
    ProtocolError,
    Reader,
    build_init,
    build_packet,
    decode_attrs,
    decode_limits,
    decode_names,
    decode_status,
    decode_statvfs,
    decode_version,
    encode_attrs,
    read_body,
    string,
    u32,
    u64,
)
from pysshfs.sftp.errors import (
    SSH_FX_EOF,
    SSH_FX_OK,
    SFTPError,
    path_str,
    status_error,
)
from pysshfs.sftp.limits import ListingGuard
from pysshfs.sftp.refine import refine
from pysshfs.sftp.reply import Reply
from pysshfs.stats import BULK_OPS, Traffic

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

RECV_SIZE = 256 * 1024
OVERDUE_FACTOR = 3  # see "Deadlines" above
READDIR_IN_FLIGHT = 2  # READDIRs sent at once per listing: a small directory's NAME and EOF
READDIR_MAX_IN_FLIGHT = 16  # ... growing to this many while a big directory streams in
READDIR_FULL_BATCH = 64  # entries in a reply that mean "more to come" (OpenSSH sends 100)
_HEADER_SIZE = 4
_U32_HEAD = struct.Struct(">I")  # a packet's length
_TYPE_AND_ID = struct.Struct(">BI")  # a reply's type and request id

# A reply parser: (packet type, reader positioned after the id, the request) -> result.
Parser = Callable[[int, Reader, "_Request"], Any]


class Stream(Protocol):
    def sendall(self, data: bytes) -> Any: ...
    def recv(self, n: int) -> bytes: ...
    def close(self) -> Any: ...


class PipeStream:
    """A local process's stdin/stdout as a stream (sftp_server=PATH mode, tests).

    Only the reader thread reads; it closes stdout once it sees EOF, so close() never
    pulls a file descriptor from under a blocked read.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("PipeStream needs a process started with stdin=PIPE, stdout=PIPE")
        self.proc = proc
        self._in_fd = proc.stdin.fileno()
        self._out = proc.stdout
        self._read = getattr(proc.stdout, "read1", proc.stdout.read)
        self._closed = False

    @classmethod
    def spawn(cls, argv: Sequence[str], **popen_kwargs: Any) -> PipeStream:
        """Start `argv` (e.g. /usr/lib/openssh/sftp-server) with piped stdin/stdout."""
        popen_kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                **popen_kwargs)
        return cls(proc)

    def sendall(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._in_fd, view)
            view = view[written:]

    def recv(self, n: int) -> bytes:
        try:
            data = self._read(n)
        except ValueError:  # stdout already closed
            return b""
        if not data:
            try:
                self._out.close()
            except OSError:
                pass
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        # sftp-server exits at EOF on stdin; one stuck writing to us needs a signal.
        for stop in (self.proc.terminate, self.proc.kill):
            try:
                self.proc.wait(timeout=2)
                return
            except subprocess.TimeoutExpired:
                stop()
        self.proc.wait()


class _Request:
    __slots__ = ("future", "parse", "op", "path", "started", "quiet")

    def __init__(self, future: Reply, parse: Parser, op: str, path: bytes | None,
                 started: float) -> None:
        self.future = future
        self.parse = parse
        self.op = op
        self.path = path
        self.started = started
        self.quiet = True  # sent with no bulk bytes in flight (Traffic.replied)


def _lost_error(name: str, reason: BaseException | str | None) -> OSError:
    why = f": {reason}" if reason else ""
    return OSError(errno.ECONNABORTED, f"{name}: SFTP connection lost{why}")


def _abandoned_error(name: str, reason: ProtocolError) -> OSError:
    """What a request in flight gets when the stream broke on garbage: EIO, final."""
    return OSError(errno.EIO, f"{name}: request abandoned: {reason.strerror}")


def _set_exception(future: Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# --- reply parsers ----------------------------------------------------------------------
def _status_failure(ptype: int, r: Reader, req: _Request) -> SFTPError:
    """The error of a STATUS reply that is not the success the caller hoped for."""
    code, message = decode_status(r)
    if code == SSH_FX_OK:
        raise ProtocolError(f"{req.op}: OK status where a {req.op} answer was expected")
    return status_error(code, message, req.path)


def _unexpected(ptype: int, req: _Request) -> ProtocolError:
    return ProtocolError(f"unexpected {PACKET_NAMES.get(ptype, ptype)} reply to {req.op}")


def _expect_ok(ptype: int, r: Reader, req: _Request) -> None:
    if ptype != SSH_FXP_STATUS:
        raise _unexpected(ptype, req)
    code, message = decode_status(r)
    if code != SSH_FX_OK:
        raise status_error(code, message, req.path)


def _expect_handle(ptype: int, r: Reader, req: _Request) -> bytes:
    if ptype == SSH_FXP_HANDLE:
        handle = r.string()
        if len(handle) > 256:  # the draft's limit; a bigger one is a broken server
            raise ProtocolError(f"handle of {len(handle)} bytes")
        return handle
    if ptype == SSH_FXP_STATUS:
        raise _status_failure(ptype, r, req)
    raise _unexpected(ptype, req)


def _expect_attrs(ptype: int, r: Reader, req: _Request) -> Attrs:
    if ptype == SSH_FXP_ATTRS:
        return decode_attrs(r)
    if ptype == SSH_FXP_STATUS:
        raise _status_failure(ptype, r, req)
    raise _unexpected(ptype, req)


@functools.lru_cache(maxsize=64)
def _make_expect_data(length: int) -> Parser:
    """The parser of a READ's answer of at most `length` bytes (one per length, kept:
    a read costs no closure)."""
    def parse(ptype: int, r: Reader, req: _Request) -> bytes:
        if ptype == SSH_FXP_DATA:
            data = r.string()
            if len(data) > length:
                raise ProtocolError(f"READ of {length} bytes answered with {len(data)}")
            return data
        if ptype == SSH_FXP_STATUS:
            code, message = decode_status(r)
            if code == SSH_FX_EOF:
                return b""
            if code == SSH_FX_OK:
                raise ProtocolError("OK status where DATA was expected")
            raise status_error(code, message, req.path)
        raise _unexpected(ptype, req)

    return parse


def _expect_names(ptype: int, r: Reader, req: _Request) -> list[tuple[bytes, bytes, Attrs]] | None:
    if ptype == SSH_FXP_NAME:
        return decode_names(r)
    if ptype == SSH_FXP_STATUS:
        code, message = decode_status(r)
        if code == SSH_FX_EOF:
            return None
        if code == SSH_FX_OK:
            raise ProtocolError("OK status where NAME was expected")
        raise status_error(code, message, req.path)
    raise _unexpected(ptype, req)


def _expect_one_name(ptype: int, r: Reader, req: _Request) -> bytes:
    names = _expect_names(ptype, r, req)
    if names is None:
        raise status_error(SSH_FX_EOF, "no name in reply", req.path)
    if len(names) != 1:
        raise ProtocolError(f"{req.op}: {len(names)} names where one was expected")
    return names[0][0]


def _expect_extended(ptype: int, r: Reader, req: _Request) -> Reader:
    if ptype == SSH_FXP_EXTENDED_REPLY:
        return r
    if ptype == SSH_FXP_STATUS:
        raise _status_failure(ptype, r, req)
    raise _unexpected(ptype, req)


def _expect_statvfs(ptype: int, r: Reader, req: _Request) -> dict[str, int]:
    return decode_statvfs(_expect_extended(ptype, r, req))


def _expect_limits(ptype: int, r: Reader, req: _Request) -> tuple[int, int, int, int]:
    return decode_limits(_expect_extended(ptype, r, req))


# --- the client -------------------------------------------------------------------------
class _Batch:
    """SFTPClient._batched's block (a class, not a generator: two or three of these per
    file read in a cold git status, where contextlib's machinery cost more than the
    batching saved). Inside one already open on this thread, the outer one sends."""

    __slots__ = ("_client", "_outer")

    def __init__(self, client: SFTPClient) -> None:
        self._client = client
        self._outer = False

    def __enter__(self) -> None:
        local = self._client._batch
        self._outer = getattr(local, "packets", None) is not None
        if not self._outer:
            local.packets = []

    def __exit__(self, *exc: object) -> None:
        if not self._outer:
            self._client._send_batch(None)


class SFTPClient:
    """One SFTP session on `stream` (a paramiko Channel, a PipeStream, ...)."""

    def __init__(self, stream: Stream, *, name: str = "sftp",
                 traffic: Traffic | None = None, request_timeout: float = 0.0,
                 first_id: int = 1, overdue_level: int = logging.WARNING) -> None:
        self.name = name
        self.traffic = traffic if traffic is not None else Traffic()  # for pysshfs status
        self.request_timeout = request_timeout  # seconds; 0 = wait for ever
        # how loudly the watchdog says it gave up (a session whose loss nobody notices,
        # such as a bulk channel, says it quietly: it is not the mount's error line)
        self._overdue_level = overdue_level
        self.version = 0
        self.extensions: dict[str, bytes] = {}
        self.max_read = DEFAULT_MAX_READ
        self.max_write = DEFAULT_MAX_WRITE
        self.max_open_handles = 0  # 0 = the server did not say
        self.closed = False
        self.on_closed: Callable[[BaseException | None], None] | None = None
        self._stream = stream
        # (a second client on one connection starts elsewhere: ids in -d logs stay unique)
        self._ids = itertools.count(first_id)
        self._pending: dict[int, _Request] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._version_future: Future = Future()
        self._reader: threading.Thread | None = None
        self._close_reason: BaseException | str | None = None
        self._closed_locally = False
        # A packet begun and not whole yet: its pieces as they came, their bytes, and the
        # bytes it needs with its length field (0: that field is not whole yet either).
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self._awaiting_version = True
        self._closing = threading.Event()  # set once, by _shutdown: stops the watchdog
        self.replies = 0  # replies matched to a request (how much this session did)
        self._last_reply = 0.0  # monotonic time of the last reply
        self._told_closed = False  # on_closed has been called
        self.bytes_moved = 0  # bytes of SFTP packets sent and received on this connection
        self._batch = threading.local()  # .packets: requests held by _batched() (per thread)
        # Wake-ups of callers whose replies are resolved, held by the reply thread until it
        # next waits for the network (Reply.settle); None: woken at once.
        self._wake_later: list[Callable[[], Any]] | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"v{self.version}"
        return f"<SFTPClient {self.name} {state}>"

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """INIT/VERSION handshake, then ask for limits@openssh.com if the server has it."""
        if self._reader is not None:
            raise RuntimeError("SFTPClient.start() called twice")
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader",
                                        daemon=True)
        if self.request_timeout > 0:
            timeout = min(timeout, self.request_timeout)
            threading.Thread(target=self._watch_deadlines, name=f"{self.name}-deadlines",
                             daemon=True).start()
        push_to = getattr(self._stream, "push_to", None)
        if push_to is not None:
            # The stream hands us its data itself (no thread of ours in between).
            push_to(self._consume, self._stream_ended)
            before_wait = getattr(self._stream, "before_wait", None)
            if before_wait is not None and before_wait(self._wake_held):
                self._wake_later = []  # (only once the stream will empty it)
        else:
            self._wake_later = []  # emptied by _read_loop
            self._reader.start()
        try:
            with self._send_lock:
                self._stream.sendall(build_init(SFTP_VERSION))
        except Exception as exc:  # noqa: BLE001 - any stream failure means no session
            self._shutdown(exc)
            raise _lost_error(self.name, exc) from None
        try:
            version, extensions = self._version_future.result(timeout)
        except FutureTimeout:
            self._shutdown("no VERSION reply")
            raise OSError(errno.ETIMEDOUT,
                          f"{self.name}: no SFTP version reply within {timeout:g}s") from None
        if version > SFTP_VERSION:
            self._shutdown("bad version")
            raise ProtocolError(f"server answered INIT v3 with version {version}")
        self.version = version
        self.extensions = extensions
        log.debug("%s: SFTP version %d, extensions %s", self.name, version,
                  ", ".join(f"{k}={v.decode('ascii', 'replace')}" for k, v in extensions.items()))
        if self.has_extension("limits@openssh.com"):
            try:
                fut = self._extended("limits@openssh.com", [], _expect_limits, None)
                self._apply_limits(*self._wait(fut, timeout))
            except OSError as exc:
                if self.closed:
                    raise
                if exc.errno == errno.ETIMEDOUT:  # a server that does not answer at all
                    self._shutdown(exc)
                    raise
                log.warning("%s: limits@openssh.com failed (%s); using defaults", self.name, exc)

    def _apply_limits(self, max_packet: int, max_read: int, max_write: int,
                      max_handles: int) -> None:
        # 0 means "no limit" and says nothing about what is fast; keep the defaults then.
        # Never go above what our own reader accepts as one packet.
        ceiling = MAX_PACKET_LENGTH - 1024
        if max_packet:
            ceiling = min(ceiling, max_packet - 1024) if max_packet > 2048 else ceiling
        if max_read:
            self.max_read = max(1024, min(max_read, ceiling))
        if max_write:
            self.max_write = max(1024, min(max_write, ceiling))
        self.max_open_handles = max_handles
        log.debug("%s: limits: packet %d read %d write %d handles %d -> read %d write %d",
                  self.name, max_packet, max_read, max_write, max_handles, self.max_read,
                  self.max_write)

    def has_extension(self, name: str) -> bool:
        return name in self.extensions

    @property
    def posix_rename_supported(self) -> bool:
        return self.has_extension("posix-rename@openssh.com")

    def close(self) -> None:
        """Close the stream; every request still waiting fails with ECONNABORTED."""
        self._closed_locally = True
        self._shutdown("closed by client")

    def __enter__(self) -> SFTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shutdown(self, reason: BaseException | str | None) -> bool:
        """Close once; False if it was already closed."""
        self._wake_held()  # (the reply thread may never wait for the network again)
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self._close_reason = reason
            pending, self._pending = self._pending, {}
        self._closing.set()
        if isinstance(reason, BaseException):
            log.debug("%s: closing: %s", self.name, reason)
        for req in pending.values():
            if isinstance(reason, ProtocolError):
                _set_exception(req.future, _abandoned_error(self.name, reason))
            else:
                _set_exception(req.future, _lost_error(self.name, reason))
        _set_exception(self._version_future, _lost_error(self.name, reason))
        try:
            self._stream.close()
        except Exception as exc:  # noqa: BLE001 - closing a dead stream may fail any way
            log.debug("%s: closing stream: %s", self.name, exc)
        return True

    @property
    def pending_count(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    def _watch_deadlines(self) -> None:
        """Close the connection once it is overdue (see "Deadlines" above)."""
        limit = self.request_timeout
        tick = min(1.0, max(0.05, limit / 10))
        while not self._closing.wait(tick):
            with self._lock:
                oldest = next(iter(self._pending.values()), None)
            if oldest is None:
                continue
            now = time.monotonic()
            waited = now - oldest.started
            silent = now - max(oldest.started, self._last_reply)
            if silent > limit:
                why = f"no reply to {oldest.op} (nor to anything else) within {limit:g}s"
            elif waited > OVERDUE_FACTOR * limit:
                why = f"no reply to {oldest.op} within {waited:.0f}s"
            else:
                continue
            reason = OSError(errno.ETIMEDOUT, f"{why} (io_timeout): the connection is "
                             "considered broken")
            log.log(self._overdue_level, "%s: %s", self.name, reason.strerror)
            self._stream_ended(reason)
            return

    # --- the reader thread --------------------------------------------------------------
    def _read_loop(self) -> None:
        reason: BaseException | None = None
        try:
            recv = self._stream.recv
            while not self.closed:
                self._wake_held()
                chunk = recv(RECV_SIZE)
                if not chunk:
                    break
                self._consume(chunk)
        except Exception as exc:  # noqa: BLE001 - the stream may fail in any way
            reason = exc
        self._stream_ended(reason)

    def _stream_ended(self, reason: BaseException | None) -> None:
        """The stream is over: `reason` is what broke it (None: the server closed it)."""
        if isinstance(reason, ProtocolError):
            _limited.log(logging.ERROR, f"protocol {reason.strerror}",
                         "%s: %s; closing the connection", self.name, reason.strerror)
        elif reason is None:
            reason = _lost_error(self.name, "server closed the stream")
        if self._closed_locally:
            reason = None
        self._shutdown(reason if reason is not None else "closed by client")
        with self._lock:
            if self._told_closed:
                return  # the watchdog or the stream told the story already: once is enough
            self._told_closed = True
        callback = self.on_closed
        if callback is not None:
            try:
                callback(reason)
            except Exception:  # noqa: BLE001 - a hook must not take the reader down loudly
                log.exception("%s: on_closed callback failed", self.name)

    def _consume(self, chunk: bytes) -> None:
        """Cut every complete packet out of what has arrived and dispatch it (called by
        the reader thread, or by a pushing stream's own thread; never concurrently).

        A reply that came whole (or several) is cut straight out of `chunk`; one that
        spans SSH packets (a READ reply of more than ~32 KiB) is kept as its pieces and
        joined once, when all of it is there: no copy of every piece into a buffer, no
        copy back out of it, nothing moved for what is left."""
        self.bytes_moved += len(chunk)
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if self._parts:
            parts = self._parts
            parts.append(chunk)
            self._have += len(chunk)
            if not self._need:  # (rare: even the length field was cut)
                if self._have < _HEADER_SIZE:
                    return
                self._parts = parts = [b"".join(parts)]
                self._need = _HEADER_SIZE + self._checked_length(parts[0], 0)
            if self._have < self._need:
                return
            chunk = b"".join(parts)
            self._parts = []
            self._have = self._need = 0
        pos = 0
        end = len(chunk)
        need = 0
        while end - pos >= _HEADER_SIZE:
            after = pos + _HEADER_SIZE + self._checked_length(chunk, pos)
            if after > end:
                need = after - pos
                break
            packet = chunk[pos + _HEADER_SIZE:after]
            pos = after
            if self._awaiting_version:
                self._awaiting_version = False
                self._handle_version(packet)
            else:
                self._dispatch(packet)
        if pos < end:
            rest = chunk[pos:] if pos else chunk
            self._parts = [rest]
            self._have = len(rest)
            self._need = need

    @staticmethod
    def _checked_length(data: bytes, pos: int) -> int:
        length: int = _U32_HEAD.unpack_from(data, pos)[0]
        if length < 5 or length > MAX_PACKET_LENGTH:
            raise ProtocolError(f"packet length {length} out of range")
        return length

    def _handle_version(self, packet: bytes) -> None:
        if packet[0] != SSH_FXP_VERSION:
            raise ProtocolError(f"expected VERSION, got packet type {packet[0]}")
        self._version_future.set_result(decode_version(memoryview(packet)[1:]))

    def _dispatch(self, packet: bytes) -> None:
        if len(packet) < 5:
            raise ProtocolError(f"reply of {len(packet)} bytes has no request id")
        ptype, request_id = _TYPE_AND_ID.unpack_from(packet)
        r = Reader(packet, 5)
        with self._lock:
            req = self._pending.pop(request_id, None)
        if req is None:
            # A reply nobody asked for: the framing is intact, so drop it and carry on.
            _limited.log(logging.WARNING, "unknown-id",
                         "%s: reply %s to unknown request %d ignored", self.name,
                         PACKET_NAMES.get(ptype, ptype), request_id)
            return
        now = time.monotonic()
        self.traffic.replied(len(packet) + 4, req.op, req.started, now, req.quiet)
        self.replies += 1
        self._last_reply = now
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[%05d] %s %d bytes %.1fms", request_id, PACKET_NAMES.get(ptype, ptype),
                      len(packet), (now - req.started) * 1000)
        try:
            result = req.parse(ptype, r, req)
        except OSError as exc:
            req.future.settle(None, exc, self._wake_later)
        except Exception as exc:  # noqa: BLE001 - a bad reply fails its request, not us
            req.future.settle(None, ProtocolError(f"bad {req.op} reply: {exc!r}"),
                              self._wake_later)
        else:
            req.future.settle(result, None, self._wake_later)

    def _wake_held(self) -> None:
        """Wake the callers whose replies were resolved and not woken yet (the reply
        thread, right before it waits for the network; or whoever closes us)."""
        held = self._wake_later
        while held:
            held.pop()()

    # --- sending ------------------------------------------------------------------------
    def _send(self, ptype: int, parts: Sequence[bytes | memoryview], parse: Parser, op: str,
              path: bytes | None, detail: Any = None) -> Future:
        """Register and send one request; its Future resolves in the reader thread."""
        future = Reply()  # on the wire: it cannot be cancelled
        debug = log.isEnabledFor(logging.DEBUG)
        req = _Request(future, parse, op, path, 0.0)
        if op not in BULK_OPS:
            req.quiet = self.traffic.quiet()
        with self._lock:
            if self.closed:
                raise _lost_error(self.name, self._close_reason)
            req.started = time.monotonic()  # under the lock: _pending stays oldest first
            request_id = next(self._ids) & 0xFFFFFFFF
            while request_id in self._pending or request_id == 0:
                request_id = next(self._ids) & 0xFFFFFFFF
            self._pending[request_id] = req
            self.traffic.requests += 1
        packet = build_packet(ptype, request_id, parts)
        if debug:
            if callable(detail):
                detail = detail()
            what = detail if detail is not None else path_str(path) or ""
            log.debug("[%05d] %s %s", request_id, op, what)
        held = getattr(self._batch, "packets", None)
        if held is not None:
            held.append(packet)
        else:
            self._transmit(packet)
        return future

    def _transmit(self, data: bytes) -> None:
        try:
            with self._send_lock:
                self.bytes_moved += len(data)
                self._stream.sendall(data)
                self.traffic.bytes_sent += len(data)
        except Exception as exc:  # noqa: BLE001 - any failure to send loses the session
            self._shutdown(exc)
            raise _lost_error(self.name, exc) from None

    def _batched(self) -> _Batch:
        """Requests this thread sends inside go out together at the end, in order, as one
        write: one SSH packet to encrypt and one socket write instead of one each (a
        request and the LSTAT read back behind it; a listing's first READDIRs). Do not
        wait for a reply inside: its request may not have left yet (a waiting call of
        this client's sends what the batch holds first)."""
        return _Batch(self)

    def _send_batch(self, then: list[bytes] | None) -> None:
        """Send what this thread's batch holds, in one write; it holds `then` after (None:
        the batch is over)."""
        local = self._batch
        held = local.packets
        local.packets = then
        if held:
            self._transmit(b"".join(held))

    def _extended(self, name: str, parts: Sequence[bytes | memoryview], parse: Parser,
                  path: bytes | None, detail: Any = None) -> Future:
        return self._send(SSH_FXP_EXTENDED, [string(name), *parts], parse, name, path, detail)

    def _require(self, extension: str, err: int = errno.EOPNOTSUPP) -> None:
        if not self.has_extension(extension):
            raise OSError(err, f"the server does not support {extension}")

    def _wait(self, future: Future, timeout: float | None) -> Any:
        if not future.done() and getattr(self._batch, "packets", None):
            # waiting inside a batch (a write sent again after a reconnect, in a utime's
            # batch): what it holds goes first, and it holds what follows
            self._send_batch([])
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise OSError(errno.ETIMEDOUT, f"{self.name}: no reply within {timeout:g}s") \
                from None

    def _call(self, ptype: int, parts: list[bytes | memoryview], parse: Parser, op: str,
              path: bytes | None, timeout: float | None, detail: Any = None) -> Any:
        return self._wait(self._send(ptype, parts, parse, op, path, detail), timeout)

    def _refined(self, op: str, exc: SFTPError, path: bytes | None, *,
                 timeout: float | None, **details: Any) -> SFTPError:
        """`exc` with the errno a local file system would give (see pysshfs.sftp.refine)."""
        return refine(self, op, exc, path, timeout=timeout, **details)

    # --- attributes ---------------------------------------------------------------------
    def stat(self, path: bytes, *, timeout: float | None = None) -> Attrs:
        return self._call(SSH_FXP_STAT, [string(path)], _expect_attrs, "STAT", path, timeout)

    def stat_async(self, path: bytes) -> Future:
        return self._send(SSH_FXP_STAT, [string(path)], _expect_attrs, "STAT", path)

    def lstat(self, path: bytes, *, timeout: float | None = None) -> Attrs:
        return self._call(SSH_FXP_LSTAT, [string(path)], _expect_attrs, "LSTAT", path, timeout)

    def lstat_async(self, path: bytes) -> Future:
        return self._send(SSH_FXP_LSTAT, [string(path)], _expect_attrs, "LSTAT", path)

    def fstat(self, handle: bytes, *, timeout: float | None = None) -> Attrs:
        return self._call(SSH_FXP_FSTAT, [string(handle)], _expect_attrs, "FSTAT", None,
                          timeout, handle.hex())

    def _setstat_async(self, path: bytes, attrs: Attrs, *, nofollow: bool) -> Future:
        """SETSTAT, or lsetstat@openssh.com (which does not follow a final symlink)."""
        parts = [string(path), encode_attrs(attrs)]
        def detail() -> str:
            return f"{path_str(path)} {attrs}"
        if nofollow:
            return self._extended("lsetstat@openssh.com", parts, _expect_ok, path, detail)
        return self._send(SSH_FXP_SETSTAT, parts, _expect_ok, "SETSTAT", path, detail)

    def _setstat_wait(self, change: Future, path: bytes, attrs: Attrs,
                      timeout: float | None) -> None:
        try:
            self._wait(change, timeout)
        except SFTPError as exc:
            raise self._refined("setstat", exc, path, attrs=attrs, timeout=timeout) from None

    def setstat(self, path: bytes, attrs: Attrs, *, timeout: float | None = None) -> None:
        self._setstat_wait(self._setstat_async(path, attrs, nofollow=False), path, attrs,
                           timeout)

    def lsetstat(self, path: bytes, attrs: Attrs, *, timeout: float | None = None) -> None:
        """setstat that does not follow a final symlink (lsetstat@openssh.com)."""
        self._require("lsetstat@openssh.com")
        self._setstat_wait(self._setstat_async(path, attrs, nofollow=True), path, attrs,
                           timeout)

    def fsetstat(self, handle: bytes, attrs: Attrs, *, timeout: float | None = None) -> None:
        try:
            self._call(SSH_FXP_FSETSTAT, [string(handle), encode_attrs(attrs)], _expect_ok,
                       "FSETSTAT", None, timeout, f"{handle.hex()} {attrs}")
        except SFTPError as exc:
            raise self._refined("fsetstat", exc, None, handle=handle, timeout=timeout) \
                from None

    def fsetstat_async(self, handle: bytes, attrs: Attrs) -> Future:
        """FSETSTAT, not waited for: the future fails with the server's errno."""
        return self._send(SSH_FXP_FSETSTAT, [string(handle), encode_attrs(attrs)], _expect_ok,
                          "FSETSTAT", None, lambda: f"{handle.hex()} {attrs}")

    # --- files --------------------------------------------------------------------------
    def _read_back(self, after: Future, timeout: float | None) -> Attrs | None:
        """The attributes a request sent right behind a change returned (None: failed)."""
        try:
            return self._wait(after, timeout)
        except OSError:
            return None

    def setstat_and_lstat(self, path: bytes, attrs: Attrs, follow: bool = False, *,
                          timeout: float | None = None) -> Attrs | None:
        """Change attributes and read them back in one round trip.

        The (L)STAT goes out right behind the (L)SETSTAT, and servers answer requests in
        order (OpenSSH's sftp-server handles one at a time), so the caller's next
        getattr costs no request. `follow`: SETSTAT + STAT; else LSETSTAT (when the
        server has it) + LSTAT. The attributes read back, or None if that part failed.
        """
        nofollow = not follow and self.has_extension("lsetstat@openssh.com")
        with self._batched():
            change = self._setstat_async(path, attrs, nofollow=nofollow)
            after = self.stat_async(path) if follow else self.lstat_async(path)
        self._setstat_wait(change, path, attrs, timeout)
        return self._read_back(after, timeout)

    def open_and_lstat(self, path: bytes, pflags: int, attrs: Attrs | None = None, *,
                       follow: bool = False,
                       timeout: float | None = None) -> tuple[bytes, Attrs | None]:
        """open() with the new file's attributes read back in the same round trip (see
        setstat_and_lstat): creating a file then costs one round trip, not two.
        `follow`: STAT instead of LSTAT."""
        with self._batched():
            opening = self._open_async(path, pflags, attrs)
            after = self.stat_async(path) if follow else self.lstat_async(path)
        return self._open_wait(opening, path, pflags, timeout), self._read_back(after, timeout)

    def open_and_lstat_async(self, path: bytes, pflags: int, *,
                             follow: bool = False) -> tuple[Future, Future]:
        """OPEN and the LSTAT (`follow`: STAT) behind it, sent without waiting: (Future of
        the handle, Future of the attributes). For files opened ahead of need, or on a
        bulk channel, where a failure only means opening the file the usual way: its
        errno is not refined."""
        with self._batched():
            return self._open_async(path, pflags, None), \
                self.stat_async(path) if follow else self.lstat_async(path)

    def batched(self) -> AbstractContextManager[None]:
        """The requests this thread sends inside go out in one write (see _batched)."""
        return self._batched()

    def open(self, path: bytes, pflags: int, attrs: Attrs | None = None, *,
             timeout: float | None = None) -> bytes:
        """Open with SSH_FXF_* flags; the server's handle."""
        return self._open_wait(self._open_async(path, pflags, attrs), path, pflags, timeout)

    def open_async(self, path: bytes, pflags: int) -> Future:
        """OPEN sent without waiting: the Future of the handle (errno not refined, as
        open_and_lstat_async)."""
        return self._open_async(path, pflags, None)

    def _open_async(self, path: bytes, pflags: int, attrs: Attrs | None) -> Future:
        return self._send(SSH_FXP_OPEN, [string(path), u32(pflags), encode_attrs(attrs)],
                          _expect_handle, "OPEN", path,
                          lambda: f"{path_str(path)} flags=0x{pflags:02x}")

    def _open_wait(self, opening: Future, path: bytes, pflags: int,
                   timeout: float | None) -> bytes:
        try:
            return self._wait(opening, timeout)
        except SFTPError as exc:
            raise self._refined("open", exc, path, pflags=pflags, timeout=timeout) from None

    def close_handle(self, handle: bytes, *, timeout: float | None = None) -> None:
        self._call(SSH_FXP_CLOSE, [string(handle)], _expect_ok, "CLOSE", None, timeout,
                   handle.hex())

    def close_handle_unwaited(self, handle: bytes) -> None:
        """CLOSE without waiting for the answer (see _close_unwaited)."""
        self._close_unwaited(handle)

    def read(self, handle: bytes, offset: int, length: int, *,
             timeout: float | None = None) -> bytes:
        """Up to `length` bytes (the server may answer fewer); b"" only at end of file."""
        return self._wait(self.read_async(handle, offset, length), timeout)

    def read_async(self, handle: bytes, offset: int, length: int) -> Future:
        """Future of the bytes at `offset`; `length` is capped at max_read."""
        length = min(length, self.max_read)
        return self._send(SSH_FXP_READ, (read_body(handle, offset, length),),
                          _make_expect_data(length), "READ", None,
                          lambda: f"{handle.hex()} {offset} {length}")

    def write(self, handle: bytes, offset: int, data: bytes | memoryview, *,
              timeout: float | None = None) -> None:
        self._wait(self.write_async(handle, offset, data), timeout)

    def write_async(self, handle: bytes, offset: int, data: Any) -> Future:
        """Future that is done when all of `data` is acknowledged; split at max_write."""
        view = memoryview(data).cast("B")
        if len(view) <= self.max_write:
            return self._write_one(handle, offset, view)
        parts = [self._write_one(handle, offset + pos, view[pos:pos + self.max_write])
                 for pos in range(0, len(view), self.max_write)]
        return _all_of(parts)

    def send_room(self) -> int | None:
        """Bytes the SSH channel's window takes now without waiting for the server (None:
        not an SSH channel): which of two channels a big write goes out on quicker."""
        room = getattr(getattr(self._stream, "channel", None), "out_window_size", None)
        return room if isinstance(room, int) else None

    def _write_one(self, handle: bytes, offset: int, view: memoryview) -> Future:
        return self._send(SSH_FXP_WRITE, [string(handle), u64(offset), u32(len(view)), view],
                          _expect_ok, "WRITE", None,
                          lambda: f"{handle.hex()} {offset} {len(view)}")

    def fsync(self, handle: bytes, *, timeout: float | None = None) -> None:
        """Flush the remote file to disk (fsync@openssh.com); EOPNOTSUPP without it."""
        self._wait(self.fsync_async(handle), timeout)

    def fsync_async(self, handle: bytes) -> Future:
        """fsync() not waited for: the server runs it after the requests sent before it
        on this channel."""
        self._require("fsync@openssh.com")
        return self._extended("fsync@openssh.com", [string(handle)], _expect_ok, None,
                              handle.hex())

    # --- directories --------------------------------------------------------------------
    def opendir(self, path: bytes, *, timeout: float | None = None) -> bytes:
        return self._call(SSH_FXP_OPENDIR, [string(path)], _expect_handle, "OPENDIR", path,
                          timeout)

    def readdir(self, handle: bytes, *,
                timeout: float | None = None) -> list[tuple[bytes, bytes, Attrs]] | None:
        """The next batch of (name, longname, attrs); None at the end of the directory."""
        return self._wait(self._readdir_async(handle), timeout)

    def _readdir_async(self, handle: bytes) -> Future:
        return self._send(SSH_FXP_READDIR, [string(handle)], _expect_names, "READDIR", None,
                          handle.hex)

    def listdir_attr(self, path: bytes, limit: int | None = None, *,
                     timeout: float | None = None) -> list[tuple[bytes, Attrs]] | None:
        """All entries of a directory except "." and "..", with their attributes; None
        when there are more than `limit` (the listing then stops early).

        Sends READDIR_IN_FLIGHT requests at once, then more (up to READDIR_MAX_IN_FLIGHT)
        while full batches keep coming: the server answers them in order, so batches arrive
        in directory order without a round trip between them. A short batch with another
        READDIR still out adds none (it is most likely the last: a small directory costs
        two READDIRs, NAME and EOF); a batch as long as a short first one counts as full,
        for servers that send few entries a reply. The first EOF ends the listing: the
        READDIRs still in flight can only answer EOF too, and nobody waits for them.
        """
        handle = self.opendir(path, timeout=timeout)
        entries: list[tuple[bytes, Attrs]] = []
        guard = ListingGuard(path, self.name)  # bounded size, only names that can exist
        try:
            with self._batched():
                in_flight = deque(self._readdir_async(handle)
                                  for _ in range(READDIR_IN_FLIGHT))
            full_at, first = READDIR_FULL_BATCH, True
            while in_flight:
                batch = self._wait(in_flight.popleft(), timeout)
                if batch is None:
                    break
                full = len(batch) >= full_at
                if first:  # a server sending fewer a reply: as many again is full
                    full_at, first = min(full_at, max(1, len(batch))), False
                if full and len(in_flight) < READDIR_MAX_IN_FLIGHT - 1:
                    with self._batched():  # a big directory: one more than came back
                        in_flight.append(self._readdir_async(handle))
                        in_flight.append(self._readdir_async(handle))
                elif full or not in_flight:
                    in_flight.append(self._readdir_async(handle))
                entries.extend(guard.accept(batch))
                if limit is not None and len(entries) > limit:
                    return None
        except SFTPError as exc:
            if exc.filename is None:
                exc.filename = path_str(path)
            raise
        finally:
            if not self.closed:
                self._close_unwaited(handle)
        guard.done()
        return entries

    def _close_unwaited(self, handle: bytes) -> None:
        """CLOSE a handle without waiting for the answer: nothing depends on it (a
        directory's; a file's once its writes are acknowledged), and the server handles
        it before any later request (one round trip less per directory or file)."""
        try:
            fut = self._send(SSH_FXP_CLOSE, [string(handle)], _expect_ok, "CLOSE", None,
                             handle.hex)
        except OSError as exc:
            log.debug("%s: closing handle: %s", self.name, exc)
            return
        def tell(f: Future) -> None:
            if f.exception() is not None:
                log.debug("%s: closing handle: %s", self.name, f.exception())

        fut.add_done_callback(tell)

    def mkdir(self, path: bytes, attrs: Attrs | None = None, *,
              timeout: float | None = None) -> None:
        try:
            self._call(SSH_FXP_MKDIR, [string(path), encode_attrs(attrs)], _expect_ok, "MKDIR",
                       path, timeout)
        except SFTPError as exc:
            raise self._refined("mkdir", exc, path, timeout=timeout) from None

    def mkdir_and_lstat(self, path: bytes, attrs: Attrs | None = None, *,
                        timeout: float | None = None) -> Attrs | None:
        """mkdir with the new directory's attributes read back in the same round trip
        (see setstat_and_lstat); when MKDIR fails, that read-back tells EEXIST apart at
        no extra cost. The attributes, or None if the read-back failed."""
        with self._batched():
            making = self._send(SSH_FXP_MKDIR, [string(path), encode_attrs(attrs)],
                                _expect_ok, "MKDIR", path)
            after = self.lstat_async(path)
        try:
            self._wait(making, timeout)
        except SFTPError as exc:
            raise self._refined("mkdir", exc, path, timeout=timeout,
                                known={path: self._read_back(after, timeout)}) from None
        return self._read_back(after, timeout)

    def rmdir(self, path: bytes, *, timeout: float | None = None) -> None:
        try:
            self._call(SSH_FXP_RMDIR, [string(path)], _expect_ok, "RMDIR", path, timeout)
        except SFTPError as exc:
            raise self._refined("rmdir", exc, path, timeout=timeout) from None

    # --- names --------------------------------------------------------------------------
    def remove(self, path: bytes, *, timeout: float | None = None) -> None:
        try:
            self._call(SSH_FXP_REMOVE, [string(path)], _expect_ok, "REMOVE", path, timeout)
        except SFTPError as exc:
            raise self._refined("remove", exc, path, timeout=timeout) from None

    def realpath(self, path: bytes, *, timeout: float | None = None) -> bytes:
        return self._call(SSH_FXP_REALPATH, [string(path)], _expect_one_name, "REALPATH", path,
                          timeout)

    def readlink(self, path: bytes, *, timeout: float | None = None) -> bytes:
        return self._call(SSH_FXP_READLINK, [string(path)], _expect_one_name, "READLINK", path,
                          timeout)

    def symlink(self, target: bytes, linkpath: bytes, *, timeout: float | None = None) -> None:
        """Make `linkpath` a symlink pointing at `target`.

        The draft orders SYMLINK as (linkpath, targetpath); OpenSSH's sftp-server reads it
        as (target, linkpath), and so does every server that follows it, so that is sent.
        """
        try:
            self._call(SSH_FXP_SYMLINK, [string(target), string(linkpath)], _expect_ok,
                       "SYMLINK", linkpath, timeout,
                       f"{path_str(linkpath)} -> {path_str(target)}")
        except SFTPError as exc:
            raise self._refined("symlink", exc, linkpath, timeout=timeout) from None

    def rename(self, old: bytes, new: bytes, *, timeout: float | None = None) -> None:
        """Rename; replaces `new` atomically when the server has posix-rename@openssh.com.

        Plain v3 RENAME fails when `new` exists (EEXIST then).
        """
        detail = f"{path_str(old)} -> {path_str(new)}"
        try:
            if self.posix_rename_supported:
                self._wait(self._extended("posix-rename@openssh.com",
                                          [string(old), string(new)], _expect_ok, old, detail),
                           timeout)
            else:
                self._call(SSH_FXP_RENAME, [string(old), string(new)], _expect_ok, "RENAME",
                           old, timeout, detail)
        except SFTPError as exc:
            raise self._refined("rename", exc, new, old=old, timeout=timeout) from None

    def hardlink(self, old: bytes, new: bytes, *, timeout: float | None = None) -> None:
        """Make `new` another name of `old` (hardlink@openssh.com); ENOSYS without it."""
        self._require("hardlink@openssh.com", errno.ENOSYS)
        try:
            self._wait(self._extended("hardlink@openssh.com", [string(old), string(new)],
                                      _expect_ok, new, f"{path_str(old)} -> {path_str(new)}"),
                       timeout)
        except SFTPError as exc:
            raise self._refined("hardlink", exc, new, timeout=timeout) from None

    def rename_noreplace(self, old: bytes, new: bytes, *, timeout: float | None = None) -> None:
        """Rename `old` to `new` only if `new` does not exist, atomically (RENAME_NOREPLACE).

        Done as hardlink@openssh.com (link(2): fails with EEXIST, atomically, when `new`
        exists) then REMOVE of `old` -- what OpenSSH's plain RENAME does inside for a
        regular file. Plain RENAME is not used: when link(2) fails (a directory, a file
        system without hard links, EXDEV, EPERM) sftp-server falls back to a racy
        stat-then-rename, and its reply does not say which path it took. Here every case
        where link(2) fails without "exists" is EINVAL, the errno that makes callers (mv
        -n, glib, systemd) fall back to their own check. If REMOVE fails, `new` is
        removed again (as sftp-server does) and the REMOVE error is raised.
        """
        if not self.has_extension("hardlink@openssh.com"):
            raise OSError(errno.EINVAL, "RENAME_NOREPLACE needs hardlink@openssh.com")
        detail = f"{path_str(old)} -> {path_str(new)}"
        try:
            self._wait(self._extended("hardlink@openssh.com", [string(old), string(new)],
                                      _expect_ok, new, detail), timeout)
        except SFTPError as exc:
            raise self._refined("rename_noreplace", exc, new, timeout=timeout) from None
        try:
            self.remove(old, timeout=timeout)
        except OSError:
            try:
                self.remove(new, timeout=timeout)
            except OSError as undo:
                log.warning("%s: rename %s: could not remove the new name again: %s",
                            self.name, detail, undo)
            raise

    # --- OpenSSH extensions no other SSH file system uses ---------------------------------
    def copy_data_async(self, read_handle: bytes, read_offset: int, length: int,
                        write_handle: bytes, write_offset: int) -> Future:
        """Copy `length` bytes from one open handle to another on the server (copy-data,
        OpenSSH 9.0); EOPNOTSUPP without it.

        The server answers OK also when the source ended within the last 64 KiB it
        tried, so it cannot say how much it copied: callers bound `length` by the
        source's size. `length` 0 would mean "to the end of the source": never sent.
        """
        self._require("copy-data")
        if length <= 0:
            raise ValueError("copy-data length must be positive")
        return self._extended("copy-data", [string(read_handle), u64(read_offset), u64(length),
                                            string(write_handle), u64(write_offset)],
                              _expect_ok, None,
                              f"{read_handle.hex()} {read_offset} {length} -> "
                              f"{write_handle.hex()} {write_offset}")

    def copy_data(self, read_handle: bytes, read_offset: int, length: int,
                  write_handle: bytes, write_offset: int, *,
                  timeout: float | None = None) -> None:
        self._wait(self.copy_data_async(read_handle, read_offset, length, write_handle,
                                        write_offset), timeout)

    def users_groups_by_id(self, uids: Sequence[int], gids: Sequence[int], *,
                           timeout: float | None = None) -> tuple[list[str], list[str]]:
        """The server's user names for `uids` and group names for `gids`, in order, ""
        for an id it has no name for (users-groups-by-id@openssh.com, OpenSSH 9.1);
        EOPNOTSUPP without it. One request for all of them."""
        self._require("users-groups-by-id@openssh.com")
        def parse(ptype: int, r: Reader, req: _Request) -> tuple[list[str], list[str]]:
            reply = _expect_extended(ptype, r, req)
            users, groups = Reader(reply.string()), Reader(reply.string())
            return _name_list(users, len(uids)), _name_list(groups, len(gids))

        body = [string(b"".join(u32(i & 0xFFFFFFFF) for i in uids)),
                string(b"".join(u32(i & 0xFFFFFFFF) for i in gids))]
        return self._wait(self._extended("users-groups-by-id@openssh.com", body, parse, None,
                                         f"{len(uids)} uids, {len(gids)} gids"), timeout)

    # --- file systems and paths ---------------------------------------------------------
    def statvfs(self, path: bytes, *, timeout: float | None = None) -> dict[str, int]:
        """os.statvfs-like numbers (statvfs@openssh.com); EOPNOTSUPP without it."""
        self._require("statvfs@openssh.com")
        return self._wait(self._extended("statvfs@openssh.com", [string(path)],
                                         _expect_statvfs, path), timeout)

    def fstatvfs(self, handle: bytes, *, timeout: float | None = None) -> dict[str, int]:
        self._require("fstatvfs@openssh.com")
        return self._wait(self._extended("fstatvfs@openssh.com", [string(handle)],
                                         _expect_statvfs, None, handle.hex()), timeout)

    def expand_path(self, path: bytes, *, timeout: float | None = None) -> bytes:
        """Canonical path with "~" and "~user" expanded (expand-path@openssh.com).

        Without the extension this is realpath, which does not expand "~".
        """
        if not self.has_extension("expand-path@openssh.com"):
            return self.realpath(path, timeout=timeout)
        return self._wait(self._extended("expand-path@openssh.com", [string(path)],
                                         _expect_one_name, path), timeout)

    def extended(self, name: str, data: bytes = b"", *,
                 timeout: float | None = None) -> bytes:
        """A raw extended request; the EXTENDED_REPLY payload (for extensions not wrapped)."""
        def parse(ptype: int, r: Reader, req: _Request) -> bytes:
            if ptype == SSH_FXP_STATUS:
                code, message = decode_status(r)
                if code == SSH_FX_OK:
                    return b""
                raise status_error(code, message, None)
            return _expect_extended(ptype, r, req).rest()

        return self._wait(self._extended(name, [data], parse, None), timeout)


def _name_list(r: Reader, count: int) -> list[str]:
    """`count` names, one string each (users-groups-by-id reply)."""
    names = [r.string().decode("utf-8", "surrogateescape") for _ in range(count)]
    if r.remaining:
        raise ProtocolError(f"users-groups-by-id: more names than the {count} ids asked")
    return names


def _all_of(futures: list[Future]) -> Future:
    """A Future done when all are; fails with the first failure (in request order)."""
    combined: Future = Future()
    combined.set_running_or_notify_cancel()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        for fut in futures:
            exc = fut.exception()
            if exc is not None:
                combined.set_exception(exc)
                return
        combined.set_result(None)

    for fut in futures:
        fut.add_done_callback(one_done)
    return combined
