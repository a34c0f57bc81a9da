"""Small files opened ahead of need while a program reads a directory's files in turn.

`cp -r`, `tar c`, `grep -r` and git's content check (status on a fresh clone or mount)
open, read and close file after file, in listing order or in name order: two round trips
each (OPEN, then READ), one file at a time. Once two files of a directory were opened in
a row (neighbours in listing or in name order), the next few small files in that order are
opened ahead: their OPENs, each with the LSTAT of the close-to-open check behind it, go
out together in one write: from the open() that showed the pattern, then, as the
program takes files opened ahead, at their release (after its close(2) has returned:
off its critical path): at the release of the one by which about half of them will have
been taken (each top-up marks it), the others' releases skip the look; the
READ of each one's first chunk goes out (again several in one write) from a later
open() once its handle has come. An open() of one of them then takes the handle and the
data already on their way, and a lookup of one whose kernel entry expired meanwhile is
answered by the attributes read with its OPEN. When the file's attributes come from a
listing of its directory asked for less than `hold_for - LISTED_MARGIN` seconds before,
no LSTAT goes out: the close-to-open check goes by the listing's attributes, held as long
as they are at most `hold_for` old (git status after its lstat pass: a request and a reply
less a file).

No thread sends, nothing waits: replies are looked at (`done()`) by the FUSE threads
that call in, never handled in the reply thread (which must not send). The window is
topped up by several files at a time (at least `ahead // 2` missing), so OPENs share
writes.

Which files: after two neighbours in listing order, the next regular files in that
order up to the next subdirectory (a walker goes down there first); after two in name
order, the next ones of a depth-first walk in name order (git's index order), down into
subdirectories and back up, as far as their listings are cached. An open() of a file
opened ahead carries on from there.

Bounded and short-lived: regular files (by the cached listing) up to `max_size` bytes
(their size from the attribute cache, or else from the LSTAT behind their OPEN: no READ
for a bigger one), `ahead` per top-up, `max_held` at once (the oldest closed to make
room), each held for at most `hold_for` seconds (then closed unwaited), dropped when its
directory changed through the mount (cache epochs); nothing without a fresh listing or in
directories of more than MAX_DIR entries, nothing with cache=no. A held file shows its
content as of when it was opened ahead and its attributes as of then or of its listing,
at most `hold_for` seconds before the open() or lookup: well inside the cache_timeout
promise.

THREADS AND LOCKS. Called by libfuse worker threads (`take`, `opened`, `released`,
`attrs`) and at unmount (`close`); `openahead-expiry` closes what was held too long when
no open() comes to do it (it sleeps while nothing is held). `_lock` guards `_held`,
`_unread`, `_to_close`, `_last_open`, `_orders`, `_last_hit`, `_due`, `_triggers`,
`_recent`, `_starting`, `_janitor_idle` and each Held's `claimed`; it is never held while
sending. A file is never opened twice: a take() of one in `_starting` waits on
`_started` (a Condition on `_lock`) for its top-up to hold it, and a top-up leaves out
what the program has begun to open (`_recent`, marked by take() before the program's own
OPEN, not a round trip later by opened()). `_reads_lock` is held by _send_reads while it
claims and sends first READs (taken before `_lock`, never the other way round), and
briefly by a take() that found its file claimed and its READ not yet there.
`attrs` reads `_held` with one dict lookup, atomic under the GIL.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pysshfs.cache import MetadataCache, parent_of
from pysshfs.remote import PendingOpen, RemoteFile, RemoteFS
from pysshfs.sftp.codec import SSH_FXF_READ, Attrs

log = logging.getLogger(__name__)

# A directory's entries (name, kind, FUSE path) in some order, and each name's position
# in it (the paths made once per listing, not at every top-up).
_Order = tuple[list[tuple[str, int, str]], dict[str, int]]
_FILE, _DIR, _OTHER = 0, 1, 2  # kinds of entries
MAX_DIR = 2000  # entries of a directory past which nothing is opened ahead (cost per open)
# A listing younger than hold_for minus this serves a file's close-to-open check instead
# of an LSTAT (the margin: time for the program to come to the file).
LISTED_MARGIN = 0.25
# Files of a directory still to come past which a listing older than that is fetched
# again (one listing, where its files would take one LSTAT each): see _relist.
RELIST_MIN = 16
# Longest a take() waits for a top-up that is sending its file's OPEN (a few lookups and
# a queued write: far less, unless the daemon is starved; past it the program opens it).
STARTING_WAIT = 1.0


@dataclass
class Held:
    """A file opened ahead: its OPEN (and LSTAT) on the wire, then its first READ."""

    opened_at: float
    epoch: tuple[int, int]
    pending: PendingOpen
    checked_at: float  # when its attributes were read: with the OPEN, or its listing
    walk: bool  # guessed by name order across directories (see _next_files)
    first_chunk: Future | None = None
    claimed: bool = False  # its first READ is being (or was) sent: by one thread only


class OpenAhead:
    """Files opened ahead, by FUSE path."""

    def __init__(self, session: RemoteFS, cache: MetadataCache, chunk: int, *,
                 ahead: int = 8, max_held: int = 128, max_size: int = 256 * 1024,
                 hold_for: float = 2.0, relist: Callable[[str], Any] | None = None) -> None:
        """`relist(directory)`: fetch that directory's listing again, in the background
        (see _relist)."""
        self.session = session
        self.relist = relist
        self.cache = cache
        self.chunk = chunk
        self.ahead = ahead
        self.max_held = max_held
        self.max_size = max_size
        self.hold_for = hold_for
        self._lock = threading.Lock()
        self._reads_lock = threading.Lock()  # held while first READs are claimed and sent
        self._held: OrderedDict[str, Held] = OrderedDict()  # oldest first
        self._unread: deque[Held] = deque()  # held, first READ not sent yet, oldest first
        self._to_close: list[PendingOpen] = []  # expired before their handle came
        self._last_open: OrderedDict[str, str] = OrderedDict()  # directory -> last name
        self._orders: OrderedDict[str, tuple[tuple[float, int], tuple[_Order, _Order]]] = \
            OrderedDict()
        self._last_hit: tuple[str, bool] | None = None  # (path, walk) last taken
        self._due: dict[str, bool] = {}  # opened ahead -> walk: top up at its release
        # the files whose release tops up next (one per window: see _top_up)
        self._triggers: dict[str, bool] = {}
        self._recent: dict[str, None] = {}  # the last files opened, oldest first
        self._starting: set[str] = set()  # in a top-up being sent
        self._started = threading.Condition(self._lock)  # paths left _starting
        self._closed = False
        self._wake = threading.Condition(self._lock)  # something is held: expire it
        self._janitor: threading.Thread | None = None
        self._janitor_idle = False  # it waits for something to be held (else: a timeout)

    # --- what fs asks ---------------------------------------------------------------------
    def take(self, path: str) -> tuple[RemoteFile, Future | None, bool] | None:
        """(RemoteFile, first-chunk Future, whether its attributes at open are its
        listing's, already in the cache) opened ahead for `path`, or None."""
        with self._lock:
            if path in self._starting:  # its OPEN is on its way out: take it, not a second
                self._started.wait_for(
                    lambda: self._closed or path not in self._starting, timeout=STARTING_WAIT)
            held = self._held.pop(path, None)
            # The program opens it now, taken or not: a top-up from here on leaves it
            # out, not only once opened() has come a round trip later.
            self._opened_now(path)
            if held is None:
                return None
            mine = not held.claimed
            held.claimed = True
            self._last_hit = (path, held.walk)  # a guess that came true: go on from there
        fresh = time.monotonic() - held.checked_at <= self.hold_for and \
            held.epoch == self.cache.epoch(parent_of(path))
        try:
            rf = held.pending.file(timeout=self.session.io_timeout or None)
        except Exception:  # noqa: BLE001 - opening ahead failed: open as usual
            return None
        if not fresh:
            self._close(rf)
            return None
        if mine and self._small(rf):
            # its READ was not sent yet: now, so it races the kernel's first read
            held.first_chunk = self._read_first(rf)
        elif not mine and held.first_chunk is None:
            with self._reads_lock:  # _send_reads may be sending it: wait for that
                pass
        return rf, held.first_chunk, held.pending.listed

    def attrs(self, path: str) -> Attrs | None:
        """The attributes read with the OPEN of `path` if it is held, they have come and
        they are fresh (a lookup whose kernel entry expired since the listing)."""
        held = self._held.get(path)
        if held is None or not held.pending.attrs.done() \
                or held.pending.attrs.exception() is not None \
                or time.monotonic() - held.checked_at > self.hold_for \
                or held.epoch != self.cache.epoch(parent_of(path)):
            return None
        attrs: Attrs = held.pending.attrs.result()
        return attrs

    def opened(self, path: str) -> None:
        """A file was opened for reading: send the first READs of the held files whose
        handles came; when it follows the last one opened in its directory (or was itself
        opened ahead), the files held ahead of it are topped up once it is released."""
        self._expire()
        self._send_reads()
        if path == "/":
            return
        parent, name = parent_of(path), path.rsplit("/", 1)[1]
        with self._lock:
            previous = self._last_open.pop(parent, None)
            self._last_open[parent] = name
            while len(self._last_open) > 256:
                self._last_open.popitem(last=False)
            hit, self._last_hit = self._last_hit, None
            self._opened_now(path)
            ahead_of_it = hit is not None and hit[0] == path
            if ahead_of_it and self._triggers.pop(path, False):
                assert hit is not None
                self._due[path] = hit[1]
                if len(self._due) > 1024:  # opened and never released: forget the oldest
                    del self._due[next(iter(self._due))]
        if previous is not None and not ahead_of_it:
            self._top_up(path, previous, False)  # now: the program is about to ask

    def _opened_now(self, path: str) -> None:
        """The program has opened `path`: no top-up opens it again (lock held)."""
        self._recent.pop(path, None)
        self._recent[path] = None
        if len(self._recent) > 256:
            del self._recent[next(iter(self._recent))]

    def released(self, path: str) -> None:
        """A file opened ahead was closed: top up the files held after it. Done here, not
        in its open(): the program has its data by now and does not wait for this (the
        kernel sends RELEASE after close(2) has returned). The first READs of held
        files whose handles came go out now too (fs sends all of it, with the CLOSE, in
        one write), not at the next open()."""
        self._send_reads()
        with self._lock:
            walk = self._due.pop(path, None)
        if walk is not None:
            self._top_up(path, None, walk)

    def _top_up(self, path: str, previous: str | None, walk: bool) -> None:
        """Open ahead what comes after `path`: in the order `previous` and `path` show
        (None: `walk` says which)."""
        if self._closed:
            return
        parent, name = parent_of(path), path.rsplit("/", 1)[1]
        orders = self._orders_of(parent)
        if orders is None:
            return
        if previous is not None:
            matched = [i for i, o in enumerate(orders) if _follows(o, previous, name)]
            if not matched:
                return
            walk = 1 in matched  # name order, when both fit: it walks the subdirectories
        window = self._next_files(parent, name, orders[1 if walk else 0], walk)
        with self._lock:  # the program may have opened the next ones meanwhile
            window = [p for p in window if p not in self._recent]
            missing = [p for p in window if p not in self._held]
            if window:
                # The next look is at the release of the file by which about half the
                # window will be missing (or its last one): the releases before it would
                # find too few missing, and skip this work.
                self._triggers[window[min(len(window), self.ahead // 2) - 1]] = True
                if len(self._triggers) > 1024:
                    del self._triggers[next(iter(self._triggers))]
        if not window:
            return
        # top up several at a time (one write), or at once when the next one is missing
        if not missing or (len(missing) < self.ahead // 2 and missing[0] != window[0]):
            return
        # those the cache still knows as too big are left out, the others' sizes come
        # with their OPENs (see _send_reads)
        wanted = []
        for child in missing:
            attrs = self.cache.attrs(child)
            if attrs is None or ((attrs.mode is None or stat.S_ISREG(attrs.mode))
                                 and (attrs.size or 0) <= self.max_size):
                wanted.append(child)
        if wanted:
            self._start(wanted, walk)

    def _next_files(self, parent: str, name: str, order: _Order, walk: bool) -> list[str]:
        """The `ahead` regular files that come after parent/name in `order`. In listing
        order up to the next subdirectory (a walker goes down there first). In name order
        (`walk`) as a depth-first walk in name order goes, git's index order: down into
        subdirectories and, past a directory's end, back up into its parent when files
        were opened there, as far as the listings are cached."""
        found: list[str] = []
        where, entries, i = parent, order[0], order[1][name] + 1
        for _ in range(8 * self.ahead):  # bounded: empty directories, symlinks
            if len(found) >= self.ahead:
                break
            if i >= len(entries):
                up = parent_of(where)
                if not walk or where == "/" or up not in self._last_open:
                    break
                above = self._orders_of(up)
                at = None if above is None else above[1][1].get(where.rsplit("/", 1)[1])
                if above is None or at is None:
                    break
                where, entries, i = up, above[1][0], at + 1
                continue
            _, kind, child = entries[i]
            i += 1
            if kind == _FILE:
                found.append(child)
            elif kind == _DIR:
                below = self._orders_of(child) if walk else None
                if below is None:
                    break
                where, entries, i = child, below[1][0], 0
        return found

    def _orders_of(self, parent: str) -> tuple[_Order, _Order] | None:
        """The directory's entries (name, kind) in listing order and in name order, each
        with positions: worked out once per listing (not per open)."""
        stamp = self.cache.listing_stamp(parent)
        if stamp is None or not 0 < stamp[1] <= MAX_DIR:
            return None
        with self._lock:
            known = self._orders.get(parent)
        if known is not None and known[0] == stamp:
            return known[1]
        names = self.cache.listing(parent)
        if names is None:
            return None
        base = "" if parent == "/" else parent
        listed = [(n, _FILE if stat.S_ISREG(mode) else _DIR if stat.S_ISDIR(mode) else _OTHER,
                   f"{base}/{n}") for n, mode in names]
        by_name = sorted(listed)
        orders = ((listed, {n: i for i, (n, _, _) in enumerate(listed)}),
                  (by_name, {n: i for i, (n, _, _) in enumerate(by_name)}))
        with self._lock:
            self._orders[parent] = (stamp, orders)
            while len(self._orders) > 256:
                self._orders.popitem(last=False)
        return orders

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
            self._started.notify_all()
            held = [h.pending for h in self._held.values()] + self._to_close
            self._held.clear()
            self._unread.clear()
            self._to_close = []
        for pending in held:
            self._close_pending(pending)

    # --- the work -------------------------------------------------------------------------
    def _start(self, paths: list[str], walk: bool) -> None:
        evicted: list[PendingOpen] = []
        with self._lock:
            paths = [] if self._closed else [
                p for p in paths
                if p not in self._held and p not in self._starting and p not in self._recent
            ][:self.max_held]
            self._starting.update(paths)  # a top-up in another thread leaves them out
            # full: the oldest go (a walk that left their directory for a subdirectory
            # may come back to them, but the newest guess is the likeliest)
            while len(self._held) + len(paths) > self.max_held:
                _, oldest = self._held.popitem(last=False)
                oldest.claimed = True
                evicted.append(oldest.pending)
        for pending in evicted:
            self._close_pending(pending)
        if not paths:
            return
        now = time.monotonic()
        leftover: list[PendingOpen] = []
        # the directories' change counts before their listings are looked at: a change
        # through the mount meanwhile drops what is held (a listing older than it)
        epochs: dict[str, tuple[int, int]] = {}
        for path in paths:
            parent = parent_of(path)
            if parent not in epochs:
                epochs[parent] = self.cache.epoch(parent)
        known, checked, stale = self._listed(paths, now)
        # held before the write goes out: an open() meanwhile takes them and waits
        try:
            with self.session.batched():
                sent = self.session.open_ahead(
                    [self.session.remote_path(p) for p in paths], SSH_FXF_READ, known)
                self._hold(paths, sent, now, checked, epochs, walk, leftover)
        finally:
            with self._lock:
                self._starting.difference_update(paths)
                self._started.notify_all()
        for pending in leftover:
            self._close_pending(pending)
        if stale and self.relist is not None:
            self._relist(stale)

    def _listed(self, paths: list[str], now: float) -> tuple[
            list[Attrs | None], list[float], dict[str, str]]:
        """For each of `paths`: the attributes its listing carried if that listing is
        young enough to serve the close-to-open check (else None: an LSTAT goes with the
        OPEN), and when they were read; and the directories of the others, each with
        the last of them there."""
        known: list[Attrs | None] = []
        checked: list[float] = []
        stale: dict[str, str] = {}
        young = self.hold_for - LISTED_MARGIN
        for path in paths:
            listed = self.cache.listed_attrs(path)
            if listed is not None and listed[1] <= young:
                known.append(listed[0])
                checked.append(now - listed[1])
            else:
                known.append(None)
                checked.append(now)
                stale[parent_of(path)] = path.rsplit("/", 1)[1]
        return known, checked, stale

    def _relist(self, stale: dict[str, str]) -> None:
        """Fetch again the listing of each directory whose files were just opened with an
        LSTAT each, when more than RELIST_MIN entries come after the last of them: once
        young, that one listing spares the LSTATs of the files that follow (git status
        reads the files long after its lstat pass fetched the listings). Only listings
        fetched ahead: one the kernel read answers for names missing too, a fetched one
        does not (MetadataCache.guessed), so it must not be replaced by one."""
        assert self.relist is not None
        for parent, name in stale.items():
            orders = self._orders_of(parent)
            at = None if orders is None else orders[1][1].get(name)
            if orders is None or at is None or len(orders[1][0]) - at <= RELIST_MIN \
                    or not self.cache.guessed(parent):
                continue
            self.relist(parent)

    def _hold(self, paths: list[str], sent: list[PendingOpen], now: float,
              checked: list[float], epochs: dict[str, tuple[int, int]], walk: bool,
              leftover: list[PendingOpen]) -> None:
        with self._lock:
            self._starting.difference_update(paths)  # now in _held (or not wanted)
            self._started.notify_all()
            for path, pending, at in zip(paths, sent, checked, strict=False):
                if self._closed or path in self._held or path in self._recent:
                    leftover.append(pending)  # another thread, or the program, was quicker
                    continue
                held = Held(now, epochs[parent_of(path)], pending, at, walk)
                self._held[path] = held
                self._unread.append(held)
            if self._janitor_idle:
                self._wake.notify()
            if self._janitor is None and not self._closed:
                self._janitor = threading.Thread(target=self._expire_idle, daemon=True,
                                                 name="openahead-expiry")
                self._janitor.start()

    def _send_reads(self) -> None:
        """The first READ of every held file whose handle has come, in one write. Claimed
        and sent under `_reads_lock`, so a take() of one of them meanwhile waits for its
        READ instead of finding none and leaving the kernel's read to send a second."""
        try:
            first = self._unread[0]  # (a look without the locks: nothing to do, mostly)
        except IndexError:
            return
        if not (first.claimed or first.pending.done()):
            return
        ready: list[Held] = []
        with self._reads_lock:
            with self._lock:
                unread = self._unread
                while unread and (unread[0].claimed or unread[0].pending.done()):
                    held = unread.popleft()
                    if not held.claimed:
                        held.claimed = True
                        ready.append(held)
            if not ready:
                return
            with self.session.batched():
                for held in ready:
                    try:
                        rf = held.pending.file()
                    except Exception:  # noqa: BLE001 - take() opens it as usual
                        continue
                    if self._small(rf):  # else the handle alone is held
                        held.first_chunk = self._read_first(rf)

    def _small(self, rf: RemoteFile) -> bool:
        """A regular file with something to read, up to max_size, by the attributes read
        with its OPEN: worth its first READ."""
        known = rf.attrs_at_open
        return known is None or ((known.mode is None or stat.S_ISREG(known.mode))
                                 and 0 < (known.size or 0) <= self.max_size)

    def _read_first(self, rf: RemoteFile) -> Future | None:
        try:
            return self.session.read_async(rf, 0, self.chunk)
        except OSError as exc:
            log.debug("reading %r ahead: %s", rf.path, exc)
            return None

    def _expire_idle(self) -> None:
        """What is held is closed in time even when no open() comes to do it: wakes
        once per `hold_for` while something is held, never otherwise."""
        while True:
            with self._lock:
                while not self._closed and not self._held and not self._to_close:
                    self._janitor_idle = True
                    self._wake.wait()
                    self._janitor_idle = False
                if self._closed:
                    return
                self._wake.wait(max(0.1, self.hold_for))
            self._expire()

    def _expire(self) -> None:
        """Close what was held too long (oldest first: `_held` is in opening order) and
        what expired before its handle came, once it has."""
        now = time.monotonic()
        gone: list[PendingOpen] = []
        with self._lock:
            held = self._held
            while held:
                oldest = next(iter(held.values()))
                if now - oldest.opened_at <= self.hold_for:
                    break
                held.popitem(last=False)
                oldest.claimed = True  # no READ for it any more
                gone.append(oldest.pending)
            if self._to_close:
                gone.extend(self._to_close)
                self._to_close = []
        for pending in gone:
            self._close_pending(pending)

    def _close_pending(self, pending: PendingOpen) -> None:
        """Close a file opened ahead for nothing; if its handle has not come yet, at a
        later call (the reply thread must not send)."""
        if not pending.handle.done():
            with self._lock:
                if not self._closed:
                    self._to_close.append(pending)
            return
        if pending.handle.exception() is None:
            self._close(pending.file())

    def _close(self, rf: RemoteFile) -> None:
        try:
            self.session.close_handle(rf)
        except OSError as exc:
            log.debug("closing a file opened ahead: %s", exc)


def _follows(order: _Order, previous: str, name: str) -> bool:
    """`name` comes right after `previous` in `order` (the next few count: a program may
    skip a file it does not need, such as a symlink or a directory)."""
    a, b = order[1].get(previous), order[1].get(name)
    return a is not None and b is not None and 0 < b - a <= 4
