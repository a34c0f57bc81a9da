"""Which libfuse we load, and the few places where mfusepy's glue loses information.

mfusepy looks for libfuse2 first when both are installed; we want libfuse3 (1 MiB
requests, a maintained library) and fall back to libfuse2 only when 3 is missing. The
choice is made here, explicitly, before mfusepy is imported anywhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from typing import Any

FUSE_READDIR_PLUS = 1 << 0  # enum fuse_readdir_flags
FUSE_FILL_DIR_PLUS = 1 << 1  # enum fuse_fill_dir_flags
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _choose_library() -> None:
    if os.environ.get("FUSE_LIBRARY_PATH"):
        return  # the user decided
    for name in ("fuse3", "fuse"):
        path = ctypes.util.find_library(name)
        if path:
            os.environ["FUSE_LIBRARY_PATH"] = path
            return


log = logging.getLogger(__name__)

_choose_library()

import mfusepy  # noqa: E402  (must come after the library choice)

from pysshfs.statpack import StatPacker, mode_only_stat  # noqa: E402

FUSE_MAJOR: int = mfusepy.fuse_version_major
FuseOSError = mfusepy.FuseOSError
Operations = mfusepy.Operations
fuse_get_context = mfusepy.fuse_get_context


def fuse_version_text() -> str:
    return f"libfuse {mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor} " \
           f"({os.environ.get('FUSE_LIBRARY_PATH', '?')})"


FUSE_CAP_READDIRPLUS_AUTO = 1 << 14  # libfuse 3's capability bits


def always_readdirplus(conn: Any) -> None:
    """Ask the kernel for READDIRPLUS on every buffer of a listing, not only the first.

    In "auto" mode (libfuse's default) the kernel uses READDIRPLUS for a listing's first
    buffer and then only after a LOOKUP in that directory, so `find`, `ls -l` or `git
    status` over a directory larger than one buffer (~100 entries) pay a LOOKUP per entry
    of every later buffer: attributes we already hold, fetched again one request at a time.
    """
    if FUSE_MAJOR < 3:
        return
    conn.want &= ~FUSE_CAP_READDIRPLUS_AUTO
    if hasattr(conn, "want_ext"):  # libfuse >= 3.17 keeps a 64-bit copy as the source
        conn.want_ext &= ~FUSE_CAP_READDIRPLUS_AUTO


def _timespec(ts: Any) -> int | str | None:
    """A timespec as nanoseconds, "now" for UTIME_NOW, None for UTIME_OMIT."""
    if ts.tv_nsec == UTIME_NOW:
        return "now"
    if ts.tv_nsec == UTIME_OMIT:
        return None
    return int(ts.tv_sec) * 10**9 + int(ts.tv_nsec)


_pinned = threading.local()
_STAT = StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs)
# fuse_file_info.noflush (libfuse 3.11+): the kernel sends no FLUSH at close (FOPEN_NOFLUSH)
_HAS_NOFLUSH = any(field[0] == "noflush" for field in mfusepy.fuse_file_info._fields_)


def _pin_thread_state() -> None:
    """Keep this libfuse worker thread's Python thread state alive between callbacks.

    A ctypes callback on a thread Python did not start creates a thread state on entry
    and destroys it on return: measured, that doubled the cost of a cached getattr
    (55 us against 37 us single-threaded). One extra PyGILState_Ensure, never released,
    keeps the state for the thread's life (libfuse keeps its workers: max_idle_threads).
    """
    ctypes.pythonapi.PyGILState_Ensure()
    _pinned.done = True


# libfuse's read callback, every argument as a plain integer: ctypes then makes no bytes
# of the path, no pointer objects of the buffer and the file info (see FUSE.lean_read).
_LEAN_READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.c_int64, ctypes.c_void_p)
_FH_OFFSET: int = mfusepy.fuse_file_info.fh.offset
_read_fh = ctypes.c_uint64.from_address


def read(exc: BaseException) -> None:  # (named for mfusepy's messages about it)
    """A failed lean read, raised again inside mfusepy's _wrapper to be judged there."""
    raise exc


_failed_read = read
del read
_raisers: dict[str, Any] = {}


def _raiser(name: str) -> Any:
    """A function named `name` that raises its first argument: how a failure of the FUSE
    operation `name` is handed to mfusepy's _wrapper, which judges it by the function's
    name (init's failures propagate, getattr's ENOENT is logged without a traceback) and
    logs the rest of the arguments as the operation's own."""
    fn = _raisers.get(name)
    if fn is None:
        def fn(exc: BaseException, *args: Any) -> None:
            raise exc
        fn.__name__ = fn.__qualname__ = name
        _raisers[name] = fn
    return fn


class FUSE(mfusepy.FUSE):
    """mfusepy.FUSE with utimens and rename passing what the kernel really said,
    copy_file_range, a lean read, and worker threads that keep their Python thread state."""

    def __init__(self, operations: Any, mountpoint: str, **kwargs: Any) -> None:
        read_fh = getattr(operations, "read_fh", None)
        if read_fh is None:
            super().__init__(operations, mountpoint, **kwargs)
            return
        # mfusepy fills libfuse's operations table and calls fuse_main_real with it in its
        # __init__; the read slot is swapped for ours on the way (a module global lookup).
        self._lean_read = _LEAN_READ(self.lean_read(read_fh))
        slot = dict(f[:2] for f in mfusepy.fuse_operations._fields_)["read"]
        real_main = mfusepy.fuse_main_real

        def main_with_lean_read(argc: int, argv: Any, ops: Any, size: int, data: Any) -> int:
            ops.contents.read = ctypes.cast(self._lean_read, slot)
            return real_main(argc, argv, ops, size, data)

        mfusepy.fuse_main_real = main_with_lean_read
        try:
            super().__init__(operations, mountpoint, **kwargs)
        finally:
            mfusepy.fuse_main_real = real_main

    def lean_read(self, read_fh: Any) -> Any:
        """The read callback, straight to `read_fh(fh, size, offset)`: at iodepth 1 a
        random 4 KiB read costs one round trip plus this, and mfusepy's generic way
        (functools.partial, two _wrapper levels, a decoded path nobody reads, ctypes
        objects for the buffer and the file info) was a fifth of the daemon's CPU per
        read. Failures go through mfusepy's _wrapper as before (errno, logging)."""
        wrapper = self._wrapper

        def read(path: int | None, buf: int, size: int, offset: int, fip: int) -> int:
            if not getattr(_pinned, "done", False):
                _pin_thread_state()
            try:
                data = read_fh(_read_fh(fip + _FH_OFFSET).value, size, offset)
                n = len(data)
                if n > size:
                    raise OSError(errno.EIO, f"read of {size} bytes answered with {n}")
            except BaseException as exc:  # noqa: BLE001 - judged by mfusepy, as any call
                return wrapper(_failed_read, exc)
            if n:
                ctypes.memmove(buf, data, n)
            return n

        return read

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """mfusepy's, with the call that succeeds made here: every FUSE call goes through
        this, and the super() call with its argument packing was a few per cent of the
        daemon's Python time in a cold git status. A failure is raised again inside
        mfusepy's _wrapper, under the operation's name, and judged there as before."""
        if not getattr(_pinned, "done", False):
            _pin_thread_state()
        try:
            return func(*args, **kwargs) or 0
        except BaseException as exc:  # noqa: BLE001 - judged by mfusepy, as any call
            return super()._wrapper(_raiser(func.__name__), exc, *args)

    def fgetattr(self, path: bytes | None, buf: Any, fip: Any) -> int:
        """mfusepy's, with the stat filled in one call (see statpack)."""
        fh = fip.contents.fh if fip else None
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        values = getattr(self.operations, "getattr_values", None)
        if values is not None:
            _STAT.fill_values(buf.contents, values(decoded, fh))
        else:
            _STAT.fill(buf.contents, self.operations.getattr(decoded, fh))
        return 0

    def utimens_fuse_2(self, path: bytes | None, buf: Any) -> int:
        times = None if not buf else (_timespec(buf.contents.actime),
                                      _timespec(buf.contents.modtime))
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.utimens(decoded, times)

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        return self.utimens_fuse_2(path, buf)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        # mfusepy drops the flags; replacing a file the caller asked to keep would be
        # wrong, so they go to an operations object that takes them, or EINVAL (as
        # sshfs): tools then fall back to their own check.
        if not flags:
            return self.rename_fuse_2(old, new)
        if not getattr(self.operations, "rename_takes_flags", False):
            return -errno.EINVAL
        return self.operations.rename(old.decode(self.encoding, self.errors),
                                      new.decode(self.encoding, self.errors), flags)

    def copy_file_range(self, path_in: bytes | None, fip_in: Any, offset_in: int,
                        path_out: bytes | None, fip_out: Any, offset_out: int, size: int,
                        flags: int) -> int:
        """libfuse3's copy_file_range (mfusepy has the slot, no wrapper): the bytes copied,
        or -errno (EOPNOTSUPP/EXDEV make the kernel copy through read/write instead;
        ENOSYS would make it stop asking for the whole mount)."""
        return self.operations.copy_file_range(
            None if path_in is None else path_in.decode(self.encoding, self.errors),
            fip_in.contents.fh, offset_in,
            None if path_out is None else path_out.decode(self.encoding, self.errors),
            fip_out.contents.fh, offset_out, size, flags)

    def open(self, path: bytes, fip: Any) -> int:
        # Read-only, a file has nothing to flush: no FLUSH at its close(2), one FUSE
        # request less per file read (git status reads every file once). Kernels
        # without FOPEN_NOFLUSH ignore the bit and flush as before.
        fi = fip.contents
        fi.fh = self.operations.open(path.decode(self.encoding, self.errors), fi.flags)
        if _HAS_NOFLUSH and fi.flags & os.O_ACCMODE == os.O_RDONLY:
            fi.noflush = 1
        return 0

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        # mfusepy inspects the operation's signature on every create (slow for tar -x);
        # ours always takes the open flags.
        fi = fip.contents
        fi.fh = self.operations.create(path.decode(self.encoding, self.errors), mode, fi.flags)
        return 0

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int,
                       fip: Any, flags: int) -> int:
        """READDIRPLUS: hand the kernel each entry's attributes with its name, so that it
        needs no LOOKUP per entry afterwards (mfusepy passes names and modes only).

        Entries go out with offsets (position + 1): libfuse only creates the kernel's
        entries for a READDIRPLUS reply when offsets are given, and then asks again from
        where the buffer filled up; the listing is a snapshot kept with the handle.
        `readdir_plus` answers with an object whose `iter_from(offset)` gives (name,
        mode, statpack values or None when only the mode is known) from there on.
        """
        if not hasattr(self.operations, "readdir_plus"):
            return self._readdir(path, buf, filler, offset, fip)
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        entries = self.operations.readdir_plus(decoded, fip.contents.fh, offset)
        plus = FUSE_FILL_DIR_PLUS if flags & FUSE_READDIR_PLUS else 0
        st = mfusepy.c_stat()
        fill, mode_only, encoding, errors = _STAT.fill_values, mode_only_stat, \
            self.encoding, self.errors
        position = offset
        for name, mode, values in entries.iter_from(offset):
            position += 1
            if values is None:
                fill(st, mode_only(mode))
                entry_flags = 0
            else:
                fill(st, values)
                entry_flags = plus
            if filler(buf, name.encode(encoding, errors), st, position, entry_flags) != 0:
                break
        return 0


