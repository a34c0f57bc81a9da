"""Which libfuse we load, and the few places where mfusepy's glue loses information.

mfusepy looks for libfuse2 first when both are installed; we want libfuse3 (1 MiB
requests, a maintained library) and fall back to libfuse2 only when 3 is missing. The
choice is made here, explicitly, before mfusepy is imported anywhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
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


_choose_library()

import mfusepy  # noqa: E402  (must come after the library choice)

FUSE_MAJOR: int = mfusepy.fuse_version_major
FuseOSError = mfusepy.FuseOSError
Operations = mfusepy.Operations
fuse_get_context = mfusepy.fuse_get_context


def fuse_version_text() -> str:
    return f"libfuse {mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor} " \
           f"({os.environ.get('FUSE_LIBRARY_PATH', '?')})"


def _timespec(ts: Any) -> int | str | None:
    """A timespec as nanoseconds, "now" for UTIME_NOW, None for UTIME_OMIT."""
    if ts.tv_nsec == UTIME_NOW:
        return "now"
    if ts.tv_nsec == UTIME_OMIT:
        return None
    return int(ts.tv_sec) * 10**9 + int(ts.tv_nsec)


_pinned = threading.local()


def _pin_thread_state() -> None:
    """Keep this libfuse worker thread's Python thread state alive between callbacks.

    A ctypes callback on a thread Python did not start creates a thread state on entry
    and destroys it on return: measured, that doubled the cost of a cached getattr
    (55 us against 37 us single-threaded). One extra PyGILState_Ensure, never released,
    keeps the state for the thread's life (libfuse keeps its workers: max_idle_threads).
    """
    ctypes.pythonapi.PyGILState_Ensure()
    _pinned.done = True


class FUSE(mfusepy.FUSE):
    """mfusepy.FUSE with utimens and rename passing what the kernel really said, and
    worker threads that keep their Python thread state."""

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_pinned, "done", False):
            _pin_thread_state()
        return super()._wrapper(func, *args, **kwargs)

    def utimens_fuse_2(self, path: bytes | None, buf: Any) -> int:
        times = None if not buf else (_timespec(buf.contents.actime),
                                      _timespec(buf.contents.modtime))
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        return self.operations.utimens(decoded, times)

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        return self.utimens_fuse_2(path, buf)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        # RENAME_NOREPLACE / RENAME_EXCHANGE cannot be done atomically over SFTP; say so
        # (as sshfs does) so that tools fall back instead of silently replacing a file.
        if flags:
            return -errno.EINVAL
        return self.rename_fuse_2(old, new)

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
        """
        if not hasattr(self.operations, "readdir_plus"):
            return self._readdir(path, buf, filler, offset, fip)
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        entries = self.operations.readdir_plus(decoded, fip.contents.fh, offset)
        plus = bool(flags & FUSE_READDIR_PLUS)
        st = mfusepy.c_stat()
        size = ctypes.sizeof(st)
        for position in range(offset, len(entries)):
            name, attrs = entries[position]
            ctypes.memset(ctypes.byref(st), 0, size)
            fill = 0
            if attrs is not None:
                mfusepy.set_st_attrs(st, attrs, use_ns=True)
                if plus and "st_size" in attrs:
                    fill = FUSE_FILL_DIR_PLUS
            if filler(buf, name.encode(self.encoding, self.errors),
                      st if attrs is not None else None, position + 1, fill) != 0:
                break
        return 0


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
        if lib.fuse_get_session.restype is not ctypes.c_void_p:
            lib.fuse_get_session.restype = ctypes.c_void_p
            lib.fuse_get_session.argtypes = [ctypes.c_void_p]
            lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
        return bool(lib.fuse_session_exited(lib.fuse_get_session(fuse)))
    lib.fuse_exited.argtypes = [ctypes.c_void_p]
    return bool(lib.fuse_exited(fuse))
