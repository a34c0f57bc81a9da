"""OpenAhead's guesses and its requests, against a session that records them.

The replies are Futures the tests resolve themselves, so "the handle has come" is a
step of the test, not a race.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from pysshfs import openahead
from pysshfs.cache import CacheConfig, MetadataCache
from pysshfs.openahead import LISTED_MARGIN, OpenAhead
from pysshfs.remote import PendingOpen, RemoteFile
from pysshfs.sftp.codec import Attrs

FILE = Attrs(mode=stat.S_IFREG | 0o644, size=100)
DIR = Attrs(mode=stat.S_IFDIR | 0o755)


class RecordingSession:
    """What OpenAhead sends, as it sends it: batches of OPENs, READs, CLOSEs."""

    io_timeout = 5.0

    def __init__(self) -> None:
        self.open_batches: list[list[str]] = []
        self.pending: dict[str, PendingOpen] = {}
        self.reads: list[tuple[str, bool]] = []  # (path, sent inside batched())
        self.closed: list[str] = []
        self.lstat_skipped: list[str] = []  # opened with the listing's attributes
        self._batching = False

    def remote_path(self, path: str) -> bytes:
        return path.encode()

    def open_ahead(self, paths: list[bytes], pflags: int,
                   known: list[Attrs | None] | None = None) -> list[PendingOpen]:
        self.open_batches.append([p.decode() for p in paths])
        sent = []
        for i, p in enumerate(paths):
            attrs: Future = Future()
            listed = known is not None and known[i] is not None
            if listed:  # no LSTAT: the listing's attributes
                assert known is not None
                attrs.set_result(known[i])
                self.lstat_skipped.append(p.decode())
            pending = PendingOpen(p, pflags, 1, Future(), attrs, listed)
            self.pending[p.decode()] = pending
            sent.append(pending)
        return sent

    def answer(self, path: str, attrs: Attrs = FILE) -> None:
        """The server's replies to the OPEN and LSTAT of `path` came."""
        self.pending[path].handle.set_result(b"h:" + path.encode())
        if not self.pending[path].attrs.done():  # (no LSTAT when its listing served)
            self.pending[path].attrs.set_result(attrs)

    @contextmanager
    def batched(self) -> Iterator[None]:
        self._batching = True
        try:
            yield
        finally:
            self._batching = False

    def read_async(self, rf: RemoteFile, offset: int, length: int) -> Future:
        self.reads.append((rf.path.decode(), self._batching))
        fut: Future = Future()
        fut.set_result(b"x" * 100)
        return fut

    def close_handle(self, rf: RemoteFile) -> None:
        self.closed.append(rf.path.decode())


class Clock:
    """The cache's clock, moved by the tests."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(listings: dict[str, list[tuple[str, Attrs]]], *, listed_ago: float = 5.0,
         guessed: bool = False,
         **kw: Any) -> tuple[OpenAhead, RecordingSession, MetadataCache]:
    """An OpenAhead on `listings`, read `listed_ago` seconds ago (by default too long ago
    for them to serve the close-to-open check: each OPEN has its LSTAT behind it)."""
    clock = Clock()
    cache = MetadataCache(CacheConfig(), clock=clock)
    for path, entries in listings.items():
        cache.learned_listing(path, entries, guessed=guessed)
    clock.now += listed_ago
    session = RecordingSession()
    return OpenAhead(session, cache, 256 * 1024, **kw), session, cache  # type: ignore[arg-type]


def gated(real: Callable[..., Any]) -> tuple[Callable[..., Any], threading.Event,
                                             threading.Event]:
    """`real`, made to say it was called (`entered`) and then wait for `gate`: another
    thread's step lands while this one is halfway."""
    gate, entered = threading.Event(), threading.Event()

    def slow(*args: Any) -> Any:
        entered.set()
        assert gate.wait(5)
        return real(*args)

    return slow, gate, entered


def take_halfway(oa: OpenAhead, path: str, step: Callable[[], None],
                 gate: threading.Event, entered: threading.Event,
                 then: Callable[[], None] = lambda: None) -> Any:
    """take(`path`) while `step` runs in another thread, halted halfway (see gated):
    take() must wait for the step; what it returns once the step is done (and `then`)."""
    stepper = threading.Thread(target=step)
    stepper.start()
    assert entered.wait(5)
    taken: list[Any] = []
    taker = threading.Thread(target=lambda: taken.append(oa.take(path)))
    taker.start()
    time.sleep(0.2)  # (nothing to poll: what is asserted is that nothing came)
    assert taken == [], "take() did not wait for the step on its way"
    gate.set()
    stepper.join(5)
    then()
    taker.join(5)
    assert taken, "take() still waits"
    return taken[0]


