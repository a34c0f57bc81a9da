"""Each failure reaches the program as the errno a local file system would give.

OpenSSH's sftp-server answers SSH_FX_FAILURE for most errors (EEXIST, ENOTEMPTY, ENOSPC,
EROFS…), so these show whether pysshfs finds the honest errno. EACCES/EPERM need a server
process that is not root: those mounts run sftp-server as `nobody` through `-o sftp_server=`.
ENOSPC/EROFS serve a small (or read-only) tmpfs.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mount import Mount, Mounter
from tests.support.sshd import sftp_server_path

NOBODY = 65534


def raises_errno(code: int, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as exc:
        fn(*args, **kwargs)
    assert exc.value.errno == code, (
        f"{fn.__name__}{args}: expected {errno.errorcode[code]}, got "
        f"{errno.errorcode.get(exc.value.errno or 0, exc.value.errno)} ({exc.value})")


# --- ENOENT, ENOTDIR, EISDIR, EEXIST, ENOTEMPTY --------------------------------------------

def test_enoent(mount: Mount) -> None:
    missing = mount.mnt / "missing"
    raises_errno(errno.ENOENT, os.stat, missing)
    raises_errno(errno.ENOENT, os.open, missing, os.O_RDONLY)
    raises_errno(errno.ENOENT, os.unlink, missing)
    raises_errno(errno.ENOENT, os.rmdir, missing)
    raises_errno(errno.ENOENT, os.listdir, missing)
    raises_errno(errno.ENOENT, os.readlink, missing)
    raises_errno(errno.ENOENT, os.chmod, missing, 0o600)
    raises_errno(errno.ENOENT, os.rename, missing, mount.mnt / "other")
    raises_errno(errno.ENOENT, os.open, mount.mnt / "nodir" / "f", os.O_CREAT | os.O_WRONLY)
    raises_errno(errno.ENOENT, os.mkdir, mount.mnt / "nodir" / "d")
    assert os.listdir(mount.root) == []


def test_enotdir(mount: Mount) -> None:
    (mount.root / "file").write_text("x")
    (mount.root / "dir").mkdir()
    raises_errno(errno.ENOTDIR, os.stat, mount.mnt / "file" / "x")
    raises_errno(errno.ENOTDIR, os.mkdir, mount.mnt / "file" / "x")
    raises_errno(errno.ENOTDIR, os.listdir, mount.mnt / "file")
    raises_errno(errno.ENOTDIR, os.rmdir, mount.mnt / "file")
    raises_errno(errno.ENOTDIR, os.rename, mount.mnt / "dir", mount.mnt / "file")
    assert (mount.root / "file").read_text() == "x"
    assert os.path.isdir(mount.root / "dir")


def test_eisdir(mount: Mount) -> None:
    (mount.root / "dir").mkdir()
    (mount.root / "file").write_text("x")
    raises_errno(errno.EISDIR, os.open, mount.mnt / "dir", os.O_WRONLY)
    raises_errno(errno.EISDIR, os.unlink, mount.mnt / "dir")
    raises_errno(errno.EISDIR, os.rename, mount.mnt / "file", mount.mnt / "dir")
    assert os.path.isdir(mount.root / "dir")
    assert (mount.root / "file").read_text() == "x"


def test_eexist(mount: Mount) -> None:
    (mount.root / "file").write_text("x")
    (mount.root / "dir").mkdir()
    raises_errno(errno.EEXIST, os.mkdir, mount.mnt / "dir")
    raises_errno(errno.EEXIST, os.mkdir, mount.mnt / "file")
    raises_errno(errno.EEXIST, os.symlink, "t", mount.mnt / "file")
    raises_errno(errno.EEXIST, os.link, mount.mnt / "file", mount.mnt / "dir")
    raises_errno(errno.EEXIST, os.open, mount.mnt / "file", os.O_CREAT | os.O_EXCL | os.O_RDWR)
    assert (mount.root / "file").read_text() == "x"


def test_eexist_for_names_that_appeared_on_the_server(mount: Mount) -> None:
    """The mount saw the names missing; then another client created them. The kernel only
    asks the file system, so the EEXIST must come from the SFTP answer, not from the VFS."""
    names = ("d", "f", "ln")
    for name in names:
        raises_errno(errno.ENOENT, os.stat, mount.mnt / name)
    (mount.root / "d").mkdir()
    (mount.root / "f").write_text("server")
    (mount.root / "ln").write_text("server")
    with pytest.raises(FileExistsError):
        os.mkdir(mount.mnt / "d")
    with pytest.raises(FileExistsError):
        os.open(mount.mnt / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with pytest.raises(FileExistsError):
        os.symlink("x", mount.mnt / "ln")
    assert (mount.root / "f").read_text() == "server"
    assert (mount.root / "ln").read_text() == "server"


def test_enotempty_for_entries_that_appeared_on_the_server(mount: Mount) -> None:
    (mount.root / "d").mkdir()
    assert os.listdir(mount.mnt / "d") == []
    (mount.root / "d" / "late").write_text("x")
    raises_errno(errno.ENOTEMPTY, os.rmdir, mount.mnt / "d")
    assert (mount.root / "d" / "late").read_text() == "x"


# --- EACCES and EPERM: sftp-server as nobody ------------------------------------------------

@pytest.fixture
def nobody_tree() -> Iterator[Path]:
    """A tree outside the (root-only) pytest temp dir, so that nobody can reach it."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test runs sftp-server as another user")
    top = Path(tempfile.mkdtemp(prefix="pysshfs-nobody-"))
    os.chmod(top, 0o755)
    (top / "secret").write_text("root only")
    os.chmod(top / "secret", 0o600)
    (top / "zero").write_text("mode 000")
    os.chmod(top / "zero", 0o000)
    (top / "locked").mkdir(mode=0o700)
    os.chmod(top / "locked", 0o700)
    (top / "locked" / "inner").write_text("x")
    (top / "readable").write_text("for all")
    os.chmod(top / "readable", 0o644)
    (top / "pub").mkdir()
    os.chmod(top / "pub", 0o777)
    yield top
    shutil.rmtree(top)