class KernelCache:
    """The kernel's copies of attributes and file pages, dropped by path when we learn
    they are stale (fuse_invalidate_path: libfuse >= 3.1, the high-level face of
    fuse_lowlevel_notify_inval_inode).

    The `struct fuse` pointer is only known inside a FUSE callback: `attach` takes it in
    init, `detach` forgets it in destroy, before libfuse frees it; the lock keeps an
    invalidation from running into that. Without libfuse 3 this does nothing (the
    kernel's copies then live out attr_timeout).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fuse: int | None = None
        self._invalidate_path: Any = None
        fn = getattr(mfusepy._libfuse, "fuse_invalidate_path", None) \
            if FUSE_MAJOR >= 3 else None
        if fn is not None:
            fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            fn.restype = ctypes.c_int
            self._invalidate_path = fn
        self._inval_entry: Any = None
        self._expire_entry: Any = None
        self._get_session: Any = None
        lib = mfusepy._libfuse
        if fn is not None and hasattr(lib, "fuse_get_session") and \
                hasattr(lib, "fuse_lowlevel_notify_inval_entry"):
            lib.fuse_get_session.argtypes = [ctypes.c_void_p]
            lib.fuse_get_session.restype = ctypes.c_void_p
            entry = lib.fuse_lowlevel_notify_inval_entry
            entry.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                              ctypes.c_size_t]
            entry.restype = ctypes.c_int
            self._get_session, self._inval_entry = lib.fuse_get_session, entry
            expire = getattr(lib, "fuse_lowlevel_notify_expire_entry", None)  # >= 3.12
            if expire is not None:
                expire.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                                   ctypes.c_size_t]
                expire.restype = ctypes.c_int
            self._expire_entry = expire

    @property
    def available(self) -> bool:
        return self._invalidate_path is not None and self._fuse is not None

    def attach(self) -> None:
        """Called from a FUSE callback (init): remember which `struct fuse` we serve."""
        if self._invalidate_path is None:
            return
        ctx = mfusepy._libfuse.fuse_get_context()
        if ctx:
            with self._lock:
                self._fuse = ctx.contents.fuse

    def detach(self) -> None:
        with self._lock:
            self._fuse = None

    def forget_entry(self, parent_ino: int, name: str) -> bool:
        """Make the kernel look `name` up again in the directory whose node id is
        `parent_ino` (its dentry, a negative one too, expires). Expiring (libfuse 3.12,
        Linux 6.2) rather than invalidating keeps a directory that is some process's
        working directory reachable; older kernels get the invalidation. Never from a
        FUSE callback on that directory: the kernel may hold its lock (libfuse docs)."""
        with self._lock:
            if self._fuse is None or self._inval_entry is None:
                return False
            raw = name.encode("utf-8", "surrogateescape")
            session = self._get_session(self._fuse)
            result = -errno.ENOSYS
            if self._expire_entry is not None:
                result = self._expire_entry(session, parent_ino, raw, len(raw))
            if result == -errno.ENOSYS:
                result = self._inval_entry(session, parent_ino, raw, len(raw))
        log.debug("kernel entry %r in node %d forgotten: %d", name, parent_ino, result)
        return result == 0

    def invalidate(self, path: str) -> bool:
        """Drop the kernel's attributes and cached pages of `path` (the next stat asks
        us, the next read goes to us); False if the kernel held nothing or cannot."""
        with self._lock:
            if self._fuse is None or self._invalidate_path is None:
                return False
            result = self._invalidate_path(self._fuse, path.encode("utf-8", "surrogateescape"))
        return result == 0


# --- noticing the end of the FUSE loop (unmount, SIGTERM) from another thread ------------
def current_fuse() -> int | None:
    """The `struct fuse *` of the loop running this callback (call it inside one)."""
    try:
        return mfusepy._libfuse.fuse_get_context().contents.fuse or None
    except (AttributeError, ValueError):
        return None


def loop_exited(fuse: int) -> bool:
    """Whether libfuse was told to end the loop of `fuse` (a signal, an unmount)."""
    lib = mfusepy._libfuse
    if FUSE_MAJOR >= 3:
        # Prototypes set each time (cheap), never inferred: KernelCache sets
        # fuse_get_session's too, and a pointer passed as a C int crashes.
        lib.fuse_get_session.restype = ctypes.c_void_p
        lib.fuse_get_session.argtypes = [ctypes.c_void_p]
        lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
        return bool(lib.fuse_session_exited(lib.fuse_get_session(fuse)))
    lib.fuse_exited.argtypes = [ctypes.c_void_p]
    return bool(lib.fuse_exited(fuse))