def visit(oa: OpenAhead, path: str) -> None:
    """A program opens, reads and closes `path`."""
    oa.opened(path)
    oa.released(path)


def holding_f2_f3(**kw: Any) -> tuple[OpenAhead, RecordingSession]:
    """/d/f0../d/f4; f0 and f1 opened in turn, so f2 and f3 are opened ahead."""
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(5)]}, ahead=2, **kw)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    return oa, session


def test_two_neighbours_open_the_next_files_in_one_write_and_read_them_later() -> None:
    # listed out of name order: the name order is what the opens follow
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in (3, 0, 5, 1, 4, 2, 6)]},
                          ahead=3)
    visit(oa, "/d/f0")
    assert session.open_batches == []  # one open shows no order yet
    visit(oa, "/d/f1")
    assert session.open_batches == [["/d/f2", "/d/f3", "/d/f4"]]
    assert session.reads == []  # no handle yet: nothing to read on
    session.answer("/d/f2")
    session.answer("/d/f3")
    visit(oa, "/d/f1")  # any later open sends the READs of the handles that came
    assert session.reads == [("/d/f2", True), ("/d/f3", True)]
    taken = oa.take("/d/f2")
    assert taken is not None
    rf, chunk, listed = taken
    assert not listed  # its attributes were read with the OPEN
    assert rf.handle == b"h:/d/f2" and rf.attrs_at_open == FILE
    assert chunk is not None and chunk.result() == b"x" * 100


def test_once_ahead_the_top_up_waits_for_the_release() -> None:
    """The first files ahead are opened in the open() that shows the order (the program
    is about to ask); once it takes files opened ahead, the next are opened at their
    release, not in the open() it waits for."""
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(10)]}, ahead=4)
    visit(oa, "/d/f0")
    oa.opened("/d/f1")
    assert session.open_batches == [["/d/f2", "/d/f3", "/d/f4", "/d/f5"]]
    for name in ("/d/f2", "/d/f3"):
        session.answer(name)
        assert oa.take(name) is not None
        oa.opened(name)
    assert len(session.open_batches) == 1
    oa.released("/d/f2")
    oa.released("/d/f3")
    assert session.open_batches[1:] == [["/d/f6", "/d/f7"]]


def test_take_reads_a_file_whose_read_was_not_sent_yet() -> None:
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(6)]}, ahead=2)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    session.answer("/d/f2")
    taken = oa.take("/d/f2")
    assert taken is not None and taken[1] is not None
    assert session.reads == [("/d/f2", False)]
    visit(oa, "/d/f2")
    assert session.reads == [("/d/f2", False)], "its READ was sent twice"


def test_name_order_walks_into_subdirectories_and_back_up() -> None:
    oa, session, _ = make({
        "/d": [("a1", FILE), ("a2", FILE), ("b", DIR), ("c", FILE)],
        "/d/b": [("y", FILE), ("x", FILE)],
    }, ahead=4)
    visit(oa, "/d/a1")
    visit(oa, "/d/a2")
    assert session.open_batches == [["/d/b/x", "/d/b/y", "/d/c"]]


def test_listing_order_stops_at_a_subdirectory() -> None:
    """(When both orders fit, the name order is taken: see the test above.)"""
    oa, session, _ = make({
        "/d": [("c", FILE), ("a", FILE), ("m", FILE), ("sub", DIR), ("b", FILE)],
        "/d/sub": [("x", FILE)],
    }, ahead=4)
    visit(oa, "/d/c")
    visit(oa, "/d/a")  # neighbours in listing order only
    assert session.open_batches == [["/d/m"]]


def test_known_big_files_and_non_files_are_not_opened() -> None:
    big = Attrs(mode=stat.S_IFREG | 0o644, size=10 << 20)
    link = Attrs(mode=stat.S_IFLNK | 0o777, size=5)
    oa, session, _ = make({"/d": [("f0", FILE), ("f1", FILE), ("f2", big), ("f3", link),
                                  ("f4", FILE)]}, ahead=4)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    assert session.open_batches == [["/d/f4"]]


