"""One reader and one writer on the same open file, over a link whose SSH window fills.

Issue 13 (item 4): a READ sent while holding the handle's lock could block on a full SSH
window (or behind another thread's send blocked there) while paramiko's transport thread,
the one that reads the window adjustments, waited for that lock to deliver a WRITE reply:
the mount would hang until the request watchdog broke the connection. A rate-capped link
(bench/netem.py's proxy, with its deep queue) and a second file streaming writes keep the
server's window full, so sends block all the time; the reader reads back, through the
same descriptor as the writer (direct_io: every read reaches the daemon), what was
written. Bounded in time; the server's files are checked byte for byte.

The exact interleaving that hung needs a write to complete in a gap of a few bytecodes,
so this test rarely met it even with the old code (3 of 3 runs passed there); the unit
test in tests/unit/test_fileio.py forces it. This one guards the whole path: concurrent
reads, writes and readahead refills on one handle over a full window, nothing lost.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.netem import DelayProxy
from tests.support.mount import Mounter, wait_for
from tests.support.sshd import Sshd

MiB = 1024 * 1024
PIECE = 64 * 1024  # the shared file's writes, at increasing offsets
MAX_PIECES = 2048  # 128 MiB at most: the writer stops once the reader did READS
BURST = 8  # pieces written between reads
READS = 60  # reads back through the shared descriptor while the writes go on
READ = 128 * 1024  # one FUSE read with direct_io
PRESSURE_MAX = 512  # MiB the other file may be sent at most (it stops with the others)
DEADLINE = 90.0  # seconds: a stuck mount fails here, before a reconnect could hide it


@pytest.fixture
def capped_link(sshd: Sshd) -> Iterator[DelayProxy]:
    proxy = DelayProxy(sshd.port, rtt_ms=2, mbit=400)
    yield proxy
    proxy.close()


def _check_server_file(path: Path, expected: list[bytes]) -> None:
    size = sum(len(b) for b in expected)
    assert wait_for(lambda: path.stat().st_size == size, 10), (path, path.stat().st_size)
    with open(path, "rb") as f:
        for i, block in enumerate(expected):
            assert f.read(len(block)) == block, f"{path.name}: piece {i} differs on the server"


def test_reader_and_writer_on_one_handle_never_wait_on_each_other(
        capped_link: DelayProxy, mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts_proxy"
    kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{capped_link.port} {kind} {key}\n")
    # io_timeout well under DEADLINE: a hang would otherwise end in a reconnect (logged)
    m = mounter(["-o", f"Port={capped_link.port}", "-o", f"UserKnownHostsFile={known_hosts}",
                 "-o", "direct_io", "-o", "io_timeout=30"], foreground=True)
    pieces = [os.urandom(PIECE) for _ in range(16)]  # cycled: piece i is pieces[i % 16]
    pressure_blocks = [os.urandom(MiB) for _ in range(4)]
    fd = os.open(m.mnt / "shared.bin", os.O_RDWR | os.O_CREAT, 0o644)
    other = os.open(m.mnt / "pressure.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    written = 0  # bytes of shared.bin the writer's pwrite calls returned for
    npieces = 0
    pressure_mib = 0
    read_back = threading.Event()  # the reader finished a read
    done = threading.Event()  # the shared file's writer finished (or failed)
    errors: list[BaseException] = []
    reads = 0

    def writer() -> None:
        nonlocal written, npieces
        try:
            while npieces < MAX_PIECES and reads < READS and not errors:
                piece = pieces[npieces % len(pieces)]
                assert os.pwrite(fd, piece, npieces * PIECE) == PIECE
                npieces += 1
                written = npieces * PIECE
                if npieces % BURST == 0:
                    # A read drains this handle's writes first: a writer that never
                    # paused would starve it. Bursts let reads and writes interleave
                    # (the wait ends at the next read: up to a second on a busy machine,
                    # where the writer could otherwise reach MAX_PIECES first).
                    read_back.wait(1.0)
                    read_back.clear()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        done.set()

    def reader() -> None:
        nonlocal reads
        expected = b"".join(pieces)
        try:
            while not done.is_set():
                upto = min(written, MiB)
                # Sequential runs from the start: a read at offset 0 and reads following
                # each other go through readahead (which used to send READs with the
                # handle's lock held), whatever writes come in between.
                for pos in range(0, upto - upto % READ, READ):
                    data = os.pread(fd, READ, pos)
                    reads += 1
                    read_back.set()
                    assert data == expected[pos:pos + READ], f"wrong bytes at {pos}"
                if upto < READ:
                    done.wait(0.001)  # nothing written to read back yet
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def pressure() -> None:
        """Another file streaming writes: keeps the server's window full."""
        nonlocal pressure_mib
        try:
            while not done.is_set() and pressure_mib < PRESSURE_MAX:
                block = pressure_blocks[pressure_mib % len(pressure_blocks)]
                assert os.pwrite(other, block, pressure_mib * MiB) == MiB
                pressure_mib += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (pressure, writer, reader)]
    began = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, DEADLINE - (time.monotonic() - began)))
        stuck = [t for t in threads if t.is_alive()]
    finally:
        if not any(t.is_alive() for t in threads):
            os.close(fd)  # (a stuck thread's descriptors go with the daemon's clean-up)
            os.close(other)
    assert not stuck, f"threads stuck after {DEADLINE:g}s: a lock held across a send?"
    assert not errors, errors
    assert reads >= READS, f"only {reads} reads overlapped the writes: the test tested little"
    _check_server_file(m.root / "shared.bin", [pieces[i % len(pieces)] for i in range(npieces)])
    _check_server_file(m.root / "pressure.bin",
                       [pressure_blocks[i % len(pressure_blocks)] for i in range(pressure_mib)])
    assert "reconnect" not in m.stderr_text(), "the connection was broken and made again"
