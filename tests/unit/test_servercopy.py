"""servercopy.copy_range: pieces, how many in flight, and the count it reports when a
piece fails (a stand-in remote; the real copy-data is in tests/integration)."""

from __future__ import annotations

import errno
from concurrent.futures import Future

import pytest

from pysshfs.servercopy import copy_range


class Lazy(Future):
    """A reply that arrives when the copier waits for it (or a failure set at once)."""

    def __init__(self, error: int | None) -> None:
        super().__init__()
        self.error = error

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done():
            if self.error is None:
                self.set_result(None)
            else:
                self.set_exception(OSError(self.error, "fails"))
        return super().exception()


class Remote:
    def __init__(self, fail_at: dict[int, list[int]] | None = None) -> None:
        self.fail_at = fail_at or {}  # source offset -> errnos of its successive sends
        self.sent: list[tuple[int, int, int]] = []
        self.futures: list[Lazy] = []
        self.most_in_flight = 0

    def copy_data_async(self, src: object, src_offset: int, length: int, dst: object,
                        dst_offset: int) -> Future:
        self.sent.append((src_offset, length, dst_offset))
        errs = self.fail_at.get(src_offset)
        fut = Lazy(errs.pop(0) if errs else None)
        self.futures.append(fut)
        self.most_in_flight = max(self.most_in_flight,
                                  sum(1 for f in self.futures if not f.done()))
        return fut


def test_pieces_cover_the_range_in_order() -> None:
    r = Remote()
    assert copy_range(r, "s", 100, 35, "d", 7, piece=10, in_flight=2) == 35
    assert r.sent == [(100, 10, 7), (110, 10, 17), (120, 10, 27), (130, 5, 37)]
    assert r.most_in_flight == 2


def test_a_failed_piece_ends_the_count_at_the_prefix() -> None:
    r = Remote({20: [errno.ENOSPC]})
    assert copy_range(r, "s", 0, 50, "d", 0, piece=10, in_flight=2) == 20
    assert (40, 10, 40) not in r.sent  # nothing more is sent after a failure


def test_a_failure_before_anything_was_copied_is_raised() -> None:
    r = Remote({0: [errno.ENOSPC]})
    with pytest.raises(OSError) as info:
        copy_range(r, "s", 0, 50, "d", 0, piece=10, in_flight=2)
    assert info.value.errno == errno.ENOSPC


def test_a_piece_lost_with_the_connection_is_sent_again() -> None:
    r = Remote({10: [errno.ECONNABORTED]})
    assert copy_range(r, "s", 0, 30, "d", 0, piece=10, in_flight=2) == 30
    assert [s for s in r.sent if s[0] == 10] == [(10, 10, 10), (10, 10, 10)]


def test_a_piece_lost_again_and_again_stops_the_copy() -> None:
    r = Remote({10: [errno.ECONNABORTED] * 5})
    assert copy_range(r, "s", 0, 30, "d", 0, piece=10, in_flight=2) == 10
