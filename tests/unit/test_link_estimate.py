"""LinkEstimate: READ bytes in flight sized to what the link carries (pure logic)."""

from __future__ import annotations

from unittest import mock

from pysshfs import fileio
from pysshfs.fileio import STARTUP_CAP, UPLINK_GAIN, LinkEstimate, stream_chunk
from pysshfs.openahead import _follows

CHUNK = 256 * 1024


def feed(link: LinkEstimate, rate: float, rtt: float, n: int = 40) -> None:
    """Replies of one chunk each, arriving back to back at `rate` bytes/s, while the cap
    holds reads back (else they would say nothing about the link: see below)."""
    now = 1000.0
    for _ in range(n):
        now += CHUNK / rate
        link._full_at = now
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            link.observe(rtt + CHUNK / rate, CHUNK, CHUNK)


def test_a_slow_link_gets_about_its_bandwidth_delay_product() -> None:
    link = LinkEstimate(8 * 1024 * 1024)
    feed(link, 12.5e6, 0.020)  # 100 Mbit/s, 20 ms
    # 250 KB in the pipe: more than two chunks would only queue
    assert 2 * CHUNK <= link.cap <= 4 * CHUNK


def test_a_fast_link_keeps_a_deep_window() -> None:
    link = LinkEstimate(8 * 1024 * 1024)
    feed(link, 100e6, 0.020)
    assert link.cap >= 100e6 * 0.020 + CHUNK  # the bandwidth-delay product, and a chunk


def test_never_below_two_chunks_nor_above_the_maximum() -> None:
    link = LinkEstimate(4 * 1024 * 1024)
    feed(link, 1e6, 0.0001)
    assert link.cap == 2 * CHUNK
    feed(link, 1e9, 0.5)
    assert link.cap == 4 * 1024 * 1024


PIECE = 64 * 1024


def feed_writes(up: LinkEstimate, rate: float, rtt: float, queue: float, n: int = 40,
                size: int = PIECE) -> None:
    """Write replies of `size` bytes arriving back to back at `rate` bytes/s, each after
    the round trip, its transfer and `queue` seconds of waiting on the way."""
    now = 1000.0
    for _ in range(n):
        now += size / rate
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            up.observe(rtt + size / rate + queue, size, PIECE, rtt)


def test_writes_queueing_on_a_slow_link_bring_the_cap_down_to_what_it_carries() -> None:
    """100 Mbit/s, 20 ms, megabytes queued (what the channels' windows allowed): the cap
    comes down to 1.5 times the bandwidth-delay product, 5 ms and a piece, ~30 ms of
    queue at most in front of a stat instead of half a second."""
    up = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN)
    up.in_flight = 6 * 1024 * 1024  # the queue is ours
    feed_writes(up, 12.5e6, 0.020, queue=0.5)
    assert 12.5e6 * 0.035 <= up.cap <= 12.5e6 * 0.035 + PIECE + 1


def test_a_slow_server_with_little_in_flight_is_no_queue_of_ours() -> None:
    """Replies late by more than a round trip while only a file's few KiB are in flight
    (a server busy with its disk, tar x on loopback): no queue our bytes could have
    made, so the cap stays, and the next big file goes out in whole chunks."""
    up = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN)
    up.in_flight = 30_000
    now = 1000.0
    for _ in range(40):
        now += 0.01
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            up.observe(0.008, 30_000, PIECE, 0.0001)
    assert up.cap == 8 * 1024 * 1024
    assert up.piece(256 * 1024) == 256 * 1024


def test_a_programs_small_writes_do_not_lower_the_cap() -> None:
    """tar x of small files: replies come at the program's pace, none waited in a queue
    and the cap held nothing back; the copy of a big file that follows must not start
    from that pace. Once the cap held writes back, such replies count."""
    up = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN)
    now = 1000.0
    for _ in range(40):  # a file's 20 KB every 44 ms, answered a round trip later
        now += 0.044
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            up.observe(0.021, 20_000, PIECE, 0.020)
    assert up.cap == 8 * 1024 * 1024
    assert up.admit(8 * 1024 * 1024, wait=False)
    assert not up.admit(PIECE, wait=False)  # held back: the pipe is full
    up.settled(8 * 1024 * 1024)
    with mock.patch("pysshfs.fileio.time.monotonic", return_value=up._full_at):
        up.observe(0.021, 20_000, PIECE, 0.020)
    assert up.cap == 2 * PIECE


