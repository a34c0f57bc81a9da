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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

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
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
        self._lock = threading.Lock()
        self._pending: dict[str, Future] = {}  # GUARDED_BY(_lock)
        self._too_big: OrderedDict[str, float] = OrderedDict()  # path -> when found too big
        # directories the kernel read -> (when, their subdirectories)
        self._read: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._closed = False

    # --- what fs asks ---------------------------------------------------------------------
    def pending(self, path: str) -> Future | None:
        """The listing of `path` on its way, if one is."""
        with self._lock:
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
                return fut, False
            fut = Future()
            self._pending[path] = fut
            siblings = self._walk_siblings(path, parent_of(path), time.monotonic())
        for sub in siblings:
            self.start(sub, self.walk_depth)
        return fut, True

    def finish(self, path: str, fut: Future) -> None:
        self._finish(path, fut, None)

    def start(self, path: str, depth: int = 0) -> Future | None:
        """List `path` in the background (no-op when on its way, fresh in the cache,
        queued full, or known to be too big); the Future resolves once its listing is in
        the cache."""
        if self._is_fresh(path):
            return None
        with self._lock:
            if self._closed:
                return None
            fut = self._pending.get(path)
            if fut is not None:
                return fut
            if len(self._pending) >= self.max_queued:
                return None
            seen = self._too_big.get(path)
            if seen is not None and time.monotonic() - seen < 60.0:
                return None
            fut = Future()
            self._pending[path] = fut
        try:
            self._pool.submit(self._run, path, depth, fut)
        except RuntimeError:  # shut down meanwhile
            self._finish(path, fut, None)
            return None
        return fut

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
            for sub in [*subdirs, *siblings]:
                self.start(sub, self.walk_depth)

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
        self._pool.shutdown(wait=False, cancel_futures=True)
        for path, fut in pending:
            self._finish(path, fut, None)

    # --- worker -----------------------------------------------------------------------------
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
            for sub in subdirs:
                self.start(sub, depth - 1)

    def _finish(self, path: str, fut: Future, result: list[str] | None) -> None:
        with self._lock:
            if self._pending.get(path) is fut:
                del self._pending[path]
        if not fut.done():
            fut.set_result(result)
