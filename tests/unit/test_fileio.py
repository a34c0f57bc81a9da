"""Readahead and write-behind logic of one open file, against an in-memory remote.

The remote here is a plain bytearray answering with futures from a thread pool; it is a
test double for pure I/O-scheduling logic, not a fake SFTP server (integration tests use
the real sshd).
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from pysshfs.fileio import UPLINK_GAIN, LinkEstimate, OpenFile, _Claim


class MemoryRemote:
    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.pool = ThreadPoolExecutor(4)
        self.lock = threading.Lock()
        self.reads: list[tuple[int, int]] = []
        self.fail_writes_at: int | None = None
        self.closed = False

    def _read(self, offset: int, length: int) -> bytes:
        with self.lock:
            self.reads.append((offset, length))
            return bytes(self.data[offset:offset + length])

    def read(self, handle: bytes, offset: int, length: int) -> bytes:
        return self._read(offset, length)

    def read_async(self, handle: bytes, offset: int, length: int) -> Future:
        return self.pool.submit(self._read, offset, length)

    def _write(self, offset: int, data: bytes) -> None:
        if self.fail_writes_at is not None and offset >= self.fail_writes_at:
            raise OSError(errno.ENOSPC, "no space")
        with self.lock:
            if len(self.data) < offset:
                self.data.extend(b"\0" * (offset - len(self.data)))
            self.data[offset:offset + len(data)] = data

    def write_async(self, handle: bytes, offset: int, data: object) -> Future:
        return self.pool.submit(self._write, offset, bytes(data))  # type: ignore[arg-type]

    def close_handle(self, handle: bytes) -> None:
        self.closed = True

    def fsync(self, handle: bytes) -> None:
        pass

    def failure_cause(self, handle: bytes) -> int | None:
        return None


def open_file(remote: MemoryRemote, chunk: int = 4096) -> OpenFile:
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, chunk, chunk)
    # not the daemon's UPLINK, which every test would share
    f.uplink = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN)
    return f


def test_sequential_read_returns_exact_bytes_and_prefetches() -> None:
    payload = os.urandom(1_000_003)
    remote = MemoryRemote(payload)
    f = open_file(remote)
    out = bytearray()
    offset = 0
    while True:
        piece = f.read(65536, offset)
        if not piece:
            break
        out += piece
        offset += len(piece)
    assert bytes(out) == payload
    # readahead asked ahead of the reader, in chunk-sized requests
    assert max(n for _, n in remote.reads) == 4096
    f.release()
    assert remote.closed


def test_random_read_does_not_prefetch() -> None:
    remote = MemoryRemote(os.urandom(1 << 20))
    f = open_file(remote)
    assert f.read(100, 500_000) == bytes(remote.data[500_000:500_100])
    assert f.read(10, 10_000) == bytes(remote.data[10_000:10_010])
    assert sum(n for _, n in remote.reads) == 110


def test_a_small_random_read_gives_its_room_back_and_leaves_the_estimate_alone() -> None:
    """A random read of at most one chunk waits for its own READ: its bytes are out of
    the link's count when it returns (not whenever a callback runs), and a lone small
    read says nothing about the link's rate."""
    remote = MemoryRemote(os.urandom(1 << 20))
    f = open_file(remote)
    f.link = LinkEstimate(1 << 20)
    observed: list[object] = []
    f.link.observe = lambda *a: observed.append(a)  # type: ignore[method-assign]
    for offset in (700_000, 12_288, 300_001):
        assert f.read(4096, offset) == bytes(remote.data[offset:offset + 4096])
        assert f.link.in_flight == 0
    assert remote.reads == [(700_000, 4096), (12_288, 4096), (300_001, 4096)]
    assert observed == []


