"""FUSE operations: one method per filesystem call, path in, errno out.

Knows the caches and the open files; talks to the server only through the session (the
`RemoteFS` Protocol of pysshfs.remote). Never imports paramiko. OSError(errno) raised here
reaches the kernel as -errno; the errno a local file system would give is worked out
below (pysshfs.sftp.refine), so what this module adds is FUSE behaviour and cache
bookkeeping, not requests to guess errnos.

THREADS AND LOCKS. Every FUSE method runs on a libfuse worker thread, many at once; `init`
and `destroy` run once. Background threads call back in: the prefetch workers
(`_prefetch_listing`) and the control server's request threads
(status, refresh). `_files_lock` guards `_files` (fh -> OpenFile) for insertions, removals
and iteration, `_made_files` with the lists in it (attribute changes sent unwaited)
and `_held` (writes held to go as one: pysshfs.heldwrites, each with its own lock, never
taken under `_files_lock`); single lookups rely on dict operations being atomic under the GIL.
Per-file I/O state belongs to `OpenFile` (its own lock, see fileio.py), cached metadata to
`MetadataCache` (one short lock), the libfuse handle used for invalidations to
`KernelCache`'s lock. The bookkeeping dicts `_kernel_saw`, `_told_kernel`,
`_told_missing`, `_filling` and `_dir_snapshots` use single dict operations without a
lock. No lock of this module is held while waiting on the server (`_settle` waits for
its futures with `_files_lock` released).
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from pysshfs import statpack
from pysshfs.cache import MetadataCache, parent_of
from pysshfs.fileio import (
    OpenFile,
    bulk_in_flight,
    new_connection,
    settle_bulk_writes,
    stream_chunk,
)
from pysshfs.fuselib import KernelCache, Operations, always_readdirplus, fuse_get_context
from pysshfs.heldwrites import HOLD_BYTES, HeldWrites
from pysshfs.idmap import ByNameIdMapper, IdMapper
from pysshfs.mountspec import MountOptions
from pysshfs.openahead import OpenAhead
from pysshfs.prefetch import ListingPrefetcher
from pysshfs.remote import RemoteFile, RemoteFS
from pysshfs.servercopy import MAX_PER_CALL, copy_range
from pysshfs.sftp.codec import (
    SSH_FXF_APPEND,
    SSH_FXF_CREAT,
    SSH_FXF_EXCL,
    SSH_FXF_READ,
    SSH_FXF_TRUNC,
    SSH_FXF_WRITE,
    Attrs,
)
from pysshfs.sftp.errors import LOST
from pysshfs.sftp.limits import check_link_target
from pysshfs.stats import ratio
from pysshfs.symlinks import SymlinkPolicy

log = logging.getLogger(__name__)

_FUSE_METHODS = (
    "access", "chmod", "chown", "copy_file_range", "create", "destroy", "flush", "fsync",
    "getattr", "init_with_config", "link", "mkdir", "mknod", "open", "opendir", "read",
    "readdir", "readdir_plus", "readlink", "release", "releasedir", "rename", "rmdir",
    "statfs", "symlink", "truncate", "unlink", "utimens", "write",
)


RENAME_NOREPLACE = 1  # renameat2(2) flags
RENAME_EXCHANGE = 2


def _sftp_open_flags(flags: int) -> int:
    """os.O_* → SSH_FXF_*."""
    acc = flags & os.O_ACCMODE
    pflags = 0
    if acc in (os.O_RDONLY, os.O_RDWR):
        pflags |= SSH_FXF_READ
    if acc in (os.O_WRONLY, os.O_RDWR):
        pflags |= SSH_FXF_WRITE
    if flags & os.O_APPEND:
        pflags |= SSH_FXF_APPEND
    if flags & os.O_CREAT:
        pflags |= SSH_FXF_CREAT
    if flags & os.O_TRUNC:
        pflags |= SSH_FXF_TRUNC
    if flags & os.O_EXCL:
        pflags |= SSH_FXF_EXCL
    return pflags


def _shows(after: Attrs, change: Attrs) -> bool:
    """Whether attributes read back right after a change reflect it (a server that
    answered out of order would show the old values: then they are not cached)."""
    return ((change.mode is None or after.mode is None
             or (after.mode & 0o7777) == (change.mode & 0o7777))
            and (change.uid is None or after.uid == change.uid)
            and (change.gid is None or after.gid == change.gid)
            and (change.mtime is None or after.mtime == change.mtime))


def _owner_cannot_be_refused(current: Attrs, change: Attrs) -> bool:
    """Whether a change of a file's attributes cannot be refused to its owner: its times;
    its permission bits, set-id and sticky bits aside (a server clears S_ISGID for a
    group its user is not in, and may refuse the sticky bit on a file); its owner and
    group as they are (chown to the current ids, which tar and cp -p do as root)."""
    if change.size is not None:
        return False
    if change.mode is not None and change.mode & 0o7000:
        return False
    return (change.uid is None or change.uid == current.uid) and \
        (change.gid is None or change.gid == current.gid)


def _changed(current: Attrs, change: Attrs) -> Attrs:
    """`current` with what `change` sets (its permission bits under the file type)."""
    mode = current.mode
    if change.mode is not None:
        mode = (mode or 0) & ~0o7777 | change.mode & 0o7777
    return replace(current, mode=mode,
                   uid=current.uid if change.uid is None else change.uid,
                   gid=current.gid if change.gid is None else change.gid,
                   atime=current.atime if change.atime is None else change.atime,
                   mtime=current.mtime if change.mtime is None else change.mtime)


def _seconds(ns: int) -> int:
    return ns // 10**9


class _Snapshot(Sequence[tuple[str, int, "tuple[int, ...] | None"]]):
    """One open directory's listing for READDIRPLUS, each entry's stat made when the
    kernel's buffer reaches it: a 100,000-entry directory holds one tuple per entry, not
    one stat."""

    def __init__(self, fs: SSHFS, path: str, entries: list[tuple[str, int, Attrs | None]],
                 with_attrs: bool) -> None:
        self.fs = fs
        self.base = "" if path == "/" else path
        self.entries = entries
        self.with_attrs = with_attrs

    def __len__(self) -> int:
        return len(self.entries) + 2

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return next(self.iter_from(i))

    def iter_from(self, start: int) -> Iterator[tuple[str, int, tuple[int, ...] | None]]:
        """(name, mode, statpack values or None: the mode alone is known) of the entries
        from position `start` on, made as they are taken: the fill loop stops where the
        kernel's buffer is full (one generator, not an index lookup, a bound check and
        attribute fetches per entry)."""
        if start <= 0:
            yield (".", stat.S_IFDIR, None)
        if start <= 1:
            yield ("..", stat.S_IFDIR, None)
        fs, base, with_attrs = self.fs, self.base, self.with_attrs
        stat_values, held_attrs, is_dir = fs._stat_values, fs.cache.attrs, stat.S_ISDIR
        entries = self.entries
        for k in range(max(0, start - 2), len(entries)):
            name, mode, attrs = entries[k]
            # Subdirectories always: reading a directory voids its cached atime in the
            # kernel, and a walker's next lstat of it would cost a GETATTR.
            if not with_attrs and not is_dir(mode):
                yield (name, mode, None)
                continue
            path = f"{base}/{name}"
            if attrs is None:  # a cached listing: the attribute cache may still hold them
                attrs = held_attrs(path)
            shown = None
            if attrs is not None:
                try:
                    shown = stat_values(path, attrs)
                except OSError:  # idmap nomap=error: the entry is listed, its stat fails
                    pass
            yield (name, mode, shown)


class SSHFS(Operations):
    """The mounted file system."""

    use_ns = True  # times travel as integer nanoseconds
    rename_takes_flags = True  # renameat2 flags reach rename() (see fuselib.FUSE)

    def __init__(self, session: RemoteFS, cache: MetadataCache, opts: MountOptions, *,
                 on_mounted: Callable[[], None] | None = None) -> None:
        self.session = session
        # the round trip the read and write caps are sized by is timed on small requests
        # sent with no bulk bytes in flight (stats.Traffic.replied)
        session.stats.traffic.busy = bulk_in_flight
        self.cache = cache
        self.opts = opts
        self.on_mounted = on_mounted
        self.read_only = opts.ro
        self.follow_symlinks = opts.follow_symlinks
        self.force_uid: int | None = opts.uid
        self.force_gid: int | None = opts.gid
        self.umask: int = opts.umask or 0
        self.ids = self._id_mapper(opts)
        ids = self.ids  # ids shown as the server gives them, whatever they are
        self._ids_identity = type(ids) is IdMapper and not (
            ids.uids or ids.gids or ids.strict_uids or ids.strict_gids)
        self.links = SymlinkPolicy(session.root,
                                   transform=opts.transform_symlinks,
                                   contain=not opts.no_contain_symlinks)
        self._files: dict[int, OpenFile] = {}
        self._files_lock = threading.Lock()
        self._fh_counter = itertools.count(1)
        self._dir_snapshots: dict[int, Sequence[Any]] = {}
        self._told_kernel: dict[str, float] = {}  # directory -> when its entries' attrs went
        # regular file -> (size, mtime in s) the kernel last had from us: an open that
        # finds others on the server drops the kernel's copies (close-to-open)
        self._kernel_saw: dict[str, tuple[int, int]] = {}
        self._told_missing: dict[str, None] = {}  # names the kernel may hold as negative
        # directory -> when this mount last made a name in it: one being filled (tar,
        # cp -r, git checkout), where the next lookups are of names not there yet
        self._filling: dict[str, float] = {}
        # directory -> until when lookups there ask by name instead (too big to list,
        # failing, or changing through the mount while listed)
        self._not_relisted: dict[str, float] = {}
        # Files this mount created (O_EXCL) and holds open -> the attribute changes sent on
        # them unwaited, settled by flush, fsync and release (see utimens). Under
        # _files_lock.
        self._made_files: dict[OpenFile, list[tuple[Future, Attrs]]] = {}
        # Of those, the ones open write-only and alone: their small writes held to go
        # out as one WRITE (tar x). Under _files_lock.
        self._held: dict[OpenFile, HeldWrites] = {}
        self.kernel = KernelCache()
        self.chunk_read = min(session.max_read, 256 * 1024)
        self.chunk_write = min(session.max_write, 256 * 1024)
        session.on_reconnect.append(cache.clear)  # what we knew may have changed meanwhile
        session.on_reconnect.append(new_connection)  # and the route, the link's rate
        self.prefetch: ListingPrefetcher | None = None
        if opts.readdir_ahead and cache.listings_enabled():
            self.prefetch = ListingPrefetcher(
                self._prefetch_listing, cache.has_listing,
                max_entries=max(100, cache.config.max_size // 2))
        self.open_ahead: OpenAhead | None = None
        if opts.open_ahead and cache.listings_enabled():
            self.open_ahead = OpenAhead(
                session, cache, self.chunk_read,
                relist=None if self.prefetch is None else self._relist)
        if opts.debug:
            self._trace_calls()

    # --- set-up -------------------------------------------------------------------------
    def _id_mapper(self, opts: MountOptions) -> IdMapper:
        mode = opts.idmap
        if mode == "file":
            return IdMapper.from_files(opts.uidfile, opts.gidfile,
                                       strict=opts.nomap == "error")
        if mode == "names":
            if self.session.has_extension("users-groups-by-id@openssh.com"):
                return ByNameIdMapper(self.session.users_groups_by_id,
                                      strict=opts.nomap == "error")
            log.warning("idmap=names: the server does not name its ids "
                        "(users-groups-by-id@openssh.com, OpenSSH 9.1+); ids are shown as "
                        "they are (idmap=none)")
            return IdMapper()
        if mode == "user":
            # the owner of the login directory is the remote user
            try:
                home = self.session.stat(self.session.realpath(b"."))
                return IdMapper.for_user(home.uid, home.gid, os.getuid(), os.getgid())
            except OSError as exc:
                log.warning("idmap=user: cannot find the remote user's ids: %s", exc)
        return IdMapper()

    def _trace_calls(self) -> None:
        """-d: log every FUSE call, its answer and how long it took (like sshfs -d)."""
        for name in _FUSE_METHODS:
            method = getattr(self, name)

            @functools.wraps(method)
            def traced(*args: Any, __m: Any = method, __n: str = name) -> Any:
                start = time.monotonic()
                shown = [a if not isinstance(a, bytes | bytearray) else f"<{len(a)} bytes>"
                         for a in args]
                try:
                    result = __m(*args)
                except OSError as exc:
                    log.debug("%s%s -> %s (%.1f ms)", __n, tuple(shown),
                              errno.errorcode.get(exc.errno or 0, exc.errno),
                              (time.monotonic() - start) * 1000)
                    raise
                res = f"<{len(result)} bytes>" if isinstance(result, bytes) else result
                if isinstance(res, list) and len(res) > 8:
                    res = f"<{len(res)} entries>"
                log.debug("%s%s -> %s (%.1f ms)", __n, tuple(shown), res,
                          (time.monotonic() - start) * 1000)
                return result

            setattr(self, name, traced)

    # --- attributes ---------------------------------------------------------------------
    def _lookup(self, path: str) -> Attrs:
        """Attributes of `path`: from the cache, or one LSTAT (STAT with follow_symlinks)."""
        cached = self.cache.attrs(path)
        if cached is not None:
            return cached
        if self.cache.is_missing(path) or self.cache.absent(path):
            raise OSError(errno.ENOENT, "no such file (cached)")
        if path != "/" and parent_of(path) in self._filling:
            known = self._lookup_in_filled_directory(path)
            if known is not None:
                return known
        if self.open_ahead is not None:
            ahead = self.open_ahead.attrs(path)  # read with its OPEN, just now
            if ahead is not None:
                return ahead
        if self.prefetch is not None and path != "/":
            known = self._lookup_from_listing(path)
            if known is not None:
                return known
        remote = self.session.remote_path(path)
        try:
            attrs = self.session.stat(remote) if self.follow_symlinks else \
                self.session.lstat(remote)
        except OSError as exc:
            if exc.errno == errno.ENOENT and self.follow_symlinks:
                try:  # a dangling symlink still shows, as the link itself
                    attrs = self.session.lstat(remote)
                except OSError:
                    self.cache.learned_missing(path)
                    raise exc from None
            else:
                if exc.errno == errno.ENOENT:
                    self.cache.learned_missing(path)
                raise
        self.cache.learned_attrs(path, attrs)
        return attrs

    def _lookup_from_listing(self, path: str) -> Attrs | None:
        """A lookup that missed: if its directory's listing is on its way, the answer
        may come with it (found; missing only if that listing is one the kernel asked
        for); if there is none, start one for the lookups that will follow there (this
        one still asks the server directly)."""
        parent = parent_of(path)
        assert self.prefetch is not None
        pending = self.prefetch.pending(parent)
        if pending is None:
            if not self.cache.has_listing(parent):
                self.prefetch.start(parent)
            return None
        self._wait_prefetch(pending)
        attrs = self.cache.attrs(path)
        if attrs is None and self.cache.absent(path):
            raise OSError(errno.ENOENT, "no such file (listed)")
        return attrs

    def _made_name_in(self, path: str) -> None:
        """A name was made at `path` through the mount: its directory is being filled."""
        parent = parent_of(path)
        if len(self._filling) > 4096:
            self._filling.clear()
        if len(self._not_relisted) > 4096:
            self._not_relisted.clear()
        self._filling[parent] = self.cache.clock()

    def _lookup_in_filled_directory(self, path: str) -> Attrs | None:
        """A lookup that missed in a directory this mount is filling, once its listing no
        longer vouches for missing names (older than the negative TTL: the empty one a
        mkdir left, or the last one fetched here): list the directory again, now, instead
        of an LSTAT for this name and each of the new names that follow. The listing is
        as fresh as an LSTAT would be, so it answers "missing" as well as "found" (one
        listing per negative TTL, not one LSTAT per created file). Only for a name the
        listing still held lacks; not for directories over half the cache's size (None:
        ask for the name itself)."""
        parent = parent_of(path)
        made_at = self._filling.get(parent)
        now = self.cache.clock()
        if made_at is None or now - made_at > self.cache.config.dir_ttl \
                or not self.cache.listings_enabled():
            self._filling.pop(parent, None)
            return None
        if self._not_relisted.get(parent, 0.0) > now or self.cache.listed(path) is not False:
            return None  # no listing held any more, or a name it holds (attributes gone)
        limit = max(100, self.cache.config.max_size // 2)
        try:
            entries = self._fetch_listing(parent, limit)
        except OSError as exc:
            log.debug("listing %s for a lookup in it: %s", parent, exc)
            entries = None
        if entries is None:  # too big to list again and again, or gone: ask for names
            self._not_relisted[parent] = float("inf")
            return None
        name = path.rsplit("/", 1)[1]
        found = next((entry for entry in entries if entry[0] == name), None)
        if found is not None:
            return found[2]  # None (a symlink shown as its target): ask for it
        if not self.cache.absent(path):
            # Not cached: something in the directory changed through the mount while it
            # was listed (a file closed after writing, ...). This answer stands, being
            # as fresh; the next lookups there ask by name for a negative TTL.
            self._not_relisted[parent] = now + self.cache.config.negative_ttl
        raise OSError(errno.ENOENT, "no such file (listed just now)")

    def _mode_and_ids(self, attrs: Attrs) -> tuple[int, int, int]:
        """The mode and owner the mount shows for `attrs` (umask, idmap, uid=, gid=)."""
        mode = attrs.mode if attrs.mode is not None else (stat.S_IFREG | 0o644)
        if self.umask:
            mode &= ~self.umask
        uid = attrs.uid or 0
        gid = attrs.gid or 0
        if not self._ids_identity:  # (a call less per id of every listed entry otherwise)
            self.ids.prefetch((attrs,))  # idmap=names: both ids of a new owner in one request
            uid = self.ids.uid_to_local(uid)
            gid = self.ids.gid_to_local(gid)
        if self.force_uid is not None:
            uid = self.force_uid
        if self.force_gid is not None:
            gid = self.force_gid
        return mode, uid, gid

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return statpack.as_dict(self.getattr_values(path, fh))

    def getattr_values(self, path: str, fh: int | None = None) -> tuple[int, ...]:
        """getattr as statpack values: what the kernel's LOOKUPs and GETATTRs get."""
        try:
            return self._stat_values(path, self._lookup(path))
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # a negative entry in the kernel, for refresh
                if len(self._told_missing) > 65536:
                    self._told_missing.clear()
                self._told_missing[path] = None
            raise

    def _stat_values(self, path: str, attrs: Attrs) -> tuple[int, ...]:
        """What the kernel is told of `path` (statpack values): a file written through
        the mount shows its high water while writes are on their way, and what a regular
        file showed is kept (_kernel_saw) to know when its pages go stale."""
        mode, uid, gid = self._mode_and_ids(attrs)
        size = attrs.size or 0
        mtime = attrs.mtime or 0
        if stat.S_ISREG(mode):
            if self._files:
                for f in self._open_files_of(path):
                    size = max(size, f.high_water)
            if len(self._kernel_saw) > 65536:
                self._kernel_saw.clear()  # unknown then means "invalidate": still correct
            self._kernel_saw[path] = (size, mtime)
        return statpack.values(mode, size, uid, gid,
                               mtime if attrs.atime is None else attrs.atime, mtime)

    def _open_files_of(self, path: str) -> list[OpenFile]:
        with self._files_lock:
            return [f for f in self._files.values() if f.path == path]

    def access(self, path: str, amode: int) -> int:
        attrs = self._lookup(path)
        if amode == os.F_OK:
            return 0
        if amode & os.W_OK and self.read_only:
            raise OSError(errno.EROFS, "read-only mount")
        mode, owner, group = self._mode_and_ids(attrs)
        uid, gid, _pid = fuse_get_context()
        if uid == 0:
            if amode & os.X_OK and not (mode & 0o111 or stat.S_ISDIR(mode)):
                raise OSError(errno.EACCES, "not executable")
            return 0
        if uid == owner:
            bits = (mode >> 6) & 7
        elif gid == group:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        want = (4 if amode & os.R_OK else 0) | (2 if amode & os.W_OK else 0) | \
               (1 if amode & os.X_OK else 0)
        if want & ~bits:
            raise OSError(errno.EACCES, "permission denied")
        return 0

    # --- directories --------------------------------------------------------------------
    def _listing(self, path: str) -> list[tuple[str, int, Attrs | None]]:
        """(name, mode, attrs) of every entry: from the cache (attrs where still held),
        from a prefetch on its way, or fetched now (attrs from the READDIR replies)."""
        entries = self._cached_listing(path)
        if entries is None and self.prefetch is not None:
            fut, mine = self.prefetch.claim(path)
            if not mine:  # a prefetch is on the wire
                self._wait_prefetch(fut)
                entries = self._cached_listing(path)
            else:
                try:
                    entries = self._fetch_listing(path)
                finally:
                    self.prefetch.finish(path, fut)
        if entries is None:
            entries = self._fetch_listing(path)
        assert entries is not None  # no limit: never None
        return entries

    def _cached_listing(self, path: str) -> list[tuple[str, int, Attrs | None]] | None:
        """The cached listing, with the attributes it still holds (None: the cache may
        hold the path's own; a symlink's, with follow_symlinks, never were)."""
        return self.cache.listing_entries(path)

    def _fetch_listing(self, path: str, limit: int | None = None, *,
                       guessed: bool = False) -> list[tuple[str, int, Attrs | None]] | None:
        """List `path` on the server (None: more than `limit` entries), and cache it
        (`guessed`: fetched ahead of need, see MetadataCache._guessed)."""
        read_at, epoch = self.cache.clock(), self.cache.epoch(path)
        listing = self.session.listdir_attr(self.session.remote_path(path), limit)
        if listing is None:
            return None
        self.ids.prefetch(attrs for _, attrs in listing)  # idmap=names: one request for all
        decoded = [(name.decode("utf-8", "surrogateescape"), attrs)
                   for name, attrs in listing if name not in (b".", b"..")]
        # With follow_symlinks a link shows as its target: its own attributes are not
        # what getattr must answer.
        self.cache.learned_listing(path, decoded, seed_links=not self.follow_symlinks,
                                   read_at=read_at, epoch=epoch, guessed=guessed)
        return [(name, attrs.mode or 0,
                 None if self.follow_symlinks and stat.S_ISLNK(attrs.mode or 0) else attrs)
                for name, attrs in decoded]

    def _prefetch_listing(self, path: str, limit: int) -> list[str] | None:
        """A prefetcher's job: list `path` into the cache; its subdirectories' paths."""
        entries = self._fetch_listing(path, limit, guessed=True)
        if entries is None:
            return None
        base = "" if path == "/" else path
        return [f"{base}/{name}" for name, mode, _ in entries if stat.S_ISDIR(mode)]

    def _relist(self, path: str) -> None:
        """Open-ahead wants a younger listing of `path` (OpenAhead._relist)."""
        if self.prefetch is not None:
            self.prefetch.start(path, refresh=True)

    def _wait_prefetch(self, pending: Any) -> None:
        try:
            pending.result(timeout=self.session.io_timeout or None)
        except Exception as exc:  # noqa: BLE001 - a late or failed prefetch: ask directly
            log.debug("waiting for a prefetched listing: %s", exc)

    def _kernel_reads(self, path: str, entries: list[tuple[str, int, Attrs | None]]) -> None:
        """A listing went to the kernel: tell the prefetcher (a walk shows here)."""
        if self.prefetch is not None:
            base = "" if path == "/" else path
            self.prefetch.read_by_kernel(
                path, parent_of(path),
                [f"{base}/{name}" for name, mode, _ in entries if stat.S_ISDIR(mode)])

    def readdir(self, path: str, fh: int) -> list[Any]:
        entries = self._listing(path)
        self._kernel_reads(path, entries)
        return [".", "..", *((name, {"st_mode": mode}, 0) for name, mode, _ in entries)]

    def opendir(self, path: str) -> int:
        return next(self._fh_counter)

    def releasedir(self, path: str, fh: int) -> int:
        self._dir_snapshots.pop(fh, None)
        return 0

    def readdir_plus(self, path: str, fh: int, offset: int = 0) -> Sequence[Any]:
        """The listing of `path` as (name, stat) pairs, snapshot per open directory.

        An entry carries full attributes when we have fresh ones (READDIRPLUS: the kernel
        then knows it without a LOOKUP, which is what makes `find` and `ls -l` cheap):
        those of the READDIR replies just received, whatever the cache can hold, or the
        cache's; otherwise only its type. Offset 0 (a new listing or rewinddir) takes a
        new one.
        """
        if offset and fh in self._dir_snapshots:
            return self._dir_snapshots[fh]
        # The kernel still holds what we told it the last time (entry_timeout): names
        # alone then, which costs a fraction (a warm `ls -lR` lists every directory again).
        now = time.monotonic()
        told = self._told_kernel.get(path)
        with_attrs = told is None or now - told >= self.cache.config.kernel_entry_ttl
        if with_attrs:
            self._told_kernel[path] = now
            if len(self._told_kernel) > 65536:
                self._told_kernel.clear()
        entries = self._listing(path)
        self._kernel_reads(path, entries)
        snapshot = _Snapshot(self, path, entries, with_attrs)
        self._dir_snapshots[fh] = snapshot
        return snapshot

    def mkdir(self, path: str, mode: int) -> int:
        remote = self.session.remote_path(path)
        try:
            # the kernel asks for the new directory's attributes next: read them back
            after = self.session.mkdir_and_lstat(remote, Attrs(mode=mode & 0o7777))
        except OSError:
            self.cache.unsure(path)
            raise
        self.cache.created(path, stat.S_IFDIR | (mode & 0o7777))
        self._made_name_in(path)
        if after is not None and after.mode is not None and stat.S_ISDIR(after.mode):
            self.cache.learned_attrs(path, after)
        return 0

    def rmdir(self, path: str) -> int:
        remote = self.session.remote_path(path)
        try:
            self.session.rmdir(remote)
        except OSError:
            self.cache.unsure(path)
            raise
        self.cache.removed(path)
        return 0

    # --- names --------------------------------------------------------------------------
    def unlink(self, path: str) -> int:
        try:
            self.session.remove(self.session.remote_path(path))
        except OSError:
            self.cache.unsure(path)
            raise
        self.cache.removed(path)
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        if flags:
            return self._rename_noreplace(old, new, flags)
        remote_old = self.session.remote_path(old)
        remote_new = self.session.remote_path(new)
        try:
            self.session.rename(remote_old, remote_new)
        finally:
            self.cache.renamed(old, new)
        self._renamed_open_files(old, new)
        return 0

    def _rename_noreplace(self, old: str, new: str, flags: int) -> int:
        """renameat2(RENAME_NOREPLACE) where the server can do it atomically (a regular
        file or symlink, hardlink@openssh.com: see SFTPClient.rename_noreplace); EINVAL
        otherwise, and for RENAME_EXCHANGE, so that callers fall back to their own check."""
        if flags != RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, "only RENAME_NOREPLACE can be done over SFTP")
        if not self.session.has_extension("hardlink@openssh.com"):
            log.debug("rename %s -> %s: RENAME_NOREPLACE needs hardlink@openssh.com", old, new)
            raise OSError(errno.EINVAL, "the server cannot rename without replacing")
        mode = self._lookup(old).mode or 0
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OSError(errno.EINVAL, "RENAME_NOREPLACE: only files and symlinks")
        try:
            self.session.rename_noreplace(self.session.remote_path(old),
                                          self.session.remote_path(new))
        except OSError:
            self.cache.unsure(old)
            self.cache.unsure(new)
            raise
        self.cache.renamed(old, new)
        self._renamed_open_files(old, new)
        return 0

    def _renamed_open_files(self, old: str, new: str) -> None:
        with self._files_lock:
            prefix = old.rstrip("/") + "/"
            for f in self._files.values():
                if f.path == old:
                    f.path = new
                elif f.path.startswith(prefix):
                    f.path = new.rstrip("/") + "/" + f.path[len(prefix):]

    def symlink(self, target: str, source: str) -> int:
        """Create the link `target` (in the mount) pointing at `source` (ln -s source target)."""
        try:
            self.session.symlink(source.encode("utf-8", "surrogateescape"),
                                 self.session.remote_path(target))
        except OSError:
            self.cache.unsure(target)
            raise
        self.cache.created(target, stat.S_IFLNK | 0o777)
        self._made_name_in(target)
        return 0

    def readlink(self, path: str) -> str:
        target = self.cache.link(path)
        if target is None:
            target = check_link_target(self.session.readlink(self.session.remote_path(path)),
                                       path)
            self.cache.learned_link(path, target)
        return self.links.present(path, target).decode("utf-8", "surrogateescape")

    def link(self, target: str, source: str) -> int:
        """Hard link: `target` (new name) for the existing `source`."""
        self._stop_holding(source)  # (the new name opened reads what the server has)
        try:
            self.session.hardlink(self.session.remote_path(source),
                                  self.session.remote_path(target))
        except OSError:
            self.cache.unsure(target)
            raise
        finally:
            self.cache.changed(source)  # its link count
        self.cache.created(target, stat.S_IFREG)  # directories cannot be hard-linked
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        if not stat.S_ISREG(mode):
            raise OSError(errno.EPERM, "SFTP can only create regular files")
        fh = self.create(path, mode & 0o7777 | stat.S_IFREG, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        self.release(path, fh)
        return 0

    # --- attributes changes ---------------------------------------------------------------
    def _setstat(self, path: str, attrs: Attrs) -> None:
        """Change the object at `path` itself: the kernel has already resolved symlinks,
        so a path that is a symlink here means lchown/lutimes, and SETSTAT would follow
        it (unless follow_symlinks shows links as their targets)."""
        remote = self.session.remote_path(path)
        self._send_held_of(path)  # (first: the held bytes may go on a bulk channel)
        settle_bulk_writes(path)  # a write landing after a utime would bump the mtime
        try:
            after = self.session.setstat_and_lstat(remote, attrs, self.follow_symlinks)
        finally:
            self.cache.changed(path)
        if after is not None and _shows(after, attrs):
            # what the kernel asks next (libfuse reads the attributes back) is known
            self.cache.learned_attrs(path, after)

    def _change_attrs(self, path: str, change: Attrs) -> None:
        """chmod, chown, utimens: on the open handle, unwaited, where that is safe
        (_setstat_unwaited), else waited for by path."""
        if not self._setstat_unwaited(path, change):
            self._setstat(path, change)

    def chmod(self, path: str, mode: int) -> int:
        self._change_attrs(path, Attrs(mode=mode & 0o7777))
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        current = None
        if uid == -1 or gid == -1 or uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
            current = self._lookup(path)
        if uid in (-1, 0xFFFFFFFF):
            uid = current.uid if current and current.uid is not None else 0
        else:
            uid = self.ids.uid_to_remote(uid)
        if gid in (-1, 0xFFFFFFFF):
            gid = current.gid if current and current.gid is not None else 0
        else:
            gid = self.ids.gid_to_remote(gid)
        self._change_attrs(path, Attrs(uid=uid, gid=gid))
        return 0

    def utimens(self, path: str, times: tuple[Any, Any] | None = None) -> int:
        now = int(time.time())
        if times is None:
            atime = mtime = now
        else:
            a, m = times
            current = None
            if m is not None and a is None:
                # Only the atime is kept, and writes do not change it: what we knew
                # before the last write will do (tar sets mtime alone on every file).
                current = self.cache.attrs_before_change(path)
            if current is None and (a is None or m is None):
                current = self._lookup(path)
            atime = now if a == "now" else (current.atime or 0) if a is None and current else \
                _seconds(a)
            mtime = now if m == "now" else (current.mtime or 0) if m is None and current else \
                _seconds(m)
        self._change_attrs(path, Attrs(atime=atime, mtime=mtime))
        return 0

    def _setstat_unwaited(self, path: str, change: Attrs) -> bool:
        """The times, mode or owner of a file this mount created and holds open (tar x,
        cp -p, cp -a, git checkout set them last, then close; tar as root sets the times,
        then chown, then chmod): FSETSTAT on its handle, not waited for. Only changes the
        server cannot refuse the file's owner are sent so (_owner_cannot_be_refused): they
        can only fail as a write can (the handle does not care what happened to its
        name), so their error, like a write's, comes from the close(2) (flush), an fsync,
        a truncate or the release (_settle). What the kernel asks next is worked out from
        what we knew, with the change. False: not such a file or change (or nothing known
        of it: cache=no), send it waited."""
        if not self._made_files:
            return False
        for f in self._open_files_of(path):
            with self._files_lock:
                queued = self._made_files.get(f)
            if queued is None:
                continue
            before = self.cache.attrs_before_change(path)
            if before is None or before.mode is None or not stat.S_ISREG(before.mode) \
                    or not _owner_cannot_be_refused(before, change):
                return False
            with self.session.batched():  # the held WRITE and the FSETSTAT: one write
                self._send_held(f)  # the writes held here, then the bulk channels' ones:
                settle_bulk_writes(path)  # none may land after it (sent on their own)
                fut = self.session.fsetstat_async(f.handle, change)
            with self._files_lock:
                queued.append((fut, change))
            self.cache.changed(path)
            # created empty, and written through this handle to its high water (truncate
            # stops this path); other handles' writes show through _stat_values
            self.cache.learned_attrs(path, _changed(replace(before, size=f.high_water),
                                                    change))
            return True
        return False

    def _settle(self, f: OpenFile) -> None:
        """Wait for the attribute changes sent unwaited on `f` (_setstat_unwaited),
        sending again, on the reopened handle, those a lost connection swallowed (after
        the writes before them: call this after f's drain). The first failure is raised
        once, as a write's is."""
        with self._files_lock:
            queued = self._made_files.get(f)
            if not queued:
                return
            pending = list(queued)
            queued.clear()
        error: OSError | None = None
        for fut, attrs in pending:
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - judged here, raised below
                lost = isinstance(exc, OSError) and exc.errno in LOST
                try:
                    if not lost:
                        raise exc
                    self.session.fsetstat(f.handle, attrs)
                except OSError as failed:
                    error = error or failed
                except Exception as other:  # noqa: BLE001 - reported with an errno
                    error = error or OSError(errno.EIO, str(other))
        if error is not None:
            self.cache.changed(f.path)
            self.kernel.invalidate(f.path)  # it holds the attributes that were refused
            log.warning("changing the attributes of %s failed: %s", f.path, error)
            code = error.errno or errno.EIO
            raise OSError(code, f"changing the attributes failed: {os.strerror(code)}")

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        f = self._files.get(fh) if fh is not None else None
        self._send_held_of(path, stop=True)
        for other in self._open_files_of(path):
            other.drain()
            self._settle(other)
            with self._files_lock:
                self._made_files.pop(other, None)  # its size is no longer the high water
            other.high_water = min(other.high_water, length)
        try:
            if f is not None:
                self.session.fsetstat(f.handle, Attrs(size=length))
            else:
                self.session.setstat(self.session.remote_path(path), Attrs(size=length))
        finally:
            self.cache.changed(path)
        return 0

    # --- files --------------------------------------------------------------------------
    def _register(self, path: str, handle: RemoteFile, flags: int) -> int:
        at_open = handle.attrs_at_open
        chunk = stream_chunk(self.chunk_read, at_open.size if at_open is not None else None)
        f = OpenFile(self.session, path, handle, flags, chunk, self.chunk_write)
        if flags & os.O_ACCMODE == os.O_RDONLY and not flags & os.O_TRUNC \
                and at_open is not None and at_open.size is not None:
            f.expect_size(at_open.size)
        fh = next(self._fh_counter)
        with self._files_lock:
            self._files[fh] = f
        return fh

    def _file(self, fh: int) -> OpenFile:
        f = self._files.get(fh)
        if f is None:
            raise OSError(errno.EBADF, "unknown file handle")
        return f

    def open(self, path: str, flags: int) -> int:
        """Open, with close-to-open consistency: the file's attributes are read from the
        server in the same round trip (an LSTAT queued right behind the OPEN; FSTAT would
        need the handle, a round trip later) and refresh our cache; when its size or
        mtime differ from what the kernel was told, the kernel's attributes and pages go."""
        held_here = self._stop_holding(path)  # a second handle reads the server's, and
        settle_bulk_writes(path)  # what was written is there to read, or to truncate
        reading = flags & os.O_ACCMODE == os.O_RDONLY and not flags & os.O_TRUNC
        if reading and self.open_ahead is not None:
            taken = self.open_ahead.take(path)
            if taken is not None and held_here:  # opened (and read) before they went out
                self.session.close_handle(taken[0])
                taken = None
            if taken is not None:
                rf = taken[0]
                if rf.attrs_at_open is not None:  # read when it was opened ahead, or listed
                    self._check_on_open(path, rf.attrs_at_open, learn=not taken[2])
                fh = self._register(path, rf, flags)
                if taken[1] is not None:
                    self._files[fh].adopt_first_chunk(taken[1])
                self.open_ahead.opened(path)
                return fh
        remote = self.session.remote_path(path)
        handle = self.session.open(remote, _sftp_open_flags(flags), read_back=True,
                                   follow=self.follow_symlinks)
        changed = True
        if flags & os.O_TRUNC:
            self.cache.changed(path)
        elif handle.attrs_at_open is not None:
            changed = self._check_on_open(path, handle.attrs_at_open)
        fh = self._register(path, handle, flags)
        if reading:
            known = self.cache.attrs(path)
            # Small files only: for them the READ sent with the handle saves the round
            # trip that is most of their cost; a big file's first chunk may never be read
            # (cp copies it on the server with copy_file_range). An empty file has nothing
            # to fetch; an unchanged one whose pages the kernel keeps across opens
            # (kernel_cache, auto_cache) will not be read from us.
            small = known is None or 0 < (known.size or 0) <= self.chunk_read
            keeps_pages = not changed and (self.opts.kernel_cache
                                           or self.opts.auto_cache)
            if small and not keeps_pages:
                self._files[fh].read_first_chunk()
            if self.open_ahead is not None:
                self.open_ahead.opened(path)
        return fh

    def _check_on_open(self, path: str, fresh: Attrs, *, learn: bool = True) -> bool:
        """Close-to-open: True when the file may differ from what the kernel holds.
        `learn`: cache `fresh` (not when they are a listing's, cached already: learned
        anew they would outlive the listing's cache_timeout)."""
        if fresh.mode is not None and not stat.S_ISREG(fresh.mode):
            return True
        if learn:
            self.cache.learned_attrs(path, fresh)
        saw = self._kernel_saw.get(path)
        try:
            st = self._stat_values(path, fresh)  # what the kernel is told from now on
        except OSError:  # idmap nomap=error: the open works, its stat does not
            return True
        if saw != (st[statpack.SIZE], st[statpack.MTIME]):
            # Changed on the server since the kernel looked (or we do not know what it
            # holds): its size would cut reads short, its pages (kernel_cache) are stale.
            self.kernel.invalidate(path)
            return True
        return False

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        flags = fi if isinstance(fi, int) else (os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        flags |= os.O_CREAT
        remote = self.session.remote_path(path)
        self._stop_holding(path)
        settle_bulk_writes(path)  # (O_TRUNC must come after the writes before it)
        try:
            handle = self.session.open(remote, _sftp_open_flags(flags),
                                       Attrs(mode=mode & 0o7777), read_back=True)
        except OSError:
            self.cache.unsure(path)
            raise
        self.cache.created(path, stat.S_IFREG | (mode & 0o7777))
        self._made_name_in(path)
        if handle.attrs_at_open is not None:  # libfuse asks for them right away
            self.cache.learned_attrs(path, handle.attrs_at_open)
        fh = self._register(path, handle, flags)
        if flags & os.O_EXCL and flags & os.O_ACCMODE != os.O_RDONLY:
            f = self._files[fh]
            with self._files_lock:
                self._made_files[f] = []
                if flags & os.O_ACCMODE == os.O_WRONLY:
                    self._held[f] = HeldWrites(f, min(HOLD_BYTES, self.chunk_write),
                                               functools.partial(self._held_sent, f))
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self._file(fh).read(size, offset)

    def read_fh(self, fh: int, size: int, offset: int) -> bytes:
        """read() without the path (fuselib.FUSE's lean read callback calls this)."""
        return self._file(fh).read(size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        f = self._file(fh)
        held = self._held.get(f) if self._held else None
        if held is not None:  # the cache hears of it when the bytes go out (_held_sent)
            return held.write(data, offset)
        written = f.write(data, offset)
        self.cache.changed(path)
        return written

    def _held_sent(self, f: OpenFile) -> None:
        """Writes of `f` went out: what an LSTAT read before says is old now (while
        they were held, the cached attributes were the server's; the size the kernel is
        told comes from the high water, see _stat_values)."""
        self.cache.changed(f.path)

    def _send_held(self, f: OpenFile, *, stop: bool = False, report: bool = False) -> None:
        """Send the writes held for `f` (see pysshfs.heldwrites) before a request that
        must reach the server after them; `stop`: hold none of its writes from now on.
        `report`: raise a write error now (flush, fsync, release: where one of a WRITE
        sent at once is raised); otherwise it waits for one of those."""
        held = self._held.get(f) if self._held else None
        if held is not None:
            held.send(stop=stop, report=report)

    def _send_held_of(self, path: str, *, stop: bool = False) -> None:
        """_send_held for every open file of `path` (`stop`: its size is set: from now
        on its writes go out as they come)."""
        if not self._held:
            return
        with self._files_lock:
            held = [f for f in self._held if f.path == path]
        for f in held:
            self._send_held(f, stop=stop)

    def _stop_holding(self, path: str) -> bool:
        """A file is opened (`path`) or linked: send what is held for every open file,
        which go on writing as they come: a second handle of one, under any name (a hard
        link, a symlink shown as its target), reads what the server has, and may read
        again while the first still writes. (tar and cp -r close a file before opening
        the next.) True: `path` itself had writes held."""
        if not self._held:
            return False
        with self._files_lock:
            held = list(self._held)
        for f in held:
            self._send_held(f, stop=True)
        return any(f.path == path for f in held)

    def copy_file_range(self, path_in: str, fh_in: int, offset_in: int, path_out: str,
                        fh_out: int, offset_out: int, size: int, flags: int) -> int:
        """cp inside the mount: the server copies (copy-data), no byte crosses the network.

        EOPNOTSUPP whenever it cannot (no extension, the same file, nothing copied yet
        and a bare FAILURE): the kernel then copies through read and write itself.
        """
        if flags or not self.session.has_extension("copy-data"):
            log.debug("copy_file_range: the server has no copy-data (OpenSSH 9.0+)")
            raise OSError(errno.EOPNOTSUPP, "no server-side copy")
        src, dst = self._files.get(fh_in), self._files.get(fh_out)
        if src is None or dst is None:
            raise OSError(errno.EXDEV, "not a file of this mount")
        if src.path == dst.path:  # sftp-server refuses to copy within one file
            raise OSError(errno.EOPNOTSUPP, "server-side copy within one file")
        for f in self._open_files_of(src.path) + self._open_files_of(dst.path):
            self._send_held(f, stop=True)
            f.drain()  # the server must hold what was written before it copies
        end_of_source = self.session.fstat(src.handle).size or 0
        length = min(size, MAX_PER_CALL, max(0, end_of_source - offset_in))
        if length == 0:
            return 0
        try:
            copied = copy_range(self.session, src.handle, offset_in, length, dst.handle,
                                offset_out)
        except OSError as exc:
            cause = self.session.failure_cause(dst.handle) if exc.errno == errno.EIO \
                else None
            if cause is not None:  # a full or read-only disk: no use copying another way
                raise OSError(cause, os.strerror(cause)) from None
            if exc.errno in (errno.EIO, errno.EOPNOTSUPP):  # e.g. two names of one file
                log.debug("copy_file_range %s -> %s: %s; the kernel copies instead",
                          path_in, path_out, exc)
                raise OSError(errno.EOPNOTSUPP, "server-side copy failed") from None
            raise
        finally:
            self.cache.changed(dst.path)
        for f in self._open_files_of(dst.path):
            f.written_on_server(offset_out + copied if f is dst else 0)
        return copied

    def flush(self, path: str, fh: int) -> int:
        f = self._file(fh)
        if self._held:
            self._send_held(f, report=True)
        if self._made_files:
            self._await_last_setstat(f)
        f.flush()
        if self._made_files:
            self._settle(f)
        return 0

    def _await_last_setstat(self, f: OpenFile) -> None:
        """Wait for the last attribute change sent unwaited on `f`, whatever its outcome:
        it went out after the file's writes and the server answers in order, so the
        writes' replies are in by then and the drain that follows finds them done (one
        wake-up for close(2), not one per WRITE)."""
        with self._files_lock:
            queued = self._made_files.get(f)
            last = queued[-1][0] if queued else None
        if last is not None:
            try:
                last.exception()
            except Exception:  # noqa: BLE001 - judged by _settle
                pass

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        f = self._file(fh)
        if self._held:
            self._send_held(f, report=True)
        f.fsync(self.session.has_extension("fsync@openssh.com"))
        if self._made_files:
            self._settle(f)
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._files_lock:
            f = self._files.pop(fh, None)
            made = f is not None and self._made_files.get(f)
            held = self._held.pop(f, None) if f is not None and self._held else None
        if f is None:
            return 0
        if not made and not f.wrote and self.open_ahead is not None:
            # Nothing to wait for: its CLOSE, the first READs of files opened ahead and
            # the top-up's OPENs go out in one write (git status: one a file, not three).
            with self.session.batched():
                self._release(f, made, held)
            return 0
        return self._release(f, made, held)

    def _release(self, f: OpenFile, made: Any, held: HeldWrites | None) -> int:
        error: OSError | None = None
        try:
            if held is not None:
                try:
                    held.send(stop=True, report=True)
                except OSError as exc:
                    error = exc
            if made:  # times set unwaited: after the writes before them, before the CLOSE
                try:
                    f.drain()
                except OSError as exc:
                    error = exc
                try:
                    self._settle(f)
                except OSError as exc:
                    error = error or exc
            f.release()
        finally:
            with self._files_lock:
                self._made_files.pop(f, None)
            if f.wrote:
                self.cache.changed(f.path)
            if self.open_ahead is not None:  # what comes next in a walk, off its path
                self.open_ahead.released(f.path)
        if error is not None:
            raise error
        return 0

    # --- observing and steering the caches (pysshfs status / refresh) --------------------
    def status(self) -> dict[str, Any]:
        """What `pysshfs status` shows of this mount (the daemon adds who and where)."""
        with self._files_lock:
            files = list(self._files.values())
        state, why = self.session.state()
        stats = self.session.stats
        traffic, link = stats.traffic, stats.link
        counts = self.cache.counters.snapshot()
        return {
            "remote_dir": self.session.root.decode("utf-8", "surrogateescape"),
            "state": state,
            "error": why,
            "state_since": link.lost_at if state == "reconnecting" else link.connected_at,
            "rtt_ms": None if traffic.rtt is None else round(traffic.rtt * 1000, 3),
            "rtt_min_ms": None if traffic.rtt_min is None else round(traffic.rtt_min * 1000, 3),
            "reconnects": link.reconnects,
            "requests_sent": traffic.requests,
            "replies_received": traffic.replies,
            "bytes_sent": traffic.bytes_sent,
            "bytes_received": traffic.bytes_received,
            "cache": {
                **counts,
                "attr_hit_ratio": ratio(counts["attr_hits"], counts["attr_misses"]),
                "listing_hit_ratio": ratio(counts["listing_hits"], counts["listing_misses"]),
                "link_hit_ratio": ratio(counts["link_hits"], counts["link_misses"]),
            },
            "open_files": len(files),
            "unacked_write_bytes": sum(f.unacknowledged for f in files),
            "kernel_invalidation": self.kernel.available,
        }

    def refresh(self, paths: list[str], mountpoint: str | None = None) -> int:
        """`pysshfs refresh`: forget what we and the kernel hold for each of `paths` and
        everything below it, so the next access asks the server. Runs on the control
        thread, never in a FUSE callback (it may stat through the mount to find the
        kernel's node ids). The number of paths whose attributes were dropped."""
        dropped = 0
        for path in paths:
            def under(p: str, top: str = path) -> bool:
                return top == "/" or p == top or p.startswith(top.rstrip("/") + "/")

            held = set(self.cache.forget(path))
            held.update(p for p in list(self._kernel_saw) if under(p))
            for p in held:
                self._kernel_saw.pop(p, None)
            for d in [d for d in list(self._told_kernel) if under(d)]:
                self._told_kernel.pop(d, None)
            names = [p for p in list(self._told_missing) if under(p)]
            for p in names:
                self._told_missing.pop(p, None)
            held.add(path)
            for p in sorted(held):
                self.kernel.invalidate(p)
            if path != "/" and not self._is_directory_in_kernel(mountpoint, path):
                # a file may have come, gone or been replaced by another (a directory's
                # dentry stays: expiring it breaks the working directory of whoever is in
                # it, measured; its attributes, dropped above, tell if it went)
                names.append(path)
            if mountpoint is not None:
                for p in names:
                    self._forget_kernel_entry(mountpoint, p)
            dropped += len(held)
        return dropped

    @staticmethod
    def _is_directory_in_kernel(mountpoint: str | None, path: str) -> bool:
        try:
            return mountpoint is not None and stat.S_ISDIR(os.lstat(mountpoint + path).st_mode)
        except OSError:
            return False

    def _forget_kernel_entry(self, mountpoint: str, path: str) -> None:
        parent = parent_of(path)
        try:
            # libfuse's node id is the inode number it reports (no -o use_ino)
            parent_ino = os.lstat(mountpoint + ("" if parent == "/" else parent)).st_ino
        except OSError:
            return  # the directory is gone too: the kernel finds out by itself
        self.kernel.forget_entry(parent_ino, path.rsplit("/", 1)[1])

    # --- the file system ----------------------------------------------------------------
    def statfs(self, path: str) -> dict[str, int]:
        if not self.session.has_extension("statvfs@openssh.com"):
            # No way to know: report an empty, honest answer rather than invented numbers.
            return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}
        st = self.session.statvfs(self.session.root)
        return {key: st[key] for key in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                         "f_bavail", "f_files", "f_ffree", "f_favail",
                                         "f_namemax") if key in st}

    def init_with_config(self, conn: Any, config: Any) -> None:
        """The kernel's INIT: agree on request sizes, then tell the daemon we are mounted."""
        max_read = self.opts.max_read
        if conn is not None and max_read and hasattr(conn, "max_read"):
            # libfuse 3 refuses the mount unless init() repeats the -o max_read value.
            conn.max_read = int(max_read)
        if conn is not None:
            always_readdirplus(conn)
        self.kernel.attach()
        if self.on_mounted is not None:
            self.on_mounted()

    def destroy(self, path: str) -> None:
        """Unmounting: every write still pending reaches the server before we exit, or
        (the server gave no answer within the daemon's shutdown grace) is logged as lost."""
        self.kernel.detach()
        if self.prefetch is not None:
            self.prefetch.close()
        if self.open_ahead is not None:
            self.open_ahead.close()
        with self._files_lock:
            files = list(self._files.values())
            self._files.clear()
        for f in files:
            try:
                f.release()
            except OSError as exc:
                log.error("%s: writes lost at unmount, pending data could not be written: %s",
                          f.path, exc)
