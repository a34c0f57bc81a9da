"""Symlinks planted on a hostile server must not lead local programs out of the mount.

The kernel resolves a FUSE symlink locally, so an absolute target or a `../..` chain would
reach the client's own files. Each link here is made on the server side with os.symlink;
the "secret" lies outside the served directory, where only an escaping link can reach it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tests.support.mount import Mounter

SECRET = "client-side secret\n"


@pytest.fixture
def hostile(mounter: Mounter, tmp_path: Path) -> tuple[Path, Path]:
    """(served root, secret file outside it) with links of every kind on the server."""
    root = mounter.new_root()
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    (root / "file").write_text("inside")
    (root / "d" / "e").mkdir(parents=True)
    os.symlink(secret, root / "abs_out")                         # absolute, outside
    os.symlink("/etc/passwd", root / "abs_etc")
    # a ../.. chain that, resolved from the *mountpoint* by the local kernel, lands on
    # the secret (mountpoints are tmp_path/mntN)
    chain = os.path.relpath(secret, tmp_path / "mnt1" / "d")
    os.symlink(chain, root / "d" / "up")
    os.symlink("../../../../../../../../../../etc/passwd", root / "d" / "e" / "deep")
    os.symlink("d/up", root / "hop")                              # link to a hostile link
    os.symlink("d/../../outside/secret", root / "sneaky")         # '..' after a name
    os.symlink(root / "file", root / "d" / "abs_in")              # absolute, inside
    os.symlink(root, root / "d" / "to_root")                      # the root itself
    os.symlink("l2", root / "l1")                                 # link -> link -> file
    os.symlink("file", root / "l2")
    os.symlink("../file", root / "d" / "rel_in")
    return root, secret


HOSTILE = ["abs_out", "abs_etc", "d/up", "d/e/deep", "sneaky"]


def eperm(fn, *args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errno.EPERM, f"{fn.__name__}{args}: {info.value!r}"


def test_contained_by_default(mounter: Mounter, hostile: tuple[Path, Path]) -> None:
    root, secret = hostile
    m = mounter(root=root)
    assert m.mnt.name == "mnt1"  # the ../.. chain was aimed at this mountpoint
    for name in HOSTILE:
        assert stat.S_ISLNK(os.lstat(m.mnt / name).st_mode), name  # listed, as links
        eperm(os.readlink, m.mnt / name)
        eperm(open, m.mnt / name)
    assert os.readlink(m.mnt / "hop") == "d/up"  # harmless itself, leads to a hostile one
    eperm(open, m.mnt / "hop")
    # links that stay inside work; absolute ones into the root are shown relative
    assert os.readlink(m.mnt / "d" / "abs_in") == "../file"
    assert (m.mnt / "d" / "abs_in").read_text() == "inside"
    assert os.readlink(m.mnt / "d" / "to_root") == ".."
    assert sorted(os.listdir(m.mnt / "d" / "to_root")) == sorted(os.listdir(root))
    assert (m.mnt / "l1").read_text() == "inside"
    assert os.readlink(m.mnt / "d" / "rel_in") == "../file"
    assert (m.mnt / "d" / "rel_in").read_text() == "inside"
    # the server still holds exactly what it had
    assert os.readlink(root / "abs_out") == str(secret)
    assert os.readlink(root / "d" / "abs_in") == str(root / "file")


def test_links_made_through_the_mount_are_contained_too(mounter: Mounter,
                                                        hostile: tuple[Path, Path]) -> None:
    root, _ = hostile
    m = mounter(root=root)
    os.symlink("/etc/passwd", m.mnt / "mine")
    assert os.readlink(root / "mine") == "/etc/passwd"  # made as asked
    eperm(os.readlink, m.mnt / "mine")
    os.symlink("file", m.mnt / "fine")
    assert (m.mnt / "fine").read_text() == "inside"


def test_no_contain_symlinks_shows_them_as_they_are(mounter: Mounter,
                                                    hostile: tuple[Path, Path]) -> None:
    """What containment prevents: the local kernel follows the server's links to a
    client file."""
    root, secret = hostile
    m = mounter(["-o", "no_contain_symlinks"], root=root)
    assert m.mnt.name == "mnt1"
    assert os.readlink(m.mnt / "abs_out") == str(secret)
    assert (m.mnt / "abs_out").read_text() == SECRET
    assert (m.mnt / "d" / "up").read_text() == SECRET
    assert (m.mnt / "hop").read_text() == SECRET
    assert os.readlink(m.mnt / "d" / "abs_in") == str(root / "file")  # untransformed


def test_contain_symlinks_undoes_no_contain(mounter: Mounter,
                                            hostile: tuple[Path, Path]) -> None:
    root, _ = hostile
    m = mounter(["-o", "no_contain_symlinks,contain_symlinks"], root=root)
    eperm(os.readlink, m.mnt / "abs_out")


def test_transform_symlinks_without_containment(mounter: Mounter,
                                                hostile: tuple[Path, Path]) -> None:
    root, secret = hostile
    m = mounter(["-o", "transform_symlinks,no_contain_symlinks"], root=root)
    assert os.readlink(m.mnt / "d" / "abs_in") == "../file"
    assert (m.mnt / "d" / "abs_in").read_text() == "inside"
    assert os.readlink(m.mnt / "abs_out") == str(secret)  # outside: left as it is


def test_follow_symlinks_shows_what_the_server_sees(mounter: Mounter,
                                                    hostile: tuple[Path, Path]) -> None:
    """The server resolves the links: the mount holds no symlink the kernel could follow,
    only what the targets are on the server."""
    root, _ = hostile
    m = mounter(["-o", "follow_symlinks"], root=root)
    for name in ("abs_etc", "l1", "d/abs_in"):
        assert stat.S_ISREG(os.lstat(m.mnt / name).st_mode), name
    assert (m.mnt / "abs_etc").read_bytes() == Path("/etc/passwd").read_bytes()
    assert (m.mnt / "l1").read_text() == "inside"
    assert stat.S_ISDIR(os.lstat(m.mnt / "d" / "to_root").st_mode)
    assert os.path.islink(root / "l1")  # the server's links are untouched
