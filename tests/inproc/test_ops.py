"""SSHFS operations in process against a real sftp-server: what the server then holds."""

from __future__ import annotations

import errno
import os
import stat
from unittest import mock

import pytest

from pysshfs import fileio
from pysshfs.fileio import STARTUP_CAP, LinkEstimate
from tests.inproc.conftest import InProcMount

WRITE_NEW = os.O_CREAT | os.O_WRONLY | os.O_TRUNC


def names(m: InProcMount, path: str = "/") -> set[str]:
    return {e if isinstance(e, str) else e[0] for e in m.fs.readdir(path, 0)} - {".", ".."}


def test_mkdir_makes_the_directory_with_its_mode(m: InProcMount) -> None:
    assert m.fs.mkdir("/d", 0o750) == 0
    made = (m.root / "d").stat()
    assert stat.S_ISDIR(made.st_mode) and stat.S_IMODE(made.st_mode) == 0o750
    assert stat.S_ISDIR(m.fs.getattr("/d")["st_mode"])
    assert names(m) == {"d"}


def test_create_write_release_puts_the_bytes_on_the_server(m: InProcMount) -> None:
    data = os.urandom(300_000)  # more than one write chunk
    fh = m.fs.create("/f", 0o640, WRITE_NEW)
    for offset in range(0, len(data), 65536):
        assert m.fs.write("/f", data[offset:offset + 65536], offset, fh) == \
            len(data[offset:offset + 65536])
    assert m.fs.flush("/f", fh) == 0
    assert (m.root / "f").read_bytes() == data  # flush: on the server, before release
    m.fs.release("/f", fh)
    assert stat.S_IMODE((m.root / "f").stat().st_mode) == 0o640
    assert m.fs.getattr("/f")["st_size"] == len(data)


def test_open_read_gives_what_the_server_holds(m: InProcMount) -> None:
    data = os.urandom(200_000)
    (m.root / "f").write_bytes(data)
    fh = m.fs.open("/f", os.O_RDONLY)
    try:
        assert m.fs.read("/f", 4096, 0, fh) == data[:4096]
        assert m.fs.read("/f", 100_000, 150_000, fh) == data[150_000:]  # short at EOF
        assert m.fs.read("/f", 4096, len(data), fh) == b""
    finally:
        m.fs.release("/f", fh)


def test_a_big_file_on_a_slow_link_is_read_in_smaller_chunks(m: InProcMount) -> None:
    """Once the link is known slow (fileio.stream_chunk), a big file's READs are a sixth
    of the cap; what is read is what the server holds, in and out of order."""
    data = os.urandom(3 * 1024 * 1024 + 5)
    (m.root / "big").write_bytes(data)
    slow = LinkEstimate(8 * 1024 * 1024)
    slow.cap = 2 * m.fs.chunk_read  # its floor: the link holds less than a chunk
    with mock.patch.object(fileio, "LINK", slow):
        fh = m.fs.open("/big", os.O_RDONLY)
        try:
            assert m.fs._files[fh].chunk_read == 84 * 1024
            got = b"".join(m.fs.read("/big", 128 * 1024, off, fh)
                           for off in range(0, len(data), 128 * 1024))
            assert got == data
            assert m.fs.read("/big", 10_000, 1_000_000, fh) == data[1_000_000:1_010_000]
        finally:
            m.fs.release("/big", fh)
    unknown = LinkEstimate(8 * 1024 * 1024, start=STARTUP_CAP)
    with mock.patch.object(fileio, "LINK", unknown):
        fh = m.fs.open("/big", os.O_RDONLY)  # the link not known yet: the usual chunks
        try:
            assert m.fs._files[fh].chunk_read == m.fs.chunk_read
        finally:
            m.fs.release("/big", fh)


def test_rename_moves_on_the_server_and_in_the_cache(m: InProcMount) -> None:
    (m.root / "a").write_bytes(b"x")
    (m.root / "sub").mkdir()
    assert names(m) == {"a", "sub"}  # both names now cached
    assert m.fs.rename("/a", "/sub/b") == 0
    assert not (m.root / "a").exists() and (m.root / "sub" / "b").read_bytes() == b"x"
    assert names(m) == {"sub"} and names(m, "/sub") == {"b"}
    with pytest.raises(OSError) as info:
        m.fs.getattr("/a")
    assert info.value.errno == errno.ENOENT


def test_unlink_and_rmdir_remove_on_the_server(m: InProcMount) -> None:
    (m.root / "d").mkdir()
    (m.root / "d" / "f").write_bytes(b"x")
    assert names(m, "/d") == {"f"}
    assert m.fs.unlink("/d/f") == 0
    assert not (m.root / "d" / "f").exists()
    assert m.fs.rmdir("/d") == 0
    assert not (m.root / "d").exists()
    assert names(m) == set()


def test_truncate_chmod_utimens_change_the_server_file(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"0123456789")
    assert m.fs.truncate("/f", 4) == 0
    assert m.fs.chmod("/f", 0o600) == 0
    assert m.fs.utimens("/f", (1_000_000_000 * 10**9, 1_500_000_000 * 10**9)) == 0
    st = (m.root / "f").stat()
    assert (m.root / "f").read_bytes() == b"0123"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (int(st.st_atime), int(st.st_mtime)) == (1_000_000_000, 1_500_000_000)
    shown = m.fs.getattr("/f")
    assert shown["st_size"] == 4 and shown["st_mtime"] == 1_500_000_000 * 10**9


def test_symlink_and_readlink(m: InProcMount) -> None:
    assert m.fs.symlink("/l", "target/file") == 0
    assert os.readlink(m.root / "l") == "target/file"
    assert m.fs.readlink("/l") == "target/file"
    assert stat.S_ISLNK(m.fs.getattr("/l")["st_mode"])
