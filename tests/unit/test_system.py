"""What pysshfs checks on the local system before mounting: fuse.conf, /dev/fuse, $HOME."""

from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path

import pytest

from pysshfs import system
from pysshfs.errors import MountError
from pysshfs.mountspec import MountOptions


@pytest.mark.parametrize("text, allowed", [
    ("user_allow_other\n", True),
    ("  user_allow_other   # yes\n", True),
    ("#user_allow_other\n", False),
    ("mount_max = 1000\n", False),
    ("user_allow_other_not\n", False),
    ("", False),
])
def test_user_allow_other_is_read_as_fusermount3_does(tmp_path: Path, text: str,
                                                      allowed: bool) -> None:
    conf = tmp_path / "fuse.conf"
    conf.write_text(text)
    assert system.user_allow_other(str(conf)) is allowed


def test_missing_fuse_conf_allows_nothing(tmp_path: Path) -> None:
    assert system.user_allow_other(str(tmp_path / "none")) is False


@pytest.mark.parametrize("option", ["allow_other", "allow_root"])
def test_user_asking_for_allow_other_without_fuse_conf(tmp_path: Path, option: str) -> None:
    conf = tmp_path / "fuse.conf"
    conf.write_text("#user_allow_other\n")
    device = tmp_path / "fuse"
    device.write_text("")
    with pytest.raises(MountError) as info:
        system.check_can_mount(MountOptions(**{option: True}), euid=1000, fuse_conf=str(conf),
                               device=str(device))
    assert info.value.errno == errno.EPERM
    assert str(info.value) == (
        f"option '{option}': only root may use it while {conf} lacks 'user_allow_other' "
        f"(fix: add the line user_allow_other to {conf} as root, or mount without {option})")
    conf.write_text("user_allow_other\n")
    system.check_can_mount(MountOptions(**{option: True}), euid=1000, fuse_conf=str(conf),
                           device=str(device))


def test_root_is_never_stopped(tmp_path: Path) -> None:
    system.check_can_mount(MountOptions(allow_other=True), euid=0, fuse_conf=str(tmp_path / "none"),
                           device=str(tmp_path / "none"))


def test_unusable_fuse_device(tmp_path: Path) -> None:
    with pytest.raises(MountError) as info:
        system.check_can_mount(MountOptions(), euid=1000, device=str(tmp_path / "missing"))
    assert info.value.errno == errno.EACCES
    assert "chmod 0666" in str(info.value)


def test_home_of_someone_else_is_replaced(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """mount(8) runs a user's helper with HOME=/root: use the passwd home, as ssh does."""
    own = pwd.getpwuid(os.geteuid()).pw_dir
    mine = tmp_path / "home"
    mine.mkdir()
    monkeypatch.setenv("HOME", str(mine))
    system.use_own_home()
    assert os.environ["HOME"] == str(mine)  # ours: kept (tests rely on that)
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to someone else")
    os.chown(mine, 12345, 12345)
    system.use_own_home()
    assert os.environ["HOME"] == own
    monkeypatch.delenv("HOME")
    system.use_own_home()
    assert os.environ["HOME"] == own
