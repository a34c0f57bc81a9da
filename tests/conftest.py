"""Shared fixtures: one real sshd per test session, real `pysshfs` mounts that always go away.

A test module may define its own `sshd` fixture (a server shaped for it); that one wins
for the module. Every mount made here lives under this session's pytest base temp
directory, which is how the final check finds anything this run left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.mount import Mount, Mounter, is_mounted, mount_table, pid_alive, wait_for
from tests.support.sshd import Sshd, start_sshd
from tests.support.system import (
    LocalUser,
    build_runtime,
    fuse_device_for_users,
    launcher_on_system_path,
    local_users,
    system_lock,
)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real OpenSSH sshd on 127.0.0.1 for the whole session."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def mounter(sshd: Sshd, tmp_path: Path) -> Iterator[Mounter]:
    """A factory: `mounter(extra_args=[...], foreground=False)` mounts a fresh directory.

    Teardown unmounts every mount it made (fusermount3 -u, then -uz), waits for each
    pysshfs process to exit, SIGKILLs survivors and fails the test if it had to force anything.
    """
    m = Mounter(sshd, tmp_path, tmp_path / "home")
    yield m
    problems = m.cleanup()
    if problems:
        pytest.fail("left behind: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def tmpfs_root(mounter: Mounter) -> Iterator[Callable[..., Path]]:
    """`tmpfs_root(size, ro)` mounts a tmpfs as a fresh served directory."""
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs to fill it up")
    made: list[Path] = []

    def make(size: str = "1m", ro: bool = False, content: dict[str, bytes] | None = None) -> Path:
        root = mounter.new_root("tmpfs")
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(root)], check=True)
        made.append(root)
        for name, data in (content or {}).items():
            (root / name).write_bytes(data)
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        return root

    yield make
    # the pysshfs mounts on top go first (the mounter fixture tears down after us otherwise)
    problems = mounter.cleanup()
    mounter.mounts.clear()
    for root in reversed(made):
        subprocess.run(["umount", str(root)], check=False)
        if is_mounted(root):
            subprocess.run(["umount", "-l", str(root)], check=False)
            problems.append(f"tmpfs {root} needed a lazy unmount")
    if problems:
        pytest.fail("left behind: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def mount(mounter: Mounter) -> Mount:
    """A default daemon-mode mount of a fresh served directory: `.mnt`, `.root`, `.pid`."""
    return mounter()


@pytest.fixture(scope="session")
def system_runtime() -> Iterator[Path]:
    """A `pysshfs` launcher other users and mount(8) can run: a world-readable copy."""
    if os.geteuid() != 0:
        pytest.skip("needs root: makes local users and changes system files")
    top = Path(tempfile.mkdtemp(prefix="pysshfs-runtime-"))
    top.chmod(0o755)
    try:
        launcher = build_runtime(top / "runtime")
    except RuntimeError as exc:
        shutil.rmtree(top, ignore_errors=True)
        pytest.skip(str(exc))
    yield launcher
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def system_changes() -> Iterator[None]:
    """Held by each test that changes /etc, /dev or /usr/local: one such test at a time
    on this machine, whatever runs them."""
    with system_lock():
        yield


@pytest.fixture
def on_mount_path(system_runtime: Path, system_changes: None) -> Iterator[Path]:
    """`pysshfs` where mount(8) -> mount.fuse3 finds it (mount(8) clears PATH)."""
    with launcher_on_system_path(system_runtime) as path:
        yield path


@pytest.fixture
def local_accounts(mounter: Mounter, system_changes: None) -> Iterator[list[LocalUser]]:
    """Two throwaway local users; every mount is gone before they are."""
    with local_users(2) as users:
        yield users
        problems = mounter.cleanup()
        mounter.mounts.clear()
        if problems:
            pytest.fail("left behind: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def fuse_for_users(system_changes: None) -> Iterator[None]:
    """Users may open /dev/fuse (mode 0666, as on a Debian system) for this test."""
    with fuse_device_for_users():
        yield


def _our_processes(base: str) -> list[int]:
    """pysshfs processes whose argv points into this session's temp directory."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"pysshfs" in a for a in argv) and \
                any(a.startswith(os.fsencode(base)) for a in argv):
            if pid_alive(int(name)):
                found.append(int(name))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the run: no mount and no pysshfs process from this run remain."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    left = [row for row in mount_table() if row[0].startswith(base + os.sep)]
    for mountpoint, fstype, _source in reversed(left):
        if fstype.startswith("fuse"):
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
        if is_mounted(mountpoint):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    wait_for(lambda: not _our_processes(base), 10)
    procs = _our_processes(base)
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left or procs:
        pytest.fail(f"this test run left mounts {[r[0] for r in left]} "
                    f"and pysshfs processes {procs}", pytrace=False)