def test_a_small_random_read_lost_with_the_connection_is_read_again() -> None:
    remote = MemoryRemote(os.urandom(1 << 16))
    f = open_file(remote)
    f.link = LinkEstimate(1 << 20)
    lost: Future = Future()
    lost.set_exception(OSError(errno.ECONNABORTED, "SFTP connection lost"))
    remote.read_async = lambda *a: lost  # type: ignore[method-assign]
    assert f.read(100, 5000) == bytes(remote.data[5000:5100])
    assert remote.reads == [(5000, 100)] and f.link.in_flight == 0


def test_read_past_eof_is_empty_and_file_growth_is_seen() -> None:
    remote = MemoryRemote(b"abc")
    f = open_file(remote)
    assert f.read(4096, 0) == b"abc"
    assert f.read(4096, 3) == b""
    remote.data += b"def"  # tail -f: the file grew on the server
    assert f.read(4096, 3) == b"def"


def test_writes_land_in_order_and_read_sees_them() -> None:
    remote = MemoryRemote()
    f = open_file(remote)
    payload = os.urandom(300_000)
    for pos in range(0, len(payload), 10_000):
        f.write(payload[pos:pos + 10_000], pos)
    assert f.high_water == len(payload)
    assert f.read(1000, 5000) == payload[5000:6000]  # drains first
    f.flush()
    assert bytes(remote.data) == payload


def test_write_error_reported_at_flush_never_dropped() -> None:
    remote = MemoryRemote()
    remote.fail_writes_at = 8192
    f = open_file(remote)
    f.write(b"x" * 4096, 0)
    f.write(b"y" * 4096, 8192)  # accepted now, fails on the server
    with pytest.raises(OSError) as info:
        f.flush()
    assert info.value.errno == errno.ENOSPC


def test_write_error_reported_at_release() -> None:
    remote = MemoryRemote()
    remote.fail_writes_at = 0
    f = open_file(remote)
    f.write(b"z" * 100, 0)
    with pytest.raises(OSError) as info:
        f.release()
    assert info.value.errno == errno.ENOSPC
    assert remote.closed  # the handle is closed all the same


def test_unacked_bytes_bounded() -> None:
    remote = MemoryRemote()
    f = open_file(remote)
    f.max_unacked = 64 * 1024
    gate = threading.Event()
    original = remote._write

    def slow_write(offset: int, data: bytes) -> None:
        gate.wait(5)
        original(offset, data)

    remote._write = slow_write  # type: ignore[method-assign]
    done = threading.Event()

    def writer() -> None:
        for i in range(64):
            f.write(b"q" * 4096, i * 4096)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    assert not done.wait(0.3)  # blocked: 64 KiB in flight and no acknowledgement
    assert f._unacked <= 64 * 1024
    gate.set()
    t.join(10)
    f.flush()
    assert bytes(remote.data) == b"q" * (64 * 4096)


