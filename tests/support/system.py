"""Tests that touch the system as a user would: other local users, mount(8), fstab, fuse.conf.

Everything changed here is put back, whatever happens: users are deleted, /etc/fuse.conf,
/etc/fstab and the mode of /dev/fuse are restored byte for byte, the pysshfs put on
mount(8)'s PATH is removed. A lock file serialises these changes between test runs on
one machine.

Why a copy of pysshfs (`build_runtime`): the test interpreter usually lives under /root
(pyenv, mode 0700), which other users cannot enter; and mount(8) clears PATH before it
runs mount.fuse3, which then finds `pysshfs` only in the standard directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.mount import REPO, Mount, Mounter, mount_table
from tests.support.sshd import Sshd

SYSTEM_PYTHON = "/usr/bin/python3"
LAUNCHER_MARK = "# pysshfs test launcher"
# Where mount.fuse3's /bin/sh looks once mount(8) has cleared PATH; the first is ours.
SYSTEM_BIN = Path("/usr/local/sbin")
DEFAULT_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
LOCK_FILE = "/run/lock/pysshfs-system-tests.lock" if os.path.isdir("/run/lock") else \
    "/tmp/pysshfs-system-tests.lock"


@contextlib.contextmanager
def system_lock(timeout: float = 600.0) -> Iterator[None]:
    """Hold the machine-wide lock of the tests that change system files."""
    import time

    fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{LOCK_FILE} held for {timeout}s by another run") \
                        from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def _dependency_closure(names: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `names` need at run time (no extras, markers applied)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _runtime_requirements() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return ["paramiko", "mfusepy", "cachetools"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(text).name for text in project["dependencies"]]


def build_runtime(dest: Path) -> Path:
    """Copy pysshfs and what it needs to `dest`, readable by all; return its launcher.

    The copy runs on the system's python3, which must be the test interpreter's version
    (the copied C extensions are built for it).
    """
    if not os.path.exists(SYSTEM_PYTHON):
        raise FileNotFoundError(f"{SYSTEM_PYTHON} is missing (apt-get install python3)")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        raise RuntimeError(f"{SYSTEM_PYTHON} is Python {version}, the tests run "
                           f"{sys.version_info[:2]}: the copied extensions would not load")
    lib = dest / "lib"
    lib.mkdir(parents=True)
    for dist in _dependency_closure(_runtime_requirements()):
        for item in dist.files or []:
            source = Path(str(dist.locate_file(item)))
            if "__pycache__" in item.parts or item.parts[0] == ".." or not source.is_file():
                continue
            (lib / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, lib / item)
    shutil.copytree(REPO / "pysshfs", lib / "pysshfs",
                    ignore=shutil.ignore_patterns("__pycache__"))
    launcher = dest / "pysshfs"
    launcher.write_text(f"#!/bin/sh\n{LAUNCHER_MARK}\n"
                        f"PYTHONPATH={lib} exec {SYSTEM_PYTHON} -m pysshfs \"$@\"\n")
    for path in [dest, *dest.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
                   | (0o111 if path.is_dir() else 0))
    launcher.chmod(0o755)
    return launcher


def pysshfs_on_default_path() -> list[Path]:
    """Every `pysshfs` the shell of mount.fuse3 could find (PATH cleared by mount(8))."""
    return [Path(d) / "pysshfs" for d in DEFAULT_PATH if os.path.lexists(Path(d, "pysshfs"))]


@contextlib.contextmanager
def launcher_on_system_path(launcher: Path) -> Iterator[Path]:
    """Put `launcher` first on mount(8)'s PATH as /usr/local/sbin/pysshfs; removed after.

    A launcher left by a killed run (it carries LAUNCHER_MARK) is replaced; anything else
    there is not ours, and the tests refuse to touch it.
    """
    target = SYSTEM_BIN / "pysshfs"
    if os.path.lexists(target):
        try:
            ours = LAUNCHER_MARK in target.read_text(errors="replace")
        except OSError:
            ours = os.path.islink(target)  # a dangling link to a deleted launcher
        if not ours:
            raise RuntimeError(f"{target} exists and is not a test launcher: not touching it")
        target.unlink()
    SYSTEM_BIN.mkdir(parents=True, exist_ok=True)
    shutil.copy2(launcher, target)
    try:
        yield target
    finally:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


@contextlib.contextmanager
def file_restored(path: str | Path) -> Iterator[Path]:
    """Whatever the body does to `path`, put back its content and mode (or its absence)."""
    path = Path(path)
    existed = path.exists()
    content = path.read_bytes() if existed else b""
    mode = stat.S_IMODE(path.stat().st_mode) if existed else 0o644
    try:
        yield path
    finally:
        if existed:
            tmp = path.with_name(f".{path.name}.pysshfs-test")
            tmp.write_bytes(content)
            tmp.chmod(mode)
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def fuse_conf(user_allow_other: bool) -> Iterator[None]:
    """/etc/fuse.conf with (or without) `user_allow_other`, restored afterwards."""
    with file_restored("/etc/fuse.conf") as conf:
        lines = conf.read_text().splitlines() if conf.exists() else []
        lines = [ln for ln in lines if ln.split("#", 1)[0].strip() != "user_allow_other"]
        if user_allow_other:
            lines.append("user_allow_other")
        conf.write_text("\n".join(lines) + "\n")
        yield


@contextlib.contextmanager
def fuse_device_for_users() -> Iterator[None]:
    """/dev/fuse mode 0666, as udev makes it on a Debian system (containers have 0600)."""
    device = Path("/dev/fuse")
    mode = stat.S_IMODE(device.stat().st_mode)
    try:
        device.chmod(0o666)
        yield
    finally:
        device.chmod(mode)


@dataclass
class LocalUser:
    """A throwaway local account; `run` executes a command as it, with a clean environment."""

    name: str
    uid: int
    gid: int
    workdir: Path  # owned by the user: keys (mode 0600), known_hosts, mountpoints

    def env(self) -> dict[str, str]:
        return {"PATH": ":".join(DEFAULT_PATH), "HOME": str(self.workdir), "LANG": "C.UTF-8"}

    def command(self, args: list[str]) -> list[str]:
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--", *args]

    def run(self, args: list[str], timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(args), capture_output=True, text=True,
                              timeout=timeout, env=env or self.env(), cwd="/",
                              stdin=subprocess.DEVNULL)

    def python(self, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run Python code as this user (plain os calls on the mount, as that user)."""
        return self.run([SYSTEM_PYTHON, "-c", code, *args])

    def give(self, source: Path, name: str, mode: int = 0o600) -> Path:
        """A copy of `source` in the user's workdir, owned by the user."""
        target = self.workdir / name
        shutil.copyfile(source, target)
        os.chown(target, self.uid, self.gid)
        target.chmod(mode)
        return target

    def mountpoint(self, name: str = "mnt") -> Path:
        path = self.workdir / name
        path.mkdir()
        os.chown(path, self.uid, self.gid)
        return path