def nobody_sftp_server() -> str:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is missing", pytrace=False)
    return (f"{setpriv} --reuid={NOBODY} --regid={NOBODY} --clear-groups "
            f"{sftp_server_path()}")


def test_eacces_and_eperm_as_unprivileged_server_user(mounter: Mounter,
                                                      nobody_tree: Path) -> None:
    m = mounter(["-o", f"sftp_server={nobody_sftp_server()}"], root=nobody_tree)
    # the server process really is nobody: a file it creates belongs to nobody
    with open(m.mnt / "pub" / "mine", "w") as f:
        f.write("by nobody")
    assert os.stat(nobody_tree / "pub" / "mine").st_uid == NOBODY
    assert (m.mnt / "readable").read_text() == "for all"

    raises_errno(errno.EACCES, os.open, m.mnt / "secret", os.O_RDONLY)
    raises_errno(errno.EACCES, os.open, m.mnt / "zero", os.O_RDONLY)
    raises_errno(errno.EACCES, os.open, m.mnt / "readable", os.O_WRONLY)
    raises_errno(errno.EACCES, os.listdir, m.mnt / "locked")
    raises_errno(errno.EACCES, os.open, m.mnt / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    raises_errno(errno.EACCES, os.mkdir, m.mnt / "newdir")
    raises_errno(errno.EACCES, os.unlink, m.mnt / "readable")

    assert not os.path.exists(nobody_tree / "new")
    assert not os.path.exists(nobody_tree / "newdir")
    assert (nobody_tree / "readable").read_text() == "for all"
    assert os.path.exists(nobody_tree / "locked" / "inner")


def test_eperm_for_changing_what_you_do_not_own(mounter: Mounter, nobody_tree: Path) -> None:
    """chmod/chown of a file owned by someone else: a local file system says EPERM
    (the server only says "permission denied"; the owner tells which it was)."""
    m = mounter(["-o", f"sftp_server={nobody_sftp_server()}"], root=nobody_tree)
    with open(m.mnt / "pub" / "mine", "w") as f:
        f.write("by nobody")
    os.chmod(m.mnt / "pub" / "mine", 0o600)  # our own file: allowed
    assert stat.S_IMODE(os.stat(nobody_tree / "pub" / "mine").st_mode) == 0o600
    raises_errno(errno.EPERM, os.chmod, m.mnt / "readable", 0o666)
    raises_errno(errno.EPERM, os.chown, m.mnt / "pub" / "mine", 0, 0)
    raises_errno(errno.EPERM, os.utime, m.mnt / "readable", (1, 1))
    assert stat.S_IMODE(os.stat(nobody_tree / "readable").st_mode) == 0o644
    assert os.stat(nobody_tree / "pub" / "mine").st_uid == NOBODY
    assert int(os.stat(nobody_tree / "readable").st_mtime) != 1


# --- ENOSPC and EROFS: a tmpfs on the server side (fixture tmpfs_root in conftest) ---------

def test_enospc(mounter: Mounter, tmpfs_root) -> None:  # type: ignore[no-untyped-def]
    root = tmpfs_root("1m")
    m = mounter(root=root)
    failure: OSError | None = None
    chunk = b"z" * (256 * 1024)
    try:
        with open(m.mnt / "fill", "wb") as f:
            for _ in range(16):  # 4 MiB into 1 MiB
                f.write(chunk)
                f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        failure = exc
    assert failure is not None, "writing 4 MiB into a 1 MiB file system did not fail"
    assert failure.errno == errno.ENOSPC, f"expected ENOSPC, got {failure!r}"
    # What landed is what was written. (Its size may pass 1 MiB with a hole before it:
    # when replies are slow a file this big is also written over the bulk channels,
    # and a later piece may land before an earlier one fails.)
    on_server = os.stat(root / "fill")
    assert on_server.st_blocks * 512 <= 1024 * 1024
    assert set((root / "fill").read_bytes()) <= {ord("z"), 0}
    assert (root / "fill").read_bytes()[:4096] == b"z" * 4096


def test_erofs_server_side(mounter: Mounter, tmpfs_root) -> None:  # type: ignore[no-untyped-def]
    root = tmpfs_root("1m", ro=True, content={"f": b"read me"})
    m = mounter(root=root)
    assert (m.mnt / "f").read_bytes() == b"read me"
    raises_errno(errno.EROFS, os.mkdir, m.mnt / "d")
    raises_errno(errno.EROFS, os.open, m.mnt / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    raises_errno(errno.EROFS, os.open, m.mnt / "f", os.O_WRONLY)
    raises_errno(errno.EROFS, os.unlink, m.mnt / "f")
    assert (root / "f").read_bytes() == b"read me"
    assert sorted(os.listdir(root)) == ["f"]


def test_erofs_with_o_ro(mounter: Mounter) -> None:
    root = mounter.new_root()
    (root / "f").write_bytes(b"keep")
    m = mounter(["-o", "ro"], root=root)
    assert (m.mnt / "f").read_bytes() == b"keep"
    raises_errno(errno.EROFS, os.open, m.mnt / "f", os.O_WRONLY)
    raises_errno(errno.EROFS, os.mkdir, m.mnt / "d")
    raises_errno(errno.EROFS, os.unlink, m.mnt / "f")
    raises_errno(errno.EROFS, os.chmod, m.mnt / "f", 0o600)
    assert not os.access(m.mnt / "f", os.W_OK)
    assert (root / "f").read_bytes() == b"keep"
    assert os.listdir(root) == ["f"]


def test_times_set_unwaited_fail_at_close(mounter: Mounter) -> None:
    """The times of a file made through the mount are set without waiting (tar x); when
    the server refuses them (sftp-server -P fsetstat denies FSETSTAT), close(2) reports
    it, once, and the file's data is there all the same."""
    m = mounter(["-o", f"sftp_server={sftp_server_path()} -P fsetstat"])
    path = m.mnt / "made"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"data")
    os.utime(path, (1_000_000_000, 1_000_000_000))  # returns at once
    raises_errno(errno.EACCES, os.close, fd)
    assert (m.root / "made").read_bytes() == b"data"
    assert (m.root / "made").stat().st_mtime != 1_000_000_000
    assert os.stat(path).st_mtime != 1_000_000_000  # not what the refused change said
    # a file that was there: waited for, failing in utime itself (the path's SETSTAT
    # works here: only FSETSTAT is denied)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert (m.root / "made").stat().st_mtime == 1_000_000_000
    # the mode of a file made here likewise (tar x as root, then chmod): close(2) fails
    fd = os.open(m.mnt / "made2", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"more")
    os.fchmod(fd, 0o644)  # returns at once
    raises_errno(errno.EACCES, os.close, fd)
    assert (m.root / "made2").read_bytes() == b"more"
    assert stat.S_IMODE((m.root / "made2").stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(m.mnt / "made2").st_mode) == 0o600  # not the refused one
