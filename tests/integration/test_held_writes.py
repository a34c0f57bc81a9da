"""Small writes to a file this mount made (O_EXCL, write-only), held to go out as one
WRITE (pysshfs.heldwrites): nothing a user can see changes but the request count. The
size shows while they are held, another open of the file reads them, they reach the server
by themselves soon after, and a full disk still fails the close(2) with ENOSPC."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tests.support.mount import Mounter, wait_for

PIECES = [b"a" * 7168, b"b" * 1024, b"c" * 9216]
DATA = b"".join(PIECES)


def made_with_pieces(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    for piece in PIECES:
        os.write(fd, piece)
    return fd


def test_held_writes_show_and_reach_the_server(mounter: Mounter) -> None:
    m = mounter()
    fd = made_with_pieces(m.mnt / "f")
    try:
        assert os.stat(m.mnt / "f").st_size == len(DATA)
        # they reach the server by themselves (HOLD_SECONDS), close or not
        assert wait_for(lambda: (m.root / "f").read_bytes() == DATA, 10)
        os.write(fd, b"d" * 100)
        # a second handle reads what the first wrote
        assert (m.mnt / "f").read_bytes() == DATA + b"d" * 100
        os.write(fd, b"e" * 100)  # written as it comes from now on: read at once
        assert (m.mnt / "f").read_bytes() == DATA + b"d" * 100 + b"e" * 100
    finally:
        os.close(fd)
    assert (m.root / "f").read_bytes() == DATA + b"d" * 100 + b"e" * 100


def test_opening_any_file_sends_what_is_held(mounter: Mounter) -> None:
    """Opening another file sends what is held (a symlink shown as its target is
    another path of the same file), and the holding stops: writes go as they come."""
    m = mounter()
    (m.root / "other").write_bytes(b"o")
    fd = made_with_pieces(m.mnt / "f")
    try:
        assert (m.mnt / "other").read_bytes() == b"o"
        assert (m.root / "f").read_bytes() == DATA
        os.write(fd, b"d" * 10)
        assert wait_for(lambda: (m.root / "f").stat().st_size == len(DATA) + 10, 0.15)
    finally:
        os.close(fd)


def test_a_hard_link_reads_what_is_held(mounter: Mounter) -> None:
    m = mounter()
    fd = made_with_pieces(m.mnt / "f")
    try:
        os.link(m.mnt / "f", m.mnt / "g")
        assert (m.mnt / "g").read_bytes() == DATA
        os.write(fd, b"e" * 10)
        assert (m.mnt / "g").read_bytes() == DATA + b"e" * 10
    finally:
        os.close(fd)


def test_fsync_and_close_send_what_is_held(mounter: Mounter) -> None:
    m = mounter()
    fd = made_with_pieces(m.mnt / "f")
    os.fsync(fd)
    assert (m.root / "f").read_bytes() == DATA
    os.write(fd, b"tail")
    os.close(fd)
    assert (m.root / "f").read_bytes() == DATA + b"tail"


def test_a_full_disk_fails_the_close_of_held_writes(mounter: Mounter, tmpfs_root) -> None:  # type: ignore[no-untyped-def]
    root = tmpfs_root("64k")
    m = mounter(root=root)
    (root / "filler").write_bytes(b"f" * (64 * 1024 - 4096))
    fd = os.open(m.mnt / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    failure: OSError | None = None
    try:
        for piece in PIECES:  # 17 KiB held: more than the disk has left
            os.write(fd, piece)
    except OSError as exc:  # (not expected: they are held)
        failure = exc
    try:
        os.close(fd)
    except OSError as exc:
        failure = failure or exc
    assert failure is not None and failure.errno == errno.ENOSPC, failure
