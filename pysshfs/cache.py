"""Attribute, directory-listing, symlink and negative caches, and their invalidation rules.

All four are cachetools TTLCaches behind one lock, keyed by the path as FUSE sees it
("/a/b"). The rules for what each change through the mount invalidates live here and only
here, as methods named for the change (`created`, `removed`, `renamed`, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import TTLCache

from pysshfs.sftp.codec import Attrs

T = TypeVar("T")


def parent_of(path: str) -> str:
    """The parent directory of a FUSE path ("/" is its own parent)."""
    if path == "/":
        return "/"
    head = path.rsplit("/", 1)[0]
    return head or "/"


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    dir_enabled: bool = True
    stat_ttl: float = 20.0
    dir_ttl: float = 20.0
    link_ttl: float = 20.0
    negative_ttl: float = 20.0
    max_size: int = 10000


class _Slot(Generic[T]):
    """One TTL cache, or nothing at all when disabled."""

    def __init__(self, enabled: bool, ttl: float, max_size: int) -> None:
        self.cache: TTLCache[str, T] | None = (
            TTLCache(maxsize=max(1, max_size), ttl=ttl) if enabled and ttl > 0 else None
        )

    def get(self, key: str) -> T | None:
        return None if self.cache is None else self.cache.get(key)

    def put(self, key: str, value: T) -> None:
        if self.cache is not None:
            self.cache[key] = value

    def drop(self, key: str) -> None:
        if self.cache is not None:
            self.cache.pop(key, None)

    def drop_under(self, prefix: str) -> None:
        if self.cache is None:
            return
        below = prefix.rstrip("/") + "/"
        for key in [k for k in self.cache.keys() if k.startswith(below)]:
            self.cache.pop(key, None)

    def clear(self) -> None:
        if self.cache is not None:
            self.cache.clear()


class MetadataCache:
    """What we know about remote paths, and for how long we may believe it."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        on = config.enabled
        self._lock = threading.Lock()
        self._attrs: _Slot[Attrs] = _Slot(on, config.stat_ttl, config.max_size)
        self._negative: _Slot[bool] = _Slot(on, config.negative_ttl, config.max_size)
        self._dirs: _Slot[list[tuple[str, int]]] = _Slot(on and config.dir_enabled, config.dir_ttl,
                                             max(1, config.max_size // 10))
        self._links: _Slot[bytes] = _Slot(on, config.link_ttl, config.max_size)

    # --- lookups ------------------------------------------------------------------------
    def attrs(self, path: str) -> Attrs | None:
        with self._lock:
            return self._attrs.get(path)

    def is_missing(self, path: str) -> bool:
        with self._lock:
            return bool(self._negative.get(path))

    def listing(self, path: str) -> list[tuple[str, int]] | None:
        with self._lock:
            return self._dirs.get(path)

    def link(self, path: str) -> bytes | None:
        with self._lock:
            return self._links.get(path)

    # --- what we learned from the server -----------------------------------------------
    def learned_attrs(self, path: str, attrs: Attrs) -> None:
        with self._lock:
            self._attrs.put(path, attrs)
            self._negative.drop(path)

    def learned_missing(self, path: str) -> None:
        with self._lock:
            self._attrs.drop(path)
            self._links.drop(path)
            self._negative.put(path, True)

    def learned_listing(self, path: str,
                        entries: Iterable[tuple[str, Attrs]]) -> list[tuple[str, int]]:
        """Store a READDIR result: (name, mode) pairs, and each entry's attributes."""
        names: list[tuple[str, int]] = []
        base = "" if path == "/" else path
        with self._lock:
            for name, attrs in entries:
                names.append((name, attrs.mode or 0))
                child = f"{base}/{name}"
                self._attrs.put(child, attrs)
                self._negative.drop(child)
            self._dirs.put(path, names)
        return names

    def learned_link(self, path: str, target: bytes) -> None:
        with self._lock:
            self._links.put(path, target)

    # --- changes made through the mount -------------------------------------------------
    def changed(self, path: str) -> None:
        """The object's attributes changed (write, chmod, chown, utimens, truncate)."""
        with self._lock:
            self._attrs.drop(path)

    def created(self, path: str) -> None:
        """A new name appeared (create, mkdir, symlink, link)."""
        with self._lock:
            self._attrs.drop(path)
            self._negative.drop(path)
            self._links.drop(path)
            self._dirs.drop(parent_of(path))

    def removed(self, path: str) -> None:
        """A name went away (unlink, rmdir)."""
        with self._lock:
            self._attrs.drop(path)
            self._links.drop(path)
            self._dirs.drop(path)
            self._dirs.drop(parent_of(path))
            self._negative.put(path, True)

    def renamed(self, old: str, new: str) -> None:
        """Both sides of a rename, and everything below a renamed directory."""
        with self._lock:
            for slot in (self._attrs, self._links, self._dirs, self._negative):
                slot.drop(old)
                slot.drop(new)
                slot.drop_under(old)
                slot.drop_under(new)
            self._dirs.drop(parent_of(old))
            self._dirs.drop(parent_of(new))
            self._negative.put(old, True)

    def clear(self) -> None:
        """Forget everything (e.g. after a reconnect the caches are stale)."""
        with self._lock:
            for slot in (self._attrs, self._links, self._dirs, self._negative):
                slot.clear()