class WindowedRemote(MemoryRemote):
    """Sends behave like paramiko's on a full SSH window: a READ sent while the window is
    "closed" blocks until the transport thread has processed what arrived before the
    window adjustment: here, the reply of a WRITE sent earlier. Like paramiko's transport
    thread, `transport` runs future callbacks (the handle's `_write_done`) in order."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.window_closed = False
        self.window_open = threading.Event()
        self.wire: queue.SimpleQueue[Future | None] = queue.SimpleQueue()
        self.stalled = False  # a send waited for a window adjustment that never came
        self.transport = threading.Thread(target=self._transport, daemon=True)
        self.transport.start()

    def _transport(self) -> None:
        while True:
            item = self.wire.get()
            if item is None:  # the window adjustment, behind the replies before it
                self.window_open.set()
                return
            item.set_result(None)  # runs _write_done here, as paramiko's thread does

    def read_async(self, handle: bytes, offset: int, length: int) -> Future:
        if self.window_closed:
            self.wire.put(None)
            if not self.window_open.wait(3):
                self.stalled = True  # the transport thread is stuck: a deadlock
        done: Future = Future()
        done.set_result(self._read(offset, length))
        return done

    def write_async(self, handle: bytes, offset: int, data: object) -> Future:
        self._write(offset, bytes(data))  # type: ignore[arg-type]
        fut: Future = Future()
        self.wire.put(fut)  # its reply comes before the window adjustment
        return fut


def test_send_blocked_on_the_ssh_window_holds_no_lock_the_transport_thread_needs() -> None:
    """Issue 13: a READ sent with the handle's lock held, blocked on a full window, while
    the transport thread delivers a WRITE reply (it takes the same lock) = both wait for
    ever. The reader's READ goes out just after a writer's WRITE, as a reader and a writer
    sharing one descriptor do."""
    payload = os.urandom(64 * 1024)
    remote = WindowedRemote(payload)
    f = open_file(remote)
    written = threading.Event()

    class WriterBetween(type(f.link)):  # type: ignore[misc]
        def admit(self, nbytes: int, wait: bool) -> bool:
            if wait and not written.is_set():
                # the writer's WRITE goes out now, between the reader's check for pending
                # writes and its READ; then the window is full
                t = threading.Thread(target=f.write, args=(b"w" * 4096, 1 << 20))
                t.start()
                t.join(5)
                remote.window_closed = True
                written.set()
            return super().admit(nbytes, wait)

    f.link = WriterBetween(f.link.max_cap)
    assert f.read(4096, 0) == payload[:4096]
    assert written.is_set()
    remote.transport.join(5)
    assert not remote.stalled, "READ sent with the handle's lock held: deadlock"
    f.flush()
    assert bytes(remote.data[1 << 20:]) == b"w" * 4096


def test_kernel_reads_out_of_order_keep_the_readahead() -> None:
    """The kernel keeps two readahead READs in flight and libfuse's threads may hand them
    over swapped: that is still a stream, and each chunk is asked for once (issue 10's
    sequential-read regression: swapped pairs were taken for random access)."""
    size = 16384
    payload = os.urandom(64 * size)
    remote = MemoryRemote(payload)
    f = open_file(remote)
    order = []
    for i in range(0, 64, 4):
        order += [i, i + 2, i + 1, i + 3]  # pairs overtaking each other
    for i in order:
        assert f.read(size, i * size) == payload[i * size:(i + 1) * size]
    offsets = [off for off, _ in remote.reads]
    assert len(offsets) == len(set(offsets)), "readahead dropped and asked for again"
    assert all(n == 4096 for _, n in remote.reads)  # readahead chunks, no direct reads


def test_a_failed_send_gives_back_its_claims_and_room() -> None:
    remote = MemoryRemote(os.urandom(64 * 4096))
    original = remote.read_async

    def refusing(handle: bytes, offset: int, length: int) -> Future:
        if offset >= 2 * 4096:
            raise OSError(errno.EIO, "file was lost while the connection was down")
        return original(handle, offset, length)

    remote.read_async = refusing  # type: ignore[method-assign]
    f = open_file(remote)
    f.link = LinkEstimate(1 << 20)
    with pytest.raises(OSError) as info:
        f.read(4096, 0)  # its readahead fails to go out
    assert info.value.errno == errno.EIO
    assert not any(isinstance(v, _Claim) for v in f._chunks.values())
    remote.pool.shutdown(wait=True)  # the READs that went out are answered
    assert f.link.in_flight == 0


def test_a_chunk_being_sent_by_one_reader_is_waited_for_by_another() -> None:
    """Two kernel reads of one chunk at once: the second waits for the first one's send
    (no lock held across it) and the chunk is asked for once."""
    payload = os.urandom(8 * 4096)
    remote = MemoryRemote(payload)
    in_send = threading.Event()
    go_on = threading.Event()
    original = remote.read_async

    def slow_first_send(handle: bytes, offset: int, length: int) -> Future:
        if offset == 0 and not in_send.is_set():
            in_send.set()
            go_on.wait(5)  # a send blocked on a full window
        return original(handle, offset, length)

    remote.read_async = slow_first_send  # type: ignore[method-assign]
    f = open_file(remote)
    f.max_window = f.min_window = 4096  # no readahead: one chunk per read
    results: list[bytes] = []
    first = threading.Thread(target=lambda: results.append(f.read(4096, 0)))
    first.start()
    assert in_send.wait(5)
    second = threading.Thread(target=lambda: results.append(f._chunk(0).result()))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first one's READ, not sending its own
    go_on.set()
    first.join(5)
    second.join(5)
    assert results == [payload[:4096], payload[:4096]]
    assert [off for off, _ in remote.reads].count(0) == 1


def test_the_size_at_open_stops_readahead_but_not_a_grown_files_reads() -> None:
    """A 100-byte file costs one READ; one grown past its size at open is read to its
    end all the same (only speculation is trimmed)."""
    remote = MemoryRemote(b"s" * 100)
    f = open_file(remote)
    f.expect_size(100)
    assert f.read(4096, 0) == b"s" * 100
    assert remote.reads == [(0, 4096)]

    grown = os.urandom(50_000)
    remote = MemoryRemote(grown)
    f = open_file(remote)
    f.expect_size(100)
    out = bytearray()
    while piece := f.read(8192, len(out)):
        out += piece
    assert bytes(out) == grown


def test_writes_a_reconnect_cannot_resend_yet_stay_queued() -> None:
    """Writes lost with the connection are sent again before the next write or flush;
    when that fails too (no connection within io_timeout), the call fails and the bytes
    stay queued for the next one: they were acknowledged to the writer."""
    remote = MemoryRemote()
    f = open_file(remote)
    lost: Future = Future()
    lost.set_exception(OSError(errno.ECONNABORTED, "SFTP connection lost"))
    real_write_async = remote.write_async
    remote.write_async = lambda *a: lost  # type: ignore[method-assign]
    attempts: list[int] = []

    def down_then_up(handle: bytes, offset: int, data: bytes) -> None:
        attempts.append(offset)
        if len(attempts) == 1:
            raise OSError(errno.EIO, "connection lost during write")
        remote._write(offset, bytes(data))

    remote.write = down_then_up  # type: ignore[attr-defined]
    f.write(b"first", 0)
    with pytest.raises(OSError):
        f.drain()  # the resend fails: this flush reports it
    remote.write_async = real_write_async  # type: ignore[method-assign]
    f.drain()  # sent again now
    f.write(b"second", 5)
    f.drain()
    assert bytes(remote.data) == b"firstsecond" and attempts == [0, 0]


# --- two channels or more (fileio: TWO CHANNELS) -----------------------------------------
class LaneRemote(MemoryRemote):
    """A remote with `bulk` bulk channels whose writes land only when the test releases
    them: the channels of a real session run independently of each other."""

    def __init__(self, data: bytes = b"", bulk: int = 1) -> None:
        super().__init__(data)
        self.bulk = bulk
        self.held: list[tuple[Future, int, bytes, int]] = []  # bulk writes not landed yet
        self.lanes: list[tuple[int, int]] = []  # (offset, lane it was sent on: 0 main)
        self.opened_bulk = 0
        self.main_writes: list[int] = []  # offsets written synchronously (resends)
        self.events: list[str] = []  # resends, FSYNCs sent behind writes, plain fsyncs
        self.syncs: list[tuple[list[int], int]] = []  # (lanes, bulk writes held then)

    @property
    def bulk_channels(self) -> int:
        return self.bulk

    def open_bulk(self, handle: bytes) -> tuple[int, ...]:
        self.opened_bulk += 1
        return tuple(range(1, self.bulk + 1))

    def write_lane_async(self, handle: bytes, offset: int, data: object,
                         lanes: Sequence[int], either: bool = True) -> tuple[Future, int]:
        lane = lanes[0]
        if either:  # a lane whose writes are held has its window taken: the next one
            busy = {held_lane for _, _, _, held_lane in self.held}
            lane = next((x for x in lanes if x not in busy), lane)
        self.lanes.append((offset, lane))
        if not lane:
            return self.write_async(handle, offset, data), 0
        fut: Future = Future()
        self.held.append((fut, offset, bytes(data), lane))  # type: ignore[arg-type]
        return fut, lane

    def write(self, handle: bytes, offset: int, data: object) -> None:
        self.main_writes.append(offset)
        self.events.append(f"write {offset}")
        self._write(offset, bytes(data))  # type: ignore[arg-type]

    def fsync(self, handle: bytes) -> None:
        self.events.append("fsync")

    def fsync_lanes_async(self, handle: bytes, lanes: Sequence[int]) -> list[Future]:
        """Each bulk lane's FSYNC lands with that lane's writes (after them)."""
        self.syncs.append((list(lanes), len(self.held)))
        self.events.append(f"fsync lanes {list(lanes)}")
        futures = []
        for lane in lanes:
            fut: Future = Future()
            if lane:
                self.held.append((fut, -1, b"", lane))
            else:
                fut.set_result(None)
            futures.append(fut)
        return futures

    def land(self, lost: bool = False, lane: int | None = None) -> None:
        """The bulk writes held so far (on `lane`, or all) reach the server (or fail with
        their channel), the later lanes' first: each channel runs on its own."""
        landing = [h for h in self.held if lane is None or h[3] == lane]
        self.held = [h for h in self.held if h not in landing]
        for fut, offset, data, _ in sorted(landing, key=lambda h: -h[3]):
            if lost:
                fut.set_exception(OSError(errno.ECONNRESET, "bulk channel lost"))
            else:
                if offset >= 0:  # (-1: an FSYNC)
                    self._write(offset, data)
                fut.set_result(None)