def test_a_read_that_queued_brings_the_cap_down_and_small_reads_do_not() -> None:
    """git status reads its files' first chunks at its own pace: those replies leave the
    cap where it was (a big read after them starts with full readahead); a reply that
    waited behind a queue brings it down to the link's product."""
    link = LinkEstimate(8 * 1024 * 1024)
    now = 1000.0
    for _ in range(40):  # 4 KiB every 0.7 ms, answered a round trip later
        now += 0.0007
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            link.observe(0.0202, 4096, CHUNK, 0.020)
    assert link.cap == 8 * 1024 * 1024
    link.in_flight = 4 * 1024 * 1024  # readahead: the queue is ours
    for _ in range(40):  # whole chunks at 100 Mbit/s, each 0.3 s behind a queue
        now += CHUNK / 12.5e6
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            link.observe(0.020 + CHUNK / 12.5e6 + 0.3, CHUNK, CHUNK, 0.020)
    assert 12.5e6 * 0.025 <= link.cap <= 12.5e6 * 0.025 + CHUNK + 1


def test_held_back_writes_grow_half_again_and_more_each_round_trip() -> None:
    """Replies at the pace the cap allows (its bytes each round trip, no queue): the
    next cap lets 1.5 times as many through, and 5 ms more."""
    up = LinkEstimate(8 * 1024 * 1024, gain=UPLINK_GAIN)
    up.cap = 10 * PIECE
    up._full_at = 1000.0
    feed_writes(up, 10 * PIECE / 0.020, 0.020, queue=0.0, n=20)
    assert up.cap >= 1.75 * 10 * PIECE


