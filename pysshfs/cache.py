"""Attribute, directory-listing, symlink and negative caches, and their invalidation rules.

All are cachetools TTLCaches behind one lock, bounded in items and, where values vary in
size (listings, symlink targets), in bytes, keyed by the path as FUSE sees it
("/a/b"). The rules for what each change through the mount invalidates live here and only
here, as methods named for the change (`created`, `removed`, `renamed`, ...).

A listing keeps the attributes its READDIR replies carried, one `_Listing` per directory:
storing 30,000 entries' attributes one TTLCache item each cost more CPU than everything
else an `ls -l` does. The attributes of a path are then its own entry's (a
LSTAT, ...) and its directory's listing's, whichever came last: learning either drops
the other (a listing replaces its predecessor whole); a change through the mount drops
both.
"""

from __future__ import annotations

import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

from pysshfs.mountspec import MountOptions
from pysshfs.sftp.codec import Attrs

T = TypeVar("T")


_DEFAULT_OPTIONS = MountOptions()  # the option table's defaults, for a 0 given (see below)


# TTLCache's own dicts (key -> link with its expiry time, in recently-used order; key ->
# value), read by _Slot.get; tests/unit/test_private_hooks.py checks they are still there.
CACHETOOLS_LINKS = "_TTLCache__links"
CACHETOOLS_DATA = "_Cache__data"


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
    kernel_entry_ttl: float = 0.0  # what the kernel keeps of names we tell it (entry_timeout)

    @classmethod
    def from_options(cls, opts: MountOptions) -> CacheConfig:
        """The caches for the -o options; the kernel's share (kernel_timeouts) of the
        attribute and negative TTLs is taken off ours, so no answer outlives the TTL."""
        base, stat_ttl = _ttl_options(opts)
        kernel = kernel_timeouts(opts)
        return cls(
            enabled=opts.cache,
            dir_enabled=opts.dir_cache,
            stat_ttl=max(0.0, stat_ttl - kernel["attr_timeout"]),
            dir_ttl=opts.cache_dir_timeout or base,
            link_ttl=opts.cache_link_timeout or base,
            negative_ttl=max(0.0, stat_ttl - kernel["negative_timeout"]),
            max_size=opts.cache_max_size or _DEFAULT_OPTIONS.cache_max_size,  # 0: default
            kernel_entry_ttl=kernel["entry_timeout"],
        )


# Memory budgets of the caches whose values vary in size, in bytes (estimated as below).
# Listings: a 100,000-entry directory weighs ~15 MB, so several big ones fit; one larger
# than the whole budget is simply not cached (it is listed again when asked). Symlink
# targets: at most 4,095 bytes each (see sftp.limits), so ~4,000 of the longest fit.
LISTINGS_BYTES = 128 << 20
LINKS_BYTES = 16 << 20
# What one cached item costs besides its own bytes (key, cachetools' bookkeeping), and
# one listing entry besides its name (the str and its dict slot): measured with
# tracemalloc on CPython 3.11, rounded up.
_ITEM_OVERHEAD = 200
_LISTING_ENTRY_OVERHEAD = 120


# An entry's attributes (an Attrs of 6 slots and its ints, and the dict slot), the same way.
_LISTED_ATTRS_OVERHEAD = 200


class _Listing:
    """A directory's entries as last read from the server, kept current with the changes
    made through the mount: name -> mode, and name -> the attributes the READDIR reply
    carried, for the entries that have not changed since. Edited in place (under the
    cache's lock), its weight kept as it goes: an edit costs the same in a directory of
    100,000 entries as in one of 10."""

    __slots__ = ("read_at", "modes", "attrs", "weight")

    def __init__(self, read_at: float, modes: dict[str, int], attrs: dict[str, Attrs]) -> None:
        self.read_at = read_at
        self.modes = modes
        self.attrs = attrs
        self.weight = _ITEM_OVERHEAD + sum(len(name) for name in modes) + \
            len(modes) * _LISTING_ENTRY_OVERHEAD + len(attrs) * _LISTED_ATTRS_OVERHEAD

    def drop_attrs(self, name: str) -> bool:
        if self.attrs.pop(name, None) is None:
            return False
        self.weight -= _LISTED_ATTRS_OVERHEAD
        return True

    def set_mode(self, name: str, mode: int) -> None:
        self.drop_attrs(name)
        if name not in self.modes:
            self.weight += len(name) + _LISTING_ENTRY_OVERHEAD
        self.modes[name] = mode

    def remove(self, name: str) -> None:
        self.drop_attrs(name)
        if self.modes.pop(name, None) is not None:
            self.weight -= len(name) + _LISTING_ENTRY_OVERHEAD


