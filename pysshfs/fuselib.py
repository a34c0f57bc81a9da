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
from typing import Any

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


class FUSE(mfusepy.FUSE):
    """mfusepy.FUSE with utimens and rename passing what the kernel really said."""

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