@pytest.fixture
def bulk_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pysshfs.fileio as fileio

    monkeypatch.setattr(fileio, "BULK_AFTER", 0)
    monkeypatch.setattr(fileio, "BULK_MIN_PIECE", 4096)
    monkeypatch.setattr(fileio, "BULK_MIN_WAIT", 0)  # (replies here take no time)


def _land_later(remote: LaneRemote, lost: bool = False, after: float = 0.2,
                lane: int | None = None) -> None:
    timer = threading.Timer(after, remote.land, kwargs={"lost": lost, "lane": lane})
    timer.daemon = True
    timer.start()


@pytest.mark.parametrize("bulk", [1, 2])
def test_big_writes_go_over_every_channel_and_a_small_file_opens_no_second_handle(
        monkeypatch: pytest.MonkeyPatch, bulk: int) -> None:
    import pysshfs.fileio as fileio

    monkeypatch.setattr(fileio, "BULK_MIN_WAIT", 0)  # (replies here take no time)
    remote = LaneRemote(bulk=bulk)
    small = OpenFile(remote, "/small", b"h", os.O_WRONLY, 65536, 65536)
    small.write(b"s" * 100_000, 0)
    small.release()
    assert remote.opened_bulk == 0 and not any(lane for _, lane in remote.lanes)
    big = OpenFile(remote, "/big", b"h", os.O_WRONLY, 65536, 65536)
    payload = os.urandom(4 * 1024 * 1024)
    for pos in range(0, len(payload), 1 << 20):
        big.write(payload[pos:pos + (1 << 20)], pos)
        remote.land()
    big.release()
    assert remote.opened_bulk == 1
    assert {lane for _, lane in remote.lanes} == set(range(bulk + 1))  # all carried it
    assert bytes(remote.data) == payload


