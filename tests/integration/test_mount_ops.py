"""Every FUSE operation of the core mount, checked on the server side with plain os calls.

Each test mounts a fresh served directory (`mount.root`) through the real `pysshfs` command
line and looks at what really happened there, byte for byte. Server-side files a test wants
to read through the mount are created before the mount first looks at their names, so no
cache can hide a bug.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
import subprocess
import time

import pytest

from tests.support.mount import Mount


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def server_bytes(path: os.PathLike[str] | str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- getattr -------------------------------------------------------------------------------

def test_getattr_matches_server_stat(mount: Mount) -> None:
    f = mount.root / "file.txt"
    f.write_bytes(b"x" * 12345)
    os.chmod(f, 0o640)
    os.utime(f, (1_500_000_000, 1_600_000_000))
    d = mount.root / "dir"
    d.mkdir(mode=0o751)
    os.chmod(d, 0o751)
    os.symlink("file.txt", mount.root / "link")

    for name in ("file.txt", "dir", "link"):
        remote = os.lstat(mount.root / name)
        local = os.lstat(mount.mnt / name)
        assert stat.S_IFMT(local.st_mode) == stat.S_IFMT(remote.st_mode), name
        assert stat.S_IMODE(local.st_mode) == stat.S_IMODE(remote.st_mode), name
        assert int(local.st_mtime) == int(remote.st_mtime), name
        assert local.st_uid == remote.st_uid and local.st_gid == remote.st_gid, name
        if not stat.S_ISDIR(remote.st_mode):
            assert local.st_size == remote.st_size, name
    assert os.stat(mount.mnt / "file.txt").st_size == 12345
    assert int(os.stat(mount.mnt / "file.txt").st_atime) == 1_500_000_000


def test_getattr_of_root_is_a_directory(mount: Mount) -> None:
    st = os.stat(mount.mnt)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(os.stat(mount.root).st_mode)


# --- readdir -------------------------------------------------------------------------------

def test_readdir_names_and_types(mount: Mount) -> None:
    for i in range(20):
        (mount.root / f"f{i}").write_text(str(i))
    (mount.root / "sub").mkdir()
    (mount.root / "sub" / "inner").write_text("x")
    os.symlink("f1", mount.root / "ln")
    (mount.root / "name with spaces and ünïcode").write_text("u")

    assert sorted(os.listdir(mount.mnt)) == sorted(os.listdir(mount.root))
    assert os.listdir(mount.mnt / "sub") == ["inner"]
    kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink()) for e in
             os.scandir(mount.mnt)}
    assert kinds["sub"] == (True, False)
    assert kinds["ln"] == (False, True)
    assert kinds["f3"] == (False, False)


@pytest.mark.slow
def test_readdir_5000_entries(mount: Mount) -> None:
    big = mount.root / "big"
    big.mkdir()
    for i in range(5000):
        (big / f"entry-{i:05d}").write_bytes(b"y" * (i % 97))
    names = os.listdir(mount.mnt / "big")
    assert len(names) == 5000
    assert sorted(names) == sorted(os.listdir(big))
    # `ls -l`: every size right (from the READDIR reply's attributes or a lookup)
    for entry in os.scandir(mount.mnt / "big"):
        assert entry.stat(follow_symlinks=False).st_size == int(entry.name[-5:]) % 97
    out = subprocess.run(["ls", "-l", str(mount.mnt / "big")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert len([ln for ln in out.stdout.splitlines() if ln.startswith("-")]) == 5000


def test_readdir_of_empty_dir(mount: Mount) -> None:
    (mount.root / "empty").mkdir()
    assert os.listdir(mount.mnt / "empty") == []


# --- symlinks ------------------------------------------------------------------------------

def test_readlink(mount: Mount) -> None:
    (mount.root / "sub").mkdir()
    (mount.root / "sub" / "target").write_text("content")
    os.symlink("sub/target", mount.root / "rel")
    os.symlink("does-not-exist", mount.root / "dangling")
    assert os.readlink(mount.mnt / "rel") == "sub/target"
    assert os.readlink(mount.mnt / "dangling") == "does-not-exist"
    assert (mount.mnt / "rel").read_text() == "content"
    assert not os.path.exists(mount.mnt / "dangling")
    assert os.path.lexists(mount.mnt / "dangling")


def test_symlink(mount: Mount) -> None:
    (mount.root / "data").write_text("payload")
    os.symlink("data", mount.mnt / "ln")
    os.symlink("../nowhere/x", mount.mnt / "dangling")
    # OpenSSH's SSH_FXP_SYMLINK has its arguments swapped: check what really landed
    assert os.readlink(mount.root / "ln") == "data"
    assert os.readlink(mount.root / "dangling") == "../nowhere/x"
    assert os.path.islink(mount.root / "ln")
    assert (mount.mnt / "ln").read_text() == "payload"
    assert os.readlink(mount.mnt / "ln") == "data"


# --- directories ---------------------------------------------------------------------------

def test_mkdir(mount: Mount) -> None:
    os.mkdir(mount.mnt / "d", 0o750)
    st = os.stat(mount.root / "d")
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750
    os.makedirs(mount.mnt / "a" / "b" / "c")
    assert os.path.isdir(mount.root / "a" / "b" / "c")
    assert os.path.isdir(mount.mnt / "a" / "b" / "c")


def test_rmdir(mount: Mount) -> None:
    (mount.root / "empty").mkdir()
    os.rmdir(mount.mnt / "empty")
    assert not os.path.exists(mount.root / "empty")
    assert not os.path.exists(mount.mnt / "empty")


def test_rmdir_non_empty_is_enotempty(mount: Mount) -> None:
    (mount.root / "full").mkdir()
    (mount.root / "full" / "child").write_text("x")
    with pytest.raises(OSError) as exc:
        os.rmdir(mount.mnt / "full")
    assert exc.value.errno == errno.ENOTEMPTY
    assert (mount.root / "full" / "child").read_text() == "x"


def test_unlink(mount: Mount) -> None:
    (mount.root / "gone").write_text("x")
    os.unlink(mount.mnt / "gone")
    assert not os.path.lexists(mount.root / "gone")
    os.symlink("x", mount.root / "ln")
    os.unlink(mount.mnt / "ln")
    assert not os.path.lexists(mount.root / "ln")


# --- rename and link -----------------------------------------------------------------------

def test_rename_file(mount: Mount) -> None:
    (mount.root / "a").write_bytes(b"AAA")
    os.rename(mount.mnt / "a", mount.mnt / "b")
    assert not os.path.exists(mount.root / "a")
    assert server_bytes(mount.root / "b") == b"AAA"
    assert (mount.mnt / "b").read_bytes() == b"AAA"


def test_rename_replaces_target_atomically(mount: Mount) -> None:
    (mount.root / "new").write_bytes(b"new content")
    (mount.root / "old").write_bytes(b"old content, longer")
    new_ino = os.stat(mount.root / "new").st_ino
    os.rename(mount.mnt / "new", mount.mnt / "old")
    # posix-rename: the target's name now refers to the source's inode, no gap in between
    assert os.stat(mount.root / "old").st_ino == new_ino
    assert server_bytes(mount.root / "old") == b"new content"
    assert not os.path.exists(mount.root / "new")
    assert (mount.mnt / "old").read_bytes() == b"new content"


def test_rename_directory(mount: Mount) -> None:
    (mount.root / "d1" / "sub").mkdir(parents=True)
    (mount.root / "d1" / "sub" / "f").write_text("deep")
    (mount.root / "empty_target").mkdir()
    os.rename(mount.mnt / "d1", mount.mnt / "d2")
    assert (mount.root / "d2" / "sub" / "f").read_text() == "deep"
    assert not os.path.exists(mount.root / "d1")
    assert (mount.mnt / "d2" / "sub" / "f").read_text() == "deep"
    # a directory may replace an empty directory, as on a local file system
    os.rename(mount.mnt / "d2", mount.mnt / "empty_target")
    assert (mount.root / "empty_target" / "sub" / "f").read_text() == "deep"


def test_rename_directory_over_non_empty_directory_is_enotempty(mount: Mount) -> None:
    (mount.root / "src").mkdir()
    (mount.root / "dst").mkdir()
    (mount.root / "dst" / "keep").write_text("k")
    with pytest.raises(OSError) as exc:
        os.rename(mount.mnt / "src", mount.mnt / "dst")
    assert exc.value.errno in (errno.ENOTEMPTY, errno.EEXIST)  # both are POSIX
    assert (mount.root / "dst" / "keep").read_text() == "k"
    assert os.path.isdir(mount.root / "src")


def test_hardlink_shares_the_inode(mount: Mount) -> None:
    (mount.root / "orig").write_bytes(b"linked")
    os.link(mount.mnt / "orig", mount.mnt / "alias")
    a, b = os.stat(mount.root / "orig"), os.stat(mount.root / "alias")
    assert a.st_ino == b.st_ino
    assert a.st_nlink == 2
    assert (mount.mnt / "alias").read_bytes() == b"linked"


# --- attributes ----------------------------------------------------------------------------

def test_chmod(mount: Mount) -> None:
    (mount.root / "f").write_text("x")
    (mount.root / "d").mkdir()
    os.chmod(mount.mnt / "f", 0o604)
    assert stat.S_IMODE(os.stat(mount.root / "f").st_mode) == 0o604
    os.chmod(mount.mnt / "f", 0o4755)
    assert stat.S_IMODE(os.stat(mount.root / "f").st_mode) == 0o4755
    os.chmod(mount.mnt / "d", 0o1777)
    assert stat.S_IMODE(os.stat(mount.root / "d").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(mount.mnt / "f").st_mode) == 0o4755


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root on the server")
def test_chown(mount: Mount) -> None:
    (mount.root / "f").write_text("x")
    os.chown(mount.mnt / "f", 1234, 5678)
    st = os.stat(mount.root / "f")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.chown(mount.mnt / "f", 4321, -1)  # -1: leave the group alone
    st = os.stat(mount.root / "f")
    assert (st.st_uid, st.st_gid) == (4321, 5678)
    os.chown(mount.mnt / "f", -1, 99)
    st = os.stat(mount.root / "f")
    assert (st.st_uid, st.st_gid) == (4321, 99)
    local = os.stat(mount.mnt / "f")
    assert (local.st_uid, local.st_gid) == (4321, 99)


def test_truncate_by_path(mount: Mount) -> None:
    (mount.root / "f").write_bytes(b"0123456789")
    os.truncate(mount.mnt / "f", 3)
    assert server_bytes(mount.root / "f") == b"012"
    os.truncate(mount.mnt / "f", 10000)
    assert server_bytes(mount.root / "f") == b"012" + b"\0" * 9997
    assert os.stat(mount.mnt / "f").st_size == 10000
    os.truncate(mount.mnt / "f", 0)
    assert os.stat(mount.root / "f").st_size == 0


def test_truncate_by_handle(mount: Mount) -> None:
    (mount.root / "f").write_bytes(b"0123456789")
    fd = os.open(mount.mnt / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 5)
        assert server_bytes(mount.root / "f") == b"01234"
        os.pwrite(fd, b"XY", 5)
        os.ftruncate(fd, 6)
        os.fsync(fd)
        assert server_bytes(mount.root / "f") == b"01234X"
        assert os.fstat(fd).st_size == 6
    finally:
        os.close(fd)
    assert server_bytes(mount.root / "f") == b"01234X"


def test_utimens_whole_seconds(mount: Mount) -> None:
    (mount.root / "f").write_text("x")
    a_ns, m_ns = 1_111_111_111 * 10**9, 1_222_222_222 * 10**9
    os.utime(mount.mnt / "f", ns=(a_ns, m_ns))
    st = os.stat(mount.root / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (a_ns, m_ns)
    local = os.stat(mount.mnt / "f")
    assert (int(local.st_atime), int(local.st_mtime)) == (1_111_111_111, 1_222_222_222)


def test_utimens_nanoseconds_keep_the_seconds(mount: Mount) -> None:
    """SFTP v3 carries whole seconds: the server must get the right second, not a rounded-up one."""
    (mount.root / "f").write_text("x")
    os.utime(mount.mnt / "f", ns=(1_000_000_000_999_999_999, 1_300_000_000_500_000_000))
    st = os.stat(mount.root / "f")
    assert st.st_atime_ns // 10**9 == 1_000_000_000
    assert st.st_mtime_ns // 10**9 == 1_300_000_000


def test_utime_now(mount: Mount) -> None:
    (mount.root / "f").write_text("x")
    os.utime(mount.root / "f", (1_000_000_000, 1_000_000_000))
    before = time.time()
    os.utime(mount.mnt / "f")  # UTIME_NOW for both
    st = os.stat(mount.root / "f")
    assert before - 2 <= st.st_mtime <= time.time() + 2
    assert before - 2 <= st.st_atime <= time.time() + 2


def test_touch_d_and_utime_omit(mount: Mount) -> None:
    (mount.root / "f").write_text("x")
    os.utime(mount.root / "f", (1_000_000_000, 1_100_000_000))
    env = dict(os.environ, TZ="UTC")
    subprocess.run(["touch", "-d", "2001-02-03 04:05:06", str(mount.mnt / "f")],
                   check=True, env=env)
    st = os.stat(mount.root / "f")
    assert int(st.st_mtime) == int(st.st_atime) == 981173106
    # touch -m passes UTIME_OMIT for the access time, -a for the modification time
    subprocess.run(["touch", "-m", "-d", "@1234567890", str(mount.mnt / "f")], check=True)
    st = os.stat(mount.root / "f")
    assert (int(st.st_atime), int(st.st_mtime)) == (981173106, 1234567890)
    subprocess.run(["touch", "-a", "-d", "@1111111111", str(mount.mnt / "f")], check=True)
    st = os.stat(mount.root / "f")
    assert (int(st.st_atime), int(st.st_mtime)) == (1111111111, 1234567890)


def test_utimensat_now_and_omit(mount: Mount) -> None:
    """utimensat(2) with UTIME_NOW for atime and UTIME_OMIT for mtime."""
    (mount.root / "f").write_text("x")
    os.utime(mount.root / "f", (1_000_000_000, 1_100_000_000))
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    utime_now, utime_omit, at_fdcwd = (1 << 30) - 1, (1 << 30) - 2, -100
    times = (Timespec * 2)(Timespec(0, utime_now), Timespec(0, utime_omit))
    before = time.time()
    rc = libc.utimensat(at_fdcwd, os.fsencode(mount.mnt / "f"), times, 0)
    assert rc == 0, os.strerror(ctypes.get_errno())
    st = os.stat(mount.root / "f")
    assert int(st.st_mtime) == 1_100_000_000
    assert before - 2 <= st.st_atime <= time.time() + 2


def test_utime_after_write_before_close_sticks(mount: Mount) -> None:
    """cp -a, rsync, tar: write, set the times on the still open file, close. Writes still on
    their way must not land after the new times and bump the mtime again."""
    data = os.urandom(3 * 1024 * 1024 + 1)
    for i in range(10):  # the race is lost only sometimes: give it a few chances
        name = f"f{i}"
        fd = os.open(mount.mnt / name, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for off in range(0, len(data), 128 * 1024):  # as cp writes
                os.write(fd, data[off:off + 128 * 1024])
            os.utime(fd, ns=(1_400_000_000 * 10**9, 1_500_000_000 * 10**9))
        finally:
            os.close(fd)
        st = os.stat(mount.root / name)
        assert st.st_size == len(data)
        assert int(st.st_mtime) == 1_500_000_000, f"{name}: a write landed after utime"
        assert int(os.stat(mount.mnt / name).st_mtime) == 1_500_000_000


def test_lchown_and_lutimes_change_the_link_not_its_target(mount: Mount) -> None:
    """chown -h / touch -h / tar on a symlink act on the link (lsetstat@openssh.com), also
    when it dangles; the target stays as it was."""
    (mount.root / "target").write_text("t")
    os.utime(mount.root / "target", (1_000_000_000, 1_000_000_000))
    os.symlink("target", mount.root / "ln")
    os.symlink("nowhere", mount.root / "dangling")
    for name in ("ln", "dangling"):
        os.utime(mount.mnt / name, (1_200_000_000, 1_200_000_000), follow_symlinks=False)
        assert int(os.lstat(mount.root / name).st_mtime) == 1_200_000_000, name
        if os.geteuid() == 0:
            os.chown(mount.mnt / name, 1234, 4321, follow_symlinks=False)
            st = os.lstat(mount.root / name)
            assert (st.st_uid, st.st_gid) == (1234, 4321), name
    target = os.stat(mount.root / "target")
    assert int(target.st_mtime) == 1_000_000_000
    assert target.st_uid == os.geteuid()


# --- open, create, read, write -------------------------------------------------------------

def test_create_with_mode(mount: Mount) -> None:
    fd = os.open(mount.mnt / "new", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640)
    os.close(fd)
    st = os.stat(mount.root / "new")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == 0o640


def test_o_creat_o_excl_on_existing_is_eexist(mount: Mount) -> None:
    (mount.root / "there").write_text("keep me")
    with pytest.raises(FileExistsError):
        os.open(mount.mnt / "there", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert (mount.root / "there").read_text() == "keep me"


def test_o_trunc(mount: Mount) -> None:
    (mount.root / "f").write_bytes(b"old data here")
    fd = os.open(mount.mnt / "f", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.stat(mount.root / "f").st_size == 0  # truncated at open, before any write
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert server_bytes(mount.root / "f") == b"new"


def test_o_append_appends_after_external_growth(mount: Mount) -> None:
    with open(mount.mnt / "log", "wb") as f:
        f.write(b"abc")
    assert server_bytes(mount.root / "log") == b"abc"
    with open(mount.root / "log", "ab") as f:  # another writer, on the server
        f.write(b"XYZ")
    fd = os.open(mount.mnt / "log", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"123")
        os.write(fd, b"45")
    finally:
        os.close(fd)
    assert server_bytes(mount.root / "log") == b"abcXYZ12345"


def test_write_on_read_only_descriptor_is_ebadf(mount: Mount) -> None:
    (mount.root / "f").write_bytes(b"ro")
    fd = os.open(mount.mnt / "f", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.write(fd, b"nope")
        assert exc.value.errno == errno.EBADF
        assert os.read(fd, 10) == b"ro"
    finally:
        os.close(fd)
    fd = os.open(mount.mnt / "f", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.read(fd, 1)
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(fd)
    assert server_bytes(mount.root / "f") == b"ro"


def test_read_whole_and_at_offsets(mount: Mount) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (mount.root / "blob").write_bytes(data)
    assert (mount.mnt / "blob").read_bytes() == data
    fd = os.open(mount.mnt / "blob", os.O_RDONLY)
    try:
        for offset, size in ((0, 1), (4095, 2), (1_000_000, 200_000), (len(data) - 5, 100)):
            assert os.pread(fd, size, offset) == data[offset:offset + size]
        assert os.pread(fd, 10, len(data) + 100) == b""
    finally:
        os.close(fd)


def test_write_reaches_server_on_close(mount: Mount) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    with open(mount.mnt / "out", "wb") as f:
        f.write(data)
    # close() returned: flush is done, the server has every byte
    assert sha(server_bytes(mount.root / "out")) == sha(data)
    assert os.stat(mount.mnt / "out").st_size == len(data)


def test_pwrite_into_existing_file(mount: Mount) -> None:
    (mount.root / "f").write_bytes(b"a" * 100)
    fd = os.open(mount.mnt / "f", os.O_RDWR)
    try:
        os.pwrite(fd, b"BB", 10)
        os.pwrite(fd, b"CC", 99)  # crosses the end: grows the file by one byte
        assert os.pread(fd, 4, 9) == b"aBBa"
    finally:
        os.close(fd)
    expected = b"a" * 10 + b"BB" + b"a" * 87 + b"CC"
    assert server_bytes(mount.root / "f") == expected


def test_fsync_reaches_server_before_close(mount: Mount) -> None:
    data = os.urandom(2 * 1024 * 1024)
    fd = os.open(mount.mnt / "synced", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        assert sha(server_bytes(mount.root / "synced")) == sha(data)
        os.write(fd, b"tail")
        os.fdatasync(fd)
        assert server_bytes(mount.root / "synced") == data + b"tail"
    finally:
        os.close(fd)


def test_read_what_was_written_through_another_handle(mount: Mount) -> None:
    with open(mount.mnt / "f", "wb") as w:
        w.write(b"first")
        w.flush()
        with open(mount.mnt / "f", "rb") as r:
            assert r.read() == b"first"
    assert server_bytes(mount.root / "f") == b"first"


# --- statfs and access ---------------------------------------------------------------------

def test_statfs_equals_server_statvfs(mount: Mount) -> None:
    local, remote = os.statvfs(mount.mnt), os.statvfs(mount.root)
    assert local.f_blocks * local.f_frsize == remote.f_blocks * remote.f_frsize
    assert local.f_files == remote.f_files
    assert local.f_namemax == remote.f_namemax
    # other processes write to the same disk: free space may move a little meanwhile
    slack = 256 * 1024 * 1024
    assert abs(local.f_bavail * local.f_frsize - remote.f_bavail * remote.f_frsize) < slack
    assert abs(local.f_bfree * local.f_frsize - remote.f_bfree * remote.f_frsize) < slack
    df = subprocess.run(["df", "-P", str(mount.mnt)], capture_output=True, text=True)
    assert df.returncode == 0, df.stderr


def test_statfs_exact_on_a_quiet_file_system(mounter, tmpfs_root) -> None:  # type: ignore[no-untyped-def]
    """On a tmpfs only this test writes to, every statvfs field must match exactly."""
    root = tmpfs_root("64m", content={"some": b"x" * 300_000})
    m = mounter(root=root)
    (m.mnt / "more").write_bytes(b"y" * 1_000_000)
    local, remote = os.statvfs(m.mnt), os.statvfs(root)
    for field in ("f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                  "f_namemax"):
        assert getattr(local, field) * (local.f_frsize if field.startswith("f_b") else 1) == \
            getattr(remote, field) * (remote.f_frsize if field.startswith("f_b") else 1), field
    assert local.f_blocks * local.f_frsize == 64 * 1024 * 1024


def test_access(mount: Mount) -> None:
    (mount.root / "plain").write_text("x")
    os.chmod(mount.root / "plain", 0o644)
    (mount.root / "script").write_text("#!/bin/sh\n")
    os.chmod(mount.root / "script", 0o755)
    (mount.root / "d").mkdir()
    assert os.access(mount.mnt / "plain", os.R_OK | os.W_OK)
    assert os.access(mount.mnt / "plain", os.F_OK)
    assert not os.access(mount.mnt / "plain", os.X_OK)
    assert os.access(mount.mnt / "script", os.X_OK)
    assert os.access(mount.mnt / "d", os.R_OK | os.W_OK | os.X_OK)
    assert not os.access(mount.mnt / "missing", os.F_OK)


# --- big and sparse ------------------------------------------------------------------------

@pytest.mark.slow
def test_sparse_write_beyond_4_gib(mount: Mount) -> None:
    offset = 5 * 1024**3
    with open(mount.mnt / "huge", "wb") as f:
        f.write(b"start")
        f.seek(offset)
        f.write(b"the end")
    st = os.stat(mount.root / "huge")
    assert st.st_size == offset + 7
    with open(mount.root / "huge", "rb") as f:
        assert f.read(5) == b"start"
        f.seek(offset)
        assert f.read() == b"the end"
        f.seek(3 * 1024**3)
        assert f.read(4096) == b"\0" * 4096
    assert os.stat(mount.mnt / "huge").st_size == offset + 7
    fd = os.open(mount.mnt / "huge", os.O_RDONLY)
    try:
        assert os.pread(fd, 100, offset) == b"the end"
        assert os.pread(fd, 8, offset - 4) == b"\0\0\0\0the "
        assert os.pread(fd, 16, 4 * 1024**3 + 12345) == b"\0" * 16
    finally:
        os.close(fd)
