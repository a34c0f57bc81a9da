"""Big writes over two SFTP channels (fileio: TWO CHANNELS) keep one channel's order.

The second channel is a second sftp-server process that runs independently of the
first: what one descriptor wrote must still be there for the next request on the main
channel from any descriptor (a read, a truncating open, an fsync), as it was when every
request went in order on one channel. Files are written past fileio.BULK_AFTER, once the
bulk channel is open (the mount logs it), and read back with direct_io (every read
reaches the daemon), the last bytes written first (the likeliest to be still on their
way); the server's copy is checked with plain os calls. No -d: its logging slows the
daemon down enough for the server to catch up, hiding the race, which is lost only
sometimes anyway: each test gives it a few chances.
"""

from __future__ import annotations

import os

from tests.support.mount import Mount, Mounter, wait_for

MiB = 1024 * 1024
SIZE = 6 * MiB
TRIES = 5


def _mounted(mounter: Mounter) -> Mount:
    m = mounter(["-o", "direct_io"], foreground=True)
    assert wait_for(lambda: "bulk channel open" in m.stderr_text(), 10)
    return m


def _write_big(fd: int, payload: bytes) -> None:
    for pos in range(0, len(payload), MiB):
        os.pwrite(fd, payload[pos:pos + MiB], pos)


def test_another_descriptor_reads_what_was_just_written(mounter: Mounter) -> None:
    m = _mounted(mounter)
    for i in range(TRIES):
        payload = os.urandom(SIZE)
        writer = os.open(m.mnt / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _write_big(writer, payload)
            reader = os.open(m.mnt / f"f{i}", os.O_RDONLY)
            try:
                for pos in reversed(range(0, SIZE, MiB)):  # the writer is still open
                    assert os.pread(reader, MiB, pos) == payload[pos:pos + MiB], (i, pos)
            finally:
                os.close(reader)
        finally:
            os.close(writer)
        assert (m.root / f"f{i}").read_bytes() == payload


def test_a_truncating_open_comes_after_the_writes_before_it(mounter: Mounter) -> None:
    m = _mounted(mounter)
    for i in range(TRIES):
        writer = os.open(m.mnt / f"t{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _write_big(writer, os.urandom(SIZE))
            with open(m.mnt / f"t{i}", "wb") as f:  # O_TRUNC, through another descriptor
                f.write(b"short")
            os.fsync(writer)  # nothing of the big writes may land after the truncation
        finally:
            os.close(writer)
        assert (m.root / f"t{i}").read_bytes() == b"short", i


def test_fsync_of_another_descriptor_waits_for_the_bulk_writes(mounter: Mounter) -> None:
    m = _mounted(mounter)
    for i in range(TRIES):
        payload = os.urandom(SIZE)
        writer = os.open(m.mnt / f"s{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        other = os.open(m.mnt / f"s{i}", os.O_RDONLY)
        try:
            _write_big(writer, payload)
            os.fsync(other)
            with open(m.root / f"s{i}", "rb") as f:  # on the server once fsync returned
                f.seek(SIZE - MiB)
                assert f.read() == payload[-MiB:], i
        finally:
            os.close(other)
            os.close(writer)
        assert (m.root / f"s{i}").read_bytes() == payload