def test_a_bulk_channel_opened_later_is_taken_up_further_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after mounting only some bulk channels may be open: a file written then
    asks again every BULK_AFTER bytes until it has them all, and then no more."""
    import pysshfs.fileio as fileio

    monkeypatch.setattr(fileio, "BULK_AFTER", 1 << 20)
    monkeypatch.setattr(fileio, "BULK_MIN_WAIT", 0)  # (replies here take no time)
    remote = LaneRemote(bulk=2)
    open_now = [1]  # bulk lanes open in the session
    remote.open_bulk = lambda handle: (  # type: ignore[method-assign]
        setattr(remote, "opened_bulk", remote.opened_bulk + 1) or tuple(open_now))
    f = OpenFile(remote, "/big", b"h", os.O_WRONLY, 65536, 65536)
    payload = os.urandom(8 << 20)
    for pos in range(0, len(payload), 1 << 20):
        if pos == 4 << 20:
            open_now.append(2)
        f.write(payload[pos:pos + (1 << 20)], pos)
        remote.land()
    f.release()
    assert bytes(remote.data) == payload
    first_on_2 = min(off for off, lane in remote.lanes if lane == 2)
    assert first_on_2 >= 4 << 20  # once it had opened, and not before
    assert remote.opened_bulk == 5  # 1 to 4 MiB written: one lane; 5 MiB: both; then none


def test_an_overlapping_write_waits_for_the_bulk_write_it_follows(bulk_at_once: None) -> None:
    remote = LaneRemote(b"\0" * 8192)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    f.write(b"A" * 4096, 0)  # the bulk channel (nothing unacknowledged on either yet)
    assert remote.lanes == [(0, 1)]
    _land_later(remote)
    # (sent on the main channel while A holds the bulk one, B would land first)
    f.write(b"B" * 4096, 0)
    assert not remote.held or remote.lanes[-1] == (0, 1)  # sent once A had landed
    remote.land()
    f.flush()
    assert bytes(remote.data[:4096]) == b"B" * 4096


def test_overlapping_writes_on_two_bulk_channels_land_in_order(bulk_at_once: None) -> None:
    """Two bulk channels: a rewrite of bytes still on their way on one bulk channel must
    not go out on the other (which could run first) before they landed."""
    remote = LaneRemote(b"\0" * 16384, bulk=2)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    f.write(b"A" * 4096, 0)  # bulk 1 (ties go to a bulk lane)
    f.write(b"C" * 4096, 8192)  # bulk 2: bulk 1's window is taken
    assert remote.lanes == [(0, 1), (8192, 2)]
    _land_later(remote, lane=1)
    _land_later(remote, lane=2, after=0.3)
    f.write(b"B" * 4096, 0)  # over A: waits for A (lane 1) and for nothing after it
    assert remote.lanes[-1][0] == 0 and all(h[3] != 1 for h in remote.held[:-1])
    remote.land()
    f.flush()
    assert bytes(remote.data[:4096]) == b"B" * 4096
    assert bytes(remote.data[8192:12288]) == b"C" * 4096


def test_a_bulk_write_lost_is_sent_again_before_a_newer_one_over_it(
        bulk_at_once: None) -> None:
    remote = LaneRemote(b"\0" * 8192)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    f.write(b"A" * 4096, 0)
    _land_later(remote, lost=True)
    f.write(b"B" * 4096, 0)
    remote.land()
    f.flush()
    assert remote.main_writes == [0]  # A again, on the main channel, before B went out
    assert bytes(remote.data[:4096]) == b"B" * 4096


def test_one_bulk_channel_dying_loses_none_of_its_writes(bulk_at_once: None) -> None:
    """Of two bulk channels, the one that dies fails its writes as lost: they are sent
    again on the main channel, the other's land; the file is whole."""
    remote = LaneRemote(b"\0" * 16384, bulk=2)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    f.write(b"A" * 4096, 0)
    f.write(b"B" * 4096, 4096)
    f.write(b"C" * 4096, 8192)
    assert sorted({lane for _, lane in remote.lanes}) == [0, 1, 2]
    remote.land(lost=True, lane=2)
    remote.land(lane=1)
    f.flush()
    lost = [off for off, lane in remote.lanes if lane == 2]
    assert remote.main_writes == lost
    assert bytes(remote.data[:12288]) == b"A" * 4096 + b"B" * 4096 + b"C" * 4096


