"""fuselib.FUSE._wrapper: answers and errnos as mfusepy's own wrapper gives them."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import mfusepy

from pysshfs import fuselib


def _fuse() -> Any:
    return fuselib.FUSE.__new__(fuselib.FUSE)  # (no mount: only the wrapper is used)


def test_answers_and_errnos() -> None:
    fuse = _fuse()

    def getattr(path: str) -> int:
        raise OSError(errno.ENOENT, "missing")

    def unlink(path: str) -> None:
        raise ValueError("a bug")

    assert fuse._wrapper(lambda: None) == 0
    assert fuse._wrapper(lambda n: n, 7) == 7
    assert fuse._wrapper(getattr, "/a") == -errno.ENOENT
    assert fuse._wrapper(unlink, "/a") == -errno.EINVAL  # mfusepy's answer to a bug


def test_a_failed_lean_read_keeps_its_errno() -> None:
    """The lean read hands its failure to _wrapper through a raiser of its own."""
    fuse = _fuse()
    seen: list[tuple[int, int, int]] = []

    def read_fh(fh: int, size: int, offset: int) -> bytes:
        seen.append((fh, size, offset))
        raise OSError(errno.EIO, "bad reply")

    read = fuse.lean_read(read_fh)
    info = mfusepy.fuse_file_info()
    info.fh = 42
    buf = ctypes.create_string_buffer(16)
    assert read(None, ctypes.addressof(buf), 16, 0, ctypes.addressof(info)) == -errno.EIO
    assert seen == [(42, 16, 0)]
    read = fuse.lean_read(lambda fh, size, offset: b"abc")
    assert read(None, ctypes.addressof(buf), 16, 0, ctypes.addressof(info)) == 3
    assert buf.raw[:3] == b"abc"