def rounds(link: LinkEstimate, bandwidth: float, rtt: float, count: int,
           held: bool = True) -> list[int]:
    """`count` round trips of a link of `bandwidth` bytes/s: each carries what the cap
    lets out, at most a bandwidth-delay product, as chunk replies spread over it; the cap
    at the end of each. The clock goes on from the link's last call."""
    now = getattr(link, "test_clock", 1000.0)
    caps = []
    for _ in range(count):
        n = max(1, int(min(link.cap, bandwidth * rtt) // CHUNK))
        for _ in range(n):
            now += rtt / n
            if held:
                link._full_at = now  # the cap held reads back
            with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
                link.observe(rtt + CHUNK / bandwidth, CHUNK, CHUNK, rtt)
        caps.append(link.cap)
    link.test_clock = now  # type: ignore[attr-defined]
    return caps


def test_startup_begins_low_and_doubles_each_round_trip_while_held_back() -> None:
    """Nothing known of the link: two chunks at first (not 8 MiB, 6.7 s of queue on a
    10 Mbit/s link), doubled each round trip the cap holds reads back."""
    link = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    assert link.cap == STARTUP_CAP == 2 * CHUNK and link.startup
    caps = rounds(link, 1e9, 0.020, 5)  # 1 GB/s: the cap binds every round trip
    # (the first round trip's replies are too few to say a rate)
    for before, after in zip(caps[:3], caps[1:4], strict=True):
        assert after >= 1.75 * before, caps
    assert caps[-1] == 8 * 1024 * 1024, caps


def test_startup_ends_once_the_link_is_full() -> None:
    """100 Mbit/s, 20 ms (250 KB in the pipe): the rate stops growing, three round trips
    later startup is over and the cap is the bandwidth-delay product and its margins."""
    link = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    rounds(link, 12.5e6, 0.020, 12)
    assert not link.startup
    rounds(link, 12.5e6, 0.020, 4)
    assert 2 * CHUNK <= link.cap <= 4 * CHUNK


def test_a_programs_own_pace_does_not_end_startup() -> None:
    """Replies while nothing was held back (small files read one by one) say how fast
    the program goes: startup goes on, for the big copy that may follow."""
    link = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    link._full_at = -100.0
    rounds(link, 12.5e6, 0.020, 12, held=False)
    assert link.startup and link.cap >= STARTUP_CAP


def test_a_new_connection_starts_again() -> None:
    link = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    rounds(link, 1e9, 0.020, 12)
    link.restart()
    assert link.startup and link.cap == STARTUP_CAP
    fixed = LinkEstimate(4 * CHUNK)  # no startup asked for: nothing to restart
    fixed.restart()
    assert fixed.cap == 4 * CHUNK and not fixed.startup


def test_on_a_slow_link_a_pipe_full_between_replies_counts_as_held_back() -> None:
    """10 Mbit/s: a chunk's reply every 0.2 s, further apart than FULL_LATELY. The cap
    held reads back since the reply before, so startup ends and the cap stays at its
    floor (it held at 512 KiB, and small chunks never came, before)."""
    link = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    now = 1000.0
    for _ in range(12):
        link._full_at = now + 0.001  # a READ found no room just after the last reply
        now += CHUNK / 1.25e6
        with mock.patch("pysshfs.fileio.time.monotonic", return_value=now):
            link.observe(0.020 + CHUNK / 1.25e6, CHUNK, CHUNK, 0.020)
    assert not link.startup and link.cap == 2 * CHUNK


def test_a_big_file_is_read_in_smaller_chunks_once_the_link_is_known_slow() -> None:
    """On a slow link the cap sits at two chunks: with the usual 256 KiB ones, 0.4 s of
    queue at 10 Mbit/s in front of every stat(). A big file opened then is read in
    chunks of a sixth of the cap (at least 64 KiB and 20 ms of the link); small files,
    and any file while the link is unknown (startup) or holds more, in the usual ones."""
    big = 64 * CHUNK
    with mock.patch.object(fileio, "LINK", LinkEstimate(8 * 1024 * 1024,
                                                        start=STARTUP_CAP)) as link:
        assert stream_chunk(CHUNK, big) == CHUNK  # startup: nothing known yet
        link.startup = False  # over, on a link where it went no higher than its floor
        link.cap = 2 * CHUNK
        assert stream_chunk(CHUNK, big) == 84 * 1024
        assert stream_chunk(CHUNK, 4 * CHUNK) == CHUNK  # small: one READ for all of it
        assert stream_chunk(CHUNK, None) == CHUNK
        link.cap = CHUNK
        assert stream_chunk(CHUNK, big) == 64 * 1024
        link._rate = 5e6  # 40 Mbit/s: a chunk is at least 20 ms of the link
        assert stream_chunk(CHUNK, big) == (100_000 & ~4095)
        link.cap = 2 * CHUNK + 4096  # above its floor: the link holds more than a chunk
        assert stream_chunk(CHUNK, big) == CHUNK


def test_admission() -> None:
    link = LinkEstimate(2 * CHUNK)
    assert link.admit(3 * CHUNK, wait=False)  # nothing in flight: always
    assert not link.admit(CHUNK, wait=False)
    link.settled(3 * CHUNK)
    assert link.admit(CHUNK, wait=False) and link.admit(CHUNK, wait=False)
    assert not link.admit(CHUNK, wait=False)
    assert link.in_flight == 2 * CHUNK


def test_follows() -> None:
    names = ["a", "b", "c", "d", "e", "f", "g"]
    order = (names, {n: i for i, n in enumerate(names)})
    assert _follows(order, "a", "b") and _follows(order, "a", "e")
    assert not _follows(order, "b", "a") and not _follows(order, "a", "g")
    assert not _follows(order, "a", "zz")


def test_a_reader_waiting_for_room_goes_on_when_bytes_settle() -> None:
    """admit(wait=True) over the cap waits, and settled() wakes it (not ADMIT_WAIT
    later): settled() only notifies when someone waits, so that must be counted."""
    import threading
    import time

    link = LinkEstimate(2 * CHUNK)
    assert link.admit(2 * CHUNK, wait=False)
    admitted = threading.Event()
    waiter = threading.Thread(target=lambda: (link.admit(CHUNK, wait=True), admitted.set()))
    waiter.start()
    assert not admitted.wait(0.2)  # no room: it waits
    started = time.monotonic()
    link.settled(2 * CHUNK)
    assert admitted.wait(1.0) and time.monotonic() - started < 1.0
    waiter.join(5)
    assert link.in_flight == CHUNK