def test_another_handle_reads_what_a_bulk_write_put_there(bulk_at_once: None) -> None:
    remote = LaneRemote(b"\0" * 8192)
    writer = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    reader = OpenFile(remote, "/f", b"h2", os.O_RDONLY, 4096, 4096)
    other = OpenFile(remote, "/g", b"h3", os.O_RDONLY, 4096, 4096)
    writer.write(b"A" * 4096, 0)
    assert remote.held
    assert other.read(4096, 0) == b"\0" * 4096  # another file does not wait
    _land_later(remote)
    assert reader.read(4096, 0) == b"A" * 4096
    writer.release()


@pytest.mark.parametrize("bulk", [1, 2])
def test_fsync_through_another_handle_comes_after_the_bulk_writes(bulk_at_once: None,
                                                                  bulk: int) -> None:
    remote = LaneRemote(b"\0" * 16384, bulk=bulk)
    writer = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    other = OpenFile(remote, "/f", b"h2", os.O_RDONLY, 4096, 4096)
    for i in range(bulk):
        writer.write(b"A" * 4096, 4096 * i)
    assert len(remote.held) == bulk  # one on each bulk channel
    for lane in range(1, bulk + 1):
        _land_later(remote, lane=lane, after=0.1 * lane)
    other.fsync(use_extension=True)
    # its FSYNC (on the main channel) went out once every bulk write had landed
    assert remote.syncs == [([0], 0)] and "fsync" not in remote.events
    writer.release()


