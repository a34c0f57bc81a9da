"""Id mapping as sshfs does it: idmap=user, idmap=file with uidfile/gidfile and
nomap=ignore|error. Files on the server side belong to a second local user (and to an id
nobody has); the checks compare what the mount shows with what the server holds."""

from __future__ import annotations

import errno
import grp
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.support.mount import Mounter, run_pysshfs
from tests.support.sshd import sftp_server_path
from tests.support.system import LocalUser

STRANGER = 4242  # an id no local user or group has


def owners(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.fixture
def served(mounter: Mounter, local_accounts: list[LocalUser]) -> Path:
    """A served directory holding a file of root, of alice and of a stranger id."""
    alice = local_accounts[0]
    root = mounter.new_root()
    for name, (uid, gid) in {"of-root": (0, 0), "of-alice": (alice.uid, alice.gid),
                             "of-stranger": (STRANGER, STRANGER)}.items():
        (root / name).write_text(name)
        os.chown(root / name, uid, gid)
    return root


def map_files(tmp_path: Path, alice: LocalUser) -> list[str]:
    """uidfile/gidfile that swap root and alice: remote 0 is alice here, and back."""
    group = grp.getgrgid(alice.gid).gr_name
    uidfile, gidfile = tmp_path / "uids", tmp_path / "gids"
    uidfile.write_text(f"# local_user:remote_uid\n{alice.name}:0\nroot:{alice.uid}\n")
    gidfile.write_text(f"{group}:0\n\nroot:{alice.gid}\n")
    return [f"idmap=file,uidfile={uidfile},gidfile={gidfile}"]


def test_idmap_none_shows_server_ids(mounter: Mounter, served: Path,
                                     local_accounts: list[LocalUser]) -> None:
    alice = local_accounts[0]
    m = mounter(root=served)
    assert owners(m.mnt / "of-root") == (0, 0)
    assert owners(m.mnt / "of-alice") == (alice.uid, alice.gid)
    assert owners(m.mnt / "of-stranger") == (STRANGER, STRANGER)


def test_idmap_file_nomap_ignore(mounter: Mounter, served: Path, tmp_path: Path,
                                 local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    opts = map_files(tmp_path, alice)[0] + ",nomap=ignore"
    m = mounter(["-o", opts], root=served)
    assert owners(m.mnt / "of-root") == (alice.uid, alice.gid)
    assert owners(m.mnt / "of-alice") == (0, 0)
    assert owners(m.mnt / "of-stranger") == (STRANGER, STRANGER)
    # chown maps back: local root is remote alice, local alice is remote root
    (m.mnt / "new").write_text("x")
    assert owners(served / "new") == (0, 0)
    assert owners(m.mnt / "new") == (alice.uid, alice.gid)
    os.chown(m.mnt / "new", 0, 0)
    assert owners(served / "new") == (alice.uid, alice.gid)
    os.chown(m.mnt / "new", bob.uid, -1)  # unmapped: passes unchanged with nomap=ignore
    assert owners(served / "new") == (bob.uid, alice.gid)
    # only what is shown changed on the way
    assert owners(served / "of-root") == (0, 0)


def test_idmap_file_nomap_error_is_the_default(mounter: Mounter, served: Path,
                                               tmp_path: Path,
                                               local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    m = mounter(["-o", map_files(tmp_path, alice)[0]], root=served)
    assert owners(m.mnt / "of-root") == (alice.uid, alice.gid)
    assert sorted(os.listdir(m.mnt)) == ["of-alice", "of-root", "of-stranger"]
    with pytest.raises(OSError) as info:
        os.lstat(m.mnt / "of-stranger")
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        os.chown(m.mnt / "of-root", bob.uid, -1)
    assert info.value.errno == errno.EPERM
    assert owners(served / "of-root") == (0, 0)


def test_idmap_file_without_a_gidfile_leaves_groups_alone(
        mounter: Mounter, served: Path, tmp_path: Path,
        local_accounts: list[LocalUser]) -> None:
    alice = local_accounts[0]
    uidfile = tmp_path / "uids"
    uidfile.write_text(f"{alice.name}:0\n")
    m = mounter(["-o", f"idmap=file,uidfile={uidfile}"], root=served)
    assert owners(m.mnt / "of-root") == (alice.uid, 0)


@pytest.mark.parametrize("content, why", [
    ("nosuchuser_pysshfs:0\n", r"no local user 'nosuchuser_pysshfs'"),
    ("root=0\n", r"expected name:uid"),
])
def test_bad_uidfile_is_one_line(mounter: Mounter, tmp_path: Path, content: str,
                                 why: str) -> None:
    uidfile = tmp_path / "uids"
    uidfile.write_text(content)
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    r = run_pysshfs([*mounter.argv(root, mnt, ["-o", f"idmap=file,uidfile={uidfile}"])],
                    mounter.home)
    assert r.returncode == 1
    assert re.fullmatch(rf"pysshfs: uidfile '{uidfile}' line 1: {why}.* \(fix that line\)\n",
                        r.stderr), r.stderr
    assert not os.path.ismount(mnt)


def test_idmap_file_needs_a_file(mounter: Mounter) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    r = run_pysshfs(mounter.argv(root, mnt, ["-o", "idmap=file"]), mounter.home)
    assert r.returncode == 1
    assert r.stderr == ("pysshfs: option 'idmap=file': needs a uidfile or a gidfile "
                        "(add -o uidfile=FILE and/or -o gidfile=FILE)\n")


def test_idmap_user_maps_the_remote_user(mounter: Mounter,
                                         local_accounts: list[LocalUser]) -> None:
    """The server side runs as bob (sftp-server under setpriv, starting in bob's directory):
    bob's files appear as the mounting user's (root here), others keep their ids, and
    what we create belongs to bob on the server."""
    alice, bob = local_accounts
    served = bob.workdir / "served"
    served.mkdir()
    os.chown(served, bob.uid, bob.gid)
    (served / "of-bob").write_text("bob")
    os.chown(served / "of-bob", bob.uid, bob.gid)
    (served / "of-alice").write_text("alice")
    os.chown(served / "of-alice", alice.uid, alice.gid)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    server = (f"{setpriv} --reuid={bob.uid} --regid={bob.gid} --clear-groups "
              f"{sftp_server_path()} -d {served}")
    plain = mounter(["-o", f"sftp_server={server}"], root=served)
    assert owners(plain.mnt / "of-bob") == (bob.uid, bob.gid)
    m = mounter(["-o", f"sftp_server={server},idmap=user"], root=served)
    me = (os.getuid(), os.getgid())
    assert owners(m.mnt / "of-bob") == me
    assert owners(m.mnt / "of-alice") == (alice.uid, alice.gid)
    (m.mnt / "made").write_text("through the mount")
    assert owners(served / "made") == (bob.uid, bob.gid)
    assert owners(m.mnt / "made") == me
    os.chown(m.mnt / "made", *me)  # "to me" is to bob on the server
    assert owners(served / "made") == (bob.uid, bob.gid)
