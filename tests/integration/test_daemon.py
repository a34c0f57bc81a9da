"""Daemon life cycle: detach only once mounted, each way of unmounting, pending writes
flushed, exit status 0, no process left."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.mount import (
    Mount,
    Mounter,
    is_mounted,
    pid_alive,
    pysshfs_cmd,
    pysshfs_env,
    wait_for,
)

BIG = 32 * 1024 * 1024 + 7

UNMOUNTS = ["fusermount3 -u", "fusermount -u", "umount", "SIGTERM", "SIGINT"]


def unmount_by(m: Mount, how: str) -> None:
    pid = m.pid
    assert pid is not None, "no pysshfs process found for the mount"
    if how in ("SIGTERM", "SIGINT"):
        os.kill(pid, getattr(signal, how))
        return
    cmd = how.split()
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed")
    if cmd[0] == "umount" and os.geteuid() != 0:
        pytest.skip("umount of a FUSE mount needs root")
    r = subprocess.run([*cmd, str(m.mnt)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{how} failed: {r.stderr}"


def write_big(m: Mount, name: str = "big.bin") -> str:
    data = os.urandom(BIG)
    with open(m.mnt / name, "wb") as f:
        for off in range(0, BIG, 1 << 20):
            f.write(data[off:off + (1 << 20)])
    return hashlib.sha256(data).hexdigest()


def server_sha(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def proc_stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].decode().split()


def test_daemon_detaches_once_mounted(mounter: Mounter) -> None:
    m = mounter()  # asserts: exit status 0 and the mount exists when the command returns
    assert len(m.pids) == 1, f"expected one daemon process, found {m.pids}"
    pid = m.pids[0]
    assert pid_alive(pid)
    fields = proc_stat_fields(pid)
    # stat fields after the name: state ppid pgrp session ...
    assert int(fields[3]) == pid, "the daemon is not the leader of its own session (setsid)"
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null", f"fd {fd} not detached"
    assert os.readlink(f"/proc/{pid}/cwd") == "/", "the daemon keeps a directory busy"
    (m.mnt / "hello").write_text("daemon")
    assert (m.root / "hello").read_text() == "daemon"


def test_successful_mount_is_silent(mounter: Mounter) -> None:
    """Like sshfs: nothing on stdout or stderr when all went well (scripts and mount(8))."""
    m = mounter()
    assert m.result is not None
    assert m.result.stdout == ""
    assert m.result.stderr == ""


@pytest.mark.parametrize("how", UNMOUNTS)
def test_daemon_unmount_flushes_and_exits(mounter: Mounter, how: str) -> None:
    m = mounter()
    pid = m.pid
    digest = write_big(m)
    unmount_by(m, how)  # right after close(): nothing may be lost
    assert wait_for(lambda: not is_mounted(m.mnt), 15), f"still mounted after {how}"
    assert wait_for(lambda: not pid_alive(pid), 15), f"daemon {pid} still running after {how}"
    assert os.path.getsize(m.root / "big.bin") == BIG
    assert server_sha(m.root / "big.bin") == digest


@pytest.mark.parametrize("how", UNMOUNTS)
def test_foreground_unmount_exits_zero(mounter: Mounter, how: str) -> None:
    m = mounter(foreground=True)
    assert m.proc is not None
    digest = write_big(m)
    unmount_by(m, how)
    try:
        code = m.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pysshfs -f still running 15 s after {how}")
    assert code == 0, f"pysshfs -f exited {code} after {how}: {m.stderr_text()[-2000:]}"
    assert not is_mounted(m.mnt)
    assert server_sha(m.root / "big.bin") == digest
    assert "Traceback" not in m.stderr_text()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_with_a_file_still_open_flushes_its_writes(mounter: Mounter, sig: str) -> None:
    """The writer has not closed its file when the daemon is told to stop: every byte
    write() accepted still reaches the server."""
    m = mounter(foreground=True)
    assert m.proc is not None
    data = os.urandom(BIG)
    fd = os.open(m.mnt / "open.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for off in range(0, BIG, 1 << 20):
            assert os.write(fd, data[off:off + (1 << 20)]) == len(data[off:off + (1 << 20)])
        os.kill(m.proc.pid, getattr(signal, sig))
        try:
            code = m.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pysshfs -f still running 30 s after {sig} with a file open")
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the file system is gone: ENOTCONN is expected here
    assert code == 0, m.stderr_text()[-2000:]
    assert wait_for(lambda: not is_mounted(m.mnt), 10)
    assert os.path.getsize(m.root / "open.bin") == BIG
    assert server_sha(m.root / "open.bin") == hashlib.sha256(data).hexdigest()


def test_busy_mount_is_not_unmounted(mounter: Mounter) -> None:
    m = mounter()
    f = open(m.mnt / "busy", "w")
    try:
        r = m.fusermount_u()
        assert r.returncode != 0
        assert is_mounted(m.mnt)
        f.write("still works")
    finally:
        f.close()
    assert (m.root / "busy").read_text() == "still works"
    m.unmount()
    assert not is_mounted(m.mnt)


@pytest.mark.parametrize("flag", [["-d"], ["--debug"], ["-o", "sshfs_debug"]],
                         ids=["-d", "--debug", "sshfs_debug"])
def test_debug_logs_fuse_calls_and_sftp_requests(mounter: Mounter, flag: list[str]) -> None:
    """-d: stays in the foreground and logs every FUSE call and SFTP request/reply."""
    root = mounter.new_root()
    (root / "probe").write_text("x")
    m = mounter(flag, foreground=True, root=root)
    assert m.proc is not None
    os.stat(m.mnt / "probe")
    (m.mnt / "written").write_text("y")
    m.unmount()
    assert m.proc.wait(timeout=15) == 0
    log = m.stderr_text()
    assert "getattr" in log and "probe" in log, log[-3000:]
    assert re.search(r"\bwrite\b", log), "FUSE write calls are not logged"
    assert re.search(r"(?i)\b(lstat|stat|open|write)\b.*\b(status|handle|attrs|ok|bytes)\b",
                     log), "SFTP requests and replies are not logged"
    assert (root / "written").read_text() == "y"


def test_mount_survives_the_starting_shell(mounter: Mounter) -> None:
    """Started from a shell that exits at once and whose process group gets SIGHUP."""
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    argv = mounter.argv(root, mnt, [])
    m = Mount(mounter.sshd, root, mnt, argv, mounter.home)
    mounter.mounts.append(m)  # so that teardown cleans it up whatever happens
    cmd = shlex.join([*pysshfs_cmd(), *argv])
    r = subprocess.run(["setsid", "bash", "-c", f"{cmd} && kill -HUP 0"],
                       env=pysshfs_env(mounter.home), capture_output=True, text=True,
                       timeout=60)
    assert is_mounted(mnt), f"not mounted: {r.returncode} {r.stderr}"
    (mnt / "after_hup").write_text("alive")
    assert (root / "after_hup").read_text() == "alive"