def test_fsync_goes_out_behind_the_writes_on_each_channel_that_has_some(
        bulk_at_once: None) -> None:
    """One round trip, not two: the FSYNCs do not wait for the writes' replies; each
    bulk channel's runs after that channel's writes, the main one's after the main
    channel's, and nothing more is sent when all succeed."""
    remote = LaneRemote(b"\0" * 16384, bulk=2)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    for i in range(3):
        f.write(b"ABC"[i:i + 1] * 4096, 4096 * i)
    assert sorted(lane for _, lane in remote.lanes) == [0, 1, 2]
    _land_later(remote)
    f.fsync(use_extension=True)
    assert remote.syncs == [([0, 1, 2], 2)]  # sent with both bulk writes on their way
    assert "fsync" not in remote.events and not remote.held
    assert bytes(remote.data[:12288]) == b"A" * 4096 + b"B" * 4096 + b"C" * 4096
    f.release()


def test_fsync_syncs_again_after_resending_what_a_dying_bulk_channel_lost(
        bulk_at_once: None) -> None:
    remote = LaneRemote(b"\0" * 16384, bulk=2)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    f.write(b"A" * 4096, 0)  # bulk 1
    f.write(b"B" * 4096, 4096)  # bulk 2
    _land_later(remote, lane=1)
    _land_later(remote, lane=2, lost=True, after=0.3)  # B and the FSYNC behind it
    f.fsync(use_extension=True)
    # B again on the main channel, then an FSYNC that comes after it
    assert remote.events == ["fsync lanes [0, 1, 2]", "write 4096", "fsync"]
    assert bytes(remote.data[:8192]) == b"A" * 4096 + b"B" * 4096
    f.release()


def test_fsync_reports_what_a_write_got_though_its_fsync_went_out(
        bulk_at_once: None) -> None:
    remote = LaneRemote(b"\0" * 16384, bulk=1)
    f = OpenFile(remote, "/f", b"h", os.O_RDWR, 4096, 4096)
    remote.fail_writes_at = 0
    f.write(b"x" * 100, 0)  # (small: the main channel) ENOSPC
    with pytest.raises(OSError) as raised:
        f.fsync(use_extension=True)
    assert raised.value.errno == errno.ENOSPC
    f.release()


