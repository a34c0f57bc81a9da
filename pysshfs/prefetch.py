"""Directory listings fetched ahead of need, a bounded number at a time.

Two predictions (DESIGN: "Predict where access is predictable"):
- a lookup that misses in a directory without a fresh listing also lists that directory:
  the next lookups there (git status lstat()s every file of its index, a build stats its
  sources) of names it holds are answered from that one listing instead of one LSTAT
  each (a missing name is still asked for: MetadataCache._guessed);
- a walk (find, du, ls -R, git's untracked scan): once a directory is read while its
  parent was read just before, the subdirectories' listings are fetched ahead, a few
  levels deep, so the walker finds them already in the cache.

Bounded: at most `workers` listings on the wire, `max_queued` waiting, each listing at most
`max_entries` entries (a bigger directory is left to the kernel's own requests and not
tried again for a while). Results go through the ordinary cache, stamped with the time the
listing was asked for, so nothing prefetched is believed longer than cache_timeout.
`close()` (unmount) drops what is queued; listings on the wire finish or fail on their own.

Order: newest first (a stack). A walker goes depth first: the subdirectories of what it
just read come next, before the siblings found earlier, so they are queued last and taken
first, and one asked for again goes back on top. A listing the kernel wants while it is
still queued is taken over by the kernel's thread (`claim`), not waited for behind the
others. Measured on `find` over 295 directories (loopback): a first-in-first-out queue
had the kernel wait ~300 ms in all for listings queued behind ones it needed later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from pysshfs.cache import parent_of

log = logging.getLogger(__name__)

# Fetch(path, limit) -> paths of the subdirectories it found (None: too big).
Fetch = Callable[[str, int], "list[str] | None"]
SUBDIRS_KEPT = 512  # subdirectories remembered per directory read, for sibling prefetch


class ListingPrefetcher:
    """Listings in flight by directory path; new ones started in worker threads."""

    def __init__(self, fetch: Fetch, is_fresh: Callable[[str], bool], *, workers: int = 8,
                 max_queued: int = 512,
                 max_entries: int = 5000, walk_window: float = 10.0,
                 walk_depth: int = 2) -> None:
        self._fetch = fetch
        self._is_fresh = is_fresh
        self.max_queued = max_queued
        self.max_entries = max_entries
        self.walk_window = walk_window
        self.walk_depth = walk_depth
        self._workers = workers
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a listing queued, or closing
        self._threads: list[threading.Thread] = []  # GUARDED_BY(_lock)
        self._idle = 0  # workers waiting for a listing; GUARDED_BY(_lock)
        self._pending: dict[str, Future] = {}  # GUARDED_BY(_lock): queued or on the wire
        # the queued ones (no worker yet): path -> (depth, future), taken from the end
        self._queue: OrderedDict[str, tuple[int, Future]] = OrderedDict()  # GUARDED_BY(_lock)
        self._too_big: OrderedDict[str, float] = OrderedDict()  # path -> when found too big
        # directories the kernel read -> (when, their subdirectories)
        self._read: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._closed = False

    # --- what fs asks ---------------------------------------------------------------------
    def pending(self, path: str) -> Future | None:
        """The listing of `path` on its way, if one is; still queued, it goes on top:
        the caller is about to wait for it."""
        with self._lock:
            if path in self._queue:
                self._queue.move_to_end(path)
            return self._pending.get(path)

    def claim(self, path: str) -> tuple[Future, bool]:
        """For a listing fetched in the caller's thread: (future, True) to fetch it and
        `finish` it, or (the pending one, False) to wait for instead of fetching twice.

        The kernel is reading `path` now: if its parent was read just before, that is a
        walk, and the siblings' listings start here, while this one is still on the wire
        (read_by_kernel would start them only once it has come back: two round trips
        later)."""
        with self._lock:
            fut = self._pending.get(path)
            if fut is not None:
                if self._queue.pop(path, None) is None:
                    return fut, False  # on the wire
                return fut, True  # taken over from the queue: the kernel waits for it
            fut = Future()
            self._pending[path] = fut
            siblings = self._walk_siblings(path, parent_of(path), time.monotonic())
        self._start_all(siblings, self.walk_depth)
        return fut, True

    def finish(self, path: str, fut: Future) -> None:
        self._finish(path, fut, None)

    def start(self, path: str, depth: int = 0, *, refresh: bool = False) -> Future | None:
        """List `path` in the background (no-op when on the wire, fresh in the cache
        unless `refresh`, queued full, or known to be too big; one already queued goes
        back on top); the Future resolves once its listing is in the cache."""
        if not refresh and self._is_fresh(path):
            return None
        with self._lock:
            if self._closed:
                return None
            fut = self._pending.get(path)
            if fut is not None:
                queued = self._queue.pop(path, None)
                if queued is not None:
                    self._queue[path] = (max(depth, queued[0]), fut)
                return fut
            if len(self._pending) >= self.max_queued:
                return None
            seen = self._too_big.get(path)
            if seen is not None and time.monotonic() - seen < 60.0:
                return None
            fut = Future()
            self._pending[path] = fut
            self._queue[path] = (depth, fut)
            self._wake.notify()
            if len(self._queue) > self._idle and len(self._threads) < self._workers:
                worker = threading.Thread(target=self._work, daemon=True,
                                          name=f"prefetch_{len(self._threads)}")
                self._threads.append(worker)
                worker.start()
        return fut

    def _start_all(self, paths: list[str], depth: int) -> None:
        """start() each, the first last: it is then taken first (see the module doc)."""
        for path in reversed(paths):
            self.start(path, depth)

    def read_by_kernel(self, path: str, parent: str, subdirs: list[str]) -> None:
        """The kernel read `path` (whose subdirectories are `subdirs`): when its parent was
        read just before, this is a walk: fetch the subdirectories ahead."""
        now = time.monotonic()
        with self._lock:
            self._read[path] = (now, subdirs[:SUBDIRS_KEPT])
            self._read.move_to_end(path)
            while len(self._read) > 4096:
                self._read.popitem(last=False)
            seen = self._read.get(parent)
            walking = path != parent and seen is not None and now - seen[0] <= self.walk_window
            siblings = self._walk_siblings(path, parent, now) if walking else []
        if walking:
            self._start_all([*subdirs, *siblings], self.walk_depth)

    def _walk_siblings(self, path: str, parent: str, now: float) -> list[str]:
        """When `parent` was read just before `path` (a walk): the parent's other
        subdirectories, handed out once per parent (later readers find them queued).
        Lock held."""
        seen = self._read.get(parent)
        if path == parent or seen is None or now - seen[0] > self.walk_window or not seen[1]:
            return []
        self._read[parent] = (seen[0], [])
        return seen[1]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending.items())
            self._queue.clear()
            self._wake.notify_all()
        for path, fut in pending:
            self._finish(path, fut, None)

    # --- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        """A worker thread: the newest queued listing, until closed."""
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    try:
                        self._wake.wait()
                    finally:
                        self._idle -= 1
                if self._closed:
                    return
                path, (depth, fut) = self._queue.popitem()
            self._run(path, depth, fut)

    def _run(self, path: str, depth: int, fut: Future) -> None:
        subdirs: list[str] | None = None
        try:
            if not self._closed:
                subdirs = self._fetch(path, self.max_entries)
                if subdirs is None:
                    with self._lock:
                        self._too_big[path] = time.monotonic()
                        while len(self._too_big) > 1024:
                            self._too_big.popitem(last=False)
        except Exception as exc:  # noqa: BLE001 - a prefetch failing is only a missed guess
            log.debug("prefetching the listing of %s: %s", path, exc)
        finally:
            self._finish(path, fut, subdirs)
        if subdirs and depth > 0:
            self._start_all(subdirs, depth - 1)

    def _finish(self, path: str, fut: Future, result: list[str] | None) -> None:
        with self._lock:
            if self._pending.get(path) is fut:
                del self._pending[path]
        if not fut.done():
            fut.set_result(result)
