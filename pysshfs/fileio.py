"""Per-open-file I/O: readahead for sequential reads, pipelined write-behind.

A round trip per request caps throughput at a few MB/s, so reads that look sequential are
served from a window of READ requests already in flight, and writes return once their WRITE
request is queued. The first write error the server reports is kept and raised at the next
write, flush, fsync or release of the handle: never dropped.

THREADS. An `OpenFile` is used from:
  * libfuse worker threads (through `SSHFS.read/write/flush/fsync/release`): several at
    once on one handle (a reader and a writer sharing a descriptor, kernel readahead);
  * the thread that resolves SFTP futures and so runs their callbacks (`_observe`,
    `_write_done`, the session's `acknowledged`): paramiko's transport thread, which
    through `ssh.pushchannel.PushStream` also cuts the replies out of the channel and reads
    the server's WINDOW_ADJUST messages; or, when a connection ends, the thread that
    fails every pending request (`sftp-stream-end`, the request watchdog, a sender that saw
    the stream break);
  * `_REFILL` ("readahead_0"): one thread for all files that sends more readahead as
    replies free room under the link's cap (callbacks must not send, see below);
  * openahead (from FUSE threads) only sends a first READ whose future
    `adopt_first_chunk` takes.

LOCKS.
  * `OpenFile._lock` guards every mutable field of the handle: the readahead state
    (`_chunks`, `_next_expected`, `_window`, `_eof_at`, `_ahead`, `_starved`; the
    refill decision in `_observe` looks at `_ahead`/`_window`/`_starved` unlocked: a
    stale look costs one refill too many or too few, and the kernel's next read tops
    the readahead up anyway) and the write-behind state (`_pending`, `_replay`,
    `_unacked`, `_error`, `high_water`, `wrote`). Its
    conditions: `_acked_cond` (writes retired: room under `max_unacked`) and
    `_claims_done` (a chunk claimed by a sender got its future).
  * `LinkEstimate._lock` (two per daemon: LINK for reads, UPLINK for writes) guards the
    bytes in flight and the estimate;
    a leaf: it is taken under `OpenFile._lock` (`admit(wait=False)`), never the reverse,
    and nothing blocks while holding it but `admit(wait=True)`'s condition wait, which
    releases it.

THE RULE: `OpenFile._lock` is never held across a send, nor across a wait for a reply.
The transport thread takes it (`_write_done`), and that thread is the only one that
reads the server's window adjustments. A send blocks while the server's window is full
(`paramiko.Channel.sendall`), or while another thread's send does so (the SFTP client's
send lock): a thread blocked in a send while holding `_lock` would make the transport
thread wait at `_write_done`, no window adjustment would be read again, and both would
wait for ever (a reader and a writer on one handle were enough). So a READ is first
*claimed* under the lock (a `_Claim` stands in `_chunks`; the link admits its bytes),
sent with the lock released, and its future recorded under the lock again; another
thread that wants the same chunk waits on `_claims_done` for it (the sender never waits
for anything but the send itself). Writes were already sent outside the lock.

TWO CHANNELS (or more). A file written past BULK_AFTER bytes gets a handle on each of the
session's bulk channels (Session.open_bulk: each has its own 2 MiB window at the server,
which is what bounds one channel's upload to 2 MiB per round trip), and its big writes
go out over them and the main one (the lanes: 0 the main channel, 1..N the bulk ones),
the lane with fewer bytes unacknowledged first, unless only another's window takes the
write now. The channels are sftp-server processes that do not wait for each other, so
order is kept here: a write overlapping one not yet settled (retired from `_pending`)
waits for it and everything sent before it when either of the two may be on a bulk lane
(`_order_before`), and one that came back lost is sent again (`_send_replay`) before the
new one goes out. Other handles on the same path see this file's bulk writes before they
read or write (`_BULK_FILES`, `settle_bulk`), as they did when everything went in order
on one channel; the drain before flush, fsync, truncate, copy and close waits for every
lane, and FSYNC through the main handle syncs the file whichever handle wrote it.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from pysshfs.sftp.errors import LOST

log = logging.getLogger(__name__)

# Sends readahead as replies arrive (one thread for all files: sends rarely block long).
_REFILL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readahead")


class Remote(Protocol):
    """The part of the session an open file needs."""

    def read_async(self, handle: Any, offset: int, length: int) -> Future: ...
    def read(self, handle: Any, offset: int, length: int) -> bytes: ...
    def write_async(self, handle: Any, offset: int, data: Any) -> Future: ...
    def write(self, handle: Any, offset: int, data: Any) -> None: ...
    def close_handle(self, handle: Any) -> None: ...
    def fsync(self, handle: Any) -> None: ...
    # optional: FSYNCs sent behind the writes, not waited for (see OpenFile.fsync)
    def fsync_lanes_async(self, handle: Any, lanes: Sequence[int]) -> list[Future]: ...
    def failure_cause(self, handle: Any) -> int | None: ...
    # TWO CHANNELS (optional: a remote without them writes over one channel; its
    # `bulk_channels`, the number it opens, and `round_trip_min()`, its link's quickest
    # reply to a small request in seconds or None, are looked up with getattr)
    def open_bulk(self, handle: Any) -> tuple[int, ...] | None: ...
    def write_lane_async(self, handle: Any, offset: int, data: Any, lanes: Sequence[int],
                         either: bool = True) -> tuple[Future, int]: ...


class LinkEstimate:
    """What the link to the server carries in one direction (one per direction and
    daemon: one mount, one connection; READs in LINK, WRITEs in UPLINK), to size the bytes
    in flight like BBR does: the delivery rate (recent maximum) times `gain` round trips
    without queueing, plus 5 ms and a chunk (or piece) of slack (the chunk alone is 13 %
    more than a 100 MB/s, 20 ms link holds: room for the rate to be found higher). More
    would only wait in a queue on the way, and a stat() sent meanwhile would wait behind
    it (head-of-line blocking on the one connection). Measured at RTT 20 ms on the bench's
    proxy, where a 64 MiB read reaches 130 MB/s: p95 of such a stat 36 ms with this cap,
    52 ms with the one before (half again the round trip and 10 ms), the read as fast.

    The round trip is the connection's quickest recent reply to a small request sent with
    nothing bulk in flight (stats.Traffic.replied: it follows a route that changes), when
    the caller knows it (else the fastest recent reply less its own transfer time): a big
    reply's latency holds its transfer, and the rate replies come at is often the
    program's (small files: git status, tar x), not the link's, so that latency less its
    bytes over that rate is no round trip at all. For the same reason the cap only comes
    down while it held requests back, or on a reply that waited in a queue our bytes in
    flight can have made (more than the new cap of them; a server slow with its disk
    is not that): a program's small reads or writes say how fast it goes, not what the link
    carries, and a big copy that follows them must not start from there (measured at
    RTT 20 ms: 64 MiB read after the 300 small files took 2.0 s, 0.5 s without them; an
    upload form that lowered on anything took 11.3 s after tar x, 0.46 s before).
    Held back by the cap, the bytes in flight grow by about `gain` each round trip; in
    startup (a new mount or connection, see __init__) they double."""

    def __init__(self, max_cap: int, gain: float = 1.0, start: int | None = None) -> None:
        self.cap = start or max_cap  # bytes in flight, all files together
        self.max_cap = max_cap
        self.gain = gain
        # Startup (`start` given): nothing is known of the link's rate, so begin low and
        # grow by STARTUP_GAIN a round trip while held back, until three round trips
        # in a row add less than a quarter to the rate (BBR's startup): the link is full.
        self.startup = start is not None
        self._start = start
        self._round_at = 0.0  # when the startup's current round trip began
        self._round_rate = 0.0  # the rate then
        self._flat_rounds = 0
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=64)  # the last replies' round trips
        self._delivered: deque[tuple[float, int]] = deque(maxlen=16)  # (when, bytes)
        self._rate = 0.0  # bytes/s, recent maximum
        self.in_flight = 0  # bytes sent and not answered, all files together
        self._room = threading.Condition(self._lock)
        self._waiting = 0  # threads in admit() waiting for room: only then notify
        self._full_at = -1.0  # when a request last found no room under the cap

    def restart(self) -> None:
        """A new connection (a reconnect): its route, and what it carries, are unknown
        again; start again as a new mount does (bytes in flight still count)."""
        with self._lock:
            if self._start is None:
                return
            self.cap = self._start
            self.startup = True
            self._rate = 0.0
            self._latencies.clear()
            self._delivered.clear()
            self._flat_rounds = 0
            self._round_at = self._round_rate = 0.0
            if self._waiting:
                self._room.notify_all()

    def admit(self, nbytes: int, wait: bool) -> bool:
        """Count `nbytes` more in flight if under the cap (always when nothing is); with
        `wait`, wait for room (bounded: a lost count must not stall reads for ever)."""
        with self._lock:  # the common case: room at once (no clock, no Condition)
            if not self.in_flight or self.in_flight + nbytes <= self.cap:
                self.in_flight += nbytes
                return True
            self._full_at = time.monotonic()
            if not wait:
                return False
        with self._room:
            deadline = time.monotonic() + ADMIT_WAIT
            while self.in_flight and self.in_flight + nbytes > self.cap:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._waiting += 1
                try:
                    self._room.wait(left)
                finally:
                    self._waiting -= 1
            self.in_flight += nbytes
            return True

    def settled(self, nbytes: int) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - nbytes)
            if self._waiting:  # (a Condition's notify_all costs even with no waiter)
                self._room.notify_all()

    def observe(self, latency: float, nbytes: int, slack: int,
                round_trip: float | None = None) -> None:
        """A reply of `nbytes` came `latency` seconds after its request went out;
        `round_trip`: the connection's quickest reply to a small request, if known."""
        now = time.monotonic()
        with self._lock:
            self._latencies.append(latency)
            self._delivered.append((now, nbytes))
            if len(self._delivered) < 4:
                return
            span = now - self._delivered[0][0]
            if span > 0:
                rate = sum(n for _, n in itertools.islice(self._delivered, 1, None)) / span
                self._rate = max(rate, self._rate * 0.99)
            rate = self._rate
            if rate <= 0:
                return
            if round_trip is None:
                round_trip = min(self._latencies) - slack / rate
            rtt = max(round_trip, 0.0005)
            # the cap held requests back lately, or since the reply before this one (on
            # a slow link, a chunk's replies come further apart than FULL_LATELY)
            held = now - self._full_at < max(FULL_LATELY, 4 * rtt) \
                or self._full_at >= self._delivered[-2][0]
            gain = self.gain
            if self.startup:
                gain = max(gain, STARTUP_GAIN)
                self._startup_round(now, rate, rtt, held)
            cap = int(min(self.max_cap,
                          max(2 * slack, rate * (rtt * gain + 0.005) + slack)))
            if self.startup and held:  # each byte delivered lets one more go (the rate
                cap = min(self.max_cap, max(cap, self.cap + nbytes))  # lags a round trip)
            if cap >= self.cap or held \
                    or (self.in_flight > cap and latency - nbytes / rate > 2 * rtt + 0.005):
                self.cap = cap

    def _startup_round(self, now: float, rate: float, rtt: float, held: bool) -> None:
        """Startup, once a round trip (lock held): while the cap held requests back, did
        the rate grow by a quarter since the last round trip? Three times in a row not:
        the link is full, and the cap keeps `gain` from now on. A program's own pace
        (replies while nothing was held back) neither ends startup nor counts."""
        if now - self._round_at < rtt:
            return
        if not held:
            self._flat_rounds = 0
        elif rate < self._round_rate * 1.25:
            self._flat_rounds += 1
            if self._flat_rounds >= 3:
                self.startup = False
        else:
            self._flat_rounds = 0
        self._round_at = now
        self._round_rate = rate

    @property
    def rate(self) -> float:
        """The delivery rate, bytes/s (recent maximum; 0 before enough replies)."""
        return self._rate

    def piece(self, largest: int) -> int:
        """How big the pieces of a write (or the chunks of a big file's reads, see
        stream_chunk) should be: a sixth of the cap, so that where the link holds the
        cap low, bytes are admitted finely (a whole chunk of slack there is a queue of
        tens of milliseconds in front of the next request); at least MIN_PIECE and at
        most `largest`."""
        return max(min(MIN_PIECE, largest), min(largest, (self.cap // 6) & ~4095))


# Writes: 1.5 round trips (reads keep 1: their 5 ms of margin sufficed, measured), so
# that a copy held back by the cap grows by half again each round trip (by a twentieth
# at 100 ms with the 5 ms alone), and at a slow link's full rate half a round trip
# queues ahead of a stat().
UPLINK_GAIN = 1.5
# Startup: the caps begin at two chunks (not at their maximum, 8 MiB: on a 10 Mbit/s
# link at RTT 20 ms the first stat() behind that waited 3.6 s during a read, 5.9 s
# during a write) and double each round trip while held back, until the rate stops
# growing.
STARTUP_GAIN = 2.0
STARTUP_CAP = 512 * 1024
FULL_LATELY = 0.1  # seconds (or 4 round trips) since the cap held a request back
MIN_PIECE = 64 * 1024  # (heldwrites.HOLD_BYTES: what tar's small files hold stays one WRITE)


ADMIT_WAIT = 2.0  # seconds a READ or WRITE waits for room under the cap at most

# A file written through one handle past this many bytes also writes over the bulk
# channels (TWO CHANNELS): one channel's window (2 MiB) is where a second one starts to
# pay; a smaller file would only pay the second OPEN's round trip.
BULK_AFTER = 2 * 1024 * 1024
BULK_MIN_PIECE = 64 * 1024  # smaller writes stay on the main channel
# ... and only when the file's first write waited this long for its reply (a round trip,
# nothing queued ahead of it yet; later ones also wait behind the queue, which a busy
# server builds on loopback too): at a round trip of 5 ms one window already carries
# 400 MB/s, more than a connection moves here (on loopback a second channel only costs
# CPU: 256 MiB, +0.1 s of the daemon's).
BULK_MIN_WAIT = 0.005
# Files with handles on the bulk channels; read and written unlocked where it is only
# tested for being empty (a stale look: see OpenFile.settle_bulk's callers).
_BULK_FILES: set[OpenFile] = set()
_BULK_LOCK = threading.Lock()
LINK = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)  # the link, shared by every file
# The other direction: WRITE bytes in flight, learnt from write replies. Uploads queue
# in front of every request sent after them (a stat() behind megabytes of a copy onto
# the mount, measured at 100 Mbit/s: p95 0.9 s with only the channels' windows to bound
# them), so they too are held to what the link carries.
UPLINK = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN, start=STARTUP_CAP)


def new_connection() -> None:
    """After a reconnect (Session.on_reconnect): both directions start afresh."""
    LINK.restart()
    UPLINK.restart()


# A file opened for reading is read in smaller chunks on a slow link (stream_chunk) only
# past this many of the usual ones: a small file's first READ asks for all of it, and
# open-ahead's READs are of the usual size.
STREAM_AFTER_CHUNKS = 4
# ... and never below this much of the link's rate: one chunk is the readahead cap's
# margin over what the link holds. Measured at 100 Mbit/s and RTT 20 ms, chunks of
# 92 KiB (7 ms of the link) left a 64 MiB read at 75 % of the link in two runs of three;
# 256 KiB ones (20 ms) at 96-98 %.
STREAM_MARGIN = 0.02


def stream_chunk(largest: int, size: int | None) -> int:
    """The READ size for a file of `size` bytes opened now: on a link known to be slow
    (startup over, the cap at its floor of two chunks: the link holds less than one) a
    big file's chunks are a sixth of the cap, at least 64 KiB and 20 ms of the link, as
    writes' pieces are: two of the usual 256 KiB, that floor, are 0.4 s of queue in
    front of every stat() at 10 Mbit/s. `largest` for a small file, on a faster link,
    and while the link is still unknown."""
    if size is None or size <= STREAM_AFTER_CHUNKS * largest or LINK.startup \
            or LINK.cap > 2 * largest:  # not at its floor: the link holds more than a chunk
        return largest
    # a chunk is also the cap's margin over the bandwidth-delay product (see observe)
    margin = min(largest, int(LINK.rate * STREAM_MARGIN) & ~4095)
    return max(LINK.piece(largest), margin)


def bulk_in_flight() -> bool:
    """READ or WRITE bytes of any file in flight now (Traffic.busy: a small request sent
    now would wait behind them, and its reply would not time the link alone)."""
    return LINK.in_flight > 0 or UPLINK.in_flight > 0


# Reads this many of their own size off the stream's end still count as sequential, and
# readahead chunks are kept that far behind it (kernel readahead reordered, see read()).
REORDER_READS = 4


def settle_bulk_writes(path: str, but: OpenFile | None = None) -> None:
    """Wait for the writes sent on bulk channels by the open files of `path` (but one):
    before a request on the main channel that must come after them, as it did when both
    went in order on one channel (a read, an open, a utime or chmod: TWO CHANNELS)."""
    if not _BULK_FILES:
        return
    with _BULK_LOCK:
        files = [f for f in _BULK_FILES if f is not but and f.path == path]
    for f in files:
        f.settle_bulk()


class _Claim:
    """Stands in `OpenFile._chunks` for a READ being sent by one thread, without the lock
    held: the others wait for its future (or send it themselves if the claim goes)."""

    __slots__ = ()


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
        # chunk start offset -> Future[bytes], or the _Claim of a thread sending its READ
        self._chunks: dict[int, Future | _Claim] = {}
        self._claims_done = threading.Condition(self._lock)  # a claim became a Future
        self._next_expected = 0
        self._window = self.min_window
        self._eof_at: int | None = None
        # What the link carries: readahead beyond it only queues, and a stat() sent
        # meanwhile waits behind that queue (head-of-line blocking on the one channel).
        self.link = LINK
        self.uplink = UPLINK
        self._ahead = (0, 0)  # readahead span beyond the kernel's last request: [lo, hi)
        self._starved = False  # readahead stopped short of _ahead for the link's cap
        # write-behind state
        # (fut, n, offset, data, lane it was sent on (0: main), when sent)
        self._pending: deque[tuple[Future, int, int, Any, int, float]] = deque()
        self._lanes: tuple[int, ...] = ()  # bulk lanes it has a handle on (TWO CHANNELS)
        self._bulk_at = BULK_AFTER  # written this far, ask for bulk handles (-1: never)
        self._lane_unacked = [0]  # bytes unacknowledged per lane (main, bulk 1, ...)
        self._lane_sent = [0]  # bytes sent on each, for the log
        self._first_sent = 0.0  # when the first write went out (monotonic)
        self._first_reply = -1.0  # seconds it waited for its reply (-1: not yet)
        self._replay: list[tuple[int, Any]] = []  # writes the dropped connection swallowed
        self._replays = 0  # times writes were sent again (_send_replay)
        self._unacked = 0
        self._piece = self.chunk_write  # what writes are cut into now (UPLINK.piece)
        self._error: OSError | None = None
        self._acked_cond = threading.Condition(self._lock)
        self.high_water = 0  # end of the furthest write through this handle
        self.wrote = False

    @property
    def unacknowledged(self) -> int:
        """Bytes written through this handle the server has not confirmed yet (status)."""
        return self._unacked

    # --- reads --------------------------------------------------------------------------
    def read_first_chunk(self) -> None:
        """Ask for the file's first chunk now, as the handle arrives: most files opened
        for reading are read from the start (cat, cp, git), and the reply then races the
        kernel's first READ instead of following it."""
        claim = _Claim()
        with self._lock:
            if 0 in self._chunks or self._pending \
                    or not self.link.admit(self.chunk_read, wait=False):
                return
            self._chunks[0] = claim
        self._send_claimed([0], claim)

    def expect_size(self, size: int) -> None:
        """The file's size when it was opened (read-only): readahead asks for nothing past
        it, so a small file costs one READ, not a second one that can only answer EOF.
        Only speculation is trimmed: a file grown since is still read to its end, since the
        kernel's own reads ask for the chunks they need."""
        with self._lock:
            if self._eof_at is None and not self._chunks:
                self._eof_at = size

    def adopt_first_chunk(self, fut: Future) -> None:
        """The READ of the first chunk was sent already (the file was opened ahead)."""
        with self._lock:
            self._chunks.setdefault(0, fut)

    def read(self, size: int, offset: int) -> bytes:
        if self._pending:
            self.drain()  # a read must see this handle's own writes
        if _BULK_FILES:
            self._settle_others()  # ... and those of others, as on one channel
        with self._lock:
            expected = self._next_expected
            # The kernel's readahead has several READs in flight and libfuse's threads
            # may hand them over out of order: a read a few sizes off the stream's end,
            # while its readahead is held, still belongs to the stream. Taken for random
            # access it would drop the readahead and ask for it again (the sequential
            # read regression of issue 10: 28% more READs on loopback).
            sequential = offset == expected or (
                expected > 0 and bool(self._chunks)
                and abs(offset - expected) <= REORDER_READS * size)
            self._next_expected = max(expected, offset + size) if sequential \
                else offset + size
            if not sequential:
                self._drop_chunks()
                self._window = self.min_window
                self._eof_at = None
        if not sequential and offset != 0:
            return self._read_direct(size, offset)
        return self._read_ahead(size, offset)

    def _read_direct(self, size: int, offset: int) -> bytes:
        """Random access: ask for exactly what was asked, in parallel pieces if large."""
        if size <= self.chunk_read:
            return self._read_one(size, offset)
        spans = [(off, min(self.chunk_read, offset + size - off))
                 for off in range(offset, offset + size, self.chunk_read)]
        futures = []
        for off, n in spans:
            self.link.admit(n, wait=True)
            futures.append(self._timed_read(off, n))
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

    def _read_one(self, size: int, offset: int) -> bytes:
        """A random read of at most one chunk (fio, databases, page faults): one READ,
        waited for here. Its bytes count as in flight like any READ's, but they are given
        back by this thread after the reply, not by a callback in the transport thread:
        every reply is on the critical path of the next request, and at iodepth 1 the
        callback's work was a tenth of the round trip. Nor does the reply feed the link's
        estimate: a lone small read measures the round trip, not the delivery rate, and
        its few bytes would only pull the rate (and with it the readahead cap) down."""
        link = self.link
        link.admit(size, wait=True)
        try:
            fut = self.remote.read_async(self.handle, offset, size)
        except BaseException:
            link.settled(size)
            raise
        try:
            return fut.result()
        except OSError as exc:
            if exc.errno not in LOST:
                raise
        finally:
            link.settled(size)
        return self.remote.read(self.handle, offset, size)

    def _read_ahead(self, size: int, offset: int) -> bytes:
        chunk = self.chunk_read
        first = offset - offset % chunk
        end = offset + size
        with self._lock:
            behind = min(offset, self._next_expected - REORDER_READS * size)
            for start in [s for s in self._chunks if s + chunk <= behind]:
                del self._chunks[start]  # behind the reader: no longer needed
            here = self._chunks.get(first)
            if isinstance(here, Future) and here.done() and here.exception() is None \
                    and len(here.result()) < chunk:
                self._eof_at = first + len(here.result())  # known: ask nothing past it
            if self._eof_at is not None and offset >= self._eof_at:
                self._eof_at = None  # asked from past the end we knew: the file grew
            limit = end + self._window
            if self._eof_at is not None:
                limit = min(limit, self._eof_at + 1)
            self._window = min(self.max_window, self._window * 2)
            if end >= self._ahead[0]:  # (not for a read that came out of order)
                self._ahead = (end, max(end, limit))
        parts: list[bytes | memoryview] = []  # joined once: one copy of the answer
        for start in range(first, end, chunk):
            fut = self._chunk(start)
            self._send_ahead(start + chunk, max(end, limit))
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
                    self._ahead = (0, 0)
                    # forget chunks at and after EOF: the file may grow (tail -f)
                    for later in [s for s in self._chunks if s >= start]:
                        del self._chunks[later]
                break
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    def _chunk(self, start: int) -> Future:
        """The READ of the chunk at `start`: the one in flight, or one sent now (paced by
        the link's cap; waits for room without holding our lock)."""
        with self._lock:
            fut = self._sent(start)
        if fut is not None:
            return fut
        self.link.admit(self.chunk_read, wait=True)
        claim = _Claim()
        with self._lock:
            fut = self._sent(start)
            if fut is None:
                self._chunks[start] = claim
        if fut is not None:
            self.link.settled(self.chunk_read)
            return fut
        sent = self._send_claimed([start], claim, needed=True)
        assert sent is not None  # (needed: sent, or an exception)
        return sent

    def _sent(self, start: int) -> Future | None:
        """The chunk at `start` once its READ is out (lock held; waits while another
        thread is sending it)."""
        fut = self._chunks.get(start)
        while isinstance(fut, _Claim):
            self._claims_done.wait()
            fut = self._chunks.get(start)
        return fut

    def _send_ahead(self, pos: int | None = None, upto: int = 0) -> None:
        """Readahead: the chunks from `pos` to `upto` not asked for yet (None: the span
        `_ahead` holds now), as long as the link's cap has room (never waits for room)."""
        chunk = self.chunk_read
        claim = _Claim()
        starts: list[int] = []
        with self._lock:
            if pos is None:  # read under the lock: a stale span would ask again for
                lo, upto = self._ahead  # chunks already dropped behind the reader
                pos = lo - lo % chunk
            while pos < upto:
                if pos not in self._chunks:
                    if not self.link.admit(chunk, wait=False):
                        self._starved = True  # the cap cut it short: refill on replies
                        break
                    self._chunks[pos] = claim
                    starts.append(pos)
                pos += chunk
        if starts:
            self._send_claimed(starts, claim)

    def _send_claimed(self, starts: list[int], claim: _Claim,
                      needed: bool = False) -> Future | None:
        """Send the READs of the chunks at `starts`, claimed for us under the lock and
        admitted by the link; the lock is not held while sending (THE RULE above), and
        each future replaces its claim unless the chunks were dropped meanwhile. Unless
        `needed` (a reader waits for it), a chunk dropped before its turn (a write, a
        seek, release) is not sent at all. Returns the last future sent."""
        chunk = self.chunk_read
        fut: Future | None = None
        done = 0  # starts dealt with: sent, or given back
        try:
            for start in starts:
                if not needed:
                    with self._lock:
                        dropped = self._chunks.get(start) is not claim
                    if dropped:
                        done += 1
                        self.link.settled(chunk)
                        continue
                done += 1  # from here on, _timed_read gives the room back if it fails
                fut = self._timed_read(start, chunk)
                with self._lock:
                    if self._chunks.get(start) is claim:
                        self._chunks[start] = fut
                    self._claims_done.notify_all()
        except BaseException:
            for _ in starts[done:]:
                self.link.settled(chunk)
            with self._lock:
                for start in starts[max(done - 1, 0):]:  # the one that failed, and after
                    if self._chunks.get(start) is claim:
                        del self._chunks[start]
                self._claims_done.notify_all()
            raise
        return fut

    def _refill(self) -> None:
        """A reply arrived: send more readahead if the cap now has room (in a helper
        thread: never send from the SFTP reader thread)."""
        self._send_ahead()

    def _timed_read(self, offset: int, length: int) -> Future:
        """Send a READ already admitted by the link (its bytes count as in flight until
        the reply)."""
        sent = time.monotonic()
        try:
            fut = self.remote.read_async(self.handle, offset, length)
        except BaseException:
            self.link.settled(length)
            raise
        fut.add_done_callback(lambda f: self._observe(sent, length, f))
        return fut

    def _observe(self, sent: float, length: int, fut: Future) -> None:
        self.link.settled(length)
        if fut.cancelled() or fut.exception() is not None:
            return
        self.link.observe(time.monotonic() - sent, len(fut.result()), self.chunk_read,
                          self._round_trip())
        if self._starved and self._ahead[1] > self._ahead[0] \
                and self._window > 2 * self.min_window \
                and self.link.cap - self.link.in_flight >= max(self.chunk_read,
                                                               self.link.cap // 4):
            # A stream (the window grew) held back by the link's cap: keep it flowing.
            # Only then (a readahead the cap did not cut is topped up by the kernel's
            # next read), and once a quarter of the cap is free: a thread hop per reply
            # costs a loopback stream 10-15% of its CPU. On a slow link the cap is a few
            # chunks (100 Mbit/s, 20 ms: 3), and every reply that frees one refills.
            self._starved = False
            _REFILL.submit(self._refill)

    def _drop_chunks(self) -> None:
        self._chunks.clear()
        self._ahead = (0, 0)

    # --- writes -------------------------------------------------------------------------
    def write(self, data: bytes, offset: int) -> int:
        self._raise_error()
        if self._replay:
            self._send_replay()  # older bytes first, or they would overwrite newer ones
        if _BULK_FILES:
            self._settle_others()
        view = memoryview(data)
        with self._lock:
            self._drop_chunks()
            self._next_expected = -1
            self.wrote = True
            self.high_water = max(self.high_water, offset + len(data))
            start_bulk = 0 <= self._bulk_at <= self.high_water \
                and len(data) >= BULK_MIN_PIECE
            if start_bulk and not self._lanes and self._first_reply_in() < BULK_MIN_WAIT:
                # Replies come quicker than a round trip that matters (loopback, a LAN):
                # one channel's window is not what bounds this file; look again later.
                self._bulk_at = self.high_water + BULK_AFTER
                start_bulk = False
            if start_bulk:
                self._bulk_at = -1
        if start_bulk:
            self._start_bulk()
        step = self._piece = self.uplink.piece(self.chunk_write)
        for pos in range(0, len(data), step):
            piece = view[pos:pos + step]
            self._wait_for_room(len(piece))
            if not self._lanes:
                fut = self._send_admitted(len(piece), self.remote.write_async, self.handle,
                                          offset + pos, piece)
                lane = 0
            else:
                # any lane (the session takes the first whose window has room), the
                # ones with less unacknowledged first, a bulk one on a tie (the main
                # channel also carries everything else)
                either = len(piece) >= BULK_MIN_PIECE
                self._order_before(offset + pos, len(piece), either)
                unacked = self._lane_unacked  # (a stale look only picks another lane)
                lanes = sorted((*self._lanes, 0), key=unacked.__getitem__) if either \
                    else (0,)
                fut, lane = self._send_admitted(len(piece), self.remote.write_lane_async,
                                                self.handle, offset + pos, piece, lanes, either)
            with self._lock:
                sent = time.monotonic()
                if not self._first_sent:
                    self._first_sent = sent
                self._pending.append((fut, len(piece), offset + pos, piece, lane, sent))
                self._unacked += len(piece)
                self._lane_unacked[lane] += len(piece)
                self._lane_sent[lane] += len(piece)
            fut.add_done_callback(self._write_done)
        return len(data)

    def _send_admitted(self, nbytes: int, send: Callable[..., Any], *args: Any) -> Any:
        """`send(*args)`, a WRITE of `nbytes`, once the uplink has room for them (no lock
        held: the wait is for replies); their room back if it could not go out."""
        self.uplink.admit(nbytes, wait=True)
        try:
            return send(*args)
        except BaseException:
            self.uplink.settled(nbytes)
            raise

    def _round_trip(self) -> float | None:
        """The link's quickest reply to a small request, if the session knows it."""
        round_trip = getattr(self.remote, "round_trip_min", None)
        return round_trip() if round_trip is not None else None

    def _first_reply_in(self) -> float:
        """How long the file's first write waited for its reply (so far, if it still
        waits): about a round trip (lock held); or the link's quickest reply to a
        small request, if the session knows it and it is longer (the file's first write
        may have gone out a moment ago)."""
        if BULK_MIN_WAIT <= 0:  # (tests: always two channels)
            return float("inf")
        if self._first_reply >= 0:
            waited = self._first_reply
        else:
            waited = time.monotonic() - self._first_sent if self._first_sent else 0.0
        quickest = self._round_trip()
        return waited if quickest is None else max(waited, quickest)

    def _start_bulk(self) -> None:
        """Handles on the bulk channels, if the session has them (TWO CHANNELS); asked
        again further on while it has fewer than the session's channels (they open one
        by one in the background after mounting)."""
        open_bulk = getattr(self.remote, "open_bulk", None)
        lanes = open_bulk(self.handle) if open_bulk is not None else ()
        if lanes and len(lanes) > len(self._lanes):  # (): none for this file, for good
            with self._lock:
                grow = max(lanes) + 1 - len(self._lane_unacked)
                self._lane_unacked.extend([0] * grow)
                self._lane_sent.extend([0] * grow)
            with _BULK_LOCK:
                _BULK_FILES.add(self)
            self._lanes = tuple(lanes)
            log.debug("%s: writing over %d channels", self.path, len(lanes) + 1)
        if lanes is None or 0 < len(lanes) < getattr(self.remote, "bulk_channels", 0):
            with self._lock:  # not all open yet: ask again further on (only now: one
                self._bulk_at = self.high_water + BULK_AFTER  # thread asks at a time)

    def _order_before(self, offset: int, n: int, bulk: bool) -> None:
        """Before a write of [offset, offset+n) goes out (on any lane if `bulk`, else on
        the main one): if it overlaps a write not settled yet and either is on a bulk
        lane, wait for that one and all sent before it, and send again first what of
        them was lost (TWO CHANNELS)."""
        with self._lock:
            last = -1
            for i, (_fut, m, off, _data, lane, _sent) in enumerate(self._pending):
                if (bulk or lane) and off < offset + n and offset < off + m:
                    last = i
            if last < 0:
                return
            waiting = [entry[0] for entry in itertools.islice(self._pending, last + 1)]
        for fut in waiting:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - judged by _retire_done
                pass
        with self._lock:
            self._retire_done()
        if self._replay:
            self._send_replay()

    def settle_bulk(self) -> None:
        """Wait until the server has answered every write this handle sent on a bulk
        channel (for another handle of the file; errors stay for this one's owner)."""
        with self._lock:
            waiting = [entry[0] for entry in self._pending if entry[4]]
        for fut in waiting:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - judged by _retire_done, for our owner
                pass

    def _settle_others(self) -> None:
        settle_bulk_writes(self.path, but=self)

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
            fut, n, offset, data, lane, sent = self._pending.popleft()
            now = time.monotonic()
            if self._first_reply < 0 and sent == self._first_sent:
                self._first_reply = now - sent
            self._unacked -= n
            self._lane_unacked[lane] -= n
            self.uplink.settled(n)
            exc = fut.exception()
            if exc is None:
                self.uplink.observe(now - sent, n, self._piece, self._round_trip())
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
            self._replays += bool(replay)
        if replay:
            log.info("%s: sending %d write(s) again that a lost connection or channel "
                     "swallowed", self.path, len(replay))
        for i, (offset, data) in enumerate(replay):
            try:
                self.remote.write(self.handle, offset, data)
            except OSError:
                # still no connection (io_timeout): this call fails, the bytes stay
                # queued for the next write or flush, not dropped
                with self._lock:
                    self._replay[:0] = replay[i:]
                raise

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

    def written_on_server(self, end: int) -> None:
        """The server wrote into this file up to `end` on our behalf (a server-side copy):
        what readahead holds may be old, and the file now counts as written."""
        with self._lock:
            self._drop_chunks()
            self._next_expected = -1
            self.wrote = True
            self.high_water = max(self.high_water, end)

    # --- lifecycle ----------------------------------------------------------------------
    def flush(self) -> None:
        self.drain()

    def fsync(self, use_extension: bool) -> None:
        """fsync(2): the writes sent before it on disk, whichever descriptor sent them.
        The FSYNCs go out right behind the writes not yet acknowledged, one on each
        channel that has some (and the main one), instead of after their replies: one
        round trip, not two. If a write came back lost (sent again since, on the main
        channel) or an FSYNC did not succeed, one more FSYNC follows the drain, as it
        always did."""
        pipelined = getattr(self.remote, "fsync_lanes_async", None)
        if not use_extension or pipelined is None:
            self.drain()
            if _BULK_FILES:
                self._settle_others()  # fsync(2) syncs what any descriptor wrote before it
            if use_extension:
                self.remote.fsync(self.handle)
            return
        if _BULK_FILES:
            self._settle_others()  # (theirs on the main channel come before our FSYNC)
        if self._replay:
            self._send_replay()
        with self._lock:
            lanes = sorted({0, *(entry[4] for entry in self._pending)})
            replays = self._replays
        try:
            syncs = pipelined(self.handle, lanes)
        except OSError as exc:
            log.debug("%s: FSYNC not sent behind the writes: %s", self.path, exc)
            syncs = []
        self.drain()  # raises what a write got
        synced = bool(syncs) and self._replays == replays
        for fut in syncs:
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - synced again below, which raises
                synced = False
        if not synced:
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
        if self._lanes:
            with _BULK_LOCK:
                _BULK_FILES.discard(self)
            log.debug("%s: bytes written over the main channel, then each bulk one: %s",
                      self.path, ", ".join(map(str, self._lane_sent)))
        try:
            self.remote.close_handle(self.handle)
        except OSError as exc:
            error = error or exc
        if error is not None:
            raise error