def test_replies_quicker_than_a_round_trip_that_matters_keep_one_channel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On loopback a second channel only costs CPU: a file whose writes are answered at
    once (the in-memory remote) never asks for one."""
    import pysshfs.fileio as fileio

    monkeypatch.setattr(fileio, "BULK_AFTER", 64 * 1024)
    remote = LaneRemote()
    f = OpenFile(remote, "/big", b"h", os.O_WRONLY, 65536, 65536)
    for pos in range(0, 4 * 1024 * 1024, 1 << 20):
        f.write(b"x" * (1 << 20), pos)
        f.flush()  # answered before the next write: nothing waits a round trip
    f.release()
    assert remote.opened_bulk == 0


def test_a_link_known_to_be_slow_takes_the_bulk_channels_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's quickest small reply (the create's own round trip) tells a slow
    link before the file's first write is answered: the bulk channels are asked for as
    soon as the file passes BULK_AFTER."""
    import pysshfs.fileio as fileio

    monkeypatch.setattr(fileio, "BULK_AFTER", 1 << 20)
    remote = LaneRemote()
    remote.round_trip_min = lambda: 0.02  # type: ignore[attr-defined]
    f = OpenFile(remote, "/big", b"h", os.O_WRONLY, 65536, 65536)
    f.write(b"x" * (1 << 20), 0)  # answered at once here, yet the link is slow
    assert remote.opened_bulk == 1
    remote.land()
    f.release()


def test_writes_in_flight_stay_under_the_uplinks_cap_and_all_come_back() -> None:
    """Each piece of a write is admitted by the uplink before it goes out (bytes beyond
    what the link carries would only queue in front of every later request) and given
    back when its reply is retired, errors included."""
    remote = MemoryRemote()
    f = open_file(remote, chunk=16 * 1024)
    f.uplink = LinkEstimate(64 * 1024, gain=UPLINK_GAIN)
    peak = [0]
    original = remote.write_async

    def watching(handle: bytes, offset: int, data: object) -> Future:
        peak[0] = max(peak[0], f.uplink.in_flight)
        return original(handle, offset, data)

    remote.write_async = watching  # type: ignore[method-assign]
    payload = os.urandom(1024 * 1024 + 100)
    for pos in range(0, len(payload), 200_000):
        f.write(payload[pos:pos + 200_000], pos)
    f.flush()
    assert bytes(remote.data) == payload
    assert 0 < peak[0] <= 64 * 1024
    assert f.uplink.in_flight == 0
    remote.fail_writes_at = 0
    f.write(b"x" * 40_000, 0)
    with pytest.raises(OSError):
        f.flush()
    assert f.uplink.in_flight == 0


def test_a_write_that_cannot_be_sent_gives_its_room_back() -> None:
    remote = MemoryRemote()

    def refusing(handle: bytes, offset: int, data: object) -> Future:
        raise OSError(errno.ENOTCONN, "no connection")

    remote.write_async = refusing  # type: ignore[method-assign]
    f = open_file(remote)
    with pytest.raises(OSError):
        f.write(b"y" * 10_000, 0)
    assert f.uplink.in_flight == 0


def test_writes_are_cut_finer_on_a_slow_link() -> None:
    """Pieces of a sixth of the uplink's cap: where the link holds it low (100 Mbit/s,
    ~0.5 MB) a 256 KiB write goes out in ~80 KiB pieces, so the queue they build in front
    of a stat stays short; while the cap is high, whole chunks; never under 64 KiB
    (what held writes send)."""
    remote = MemoryRemote()
    sizes: list[int] = []
    original = remote.write_async

    def counting(handle: bytes, offset: int, data: object) -> Future:
        sizes.append(len(data))  # type: ignore[arg-type]
        return original(handle, offset, data)

    remote.write_async = counting  # type: ignore[method-assign]
    f = open_file(remote, chunk=256 * 1024)
    f.write(b"w" * (256 * 1024), 0)  # nothing known of the link yet: the cap is high
    f.flush()
    f.uplink.cap = 500_000
    f.write(b"z" * (256 * 1024), 256 * 1024)
    f.flush()
    assert sizes == [256 * 1024, 81920, 81920, 81920, 16384]
    assert bytes(remote.data) == b"w" * (256 * 1024) + b"z" * (256 * 1024)
    f.uplink.cap = 100_000
    assert f.uplink.piece(256 * 1024) == 64 * 1024 and f.uplink.piece(4096) == 4096
