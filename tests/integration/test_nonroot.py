"""Mounting as an ordinary user, and who may use whose mount: `users`/`user` (fstab),
allow_other, allow_root, /etc/fuse.conf's user_allow_other, idmap=user for a user.

Two throwaway local users (alice mounts, bob is "another user"); the test server's key
is copied to alice. /etc/fuse.conf, /etc/fstab and /dev/fuse's mode are restored after
each test, whatever happens.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.mount import Mounter, is_mounted, mount_entry, pid_alive, wait_for
from tests.support.sshd import Sshd
from tests.support.system import LocalUser, file_restored, fuse_conf, tracked, user_opts

pytestmark = pytest.mark.usefixtures("fuse_for_users")

READ = "import sys; print(open(sys.argv[1]).read(), end='')"
WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
LISTDIR = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"


def user_mount(mounter: Mounter, sshd: Sshd, user: LocalUser, launcher: Path,
               options: str = "") -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """`user` runs pysshfs on a fresh served directory; (root, mountpoint, result)."""
    root = mounter.new_root()
    (root / "f").write_text("server file")
    os.chmod(root / "f", 0o644)
    mnt = user.mountpoint(f"mnt{len(mounter.mounts) + 1}")
    args = [f"127.0.0.1:{root}", str(mnt), "-o", user_opts(user, sshd) +
            (f",{options}" if options else "")]
    m = tracked(mounter, root, mnt, args)
    result = user.run([str(launcher), *args])
    if result.returncode == 0:
        m.pids = m.find_pids()
    return root, mnt, result


def fuse_user_id(mnt: Path) -> int:
    """The user_id= the kernel recorded for the FUSE mount (who mounted it)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mnt):
            match = re.search(r"user_id=(\d+)", fields[3])
            assert match, fields[3]
            return int(match.group(1))
    raise AssertionError(f"{mnt} is not mounted")


def test_user_mounts_uses_and_unmounts(mounter: Mounter, sshd: Sshd, system_runtime: Path,
                                       local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    root, mnt, r = user_mount(mounter, sshd, alice, system_runtime, "users,nodev,nosuid")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert fuse_user_id(mnt) == alice.uid
    assert alice.python(READ, str(mnt / "f")).stdout == "server file"
    assert alice.python(WRITE, str(mnt / "new"), "from alice").returncode == 0
    assert (root / "new").read_text() == "from alice"
    # without allow_other/allow_root the mount is alice's alone, root included
    assert "PermissionError" in bob.python(LISTDIR, str(mnt)).stderr
    with pytest.raises(PermissionError):
        os.listdir(mnt)
    pids = pids_of(mounter, mnt)
    r = alice.run(["fusermount3", "-u", str(mnt)])
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not is_mounted(mnt), 15)
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 15), pids


def pids_of(mounter: Mounter, mnt: Path) -> list[int]:
    m = next(m for m in mounter.mounts if m.mnt == mnt)
    assert m.pids, f"no pysshfs process found for {mnt}"
    return m.pids


