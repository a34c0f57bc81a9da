"""Small writes to a file made here, held and sent as one (pysshfs.heldwrites): the pure
holding logic, against a recording stand-in for the open file (fileio.OpenFile)."""

from __future__ import annotations

import errno
import time

import pytest

from pysshfs import heldwrites
from pysshfs.heldwrites import HeldWrites


class RecordingFile:
    """Records the writes that reach it; can be told to fail the next one."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []
        self.high_water = 0
        self.wrote = False
        self.fail: OSError | None = None

    def write(self, data: bytes, offset: int) -> int:
        if self.fail is not None:
            err, self.fail = self.fail, None
            raise err
        self.writes.append((offset, bytes(data)))
        self.high_water = max(self.high_water, offset + len(data))
        self.wrote = True
        return len(data)

    def content(self) -> bytes:
        out = bytearray()
        for offset, data in self.writes:
            out[offset:offset + len(data)] = data
        return bytes(out)


def test_pieces_that_follow_on_go_out_as_one_write() -> None:
    f = RecordingFile()
    sent: list[int] = []
    held = HeldWrites(f, 64 * 1024, on_sent=lambda: sent.append(1))
    assert held.write(b"a" * 7168, 0) == 7168
    assert held.write(b"b" * 1024, 7168) == 1024
    assert held.write(b"c" * 9216, 8192) == 9216
    assert f.writes == [] and not sent
    # what getattr answers meanwhile: the size written so far
    assert f.high_water == 17408 and f.wrote
    held.send()
    assert f.writes == [(0, b"a" * 7168 + b"b" * 1024 + b"c" * 9216)]
    assert sent == [1]
    held.send()  # nothing held: nothing sent
    assert len(f.writes) == 1 and sent == [1]


def test_a_piece_that_does_not_follow_on_sends_what_is_held_first() -> None:
    f = RecordingFile()
    held = HeldWrites(f, 64 * 1024)
    held.write(b"x" * 100, 0)
    held.write(b"y" * 50, 50)  # overwrites: must reach the server after the first
    assert f.writes == [(0, b"x" * 100)]
    held.send()
    assert f.writes == [(0, b"x" * 100), (50, b"y" * 50)]
    assert f.content() == b"x" * 50 + b"y" * 50


def test_what_would_not_fit_starts_a_new_hold_and_big_pieces_go_straight() -> None:
    f = RecordingFile()
    held = HeldWrites(f, 1000)
    held.write(b"a" * 600, 0)
    held.write(b"b" * 600, 600)  # 1,200 > 1,000: the first goes, the second is held
    assert f.writes == [(0, b"a" * 600)]
    sent: list[int] = []
    held.on_sent = lambda: sent.append(1)
    held.write(b"c" * 1000, 1200)  # not smaller than the limit: held bytes, then it
    assert f.writes == [(0, b"a" * 600), (600, b"b" * 600), (1200, b"c" * 1000)]
    assert sent == [1, 1]  # the cache hears of each


def test_stop_sends_what_is_held_and_holds_nothing_more() -> None:
    f = RecordingFile()
    held = HeldWrites(f, 1000)
    held.write(b"a" * 10, 0)
    held.send(stop=True)
    assert f.writes == [(0, b"a" * 10)]
    held.write(b"b" * 10, 10)
    assert f.writes == [(0, b"a" * 10), (10, b"b" * 10)]


def test_held_bytes_go_out_by_themselves_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heldwrites, "HOLD_SECONDS", 0.05)
    f = RecordingFile()
    held = HeldWrites(f, 1000)
    held.write(b"a" * 10, 0)
    _wait_for_a_write(f)
    assert f.writes == [(0, b"a" * 10)]


def _wait_for_a_write(f: RecordingFile) -> None:
    """Poll until the deadline thread has sent something to `f` (at most 5 s)."""
    deadline = time.monotonic() + 5
    while not f.writes and time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_error_of_a_send_in_the_background_is_raised_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heldwrites, "HOLD_SECONDS", 0.05)
    f = RecordingFile()
    held = HeldWrites(f, 1000)
    f.fail = OSError(errno.ENOSPC, "earlier write failed")
    held.write(b"a" * 10, 0)
    deadline = time.monotonic() + 5
    while held.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OSError) as caught:
        held.send()
    assert caught.value.errno == errno.ENOSPC
    held.send()  # reported once, as a failed write is
    held.write(b"b" * 10, 10)
    held.send()
    assert f.writes == [(10, b"b" * 10)]


def test_an_error_met_for_someone_else_waits_for_the_owner() -> None:
    """Sent because another file was opened (or a chmod): its error is not theirs."""
    f = RecordingFile()
    held = HeldWrites(f, 1000)
    held.write(b"a" * 10, 0)
    f.fail = OSError(errno.EDQUOT, "earlier write failed")
    held.send(stop=True, report=False)
    with pytest.raises(OSError) as caught:
        held.send(report=True)
    assert caught.value.errno == errno.EDQUOT


def test_holds_that_ended_are_passed_over_by_the_deadline_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tar x ends each file's hold (its times, its close) long before the deadline: the
    thread must not wake for each of them, only for a hold still live at its deadline."""
    woken_for: list[HeldWrites] = []
    real = HeldWrites.send_if_due

    def counted(self: HeldWrites, due: float) -> None:
        woken_for.append(self)
        real(self, due)

    monkeypatch.setattr(HeldWrites, "send_if_due", counted)
    ended = []
    for _ in range(20):
        f = RecordingFile()
        held = HeldWrites(f, 1000)
        held.write(b"e" * 10, 0)
        held.send()  # ended: sent by its owner
        ended.append(held)
    live_file = RecordingFile()
    live = HeldWrites(live_file, 1000)
    live.write(b"l" * 10, 0)
    _wait_for_a_write(live_file)
    assert live_file.writes == [(0, b"l" * 10)]  # the thread sent the live one
    assert [h for h in woken_for if h in ended] == []
    assert woken_for.count(live) == 1