@contextlib.contextmanager
def local_users(count: int) -> Iterator[list[LocalUser]]:
    """`count` new local users (no login shell, no home in /home), deleted afterwards."""
    top = Path(tempfile.mkdtemp(prefix="pysshfs-users-"))
    top.chmod(0o755)
    made: list[LocalUser] = []
    try:
        for _ in range(count):
            name = f"pst{secrets.token_hex(4)}"
            subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                            "-U", name], check=True, capture_output=True)
            entry = pwd.getpwnam(name)
            workdir = top / name
            workdir.mkdir()
            workdir.chmod(0o755)  # others reach mountpoints in it (allow_other)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
            made.append(LocalUser(name, entry.pw_uid, entry.pw_gid, workdir))
        yield made
    finally:
        for row in mount_table():  # never let rmtree walk into a live mount
            if row[0].startswith(f"{top}{os.sep}"):
                subprocess.run(["umount", "-l", row[0]], capture_output=True, check=False)
        for user in made:
            # the control-socket directory its mounts made (no $XDG_RUNTIME_DIR for them)
            shutil.rmtree(f"/tmp/pysshfs-{user.uid}", ignore_errors=True)
            subprocess.run(["userdel", "-f", user.name], capture_output=True, check=False)
            subprocess.run(["groupdel", user.name], capture_output=True, check=False)
        shutil.rmtree(top, ignore_errors=True)


def direct_opts(sshd: Sshd, key: Path, known_hosts: Path) -> str:
    """-o text that reaches the test server as its user without any config file."""
    return (f"port={sshd.port},IdentityFile={key},UserKnownHostsFile={known_hosts},"
            f"User={sshd.user},StrictHostKeyChecking=yes,BatchMode=yes")


def user_opts(user: LocalUser, sshd: Sshd) -> str:
    """The test server's client key and known_hosts, given to `user`; the -o to use them."""
    key = user.give(sshd.client_key, "id_client")
    known = user.give(sshd.known_hosts, "known_hosts", 0o644)
    return direct_opts(sshd, key, known)


def tracked(mounter: Mounter, root: Path, mnt: Path, argv: list[str]) -> Mount:
    """Register a mount made some other way (mount(8), another user) for teardown."""
    m = Mount(mounter.sshd, root, mnt, argv, mounter.home)
    mounter.mounts.append(m)
    return m