def test_fstab_user_mount_by_a_user(mounter: Mounter, sshd: Sshd, on_mount_path: Path,
                                    local_accounts: list[LocalUser]) -> None:
    """An fstab line with `user`: alice runs `mount MOUNTPOINT` and `umount MOUNTPOINT`.
    mount(8) hands the helper HOME=/root and makes the mount noexec."""
    alice, _ = local_accounts
    root = mounter.new_root()
    (root / "tool").write_text("#!/bin/sh\necho ran\n")
    os.chmod(root / "tool", 0o755)
    mnt = alice.mountpoint()
    line = f"127.0.0.1:{root} {mnt} fuse.pysshfs noauto,user,_netdev,{user_opts(alice, sshd)} 0 0"
    m = tracked(mounter, root, mnt, [f"127.0.0.1:{root}", str(mnt)])
    with file_restored("/etc/fstab") as fstab:
        fstab.write_text(fstab.read_text() + line + "\n")
        r = alice.run(["mount", str(mnt)])
        assert r.returncode == 0, r.stderr
        entry = mount_entry(mnt)
        assert entry is not None and entry[1] == "fuse.pysshfs"
        m.pids = m.find_pids()
        assert fuse_user_id(mnt) == alice.uid
        assert alice.python(READ, str(mnt / "tool")).stdout.startswith("#!/bin/sh")
        assert alice.python(WRITE, str(mnt / "made"), "by alice").returncode == 0
        assert (root / "made").read_text() == "by alice"
        ran = alice.run([str(mnt / "tool")])
        assert ran.returncode != 0 and "ran" not in ran.stdout  # noexec
        r = alice.run(["umount", str(mnt)])
        assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not is_mounted(mnt), 15)
    assert wait_for(lambda: not any(pid_alive(p) for p in m.pids), 15)


def test_allow_other_without_user_allow_other_is_one_clear_line(
        mounter: Mounter, sshd: Sshd, system_runtime: Path,
        local_accounts: list[LocalUser]) -> None:
    alice, _ = local_accounts
    for option in ("allow_other", "allow_root"):
        with fuse_conf(user_allow_other=False):
            _, mnt, r = user_mount(mounter, sshd, alice, system_runtime, option)
        assert r.returncode == 1
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        assert re.fullmatch(rf"pysshfs: option '{option}': .*user_allow_other.* \(fix: .*"
                            r"/etc/fuse\.conf.*\)", lines[0]), lines[0]
        assert not is_mounted(mnt)
        assert mounter.mounts[-1].find_pids() == []


def test_allow_other_lets_another_user_in(mounter: Mounter, sshd: Sshd, system_runtime: Path,
                                          local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    with fuse_conf(user_allow_other=True):
        root, mnt, r = user_mount(mounter, sshd, alice, system_runtime, "allow_other")
    assert r.returncode == 0, r.stderr
    assert bob.python(READ, str(mnt / "f")).stdout == "server file"
    assert bob.python(WRITE, str(mnt / "bobs"), "bob was here").returncode == 0
    assert (root / "bobs").read_text() == "bob was here"
    assert os.listdir(mnt)  # root too: allow_other includes everyone


def test_allow_root_lets_root_in_but_not_others(mounter: Mounter, sshd: Sshd,
                                                system_runtime: Path,
                                                local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    with fuse_conf(user_allow_other=True):
        root, mnt, r = user_mount(mounter, sshd, alice, system_runtime, "allow_root")
    assert r.returncode == 0, r.stderr
    assert (mnt / "f").read_text() == "server file"
    (mnt / "by-root").write_text("root")
    assert (root / "by-root").read_text() == "root"
    assert "PermissionError" in bob.python(LISTDIR, str(mnt)).stderr


def test_idmap_user_shows_the_remote_users_files_as_mine(
        mounter: Mounter, sshd: Sshd, system_runtime: Path,
        local_accounts: list[LocalUser]) -> None:
    """The server side logs in as root: with idmap=user, root's files are alice's."""
    alice, _ = local_accounts
    root, mnt, r = user_mount(mounter, sshd, alice, system_runtime, "idmap=user")
    assert r.returncode == 0, r.stderr
    assert os.stat(root / "f").st_uid == 0
    owner = alice.python("import os, sys; st = os.stat(sys.argv[1]); "
                         "print(st.st_uid, st.st_gid)", str(mnt / "f"))
    assert owner.stdout.split() == [str(alice.uid), str(alice.gid)], owner.stderr
    _, plain, r = user_mount(mounter, sshd, alice, system_runtime)
    assert r.returncode == 0, r.stderr
    owner = alice.python("import os, sys; print(os.stat(sys.argv[1]).st_uid)",
                         str(plain / "f"))
    assert owner.stdout.split() == ["0"], owner.stderr