def test_a_file_found_big_by_its_lstat_gets_no_read() -> None:
    oa, session, cache = make({"/d": [(f"f{i}", FILE) for i in range(4)]}, ahead=2)
    cache.clear()  # sizes unknown: only the listing's order is kept below
    cache.learned_listing("/d", [(f"f{i}", FILE) for i in range(4)])
    cache.clock.now += 5.0  # type: ignore[attr-defined]  # too old to vouch for sizes
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    session.answer("/d/f2", Attrs(mode=stat.S_IFREG | 0o644, size=10 << 20))
    session.answer("/d/f3", Attrs(mode=stat.S_IFREG | 0o644, size=0))
    visit(oa, "/d/f1")
    assert session.reads == []
    taken = oa.take("/d/f2")
    assert taken is not None and taken[1] is None  # the handle alone


def test_attrs_answers_a_lookup_of_a_held_file_once_its_lstat_came() -> None:
    oa, session = holding_f2_f3()
    assert oa.attrs("/d/f2") is None  # not come yet
    fresh = Attrs(mode=stat.S_IFREG | 0o644, size=123)
    session.answer("/d/f2", fresh)
    assert oa.attrs("/d/f2") == fresh
    assert oa.attrs("/d/f4") is None  # not held


def test_full_evicts_the_oldest_and_closes_it_once_its_handle_comes() -> None:
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(10)]}, ahead=2,
                          max_held=2)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")  # holds f2, f3
    visit(oa, "/d/f6")  # too far from f1: no order shown
    visit(oa, "/d/f7")  # holds f8, f9: f2, f3 go
    assert session.open_batches == [["/d/f2", "/d/f3"], ["/d/f8", "/d/f9"]]
    assert session.closed == []  # their handles have not come: closed later
    session.answer("/d/f2")
    session.answer("/d/f3")
    visit(oa, "/d/f7")
    assert sorted(session.closed) == ["/d/f2", "/d/f3"]
    assert oa.take("/d/f2") is None


def test_held_too_long_is_closed_not_served() -> None:
    oa, session = holding_f2_f3(hold_for=0.0)
    session.answer("/d/f2")
    assert oa.take("/d/f2") is None
    assert session.closed == ["/d/f2"]


def test_held_files_are_closed_in_time_without_another_open() -> None:
    oa, session = holding_f2_f3(hold_for=0.2)
    session.answer("/d/f2")
    session.answer("/d/f3")
    deadline = time.monotonic() + 5
    while len(session.closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    oa.close()
    assert sorted(session.closed) == ["/d/f2", "/d/f3"]


def test_a_young_listing_serves_the_check_and_no_lstat_goes_out() -> None:
    """Listed less than hold_for - LISTED_MARGIN ago: the OPENs go alone, the check at
    open() goes by the listing's attributes, and the READs go out once the handles came."""
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(5)]}, ahead=2,
                          listed_ago=0.5)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    assert session.open_batches == [["/d/f2", "/d/f3"]]
    assert session.lstat_skipped == ["/d/f2", "/d/f3"]
    visit(oa, "/d/f1")
    assert session.reads == []  # the attributes are there, the handles not yet
    session.answer("/d/f2", Attrs(mode=stat.S_IFREG | 0o644, size=999))  # (no LSTAT)
    visit(oa, "/d/f1")
    assert session.reads == [("/d/f2", True)]
    taken = oa.take("/d/f2")
    assert taken is not None
    rf, _, listed = taken
    assert listed and rf.attrs_at_open == FILE


def test_a_listing_near_the_staleness_bound_leaves_the_lstat() -> None:
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(5)]}, ahead=2,
                          listed_ago=2.0 - LISTED_MARGIN + 0.01)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    assert session.open_batches == [["/d/f2", "/d/f3"]]
    assert session.lstat_skipped == []


