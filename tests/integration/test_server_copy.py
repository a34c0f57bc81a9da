"""Server-side copy: copy_file_range (what `cp` tries first) done by OpenSSH's copy-data,
so the bytes never cross the network; the kernel's own read/write copy where it cannot be.

Every check compares the server's file with the source byte for byte; the -d log (every
SFTP request) says whether the copy went through copy-data or through READ/WRITE.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import badsftp
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, wait_for

MIB = 1024 * 1024
BIG = 40 * MIB  # three copy-data pieces of at most 16 MiB


def requests(m: Mount, op: str) -> int:
    """How many `op` requests the -d log shows so far."""
    return len(re.findall(rf"\] {re.escape(op)} ", m.stderr_text()))


@pytest.fixture
def big(mounter: Mounter) -> tuple[Path, bytes]:
    root = mounter.new_root()
    data = os.urandom(BIG)
    (root / "big").write_bytes(data)
    return root, data


def test_cp_inside_the_mount_copies_on_the_server(mounter: Mounter,
                                                   big: tuple[Path, bytes]) -> None:
    root, data = big
    m = mounter(["-d"], foreground=True, root=root)
    r = subprocess.run(["cp", str(m.mnt / "big"), str(m.mnt / "big2")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (root / "big2").read_bytes() == data
    assert os.stat(m.mnt / "big2").st_size == BIG
    assert requests(m, "copy-data") == 3  # 16 + 16 + 8 MiB
    assert requests(m, "READ") == 0 and requests(m, "WRITE") == 0
    m.unmount()


def test_copy_file_range_offsets_and_end_of_file(mounter: Mounter,
                                                 big: tuple[Path, bytes]) -> None:
    root, data = big
    m = mounter(root=root)
    fd_in = os.open(m.mnt / "big", os.O_RDONLY)
    fd_out = os.open(m.mnt / "part", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert os.copy_file_range(fd_in, fd_out, 5000, 1000, 200) == 5000
        # past the end of the source: the bytes there are, then nothing
        assert os.copy_file_range(fd_in, fd_out, MIB, BIG - 10, 5200) == 10
        assert os.copy_file_range(fd_in, fd_out, MIB, BIG + 10, 5210) == 0
    finally:
        os.close(fd_in)
        os.close(fd_out)
    expected = b"\0" * 200 + data[1000:6000] + data[-10:]
    assert (root / "part").read_bytes() == expected
    assert os.stat(m.mnt / "part").st_size == len(expected)
    assert (m.mnt / "part").read_bytes() == expected


def test_pending_writes_reach_the_server_before_it_copies(mounter: Mounter) -> None:
    """Write-behind on both files is drained first: the copy sees the source's new
    bytes, and overwrites the destination's older ones (not the other way round)."""
    m = mounter(["-d"], foreground=True)
    fresh = os.urandom(3 * MIB)
    fd_in = os.open(m.mnt / "src", os.O_CREAT | os.O_RDWR, 0o644)
    fd_out = os.open(m.mnt / "dst", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd_in, fresh)  # still in flight (write-behind) when the copy starts
        os.write(fd_out, b"o" * (4 * MIB))
        assert os.copy_file_range(fd_in, fd_out, len(fresh), 0, 0) == len(fresh)
        assert os.pread(fd_out, len(fresh), 0) == fresh
    finally:
        os.close(fd_in)
        os.close(fd_out)
    assert (m.root / "dst").read_bytes() == fresh + b"o" * MIB
    assert requests(m, "copy-data") == 1
    m.unmount()


def test_copy_within_one_file_is_left_to_the_kernel(mounter: Mounter) -> None:
    m = mounter()
    data = os.urandom(MIB)
    (m.mnt / "f").write_bytes(data)
    fd = os.open(m.mnt / "f", os.O_RDWR)
    try:
        # sftp-server refuses to copy within one file: EOPNOTSUPP, the kernel copies
        assert os.copy_file_range(fd, fd, MIB, 0, MIB) == MIB
    finally:
        os.close(fd)
    assert (m.root / "f").read_bytes() == data + data


def test_without_copy_data_cp_still_copies(mounter: Mounter,
                                            big: tuple[Path, bytes]) -> None:
    root, data = big
    m = mounter(["-d", "-o", f"sftp_server={badsftp.command('no-extension', 'copy-data')}"],
                foreground=True, root=root)
    r = subprocess.run(["cp", str(m.mnt / "big"), str(m.mnt / "big2")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (root / "big2").read_bytes() == data
    assert requests(m, "copy-data") == 0
    assert requests(m, "READ") > 0  # through the client, as before
    m.unmount()
    assert "the server has no copy-data" in m.stderr_text()


def test_a_copy_that_runs_out_of_space_fails_and_leaves_a_prefix(
        mounter: Mounter, tmpfs_root: Callable[..., Path]) -> None:
    """Never a silently short file: cp reports the error, the server holds a prefix."""
    data = os.urandom(5 * MIB)
    root = tmpfs_root("8m", content={"src": data})
    m = mounter(root=root)
    r = subprocess.run(["cp", str(m.mnt / "src"), str(m.mnt / "dst")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "No space left" in r.stderr, r.stderr
    copied = (root / "dst").read_bytes()
    assert len(copied) < len(data)
    assert data.startswith(copied)


def test_copy_to_another_file_system_is_refused_cleanly(mounter: Mounter,
                                                        tmp_path: Path) -> None:
    m = mounter()
    (m.mnt / "f").write_bytes(b"x" * 1000)
    fd_in = os.open(m.mnt / "f", os.O_RDONLY)
    fd_out = os.open(tmp_path / "local", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        try:
            n = os.copy_file_range(fd_in, fd_out, 1000)
        except OSError as exc:  # the kernel may refuse a copy across file systems
            assert exc.errno == errno.EXDEV
        else:
            assert n == 1000
            assert (tmp_path / "local").read_bytes() == b"x" * 1000
    finally:
        os.close(fd_in)
        os.close(fd_out)


def test_a_copy_cut_by_a_connection_drop_completes_after_reconnect(
        mounter: Mounter, big: tuple[Path, bytes], tmp_path: Path) -> None:
    """Pieces lost with the connection are sent again on the reopened handles."""
    root, data = big
    sshd = mounter.sshd
    with FaultProxy(sshd.port) as proxy:
        known_hosts = tmp_path / "known_hosts_proxy"
        kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")
        slow = badsftp.command("delay", "0.3")  # replies late: the cut lands mid-copy
        m = mounter(["-d", "-o", f"Port={proxy.port}", "-o",
                     f"UserKnownHostsFile={known_hosts}", "-o", f"sftp_server={slow}"],
                    foreground=True, root=root)
        cp = subprocess.Popen(["cp", str(m.mnt / "big"), str(m.mnt / "big2")],
                              stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: requests(m, "copy-data") >= 1, 60)
            accepted = proxy.accepted
            assert proxy.cut() >= 1
            assert cp.wait(timeout=120) == 0, cp.stderr.read() if cp.stderr else ""
        finally:
            if cp.poll() is None:
                cp.kill()
                cp.wait()
        assert proxy.accepted > accepted  # it did reconnect
        assert "reconnected" in m.stderr_text()
        assert (root / "big2").read_bytes() == data
        assert requests(m, "copy-data") > 3  # the lost pieces went again
        assert requests(m, "READ") == 0
        m.unmount()
