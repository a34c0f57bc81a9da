"""SFTPClient's copy_data, users_groups_by_id and rename_noreplace against the real
OpenSSH sftp-server (a local process); the server side checked with plain os calls."""

from __future__ import annotations

import errno
import grp
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysshfs.sftp import PipeStream, SFTPClient
from pysshfs.sftp.codec import SSH_FXF_CREAT, SSH_FXF_READ, SSH_FXF_WRITE
from tests.support.sshd import sftp_server_path

NO_NAME = 4242  # an id with no user or group on this machine


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    return served


@pytest.fixture
def client(root: Path) -> Iterator[SFTPClient]:
    c = SFTPClient(PipeStream.spawn([sftp_server_path()], cwd=str(root)), name="test")
    c.start()
    yield c
    c.close()


def b(path: Path) -> bytes:
    return os.fsencode(path)


def test_the_server_advertises_what_we_use(client: SFTPClient) -> None:
    for name in ("copy-data", "users-groups-by-id@openssh.com", "hardlink@openssh.com"):
        assert client.has_extension(name), name


def test_copy_data_copies_a_range_on_the_server(client: SFTPClient, root: Path) -> None:
    data = os.urandom(300_000)
    (root / "src").write_bytes(data)
    src = client.open(b(root / "src"), SSH_FXF_READ)
    dst = client.open(b(root / "dst"), SSH_FXF_WRITE | SSH_FXF_CREAT)
    client.copy_data(src, 1000, 200_000, dst, 10)
    client.copy_data(src, 299_990, 5, dst, 200_010)
    client.close_handle(src)
    client.close_handle(dst)
    assert (root / "dst").read_bytes() == b"\0" * 10 + data[1000:201_000] + data[299_990:299_995]


def test_copy_data_never_sends_length_zero(client: SFTPClient, root: Path) -> None:
    (root / "src").write_bytes(b"x")
    src = client.open(b(root / "src"), SSH_FXF_READ)
    with pytest.raises(ValueError):
        client.copy_data(src, 0, 0, src, 0)  # 0 would mean "to the end" to the server
    client.close_handle(src)


def test_copy_data_within_one_file_is_refused(client: SFTPClient, root: Path) -> None:
    (root / "f").write_bytes(b"abc" * 1000)
    h = client.open(b(root / "f"), SSH_FXF_READ | SSH_FXF_WRITE)
    with pytest.raises(OSError) as info:
        client.copy_data(h, 0, 100, h, 3000)
    assert info.value.errno == errno.EIO
    client.close_handle(h)
    assert (root / "f").read_bytes() == b"abc" * 1000


def test_users_groups_by_id_in_one_request(client: SFTPClient) -> None:
    me = os.getuid()
    users, groups = client.users_groups_by_id([0, me, NO_NAME], [0, NO_NAME])
    assert users == ["root", pwd.getpwuid(me).pw_name, ""]
    assert groups == [grp.getgrgid(0).gr_name, ""]
    assert client.users_groups_by_id([], []) == ([], [])


def test_rename_noreplace(client: SFTPClient, root: Path) -> None:
    (root / "a").write_bytes(b"A")
    (root / "b").write_bytes(b"B")
    with pytest.raises(OSError) as info:
        client.rename_noreplace(b(root / "a"), b(root / "b"))
    assert info.value.errno == errno.EEXIST
    assert (root / "a").read_bytes() == b"A" and (root / "b").read_bytes() == b"B"
    client.rename_noreplace(b(root / "a"), b(root / "c"))
    assert not (root / "a").exists() and (root / "c").read_bytes() == b"A"
    with pytest.raises(OSError) as info:
        client.rename_noreplace(b(root / "missing"), b(root / "d"))
    assert info.value.errno == errno.ENOENT
    (root / "dir").mkdir()
    with pytest.raises(OSError) as info:
        client.rename_noreplace(b(root / "dir"), b(root / "dir2"))
    assert info.value.errno == errno.EINVAL  # link(2) refuses directories
    assert (root / "dir").is_dir() and not (root / "dir2").exists()
