"""Per-open-file I/O: readahead for sequential reads, pipelined write-behind.

A round trip per request caps throughput at a few MB/s, so reads that look sequential are
served from a window of READ requests already in flight, and writes return once their WRITE
request is queued. The first write error the server reports is kept and raised at the next
write, flush, fsync or release of the handle: never dropped.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Protocol

log = logging.getLogger(__name__)

# The connection dropped under the request: the session reconnects, and we send it again.
LOST = (errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)


class Remote(Protocol):
    """The part of the session an open file needs."""

    def read_async(self, handle: Any, offset: int, length: int) -> Future: ...
    def read(self, handle: Any, offset: int, length: int) -> bytes: ...
    def write_async(self, handle: Any, offset: int, data: Any) -> Future: ...
    def write(self, handle: Any, offset: int, data: Any) -> None: ...
    def close_handle(self, handle: Any) -> None: ...
    def fsync(self, handle: Any) -> None: ...
    def failure_cause(self, handle: Any) -> int | None: ...


class OpenFile:
    """One FUSE file handle backed by one SFTP handle."""

    # Readahead: window grows while reads stay sequential, up to max_window bytes, and
    # while the link keeps up (see _observe).
    min_window = 256 * 1024
    max_window = 8 * 1024 * 1024
    # Write-behind: at most this many bytes unacknowledged per handle.
    max_unacked = 16 * 1024 * 1024

    def __init__(self, remote: Remote, path: str, handle: Any, flags: int,
                 chunk_read: int, chunk_write: int) -> None:
        self.remote = remote
        self.path = path
        self.handle = handle
        self.flags = flags
        self.chunk_read = max(4096, chunk_read)
        self.chunk_write = max(4096, chunk_write)
        self._lock = threading.Lock()
        # readahead state
        self._chunks: dict[int, Future] = {}  # chunk start offset -> Future[bytes]
        self._next_expected = 0
        self._window = self.min_window
        self._eof_at: int | None = None
        # What the link carries: readahead beyond it only queues, and a stat() sent
        # meanwhile waits behind that queue (head-of-line blocking on the one channel).
        self._window_cap = self.max_window
        self._base_latency: float | None = None
        # write-behind state
        self._pending: deque[tuple[Future, int, int, Any]] = deque()  # (fut, n, offset, data)
        self._replay: list[tuple[int, Any]] = []  # writes the dropped connection swallowed
        self._unacked = 0
        self._error: OSError | None = None
        self._acked_cond = threading.Condition(self._lock)
        self.high_water = 0  # end of the furthest write through this handle
        self.wrote = False

    # --- reads --------------------------------------------------------------------------
    def read_first_chunk(self) -> None:
        """Ask for the file's first chunk now, as the handle arrives: most files opened
        for reading are read from the start (cat, cp, git), and the reply then races the
        kernel's first READ instead of following it."""
        with self._lock:
            if 0 not in self._chunks and not self._pending:
                self._chunks[0] = self._timed_read(0, self.chunk_read)

    def read(self, size: int, offset: int) -> bytes:
        if self._pending:
            self.drain()  # a read must see this handle's own writes
        with self._lock:
            sequential = offset == self._next_expected
            self._next_expected = offset + size
            if not sequential:
                self._drop_chunks()
                self._window = self.min_window
                self._eof_at = None
        if not sequential and offset != 0:
            return self._read_direct(size, offset)
        return self._read_ahead(size, offset)

    def _read_direct(self, size: int, offset: int) -> bytes:
        """Random access: ask for exactly what was asked, in parallel pieces if large."""
        spans = [(off, min(self.chunk_read, offset + size - off))
                 for off in range(offset, offset + size, self.chunk_read)]
        futures = [self.remote.read_async(self.handle, off, n) for off, n in spans]
        parts: list[bytes] = []
        for (off, n), fut in zip(spans, futures, strict=True):
            try:
                data = fut.result()
            except OSError as exc:
                if exc.errno not in LOST:
                    raise
                data = self.remote.read(self.handle, off, n)
            parts.append(data)
            if len(data) < n:
                # Short answer = end of file: OpenSSH's sftp-server answers a READ of at most
                # its max_read with the full length unless EOF, as sshfs assumes too.
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_ahead(self, size: int, offset: int) -> bytes:
        chunk = self.chunk_read
        first = offset - offset % chunk
        end = offset + size
        with self._lock:
            for start in [s for s in self._chunks if s + chunk <= offset]:
                del self._chunks[start]  # behind the reader: no longer needed
            limit = end + self._window
            if self._eof_at is not None:
                limit = min(limit, self._eof_at + 1)
            start = first
            while start < max(end, limit):
                if start not in self._chunks:
                    self._chunks[start] = self._timed_read(start, chunk)
                start += chunk
            self._window = min(self._window_cap, self._window * 2)
            needed = [(s, self._chunks[s]) for s in range(first, end, chunk)]
        parts: list[bytes | memoryview] = []  # joined once: one copy of the answer
        for start, fut in needed:
            try:
                data = fut.result()
            except OSError as exc:
                with self._lock:
                    self._drop_chunks()
                if exc.errno not in LOST:
                    raise
                # the connection dropped under the readahead: read again once it is back
                data = self.remote.read(self.handle, start, chunk)
            lo = max(offset, start) - start
            hi = min(end, start + chunk) - start
            parts.append(data if lo == 0 and hi >= len(data) else memoryview(data)[lo:hi])
            if len(data) < chunk:  # end of file (see _read_direct)
                with self._lock:
                    self._eof_at = start + len(data)
                    # forget chunks at and after EOF: the file may grow (tail -f)
                    for later in [s for s in self._chunks if s >= start]:
                        del self._chunks[later]
                break
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _timed_read(self, offset: int, length: int) -> Future:
        sent = time.monotonic()
        fut = self.remote.read_async(self.handle, offset, length)
        fut.add_done_callback(lambda _f: self._observe(time.monotonic() - sent))
        return fut

    def _observe(self, latency: float) -> None:
        """Delay-based control of the readahead window (like LEDBAT): a chunk that took
        much longer than the fastest one waited in a queue, so fewer bytes in flight
        carry as much; otherwise the cap grows by a chunk. Keeps what a bulk read puts
        ahead of other requests on the link to about one round trip's worth. Runs in the
        reader thread, maybe under our lock: plain attribute updates, no locking."""
        base = latency if self._base_latency is None else min(self._base_latency, latency)
        self._base_latency = base
        if latency > 1.5 * base + 0.010:
            self._window_cap = max(self.min_window, int(self._window_cap * 0.8))
        else:
            self._window_cap = min(self.max_window, self._window_cap + self.chunk_read)

    def _drop_chunks(self) -> None:
        self._chunks.clear()

    # --- writes -------------------------------------------------------------------------
    def write(self, data: bytes, offset: int) -> int:
        self._raise_error()
        if self._replay:
            self._send_replay()  # older bytes first, or they would overwrite newer ones
        view = memoryview(data)
        with self._lock:
            self._drop_chunks()
            self._next_expected = -1
            self.wrote = True
            self.high_water = max(self.high_water, offset + len(data))
        for pos in range(0, len(data), self.chunk_write):
            piece = view[pos:pos + self.chunk_write]
            self._wait_for_room(len(piece))
            fut = self.remote.write_async(self.handle, offset + pos, piece)
            with self._lock:
                self._pending.append((fut, len(piece), offset + pos, piece))
                self._unacked += len(piece)
            fut.add_done_callback(self._write_done)
        return len(data)

    def _write_done(self, fut: Future) -> None:
        with self._lock:
            self._retire_done()
            self._acked_cond.notify_all()

    def _retire_done(self) -> None:
        """Settle completed writes from the front, in order (lock held).

        Each write's outcome is judged exactly once, here: an error is kept for the
        next call on the handle; a write lost with the connection is queued to be sent
        again once the session is back.
        """
        while self._pending and self._pending[0][0].done():
            fut, n, offset, data = self._pending.popleft()
            self._unacked -= n
            exc = fut.exception()
            if exc is None:
                continue
            if isinstance(exc, OSError) and exc.errno in LOST:
                self._replay.append((offset, data))
            elif self._error is None:
                self._error = exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc))
                log.warning("write to %s failed: %s", self.path, self._error)

    def _wait_for_room(self, nbytes: int) -> None:
        with self._lock:
            while self._unacked + nbytes > self.max_unacked and self._pending:
                if self._error is not None:
                    break
                self._acked_cond.wait(timeout=1.0)
                self._retire_done()
        self._raise_error()

    def _send_replay(self) -> None:
        """Send again, in their original order, the writes a dropped connection lost."""
        with self._lock:
            replay, self._replay = self._replay, []
        if replay:
            log.info("%s: sending %d write(s) again after reconnect", self.path, len(replay))
        for offset, data in replay:
            self.remote.write(self.handle, offset, data)

    def drain(self) -> None:
        """Wait until every write sent through this handle is acknowledged."""
        while True:
            with self._lock:
                self._retire_done()
                waiting = [entry[0] for entry in self._pending]
            if not waiting:
                break
            for fut in waiting:  # replies may come out of order: wait for each
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - judged by _retire_done, raised below
                    pass
        if self._replay:
            self._send_replay()
        self._raise_error()

    def _raise_error(self) -> None:
        with self._lock:
            err = self._error
            self._error = None  # reported once, as a local fs does
        if err is not None:
            code = err.errno or errno.EIO
            if code == errno.EIO:  # the server's bare FAILURE: a full or read-only disk?
                code = self.remote.failure_cause(self.handle) or code
            raise OSError(code, f"earlier write failed: {os.strerror(code)}")

    # --- lifecycle ----------------------------------------------------------------------
    def flush(self) -> None:
        self.drain()

    def fsync(self, use_extension: bool) -> None:
        self.drain()
        if use_extension:
            self.remote.fsync(self.handle)

    def release(self) -> None:
        """Wait for writes, close the remote handle (unwaited: see Session.close_handle);
        raise the first error seen."""
        error: OSError | None = None
        try:
            self.drain()
        except OSError as exc:
            error = exc
        with self._lock:
            self._drop_chunks()
        try:
            self.remote.close_handle(self.handle)
        except OSError as exc:
            error = error or exc
        if error is not None:
            raise error
