"""ListingPrefetcher's queue: newest first, and a queued listing taken over on demand."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from pysshfs.prefetch import ListingPrefetcher


class _Fetches:
    """A fetch that records the order of paths and holds "/hold" until released."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = threading.Event()
        self.holding = threading.Event()

    def __call__(self, path: str, limit: int) -> list[str]:
        if path == "/hold":
            self.holding.set()
            assert self.release.wait(10)
        self.order.append(path)
        return []

    def after_release(self, last: Future | None) -> list[str]:
        """The order of fetches once "/hold" is let go and `last` is listed."""
        self.release.set()
        assert last is not None
        last.result(10)
        return self.order


@pytest.fixture
def busy() -> Iterator[tuple[_Fetches, ListingPrefetcher]]:
    """A prefetcher whose only worker is busy listing "/hold": what follows stays queued
    until `fetches.release` is set."""
    fetches = _Fetches()
    prefetcher = ListingPrefetcher(fetches, lambda path: False, workers=1)
    prefetcher.start("/hold")
    assert fetches.holding.wait(10)
    yield fetches, prefetcher
    fetches.release.set()
    prefetcher.close()


def test_the_newest_or_awaited_queued_listing_goes_first(
        busy: tuple[_Fetches, ListingPrefetcher]) -> None:
    fetches, prefetcher = busy
    for path in ("/a", "/b", "/c"):
        prefetcher.start(path)
    prefetcher.start("/a")  # asked again: back on top
    awaited = prefetcher.pending("/b")  # someone waits for it: on top of all
    assert fetches.after_release(awaited) == ["/hold", "/b", "/a", "/c"]


def test_a_walk_queues_the_first_subdirectory_on_top(
        busy: tuple[_Fetches, ListingPrefetcher]) -> None:
    fetches, prefetcher = busy
    earlier = prefetcher.start("/earlier")
    prefetcher.read_by_kernel("/", "/", [])
    prefetcher.read_by_kernel("/d", "/", ["/d/x", "/d/y"])  # its parent just read: a walk
    assert fetches.after_release(earlier) == ["/hold", "/d/x", "/d/y", "/earlier"]


def test_a_queued_listing_is_taken_over_and_one_on_the_wire_waited_for(
        busy: tuple[_Fetches, ListingPrefetcher]) -> None:
    fetches, prefetcher = busy
    queued = prefetcher.start("/q")
    fut, mine = prefetcher.claim("/q")
    assert mine and fut is queued  # the caller lists it now
    on_wire, mine = prefetcher.claim("/hold")
    assert not mine
    prefetcher.finish("/q", fut)
    assert fut.done() and prefetcher.pending("/q") is None
    fetches.release.set()
    on_wire.result(10)
    assert fetches.order == ["/hold"]  # the worker never listed "/q"


def test_close_resolves_what_is_queued(busy: tuple[_Fetches, ListingPrefetcher]) -> None:
    _fetches, prefetcher = busy
    queued = prefetcher.start("/z")
    prefetcher.close()
    assert queued is not None and queued.result(10) is None


def test_a_fresh_listing_is_fetched_again_only_when_asked_to_refresh() -> None:
    fetches = _Fetches()
    prefetcher = ListingPrefetcher(fetches, lambda path: True, workers=1)  # all fresh
    try:
        assert prefetcher.start("/d") is None
        again = prefetcher.start("/d", refresh=True)
        assert again is not None
        again.result(10)
        assert fetches.order == ["/d"]
    finally:
        prefetcher.close()
