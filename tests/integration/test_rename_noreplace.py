"""renameat2(RENAME_NOREPLACE): atomic "rename unless the target exists" for files and
symlinks (hardlink@openssh.com + REMOVE on the server); EINVAL, as before, for what cannot
be done atomically (directories, RENAME_EXCHANGE, servers without hardlink@openssh.com).

The kernel answers EEXIST itself for a target it knows; the interesting case is a target
that appeared on the server behind the kernel's back (its missing name still cached):
the server must refuse then, and the tests make exactly that happen.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import badsftp
from tests.support.mount import Mount, Mounter

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old: Path, new: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(old))


def hardlinks_sent(m: Mount) -> int:
    return len(re.findall(r"\] hardlink@openssh\.com ", m.stderr_text()))


def errno_of(old: Path, new: Path, flags: int) -> int:
    with pytest.raises(OSError) as info:
        renameat2(old, new, flags)
    return info.value.errno


@pytest.fixture
def m(mounter: Mounter) -> Mount:
    root = mounter.new_root()
    (root / "a").write_bytes(b"A" * 70000)
    return mounter(["-d"], foreground=True, root=root)


def test_target_created_on_the_server_meanwhile_is_kept(m: Mount) -> None:
    # A listing first, so that no listing fetched ahead is still on the wire when "b"
    # appears on the server (it would show "b" to the kernel, which then refuses itself).
    assert os.listdir(m.mnt) == ["a"]
    assert not (m.mnt / "b").exists()  # the kernel now holds "b" as missing
    (m.root / "b").write_bytes(b"B" * 123)  # ... and someone creates it on the server
    assert errno_of(m.mnt / "a", m.mnt / "b", RENAME_NOREPLACE) == errno.EEXIST
    assert hardlinks_sent(m) == 1  # the server refused, not the kernel
    assert (m.root / "a").read_bytes() == b"A" * 70000
    assert (m.root / "b").read_bytes() == b"B" * 123
    assert (m.mnt / "a").read_bytes() == b"A" * 70000


def test_absent_target_is_renamed(m: Mount) -> None:
    renameat2(m.mnt / "a", m.mnt / "b", RENAME_NOREPLACE)
    assert not (m.root / "a").exists()
    assert (m.root / "b").read_bytes() == b"A" * 70000
    assert os.stat(m.root / "b").st_nlink == 1  # no second name left behind
    assert sorted(os.listdir(m.mnt)) == ["b"]
    assert (m.mnt / "b").read_bytes() == b"A" * 70000


def test_a_symlink_is_renamed_as_itself(m: Mount) -> None:
    os.symlink("a", m.root / "link")
    renameat2(m.mnt / "link", m.mnt / "link2", RENAME_NOREPLACE)
    assert os.readlink(m.root / "link2") == "a"
    assert not os.path.lexists(m.root / "link")


def test_an_open_file_follows_its_new_name(m: Mount) -> None:
    with open(m.mnt / "a", "r+b") as f:
        renameat2(m.mnt / "a", m.mnt / "b", RENAME_NOREPLACE)
        f.write(b"new")
    assert (m.root / "b").read_bytes() == b"new" + b"A" * (70000 - 3)


def test_mv_n_keeps_a_target_that_appeared_on_the_server(m: Mount) -> None:
    assert os.listdir(m.mnt) == ["a"]  # no listing ahead left on the wire (see above)
    assert not (m.mnt / "b").exists()
    (m.root / "b").write_bytes(b"B")
    subprocess.run(["mv", "-n", str(m.mnt / "a"), str(m.mnt / "b")], capture_output=True,
                   timeout=30)
    assert hardlinks_sent(m) == 1  # mv -n asked for RENAME_NOREPLACE
    assert (m.root / "a").read_bytes() == b"A" * 70000
    assert (m.root / "b").read_bytes() == b"B"


def test_a_directory_is_einval_as_before(m: Mount) -> None:
    (m.root / "d").mkdir()
    (m.root / "d" / "inside").write_text("x")
    assert errno_of(m.mnt / "d", m.mnt / "e", RENAME_NOREPLACE) == errno.EINVAL
    assert (m.root / "d" / "inside").read_text() == "x"
    assert not (m.root / "e").exists()
    assert hardlinks_sent(m) == 0


def test_rename_exchange_is_einval(m: Mount) -> None:
    (m.root / "b").write_bytes(b"B")
    assert errno_of(m.mnt / "a", m.mnt / "b", RENAME_EXCHANGE) == errno.EINVAL
    assert (m.root / "a").read_bytes() == b"A" * 70000
    assert (m.root / "b").read_bytes() == b"B"


def test_a_missing_source_is_enoent(m: Mount) -> None:
    assert errno_of(m.mnt / "nothing", m.mnt / "b", RENAME_NOREPLACE) == errno.ENOENT


def test_without_hardlink_extension_it_is_einval_as_before(mounter: Mounter) -> None:
    root = mounter.new_root()
    (root / "a").write_bytes(b"A")
    hide = badsftp.command("no-extension", "hardlink@openssh.com")
    m = mounter(["-d", "-o", f"sftp_server={hide}"], foreground=True, root=root)
    assert errno_of(m.mnt / "a", m.mnt / "b", RENAME_NOREPLACE) == errno.EINVAL
    assert (root / "a").read_bytes() == b"A"
    assert not (root / "b").exists()
    os.rename(m.mnt / "a", m.mnt / "b")  # plain rename is unchanged
    assert (root / "b").read_bytes() == b"A"
    m.unmount()
    assert "RENAME_NOREPLACE needs hardlink@openssh.com" in m.stderr_text()
