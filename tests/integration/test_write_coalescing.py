"""Small writes held and sent together (fileio's write coalescing) stay invisible to
nobody who could tell: another handle of the mount, the server after a pause, close."""

from __future__ import annotations

import os
import time

from tests.support.mount import Mount, wait_for


def test_another_handle_reads_what_was_just_written(mount: Mount) -> None:
    """Two descriptors of one file: each write is readable through the other at once."""
    path = mount.mnt / "shared.txt"
    w = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    r = os.open(path, os.O_RDONLY)
    try:
        os.write(w, b"first ")
        assert os.pread(r, 100, 0) == b"first "
        os.write(w, b"second")
        assert os.pread(r, 100, 0) == b"first second"
    finally:
        os.close(w)
        os.close(r)


def test_a_paused_writer_is_on_the_server_before_close(mount: Mount) -> None:
    """A log written a line at a time reaches the server without being closed."""
    w = os.open(mount.mnt / "app.log", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(w, b"started\n")
        assert wait_for(lambda: (mount.root / "app.log").read_bytes() == b"started\n", 5)
    finally:
        os.close(w)


def test_held_pieces_then_overwrite_land_in_order(mount: Mount) -> None:
    """A rewrite of bytes still held must not be overtaken by them."""
    path = mount.mnt / "rewrite.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"a" * 3000)
        os.write(fd, b"b" * 3000)
        os.pwrite(fd, b"c" * 100, 2950)
        time.sleep(0.1)
        os.pwrite(fd, b"d" * 10, 0)
    finally:
        os.close(fd)
    expected = bytearray(b"a" * 3000 + b"b" * 3000)
    expected[2950:3050] = b"c" * 100
    expected[0:10] = b"d" * 10
    assert (mount.root / "rewrite.bin").read_bytes() == bytes(expected)
    assert path.read_bytes() == bytes(expected)