def _listing_weight(value: _Listing) -> int:
    return value.weight


def _link_weight(target: bytes) -> int:
    return _ITEM_OVERHEAD + len(target)


class _Slot(Generic[T]):
    """One TTL cache, or nothing at all when disabled.

    With `weigh`, the cache is bounded in bytes (`max_bytes`) as well as in items: each
    item weighs at least max_bytes / max_size, so there are never more than max_size.
    """

    def __init__(self, enabled: bool, ttl: float, max_size: int,
                 weigh: Callable[[T], int] | None = None, max_bytes: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cache: TTLCache[str, T] | None = None
        self._links: OrderedDict[str, Any] | None = None  # see get()
        self._data: dict[str, T] = {}
        self._clock = clock
        if not enabled or ttl <= 0:
            return
        if weigh is None:
            self.cache = TTLCache(maxsize=max(1, max_size), ttl=ttl, timer=clock)
        else:
            floor = max(1, max_bytes // max(1, max_size))
            self.cache = TTLCache(maxsize=max_bytes, ttl=ttl, timer=clock,
                                  getsizeof=lambda value: max(floor, weigh(value)))
        links = getattr(self.cache, CACHETOOLS_LINKS, None)
        data = getattr(self.cache, CACHETOOLS_DATA, None)
        if isinstance(links, OrderedDict) and isinstance(data, dict):
            self._links, self._data = links, data

    def get(self, key: str) -> T | None:
        """What `key in cache and cache[key]` answers (the same expiry test, the same
        move to the recently-used end), read from TTLCache's own dicts in one call: a
        cold git status asks ~10 times per file, and `in` then [] (each with its own
        timer call and method layers) were a tenth of the FUSE threads' Python time."""
        links = self._links
        if links is not None:
            link = links.get(key)
            if link is None or not self._clock() < link.expires:
                return None
            links.move_to_end(key)
            return self._data.get(key)
        # Not TTLCache.get: that one wraps `in` and [] in its timer's context manager,
        # 3 us a hit against 1 (every listing the kernel reads asks a few times).
        cache = self.cache
        if cache is None or key not in cache:
            return None
        try:
            return cache[key]
        except KeyError:  # expired in between
            return None

    def put(self, key: str, value: T) -> None:
        if self.cache is not None:
            try:
                self.cache[key] = value
            except ValueError:  # heavier than the whole budget: not cached, nor the old one
                self.cache.pop(key, None)

    def drop(self, key: str) -> None:
        if self._links is not None and key not in self._links:
            return  # not held (the common case: a cheap look before TTLCache.pop's layers)
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


@dataclass
class CacheCounters:
    """Lookups answered from the cache (hits) or not (misses), for `pysshfs status`.
    Counted under the cache's lock, so exact."""

    attr_hits: int = 0
    attr_misses: int = 0
    negative_hits: int = 0
    listing_hits: int = 0
    listing_misses: int = 0
    link_hits: int = 0
    link_misses: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


EPOCH_BUCKETS = 4096
# Paths whose attribute reads are remembered with their time (see _learned_at): more
# than a listing in flight sees learned meanwhile, unless thousands of lookups race it.
LEARNED_KEPT = 4096


class MetadataCache:
    """What we know about remote paths, and for how long we may believe it."""

    def __init__(self, config: CacheConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: seconds, never going back; what every TTL and listing age is measured
        on (tests hand in one they advance themselves)."""
        self.config = config
        self.clock = clock
        on = config.enabled
        self._lock = threading.Lock()
        self._attrs: _Slot[Attrs] = _Slot(on, config.stat_ttl, config.max_size, clock=clock)
        # A path known missing: when we learned it (a later listing naming it wins).
        self._negative: _Slot[float] = _Slot(on, config.negative_ttl, config.max_size,
                                             clock=clock)
        self._dirs: _Slot[_Listing] = _Slot(
            on and config.dir_enabled, config.dir_ttl, max(1, config.max_size // 10),
            _listing_weight, LISTINGS_BYTES, clock=clock)
        self._links: _Slot[bytes] = _Slot(on, config.link_ttl, config.max_size,
                                          _link_weight, LINKS_BYTES, clock=clock)
        self._before_change: _Slot[Attrs] = _Slot(on, config.stat_ttl, config.max_size,
                                                  clock=clock)
        self.counters = CacheCounters()
        # Listings fetched ahead of need (pysshfs.prefetch): they answer what exists, not
        # what is missing, so a name created on the server after such a listing is found
        # at once as long as nobody listed or looked it up.
        self._guessed: _Slot[bool] = _Slot(on and config.dir_enabled, config.dir_ttl,
                                           max(1, config.max_size // 10), clock=clock)
        # Change counters, so a listing that was on the wire while something changed
        # through the mount is not cached (it may predate the change): one per bucket of
        # directories (a collision only costs a cache entry) and one for everything.
        self._epochs = [0] * EPOCH_BUCKETS
        self._epoch_all = 0
        # When each path's own attributes were last read from the server (newest last),
        # so a listing asked for before that does not shadow them with older ones (an
        # open's close-to-open check saw a file grow; a listing already on the wire did
        # not): the recent ones only, which is all a listing in flight can predate.
        self._learned_at: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    # --- lookups ------------------------------------------------------------------------
    def attrs(self, path: str) -> Attrs | None:
        with self._lock:
            found = self._attrs_locked(path)
            if found is None:
                self.counters.attr_misses += 1
            else:
                self.counters.attr_hits += 1
            return found

    def _parent_listing(self, path: str) -> tuple[_Listing | None, str]:
        """(the cached listing of the directory holding `path`, its name there); no
        listing for "/" (lock held)."""
        if path == "/":
            return None, ""
        parent, name = path.rsplit("/", 1)
        return self._dirs.get(parent or "/"), name

    def _attrs_locked(self, path: str) -> Attrs | None:
        """The path's attributes from its directory's listing, else its own."""
        listing, name = self._parent_listing(path)
        if listing is not None and listing.attrs and \
                self.clock() - listing.read_at <= self.config.stat_ttl:
            listed = listing.attrs.get(name)
            if listed is not None:
                return listed
        return self._attrs.get(path)

    def guessed(self, path: str) -> bool:
        """The listing held of `path` was fetched ahead of need (see _guessed)."""
        with self._lock:
            return bool(self._guessed.get(path))

    def listed_attrs(self, path: str) -> tuple[Attrs, float] | None:
        """(the attributes of `path` its directory's listing carried, seconds since that
        listing was asked for), while they are what attrs() answers; else None. What a
        close-to-open check may go by when the listing is young enough (openahead)."""
        with self._lock:
            listing, name = self._parent_listing(path)
            if listing is None:
                return None
            age = self.clock() - listing.read_at
            listed = listing.attrs.get(name) if age <= self.config.stat_ttl else None
            return None if listed is None else (listed, age)

    def is_missing(self, path: str) -> bool:
        with self._lock:
            since = self._negative.get(path)
            missing = since is not None
            if since is not None:
                listing, name = self._parent_listing(path)
                if listing is not None and listing.read_at > since and name in listing.modes:
                    missing = False  # listed after we learned it was missing
            self.counters.negative_hits += missing
            return missing

    def _fresh_listing(self, path: str) -> _Listing | None:
        """The listing of `path` if younger than the directory TTL (lock held)."""
        cached = self._dirs.get(path)
        if cached is None or self.clock() - cached.read_at > self.config.dir_ttl:
            return None
        return cached

    def listing(self, path: str) -> list[tuple[str, int]] | None:
        with self._lock:
            cached = self._counted_listing(path)
            return None if cached is None else list(cached.modes.items())

    def listing_entries(self, path: str) -> list[tuple[str, int, Attrs | None]] | None:
        """(name, mode, attributes) of the fresh listing of `path`: the attributes its
        READDIR replies carried while still within the stat TTL and unchanged, else None
        (then the path's own may be held: attrs())."""
        with self._lock:
            cached = self._counted_listing(path)
            if cached is None:
                return None
            listed = cached.attrs if self.clock() - cached.read_at <= \
                self.config.stat_ttl else {}
            get = listed.get
            return [(name, mode, get(name)) for name, mode in cached.modes.items()]

    def _counted_listing(self, path: str) -> _Listing | None:
        """_fresh_listing, counted as a listing hit or miss (lock held)."""
        cached = self._fresh_listing(path)
        if cached is None:
            self.counters.listing_misses += 1
        else:
            self.counters.listing_hits += 1
        return cached

    def listing_stamp(self, path: str) -> tuple[float, int] | None:
        """(when read, entries) of the fresh listing of `path`, or None: what identifies
        it, so work derived from it can be reused."""
        with self._lock:
            cached = self._fresh_listing(path)
            return None if cached is None else (cached.read_at, len(cached.modes))

    def has_listing(self, path: str) -> bool:
        """A listing of `path` younger than the directory TTL is held."""
        with self._lock:
            return self._fresh_listing(path) is not None

    def listings_enabled(self) -> bool:
        return self._dirs.cache is not None

    def epoch(self, path: str) -> tuple[int, int]:
        """Changes so far under directory `path` (give it back to learned_listing)."""
        with self._lock:
            return self._epoch_locked(path)

    def _epoch_locked(self, path: str) -> tuple[int, int]:
        return self._epoch_all, self._epochs[hash(path) % EPOCH_BUCKETS]

    def _bump(self, path: str) -> None:
        """Something in directory `path` changed (lock held)."""
        self._epochs[hash(path) % EPOCH_BUCKETS] += 1

    def absent(self, path: str) -> bool:
        """`path` is known not to exist from a recent listing of its directory (no
        younger than the negative TTL), so looking it up needs no request: what makes
        creating many files in a new directory (tar, cp -r, git checkout) cheap."""
        if path == "/":
            return False
        parent, name = parent_of(path), path.rsplit("/", 1)[1]
        with self._lock:
            cached = self._dirs.get(parent)
            if cached is None or name in cached.modes or \
                    self.clock() - cached.read_at > self.config.negative_ttl or \
                    self._guessed.get(parent):
                return False
            self.counters.negative_hits += 1
            return True

    def listed(self, path: str) -> bool | None:
        """Whether the listing held of the directory of `path` names it, however old
        (None: no listing held)."""
        with self._lock:
            listing, name = self._parent_listing(path)
            return None if listing is None else name in listing.modes

    def link(self, path: str) -> bytes | None:
        with self._lock:
            target = self._links.get(path)
            if target is None:
                self.counters.link_misses += 1
            else:
                self.counters.link_hits += 1
            return target

    # --- what we learned from the server -----------------------------------------------
    def learned_attrs(self, path: str, attrs: Attrs) -> None:
        with self._lock:
            self._drop_listed_attrs(path)
            self._attrs.put(path, attrs)
            self._negative.drop(path)
            learned = self._learned_at
            learned.pop(path, None)
            learned[path] = (self.clock(), None if path == "/" else parent_of(path))
            if len(learned) > LEARNED_KEPT:
                learned.popitem(last=False)

    def _learned_since(self, directory: str, since: float) -> list[str]:
        """Names in `directory` whose own attributes were read at `since` or later
        (lock held): newest first, back to `since` only."""
        names = []
        for path, (at, parent) in reversed(self._learned_at.items()):
            if at < since:
                break
            if parent == directory:
                names.append(path.rsplit("/", 1)[1])
        return names

    def learned_missing(self, path: str) -> None:
        with self._lock:
            self._attrs.drop(path)
            self._drop_listed_attrs(path)
            self._links.drop(path)
            self._negative.put(path, self.clock())

    def _drop_listed_attrs(self, path: str) -> None:
        """Forget what the listing of its directory said of `path` (lock held)."""
        listing, name = self._parent_listing(path)
        if listing is not None and listing.drop_attrs(name):
            self._dirs.put(parent_of(path), listing)  # weighed again

    def learned_listing(self, path: str, entries: Iterable[tuple[str, Attrs]], *,
                        seed_links: bool = True, read_at: float | None = None,
                        epoch: tuple[int, int] | None = None,
                        guessed: bool = False) -> list[tuple[str, int]]:
        """Store a READDIR result: (name, mode) pairs, and each entry's attributes
        (a symlink's own only when `seed_links`). `read_at` is when the listing was asked
        for; with `epoch` (taken then), nothing is stored when the directory changed
        through the mount meanwhile: the listing may predate the change."""
        listed = dict(entries)
        names = {name: attrs.mode or 0 for name, attrs in listed.items()}
        if not seed_links:
            listed = {name: attrs for name, attrs in listed.items()
                      if attrs.mode is None or not stat.S_ISLNK(attrs.mode)}
        with self._lock:
            if epoch is not None and epoch != self._epoch_locked(path):
                return list(names.items())
            when = self.clock() if read_at is None else read_at
            if read_at is not None and self._learned_at:
                for name in self._learned_since(path, read_at):
                    listed.pop(name, None)  # read after the listing was asked for
            if self._dirs.cache is None:  # dir_cache=no: the attributes alone, one by one
                base = "" if path == "/" else path
                for name, attrs in listed.items():
                    self._negative.drop(f"{base}/{name}")
                    self._attrs.put(f"{base}/{name}", attrs)
            self._dirs.put(path, _Listing(when, names, listed))
            if guessed:
                self._guessed.put(path, True)
            else:
                self._guessed.drop(path)
        return list(names.items())

    def learned_link(self, path: str, target: bytes) -> None:
        with self._lock:
            self._links.put(path, target)

    # --- changes made through the mount -------------------------------------------------
    def changed(self, path: str) -> None:
        """The object's attributes changed (write, chmod, chown, utimens, truncate)."""
        with self._lock:
            self._changed_locked(path)

    def _changed_locked(self, path: str) -> None:
        # A listing of its directory still on the wire carries the old attributes: it must
        # not be stored (an entry added in d, with the listing of d's parent in flight).
        if path != "/":
            self._bump(parent_of(path))
        before = self._attrs_locked(path)
        self._attrs.drop(path)
        self._drop_listed_attrs(path)
        if before is not None:
            self._before_change.put(path, before)

    def attrs_before_change(self, path: str) -> Attrs | None:
        """The attributes as they were before the last change through the mount (stale:
        only for what that change cannot have touched, such as the atime after a write)."""
        with self._lock:
            return self._attrs_locked(path) or self._before_change.get(path)

    def _edit_listing(self, path: str, mode: int | None) -> None:
        """Add (mode given) or remove (None) the name in its parent's cached listing."""
        cached, name = self._parent_listing(path)
        if cached is None:
            return
        if mode is None:
            cached.remove(name)
        else:
            cached.set_mode(name, mode)
        self._dirs.put(parent_of(path), cached)  # weighed again

    def created(self, path: str, mode: int) -> None:
        """A new name appeared (create, mkdir, symlink, link): `mode` is its type."""
        with self._lock:
            self._bump(parent_of(path))
            self._attrs.drop(path)
            self._before_change.drop(path)
            self._negative.drop(path)
            self._links.drop(path)
            self._edit_listing(path, mode)
            self._changed_locked(parent_of(path))  # a new entry: its mtime and ctime moved
            if stat.S_ISDIR(mode):  # we just made it: nothing is in it
                self._dirs.put(path, _Listing(self.clock(), {}, {}))
                self._guessed.drop(path)

    def removed(self, path: str) -> None:
        """A name went away (unlink, rmdir)."""
        with self._lock:
            self._bump(parent_of(path))
            self._bump(path)
            self._attrs.drop(path)
            self._before_change.drop(path)
            self._links.drop(path)
            self._dirs.drop(path)
            self._edit_listing(path, None)
            self._changed_locked(parent_of(path))
            self._negative.put(path, self.clock())

    def unsure(self, path: str) -> None:
        """A change of `path` failed, or may have half happened: forget all about it."""
        with self._lock:
            self._bump(parent_of(path))
            self._bump(path)
            for slot in (self._attrs, self._links, self._dirs, self._negative,
                         self._before_change):
                slot.drop(path)
            self._dirs.drop(parent_of(path))
            self._changed_locked(parent_of(path))

    def renamed(self, old: str, new: str) -> None:
        """Both sides of a rename, and everything below a renamed directory (not for a
        known non-directory: nothing is below it, nor below what it can replace; the walk
        through every cached path costs ~30 ms with a full cache, on the caller's path,
        and git renames its index into place at the end of each status)."""
        with self._lock:
            self._epoch_all += 1  # whole subtrees moved
            known = self._attrs_locked(old)
            mode = None if known is None else known.mode
            if mode is None:  # (a name created here is in its directory's listing)
                listing, name = self._parent_listing(old)
                mode = None if listing is None else listing.modes.get(name)
            subtree = not mode or stat.S_ISDIR(mode)
            for slot in (self._attrs, self._links, self._dirs, self._negative,
                         self._before_change):
                slot.drop(old)
                slot.drop(new)
                if subtree:
                    slot.drop_under(old)
                    slot.drop_under(new)
            for parent in {parent_of(old), parent_of(new)}:
                self._dirs.drop(parent)
                self._changed_locked(parent)
            self._negative.put(old, self.clock())

    def forget(self, path: str) -> list[str]:
        """`pysshfs refresh PATH`: drop all we know of `path` and everything below it, so
        the next access asks the server; the paths we held attributes for (what the
        kernel may hold too)."""
        below = path.rstrip("/") + "/"
        with self._lock:
            held = [key for key in self._attr_keys()
                    if key == path or path == "/" or key.startswith(below)]
            for slot in (self._attrs, self._links, self._dirs, self._negative,
                         self._before_change):
                if path == "/":
                    slot.clear()
                else:
                    slot.drop(path)
                    slot.drop_under(path)
            if path != "/":
                self._dirs.drop(parent_of(path))  # the name itself may have come or gone
        return held

    def _attr_keys(self) -> list[str]:
        """Every path we hold attributes for: its own, or in its directory's listing."""
        keys = [] if self._attrs.cache is None else list(self._attrs.cache.keys())
        for directory, listing in ([] if self._dirs.cache is None else
                                   list(self._dirs.cache.items())):
            base = "" if directory == "/" else directory
            keys.extend(f"{base}/{name}" for name in listing.attrs)
        return keys

    def clear(self) -> None:
        """Forget everything (e.g. after a reconnect the caches are stale)."""
        with self._lock:
            self._epoch_all += 1
            for slot in (self._attrs, self._links, self._dirs, self._negative,
                         self._before_change, self._guessed):
                slot.clear()
            self._learned_at.clear()


def kernel_timeouts(opts: MountOptions) -> dict[str, float]:
    """How long the kernel may trust names and attributes without asking us.

    Half of each cache TTL goes to the kernel, the other half to our own cache (see
    CacheConfig.from_options): an answer is then never older than the TTL, the promise
    sshfs makes, while repeated stat()s (git status, make) never leave the kernel.
    cache=no: 0, so a change on the server shows at once. -o entry_timeout= etc. override.
    """
    half = (_ttl_options(opts)[1] if opts.cache else 0.0) / 2
    given = {"entry_timeout": opts.entry_timeout, "attr_timeout": opts.attr_timeout,
             "negative_timeout": opts.negative_timeout}
    return {key: half if value is None else value for key, value in given.items()}


def _ttl_options(opts: MountOptions) -> tuple[float, float]:
    """(cache_timeout, cache_stat_timeout) as given, sshfs's 20 s by default.

    A 0 reads as "not given" (the default), as it always has here; sshfs takes 0 as
    "expire at once", so this may be worth changing on purpose, not by accident."""
    base = opts.cache_timeout or _DEFAULT_OPTIONS.cache_timeout
    return base, opts.cache_stat_timeout or base
