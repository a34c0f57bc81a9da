"""SFTPClient against the real OpenSSH sftp-server: as a local process and through sshd.

Every assertion checks the server side with plain os calls on the served directory.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from pysshfs.sftp import Attrs, PipeStream, SFTPClient
from pysshfs.sftp.codec import (
    SSH_FXF_APPEND,
    SSH_FXF_CREAT,
    SSH_FXF_EXCL,
    SSH_FXF_READ,
    SSH_FXF_TRUNC,
    SSH_FXF_WRITE,
)
from tests.support.sshd import sftp_server_path, start_sshd

RW_CREATE = SSH_FXF_READ | SSH_FXF_WRITE | SSH_FXF_CREAT


def spawn(root: Path, *extra: str, **popen: object) -> PipeStream:
    return PipeStream.spawn([sftp_server_path(), *extra], cwd=str(root), **popen)


def b(path: Path | str) -> bytes:
    return os.fsencode(path)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    return served


@pytest.fixture
def client(root: Path) -> Iterator[SFTPClient]:
    c = SFTPClient(spawn(root), name="test-sftp")
    c.start(timeout=10)
    yield c
    c.close()


def errno_of(func, *args) -> int | None:
    try:
        func(*args)
    except OSError as exc:
        return exc.errno
    return None


# --- handshake ---------------------------------------------------------------------------
def test_handshake_and_limits(client: SFTPClient, root: Path) -> None:
    assert client.version == 3
    for ext in ("posix-rename@openssh.com", "statvfs@openssh.com", "hardlink@openssh.com",
                "fsync@openssh.com", "lsetstat@openssh.com", "limits@openssh.com"):
        assert client.has_extension(ext)
    assert client.posix_rename_supported
    assert client.max_read == client.max_write == 261120
    assert client.realpath(b".") == b(root)
    assert client.expand_path(b".") == b(root)
    assert client.expand_path(b"~") == b(root)  # OpenSSH: "~" is the session's start dir


# --- attributes ----------------------------------------------------------------------------
def test_stat_lstat_fstat(client: SFTPClient, root: Path) -> None:
    f = root / "file"
    f.write_bytes(b"x" * 1234)
    os.chmod(f, 0o640)
    os.utime(f, (1_600_000_000, 1_650_000_000))
    os.symlink("file", root / "link")
    st = os.stat(f)
    a = client.stat(b(f))
    assert a == Attrs(size=1234, uid=st.st_uid, gid=st.st_gid, mode=st.st_mode,
                      atime=1_600_000_000, mtime=1_650_000_000)
    assert client.stat(b(root / "link")) == a
    la = client.lstat(b(root / "link"))
    assert stat.S_ISLNK(la.mode) and la.size == len("file")
    h = client.open(b(f), SSH_FXF_READ)
    assert client.fstat(h) == a
    client.close_handle(h)
    assert stat.S_ISDIR(client.stat(b(root)).mode)
    assert errno_of(client.stat, b(root / "missing")) == errno.ENOENT
    assert errno_of(client.lstat, b(root / "missing")) == errno.ENOENT
    try:
        client.stat(b(root / "missing"))
    except OSError as exc:
        assert exc.filename == str(root / "missing")


def test_setstat_lsetstat_fsetstat(client: SFTPClient, root: Path) -> None:
    f = root / "f"
    f.write_bytes(b"0123456789")
    client.setstat(b(f), Attrs(mode=0o600))
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    client.setstat(b(f), Attrs(size=4))
    assert f.read_bytes() == b"0123"
    client.setstat(b(f), Attrs(uid=1234, gid=4321))  # we are root
    assert (os.stat(f).st_uid, os.stat(f).st_gid) == (1234, 4321)
    client.setstat(b(f), Attrs(atime=1_000_000_000, mtime=1_100_000_000))
    assert (os.stat(f).st_atime, os.stat(f).st_mtime) == (1_000_000_000, 1_100_000_000)

    os.symlink("f", root / "l")
    client.lsetstat(b(root / "l"), Attrs(atime=1_200_000_000, mtime=1_300_000_000))
    assert os.lstat(root / "l").st_mtime == 1_300_000_000
    assert os.stat(f).st_mtime == 1_100_000_000  # the target was left alone

    h = client.open(b(f), SSH_FXF_WRITE)
    client.fsetstat(h, Attrs(size=100, mode=0o604))
    client.close_handle(h)
    assert os.stat(f).st_size == 100 and stat.S_IMODE(os.stat(f).st_mode) == 0o604
    assert errno_of(client.setstat, b(root / "nope"), Attrs(mode=0o600)) == errno.ENOENT


def test_missing_extensions_give_the_documented_errno(client: SFTPClient, root: Path) -> None:
    (root / "f").write_bytes(b"")
    h = client.open(b(root / "f"), SSH_FXF_READ)
    for name in ("lsetstat@openssh.com", "hardlink@openssh.com", "fsync@openssh.com",
                 "statvfs@openssh.com", "expand-path@openssh.com"):
        client.extensions.pop(name)
    assert errno_of(client.lsetstat, b(root / "f"), Attrs(mode=0o600)) == errno.EOPNOTSUPP
    assert errno_of(client.hardlink, b(root / "f"), b(root / "g")) == errno.ENOSYS
    assert errno_of(client.fsync, h) == errno.EOPNOTSUPP
    assert errno_of(client.statvfs, b(root)) == errno.EOPNOTSUPP
    assert client.expand_path(b".") == b(root)  # falls back to realpath
    assert not (root / "g").exists()
    client.close_handle(h)


# --- files ---------------------------------------------------------------------------------
def test_open_read_write_close(client: SFTPClient, root: Path) -> None:
    path = b(root / "new")
    h = client.open(path, RW_CREATE | SSH_FXF_EXCL, Attrs(mode=0o640))
    assert stat.S_IMODE(os.stat(root / "new").st_mode) == 0o640
    client.write(h, 0, b"hello world")
    client.write(h, 6, memoryview(b"WORLD"))
    assert client.read(h, 0, 100) == b"hello WORLD"
    assert client.read(h, 11, 10) == b""  # EOF
    assert client.read(h, 1000, 10) == b""
    client.fsync(h)
    client.close_handle(h)
    assert (root / "new").read_bytes() == b"hello WORLD"
    assert errno_of(client.close_handle, h) in (errno.EIO, errno.EBADF, errno.ENOENT)

    assert errno_of(client.open, path, RW_CREATE | SSH_FXF_EXCL) == errno.EEXIST
    assert errno_of(client.open, b(root / "none"), SSH_FXF_READ) == errno.ENOENT
    h = client.open(path, SSH_FXF_WRITE | SSH_FXF_TRUNC)
    client.close_handle(h)
    assert (root / "new").read_bytes() == b""

    (root / "log").write_bytes(b"abc")
    h = client.open(b(root / "log"), SSH_FXF_WRITE | SSH_FXF_APPEND)
    client.write(h, 0, b"def")
    client.close_handle(h)
    assert (root / "log").read_bytes() == b"abcdef"


def test_big_write_is_split_at_max_write(client: SFTPClient, root: Path) -> None:
    data = os.urandom(3 * client.max_write + 17)
    h = client.open(b(root / "big"), RW_CREATE)
    client.write(h, 0, data)
    client.close_handle(h)
    assert (root / "big").read_bytes() == data
    h = client.open(b(root / "big"), SSH_FXF_READ)
    first = client.read(h, 0, len(data))
    assert first == data[:client.max_read]  # one request never asks for more than max_read
    client.close_handle(h)


def test_sparse_write_beyond_4gib(client: SFTPClient, root: Path) -> None:
    offset = 5 * 2**30
    h = client.open(b(root / "sparse"), RW_CREATE)
    client.write(h, offset, b"far away")
    assert client.fstat(h).size == offset + 8
    assert client.read(h, offset + 4, 100) == b"away"
    client.close_handle(h)
    assert os.stat(root / "sparse").st_size == offset + 8
    assert client.stat(b(root / "sparse")).size == offset + 8
    with open(root / "sparse", "rb") as f:
        f.seek(offset)
        assert f.read() == b"far away"


def test_pipelined_20mib_write_then_read(client: SFTPClient, root: Path) -> None:
    data = os.urandom(20 * 2**20)
    view = memoryview(data)
    chunk = client.max_write
    h = client.open(b(root / "data"), RW_CREATE | SSH_FXF_TRUNC)
    writes = [client.write_async(h, pos, view[pos:pos + chunk])
              for pos in range(0, len(data), chunk)]
    for fut in writes:
        assert fut.result(timeout=60) is None
    client.close_handle(h)
    assert (root / "data").read_bytes() == data

    h = client.open(b(root / "data"), SSH_FXF_READ)
    step = client.max_read
    reads = [(pos, client.read_async(h, pos, step)) for pos in range(0, len(data), step)]
    got = bytearray()
    for pos, fut in reads:
        piece = fut.result(timeout=60)
        assert len(got) == pos
        got += piece
    assert client.read_async(h, len(data), step).result(timeout=10) == b""
    client.close_handle(h)
    assert bytes(got) == data


def test_100_concurrent_reads_from_8_threads(client: SFTPClient, root: Path) -> None:
    data = os.urandom(100 * 4096)
    (root / "shared").write_bytes(data)
    h = client.open(b(root / "shared"), SSH_FXF_READ)
    started = threading.Barrier(8)

    def read(i: int) -> tuple[int, bytes]:
        if i < 8:
            started.wait(timeout=10)
        if i % 2:
            return i, client.read(h, i * 4096, 4096)
        return i, client.read_async(h, i * 4096, 4096).result(timeout=30)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(100)))
    client.close_handle(h)
    assert len(results) == 100
    for i, piece in results:
        assert piece == data[i * 4096:(i + 1) * 4096]


# --- directories ---------------------------------------------------------------------------
def test_opendir_readdir_loop(client: SFTPClient, root: Path) -> None:
    for name in ("a", "b", "c"):
        (root / name).write_bytes(name.encode() * 3)
    h = client.opendir(b(root))
    seen: dict[bytes, Attrs] = {}
    while (batch := client.readdir(h)) is not None:
        for name, longname, attrs in batch:
            assert isinstance(longname, bytes)
            seen[name] = attrs
    assert client.readdir(h) is None
    client.close_handle(h)
    assert set(seen) == {b".", b"..", b"a", b"b", b"c"}
    assert seen[b"b"].size == 3
    assert errno_of(client.opendir, b(root / "nothing")) == errno.ENOENT


def test_listdir_attr_5000_entries(client: SFTPClient, root: Path) -> None:
    big = root / "big"
    big.mkdir()
    expected = {}
    for i in range(5000):
        name = f"entry-{i:05d}" + ("-\udcff" if i == 4999 else "")
        p = os.fsencode(big) + b"/" + os.fsencode(name)
        with open(p, "wb") as f:
            f.write(b"x" * (i % 17))
        expected[os.fsencode(name)] = i % 17
    listing = client.listdir_attr(b(big))
    assert len(listing) == 5000
    assert {name: attrs.size for name, attrs in listing} == expected
    assert all(stat.S_ISREG(attrs.mode) for _, attrs in listing)
    assert errno_of(client.listdir_attr, b(root / "absent")) == errno.ENOENT


def test_mkdir_rmdir(client: SFTPClient, root: Path) -> None:
    d = root / "d"
    client.mkdir(b(d), Attrs(mode=0o750))
    assert d.is_dir() and stat.S_IMODE(os.stat(d).st_mode) == 0o750
    client.mkdir(b(root / "plain"))
    assert (root / "plain").is_dir()
    assert errno_of(client.mkdir, b(d)) == errno.EEXIST
    assert errno_of(client.mkdir, b(root / "no" / "parent")) == errno.ENOENT
    (d / "inside").write_bytes(b"")
    assert errno_of(client.rmdir, b(d)) == errno.ENOTEMPTY
    assert errno_of(client.rmdir, b(d / "inside")) == errno.ENOTDIR
    os.unlink(d / "inside")
    client.rmdir(b(d))
    assert not d.exists()
    assert errno_of(client.rmdir, b(d)) == errno.ENOENT


# --- names ---------------------------------------------------------------------------------
def test_remove(client: SFTPClient, root: Path) -> None:
    (root / "f").write_bytes(b"")
    client.remove(b(root / "f"))
    assert not (root / "f").exists()
    assert errno_of(client.remove, b(root / "f")) == errno.ENOENT
    (root / "dir").mkdir()
    assert errno_of(client.remove, b(root / "dir")) == errno.EISDIR
    assert (root / "dir").is_dir()


def test_symlink_readlink_realpath(client: SFTPClient, root: Path) -> None:
    (root / "target").write_bytes(b"t")
    client.symlink(b"target", b(root / "link"))
    assert os.readlink(root / "link") == "target"
    assert client.readlink(b(root / "link")) == b"target"
    client.symlink(b"/does/not/exist", b(root / "dangling"))
    assert os.readlink(root / "dangling") == "/does/not/exist"
    assert errno_of(client.symlink, b"x", b(root / "link")) == errno.EEXIST
    assert errno_of(client.readlink, b(root / "target")) in (errno.EINVAL, errno.EBADMSG,
                                                             errno.EIO)
    assert errno_of(client.readlink, b(root / "zzz")) == errno.ENOENT
    assert client.realpath(b(root / "link")) == b(root / "target")
    assert client.realpath(b(root) + b"/./target") == b(root / "target")
    (root / "sub").mkdir()
    assert client.realpath(b(root) + b"/sub/../target") == b(root / "target")


def test_rename(client: SFTPClient, root: Path) -> None:
    (root / "a").write_bytes(b"A")
    (root / "b").write_bytes(b"B")
    client.rename(b(root / "a"), b(root / "b"))  # posix-rename replaces
    assert not (root / "a").exists() and (root / "b").read_bytes() == b"A"
    client.rename(b(root / "b"), b(root / "c"))
    assert (root / "c").read_bytes() == b"A"
    assert errno_of(client.rename, b(root / "gone"), b(root / "x")) == errno.ENOENT
    (root / "full").mkdir()
    (root / "full" / "x").write_bytes(b"")
    (root / "empty").mkdir()
    assert errno_of(client.rename, b(root / "empty"), b(root / "full")) == errno.ENOTEMPTY
    assert errno_of(client.rename, b(root / "c"), b(root / "full")) == errno.EISDIR

    client.extensions.pop("posix-rename@openssh.com")
    assert not client.posix_rename_supported
    (root / "d").write_bytes(b"D")
    assert errno_of(client.rename, b(root / "c"), b(root / "d")) == errno.EEXIST
    assert (root / "d").read_bytes() == b"D" and (root / "c").exists()
    client.rename(b(root / "c"), b(root / "e"))
    assert (root / "e").read_bytes() == b"A" and not (root / "c").exists()


def test_hardlink(client: SFTPClient, root: Path) -> None:
    (root / "orig").write_bytes(b"data")
    client.hardlink(b(root / "orig"), b(root / "twin"))
    assert os.stat(root / "orig").st_ino == os.stat(root / "twin").st_ino
    assert os.stat(root / "orig").st_nlink == 2
    assert errno_of(client.hardlink, b(root / "orig"), b(root / "twin")) == errno.EEXIST
    assert errno_of(client.hardlink, b(root / "none"), b(root / "x")) == errno.ENOENT


def test_statvfs(client: SFTPClient, root: Path) -> None:
    st = client.statvfs(b(root))
    local = os.statvfs(root)
    assert st["f_bsize"] == local.f_bsize
    assert st["f_namemax"] == local.f_namemax
    assert st["f_blocks"] == local.f_blocks
    assert set(st) == {"f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                       "f_ffree", "f_favail", "f_fsid", "f_flag", "f_namemax"}
    (root / "f").write_bytes(b"")
    h = client.open(b(root / "f"), SSH_FXF_READ)
    assert client.fstatvfs(h)["f_blocks"] == local.f_blocks
    client.close_handle(h)
    assert errno_of(client.statvfs, b(root / "nope")) == errno.ENOENT


# --- permissions ---------------------------------------------------------------------------
def test_denied_request_is_eacces(root: Path) -> None:
    (root / "keep").write_bytes(b"")
    with SFTPClient(spawn(root, "-P", "remove")) as c:
        c.start(timeout=10)
        assert errno_of(c.remove, b(root / "keep")) == errno.EACCES
    assert (root / "keep").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run the server as nobody")
def test_eacces_as_unprivileged_user() -> None:
    base = Path(tempfile.mkdtemp(prefix="pysshfs-sftp-"))
    try:
        os.chmod(base, 0o755)
        (base / "private").mkdir(mode=0o700)
        (base / "private" / "secret").write_bytes(b"s")
        (base / "ro").write_bytes(b"r")
        os.chmod(base / "ro", 0o644)
        with SFTPClient(spawn(base, user="nobody")) as c:
            c.start(timeout=10)
            assert errno_of(c.stat, b(base / "private" / "secret")) == errno.EACCES
            assert errno_of(c.listdir_attr, b(base / "private")) == errno.EACCES
            assert errno_of(c.open, b(base / "ro"), SSH_FXF_WRITE) == errno.EACCES
            assert errno_of(c.mkdir, b(base / "newdir")) == errno.EACCES
        assert not (base / "newdir").exists()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


# --- timeouts and stream loss --------------------------------------------------------------
def test_timeout_then_recovery(root: Path) -> None:
    stream = spawn(root)
    with SFTPClient(stream) as c:
        c.start(timeout=10)
        os.kill(stream.proc.pid, signal.SIGSTOP)
        try:
            assert errno_of(lambda: c.stat(b(root), timeout=0.2)) == errno.ETIMEDOUT
        finally:
            os.kill(stream.proc.pid, signal.SIGCONT)
        assert stat.S_ISDIR(c.stat(b(root), timeout=10).mode)


def test_stream_loss_fails_pending_and_later_calls(root: Path) -> None:
    (root / "f").write_bytes(b"x" * 10000)
    stream = spawn(root)
    c = SFTPClient(stream)
    lost: list = []
    c.on_closed = lost.append
    c.start(timeout=10)
    h = c.open(b(root / "f"), SSH_FXF_READ)
    os.kill(stream.proc.pid, signal.SIGSTOP)
    pending: list[Future] = [c.read_async(h, i, 10) for i in range(50)]
    pending.append(c.write_async(h, 0, b"zz"))
    blocked: list[int | None] = []
    t = threading.Thread(target=lambda: blocked.append(errno_of(c.stat, b(root))))
    t.start()
    os.kill(stream.proc.pid, signal.SIGKILL)
    for fut in pending:
        assert fut.exception(timeout=10).errno == errno.ECONNABORTED
    t.join(timeout=10)
    assert blocked == [errno.ECONNABORTED]
    wait_until(lambda: lost)
    assert c.closed and len(lost) == 1 and lost[0].errno == errno.ECONNABORTED
    assert errno_of(c.stat, b(root)) == errno.ECONNABORTED
    assert errno_of(c.read_async, h, 0, 1) == errno.ECONNABORTED
    c.close()  # idempotent
    assert len(lost) == 1


def test_close_fails_pending_requests(root: Path) -> None:
    stream = spawn(root)
    c = SFTPClient(stream)
    lost: list = []
    c.on_closed = lost.append
    c.start(timeout=10)
    os.kill(stream.proc.pid, signal.SIGSTOP)
    fut = c.stat_async(b(root))
    closer = threading.Thread(target=c.close)
    closer.start()
    try:
        assert fut.exception(timeout=10).errno == errno.ECONNABORTED
    finally:
        os.kill(stream.proc.pid, signal.SIGCONT)
    closer.join(timeout=10)
    assert not closer.is_alive()
    wait_until(lambda: lost)
    assert lost == [None]  # closed by us: no error to report
    assert stream.proc.poll() is not None


# --- through a real sshd -------------------------------------------------------------------
def test_through_sshd_subsystem(tmp_path: Path) -> None:
    paramiko = pytest.importorskip("paramiko")
    sshd = start_sshd(tmp_path / "sshd")
    transport = None
    try:
        transport = paramiko.Transport(("127.0.0.1", sshd.port))
        transport.start_client(timeout=10)
        known = paramiko.HostKeys(str(sshd.known_hosts))
        server_key = transport.get_remote_server_key()
        expected = known.lookup(f"[127.0.0.1]:{sshd.port}")
        assert expected is not None
        assert expected.get(server_key.get_name()) == server_key  # host key verified
        transport.auth_publickey(sshd.user, paramiko.PKey.from_path(str(sshd.client_key)))
        assert transport.is_authenticated()
        channel = transport.open_session(timeout=10)
        channel.invoke_subsystem("sftp")

        served = sshd.root
        c = SFTPClient(channel, name="sshd-sftp")
        lost: list = []
        c.on_closed = lost.append
        c.start(timeout=10)
        assert c.version == 3 and c.max_write == 261120
        data = os.urandom(4 * 2**20 + 3)
        h = c.open(b(served / "up"), RW_CREATE | SSH_FXF_TRUNC)
        c.write_async(h, 0, data).result(timeout=60)
        c.close_handle(h)
        assert (served / "up").read_bytes() == data
        h = c.open(b(served / "up"), SSH_FXF_READ)
        futs = [c.read_async(h, pos, c.max_read) for pos in range(0, len(data), c.max_read)]
        assert b"".join(f.result(timeout=60) for f in futs) == data
        c.close_handle(h)
        c.mkdir(b(served / "dir"))
        c.symlink(b"up", b(served / "dir" / "ln"))
        assert os.readlink(served / "dir" / "ln") == "up"
        assert [n for n, _ in c.listdir_attr(b(served / "dir"))] == [b"ln"]
        assert errno_of(c.stat, b(served / "missing")) == errno.ENOENT
        assert c.realpath(b".") == b(Path.home())  # the session starts in $HOME

        channel.close()  # the stream ends under the client
        wait_until(lambda: lost)
        assert c.closed
        assert errno_of(c.stat, b(served)) == errno.ECONNABORTED
    finally:
        if transport is not None:
            transport.close()
        sshd.stop()