def test_a_held_file_is_not_served_once_its_listing_is_too_old(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its handle is young, but the attributes its check would go by are older than
    hold_for: closed, not served (the open() opens it as usual)."""
    now = [1000.0]
    monkeypatch.setattr(openahead, "time", SimpleNamespace(monotonic=lambda: now[0]))
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(5)]}, ahead=2,
                          listed_ago=0.7, hold_for=1.0)
    visit(oa, "/d/f0")
    visit(oa, "/d/f1")
    assert session.lstat_skipped == ["/d/f2", "/d/f3"]
    session.answer("/d/f2")
    now[0] += 0.29
    assert oa.attrs("/d/f2") == FILE
    now[0] += 0.02  # the handle 0.31 s old, the listing's attributes 1.01 s
    assert oa.attrs("/d/f2") is None
    assert oa.take("/d/f2") is None
    assert session.closed == ["/d/f2"]


def test_only_the_release_marked_by_the_last_top_up_looks_again() -> None:
    """A top-up marks the file by whose release about half the window will be taken:
    the releases before it skip the look (it would find too few missing)."""
    oa, session, _ = make({"/d": [(f"f{i:02d}", FILE) for i in range(12)]}, ahead=4)
    visit(oa, "/d/f00")
    oa.opened("/d/f01")  # f02..f05 opened ahead, f03 marked
    oa.released("/d/f01")
    looked: list[str] = []
    real = oa._top_up

    def spy(path: str, previous: str | None, walk: bool) -> None:
        looked.append(path)
        real(path, previous, walk)

    oa._top_up = spy  # type: ignore[method-assign]
    for name in ("/d/f02", "/d/f03", "/d/f04", "/d/f05"):
        session.answer(name)
        assert oa.take(name) is not None
        visit(oa, name)
    assert looked == ["/d/f03", "/d/f05"]
    assert session.open_batches == [["/d/f02", "/d/f03", "/d/f04", "/d/f05"],
                                    ["/d/f06", "/d/f07"], ["/d/f08", "/d/f09"]]


def test_an_old_listing_fetched_ahead_is_fetched_again_for_the_files_to_come() -> None:
    """Files opened with an LSTAT each because their listing is too old: when that
    listing was fetched ahead and enough files follow, it is fetched again (the next
    top-ups then need no LSTAT); never one the kernel read, nor for a few files."""
    names = [(f"f{i:02d}", FILE) for i in range(30)]
    for guessed, count, expected in ((True, 30, ["/d"]), (False, 30, []),
                                     (True, 12, [])):
        relisted: list[str] = []
        oa, session, _ = make({"/d": names[:count]}, ahead=8, guessed=guessed,
                              relist=relisted.append)
        visit(oa, "/d/f00")
        visit(oa, "/d/f01")
        assert session.open_batches and session.lstat_skipped == []
        assert relisted == expected, (guessed, count)
    young: list[str] = []
    oa, session, _ = make({"/d": names}, ahead=8, guessed=True, listed_ago=0.5,
                          relist=young.append)
    visit(oa, "/d/f00")
    visit(oa, "/d/f01")
    assert young == [] and len(session.lstat_skipped) == 8


def test_a_take_while_its_read_is_being_sent_gets_that_read() -> None:
    """Another thread claimed the file's first READ and is sending it: take() waits for
    it rather than come back without it (the kernel's read would then send a second)."""
    oa, session = holding_f2_f3()
    session.answer("/d/f2")
    session.answer("/d/f3")
    session.read_async, gate, entered = gated(session.read_async)  # type: ignore[method-assign]
    # opened() sends f2's and f3's READs
    taken = take_halfway(oa, "/d/f2", lambda: oa.opened("/d/f1"), gate, entered)
    assert taken is not None and taken[1] is not None
    assert [path for path, _ in session.reads].count("/d/f2") == 1


def test_a_file_the_program_began_to_open_is_left_out_of_a_top_up() -> None:
    """The program opens f4 itself (not held) while f2's release tops up: its OPEN is on
    the wire from the moment take() missed it, so the top-up must not send a second."""
    oa, session = holding_f2_f3()
    session.answer("/d/f2")
    assert oa.take("/d/f2") is not None
    oa.opened("/d/f2")
    assert oa.take("/d/f4") is None  # the program sends its own OPEN now
    oa.released("/d/f2")  # (the kernel's RELEASE of f2 comes after close(2) returned)
    assert [p for batch in session.open_batches for p in batch].count("/d/f4") == 0, \
        session.open_batches


def test_a_take_while_its_open_is_being_sent_takes_that_open() -> None:
    """A top-up is sending f2's OPEN (in _starting, not yet held): take() waits for it to
    be held and takes it, rather than miss it and have the program open f2 a second time."""
    oa, session, _ = make({"/d": [(f"f{i}", FILE) for i in range(6)]}, ahead=2)
    visit(oa, "/d/f0")
    session.open_ahead, gate, entered = gated(session.open_ahead)  # type: ignore[method-assign]
    # opened() opens f2 and f3 ahead
    taken = take_halfway(oa, "/d/f2", lambda: oa.opened("/d/f1"), gate, entered,
                         then=lambda: session.answer("/d/f2"))
    assert taken is not None and taken[0].handle == b"h:/d/f2"
    assert session.open_batches == [["/d/f2", "/d/f3"]]
