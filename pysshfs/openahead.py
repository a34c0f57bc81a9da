"""Small files opened ahead of need while a program reads a directory's files in turn.

`cp -r`, `tar c`, `grep -r` and git's content check (status on a fresh clone or mount)
open, read and close file after file, in listing order or in name order: two round trips
each (OPEN, then READ), one file at a time. Once two files of a directory were opened in
a row (neighbours in listing or in name order), the next few small files in that order are
opened and their first chunk asked for in the background; an open() of one of them then takes
the handle and the data already on their way.

Bounded and short-lived: files up to `max_size` bytes (their size known from the cached
listing), `ahead` per trigger, `max_held` at once, each held for at most `hold_for`
seconds (then closed unwaited), dropped when its directory changed through the mount
(cache epochs); nothing without a fresh listing or in directories of more than MAX_DIR
entries, nothing with cache=no. A held file shows
its content as of when it was opened ahead, at most `hold_for` seconds before the open():
well inside the cache_timeout promise.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pysshfs.cache import MetadataCache, parent_of
from pysshfs.remote import RemoteFS
from pysshfs.sftp.codec import SSH_FXF_READ

log = logging.getLogger(__name__)

# A directory's names in some order, and each name's position in it.
_Order = tuple[list[str], dict[str, int]]
MAX_DIR = 2000  # entries of a directory past which nothing is opened ahead (cost per open)


@dataclass
class Held:
    """A file opened ahead: its handle and the READ of its first chunk (Futures)."""

    opened_at: float
    epoch: tuple[int, int]
    handle: Future  # Future[RemoteFile]
    first_chunk: Future | None = None


class OpenAhead:
    """Files opened ahead, by FUSE path."""

    def __init__(self, session: RemoteFS, cache: MetadataCache, chunk: int, *,
                 ahead: int = 8, max_held: int = 64, max_size: int = 256 * 1024,
                 hold_for: float = 2.0, workers: int = 8,
                 is_open: Callable[[str], bool] | None = None) -> None:
        self.session = session
        self.cache = cache
        self.chunk = chunk
        self.ahead = ahead
        self.max_held = max_held
        self.max_size = max_size
        self.hold_for = hold_for
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openahead")
        self._lock = threading.Lock()
        self._held: OrderedDict[str, Held] = OrderedDict()  # GUARDED_BY(_lock)
        self._last_open: OrderedDict[str, str] = OrderedDict()  # directory -> last name
        self._orders: OrderedDict[str, tuple[tuple[float, int], tuple[_Order, _Order]]] = \
            OrderedDict()
        self._closed = False

    # --- what fs asks ---------------------------------------------------------------------
    def take(self, path: str) -> tuple[Any, Future | None] | None:
        """(RemoteFile, first-chunk Future) opened ahead for `path`, or None."""
        with self._lock:
            held = self._held.pop(path, None)
        if held is None:
            return None
        fresh = time.monotonic() - held.opened_at <= self.hold_for and \
            held.epoch == self.cache.epoch(parent_of(path))
        try:
            rf = held.handle.result(timeout=getattr(self.session, "io_timeout", 60.0) or None)
        except Exception:  # noqa: BLE001 - opening ahead failed: open as usual
            return None
        if not fresh:
            self._close(rf)
            return None
        return rf, held.first_chunk

    def opened(self, path: str) -> None:
        """A file was opened for reading: when its neighbour was the last one opened in
        its directory, open the next ones ahead."""
        if path == "/":
            return
        parent, name = parent_of(path), path.rsplit("/", 1)[1]
        with self._lock:
            previous = self._last_open.pop(parent, None)
            self._last_open[parent] = name
            while len(self._last_open) > 256:
                self._last_open.popitem(last=False)
        self._expire()
        if previous is None or self._closed:
            return
        orders = self._orders_of(parent)
        if orders is None:
            return
        order = next((o for o in orders if _follows(o, previous, name)), None)
        if order is None:
            return
        base = "" if parent == "/" else parent
        at = order[1][name]
        wanted = order[0][at + 1:at + 1 + self.ahead]
        epoch = self.cache.epoch(parent)
        for candidate in wanted:
            child = f"{base}/{candidate}"
            attrs = self.cache.attrs(child)
            if attrs is None or attrs.mode is None or not stat.S_ISREG(attrs.mode) \
                    or (attrs.size or 0) > self.max_size:
                continue
            self._start(child, epoch)

    def _orders_of(self, parent: str) -> tuple[_Order, _Order] | None:
        """The directory's names in listing order and in name order, each with positions:
        worked out once per listing (not per open)."""
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
        listed = [n for n, _ in names]
        by_name = sorted(listed)
        orders = ((listed, {n: i for i, n in enumerate(listed)}),
                  (by_name, {n: i for i, n in enumerate(by_name)}))
        with self._lock:
            self._orders[parent] = (stamp, orders)
            while len(self._orders) > 64:
                self._orders.popitem(last=False)
        return orders

    def close(self) -> None:
        with self._lock:
            self._closed = True
            held = list(self._held.values())
            self._held.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for h in held:
            h.handle.add_done_callback(self._close_when_opened)

    # --- the work -------------------------------------------------------------------------
    def _start(self, path: str, epoch: tuple[int, int]) -> None:
        with self._lock:
            if self._closed or path in self._held or len(self._held) >= self.max_held:
                return
            held = Held(time.monotonic(), epoch, Future())
            self._held[path] = held
        try:
            self._pool.submit(self._open, path, held)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._held.pop(path, None)

    def _open(self, path: str, held: Held) -> None:
        try:
            # its attributes in the same round trip: the close-to-open check at take()
            rf = self.session.open(self.session.remote_path(path), SSH_FXF_READ, read_back=True)
        except BaseException as exc:  # noqa: BLE001 - told to whoever takes it
            held.handle.set_exception(exc)
            with self._lock:
                if self._held.get(path) is held:
                    del self._held[path]
            return
        try:
            held.first_chunk = self.session.read_async(rf, 0, self.chunk)
        except OSError as exc:
            log.debug("reading %s ahead: %s", path, exc)
        held.handle.set_result(rf)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [p for p, h in self._held.items() if now - h.opened_at > self.hold_for]
            gone = [self._held.pop(p) for p in old]
        for h in gone:
            h.handle.add_done_callback(self._close_when_opened)

    def _close_when_opened(self, fut: Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._close(fut.result())

    def _close(self, rf: Any) -> None:
        try:
            self.session.close_handle(rf)
        except OSError as exc:
            log.debug("closing a file opened ahead: %s", exc)


def _follows(order: _Order, previous: str, name: str) -> bool:
    """`name` comes right after `previous` in `order` (the next few count: a program may
    skip a file it does not need, such as a symlink or a directory)."""
    a, b = order[1].get(previous), order[1].get(name)
    return a is not None and b is not None and 0 < b - a <= 4
