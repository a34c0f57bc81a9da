"""The errno a FUSE operation answers, as a local file system would, over OpenSSH's
sftp-server (which folds most errors into a bare FAILURE)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pysshfs.errors import MountError
from pysshfs.session import Session
from pysshfs.sftp import PipeStream
from pysshfs.ssh.request import ConnectRequest
from tests.inproc.conftest import InProcMount
from tests.inproc.test_ops import WRITE_NEW, names


def errno_of(call: Callable[[], object]) -> int | None:
    with pytest.raises(OSError) as info:
        call()
    return info.value.errno


def test_mkdir_of_an_existing_name_is_eexist(m: InProcMount) -> None:
    (m.root / "d").mkdir()
    (m.root / "f").write_bytes(b"")
    assert errno_of(lambda: m.fs.mkdir("/d", 0o755)) == errno.EEXIST
    assert errno_of(lambda: m.fs.mkdir("/f", 0o755)) == errno.EEXIST
    assert (m.root / "f").is_file()


def test_rmdir_of_a_non_empty_directory_is_enotempty(m: InProcMount) -> None:
    (m.root / "d").mkdir()
    (m.root / "d" / "f").write_bytes(b"")
    assert errno_of(lambda: m.fs.rmdir("/d")) == errno.ENOTEMPTY
    assert (m.root / "d" / "f").exists()


def test_rename_onto_a_non_empty_directory_is_enotempty(m: InProcMount) -> None:
    (m.root / "a").mkdir()
    (m.root / "b").mkdir()
    (m.root / "b" / "f").write_bytes(b"")
    assert errno_of(lambda: m.fs.rename("/a", "/b")) == errno.ENOTEMPTY
    assert (m.root / "a").is_dir() and (m.root / "b" / "f").exists()


def test_missing_names_are_enoent(m: InProcMount) -> None:
    assert errno_of(lambda: m.fs.getattr("/nope")) == errno.ENOENT
    assert errno_of(lambda: m.fs.open("/nope", os.O_RDONLY)) == errno.ENOENT
    assert errno_of(lambda: m.fs.unlink("/nope")) == errno.ENOENT
    assert errno_of(lambda: m.fs.rmdir("/nope")) == errno.ENOENT
    assert errno_of(lambda: m.fs.mkdir("/nope/d", 0o755)) == errno.ENOENT
    assert errno_of(lambda: m.fs.rename("/nope", "/other")) == errno.ENOENT
    assert names(m) == set()


def test_wrong_kind_of_object_is_enotdir_or_eisdir(m: InProcMount) -> None:
    (m.root / "d").mkdir()
    (m.root / "f").write_bytes(b"")
    assert errno_of(lambda: m.fs.rmdir("/f")) == errno.ENOTDIR
    assert errno_of(lambda: m.fs.unlink("/d")) == errno.EISDIR
    assert (m.root / "d").is_dir() and (m.root / "f").is_file()


def test_exclusive_create_of_an_existing_file_is_eexist(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"keep")
    flags = WRITE_NEW | os.O_EXCL
    assert errno_of(lambda: m.fs.create("/f", 0o644, flags)) == errno.EEXIST
    assert (m.root / "f").read_bytes() == b"keep"


def test_a_directory_without_permissions_is_eacces(
        make_fs: Callable[..., InProcMount], unprivileged_root: tuple[Path, str | None]) -> None:
    root, user = unprivileged_root
    m = make_fs(root, user=user)
    locked = root / "locked"
    locked.mkdir()
    (locked / "f").write_bytes(b"x")
    owner = root.stat()
    os.chown(locked, owner.st_uid, owner.st_gid)  # the server's user, not root
    locked.chmod(0o000)
    assert errno_of(lambda: m.fs.readdir("/locked", 0)) == errno.EACCES
    assert errno_of(lambda: m.fs.getattr("/locked/f")) == errno.EACCES
    assert errno_of(lambda: m.fs.create("/locked/g", 0o644, WRITE_NEW)) == errno.EACCES
    locked.chmod(0o755)
    assert sorted(os.listdir(locked)) == ["f"]


def test_a_server_that_cannot_be_started_is_a_mount_error(tmp_path: Path) -> None:
    def no_server(timeout: float | None) -> PipeStream:
        return PipeStream.spawn([str(tmp_path / "no-such-sftp-server")])

    session = Session(ConnectRequest(host="localhost"), str(tmp_path), connector=no_server)
    with pytest.raises(MountError) as info:
        session.connect()
    assert info.value.errno == errno.ENOENT
    assert "could not start SFTP" in str(info.value)
    session.close()
