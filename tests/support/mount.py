"""Mount through the real `pysshfs` command line, find the daemon, always clean up.

The daemon detaches, so it is not our child: we find it by pid through the exact argv we
gave it (`/proc/PID/cmdline`), which holds the per-test mountpoint path nobody else uses.
Mount state is read from /proc/self/mountinfo, never by stat() on the mountpoint, so a
hung or dead FUSE server cannot hang the clean-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.sshd import Sshd

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT = 60.0  # seconds the command may take to connect and mount
EXIT_TIMEOUT = 15.0  # seconds the daemon may take to exit after unmount


def wait_for(predicate: Callable[[], object], timeout: float = 10.0,
             interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` passes; its last truth value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)


def _unescape_mountinfo(field_text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo octal escapes."""
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and field_text[i + 1:i + 4].isdigit():
            out.append(chr(int(field_text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def mount_table() -> list[tuple[str, str, str]]:
    """(mountpoint, fstype, source) of every mount this process sees."""
    rows = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts, rparts = left.split(), right.split()
            if len(parts) >= 5 and len(rparts) >= 2:
                rows.append((_unescape_mountinfo(parts[4]), rparts[0],
                             _unescape_mountinfo(rparts[1])))
    return rows


def mount_entry(mnt: Path | str) -> tuple[str, str, str] | None:
    """The last (topmost) mount table row for `mnt`, or None."""
    target = os.path.abspath(str(mnt))
    found = None
    for row in mount_table():
        if row[0] == target:
            found = row
    return found


def is_mounted(mnt: Path | str) -> bool:
    return mount_entry(mnt) is not None


def pids_with_arg(arg: str) -> list[int]:
    """Pids of processes (other than us) whose argv holds `arg` as one exact element."""
    pids = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.fsencode(arg) in argv and any(b"pysshfs" in a for a in argv):
            pids.append(int(name))
    return pids


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def pysshfs_env(home: Path) -> dict[str, str]:
    """The environment for pysshfs: no real ~/.ssh, no agent, the repo importable."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    for name in ("SSH_AUTH_SOCK", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return env


def pysshfs_cmd() -> list[str]:
    return [sys.executable, "-m", "pysshfs"]


def run_pysshfs(args: list[str], home: Path, timeout: float = MOUNT_TIMEOUT,
                stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (daemon mode returns once mounted or failed)."""
    return subprocess.run([*pysshfs_cmd(), *args], env=pysshfs_env(home), cwd=str(home),
                          capture_output=True, text=True, timeout=timeout, stdin=stdin)


@dataclass
class Mount:
    """One pysshfs mount made by a test, and what we know about its process."""

    sshd: Sshd
    root: Path  # the served directory on the "server" (plain local path)
    mnt: Path  # the mountpoint
    argv: list[str]
    home: Path
    foreground: bool = False
    proc: subprocess.Popen[bytes] | None = None  # the -f process
    result: subprocess.CompletedProcess[str] | None = None  # the daemon-mode command
    stderr_path: Path | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        """The process serving the mount (the Popen in -f mode, the daemon otherwise)."""
        if self.proc is not None:
            return self.proc.pid
        return self.pids[0] if self.pids else None

    def find_pids(self) -> list[int]:
        found = pids_with_arg(str(self.mnt))
        if self.proc is not None and self.proc.poll() is None and self.proc.pid not in found:
            found.append(self.proc.pid)
        return found

    def stderr_text(self) -> str:
        if self.stderr_path is not None and self.stderr_path.exists():
            return self.stderr_path.read_text(errors="replace")
        return self.result.stderr if self.result is not None else ""

    def is_mounted(self) -> bool:
        return is_mounted(self.mnt)

    def fusermount_u(self, lazy: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["fusermount3", "-uz" if lazy else "-u", str(self.mnt)],
                              capture_output=True, text=True, timeout=30)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> bool:
        """Wait until no process of this mount is left; True if they all went."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
        return wait_for(lambda: not [p for p in self.find_pids() if pid_alive(p)], timeout)

    def unmount(self) -> None:
        """Unmount with fusermount3 -u and wait for the daemon to go; raise if it does not."""
        r = self.fusermount_u()
        if r.returncode != 0:
            raise AssertionError(f"fusermount3 -u {self.mnt} failed: {r.stderr.strip()}")
        if not self.wait_exit():
            raise AssertionError(f"pysshfs did not exit after unmount: pids {self.find_pids()}")

    def cleanup(self) -> list[str]:
        """Leave nothing behind, whatever state the mount is in; what had to be forced."""
        problems: list[str] = []
        if self.is_mounted():
            self.fusermount_u()
            if self.is_mounted():
                self.fusermount_u(lazy=True)
                problems.append(f"{self.mnt} needed a lazy unmount")
            if self.is_mounted():
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
                problems.append(f"{self.mnt} still mounted after fusermount3 -uz")
        if not self.wait_exit():
            left = [p for p in self.find_pids() if pid_alive(p)]
            problems.append(f"pysshfs processes left after unmount: {left}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append(f"pid {self.proc.pid} survived SIGKILL")
            wait_for(lambda: not [p for p in self.find_pids() if pid_alive(p)], 5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.is_mounted():
            problems.append(f"{self.mnt} is still mounted")
        return problems


class Mounter:
    """Makes mounts for one test and remembers them so teardown can clean every one."""

    def __init__(self, sshd: Sshd, base: Path, home: Path) -> None:
        self.sshd = sshd
        self.base = base
        self.home = home
        self.mounts: list[Mount] = []
        self._count = 0
        home.mkdir(parents=True, exist_ok=True)

    def new_root(self, name: str = "root") -> Path:
        """A fresh served directory under the sshd's root, unique to this test."""
        self._count += 1
        root = self.sshd.root / f"{self.base.name}-{name}-{self._count}"
        root.mkdir(parents=True)
        return root

    def new_mountpoint(self) -> Path:
        mnt = self.base / f"mnt{len(self.mounts) + 1}"
        mnt.mkdir(parents=True, exist_ok=True)
        return mnt

    def argv(self, root: Path | str, mnt: Path, extra_args: list[str]) -> list[str]:
        return [f"testhost:{root}", str(mnt), *self.sshd.client_args(), *extra_args]

    def __call__(self, extra_args: list[str] | None = None, foreground: bool = False,
                 root: Path | None = None, source: str | None = None,
                 mnt: Path | None = None, args: list[str] | None = None) -> Mount:
        """Mount `root` (a fresh one by default) and return once it is mounted.

        `source` replaces `testhost:ROOT`; `args` replaces the whole argument list (then give
        the `root` and `mnt` it names, so checks and clean-up know them).
        """
        root = root if root is not None else self.new_root()
        mnt = mnt if mnt is not None else self.new_mountpoint()
        if args is None:
            args = self.argv(root, mnt, list(extra_args or []))
            if source is not None:
                args[0] = source
        m = Mount(self.sshd, root, mnt, args, self.home, foreground=foreground)
        self.mounts.append(m)
        if foreground:
            start_foreground(m)
        else:
            m.result = run_pysshfs(args, self.home)
            assert m.result.returncode == 0, (
                f"pysshfs exited {m.result.returncode}: {m.result.stderr.strip()}")
            entry = mount_entry(mnt)
            assert entry is not None, f"exit 0 but {mnt} is not mounted"
            assert entry[1].startswith("fuse"), f"{mnt} is a {entry[1]} mount, not FUSE"
            assert os.path.ismount(mnt)
            m.pids = m.find_pids()
        return m

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for m in reversed(self.mounts):
            problems.extend(m.cleanup())
        return problems


def start_foreground(m: Mount, timeout: float = MOUNT_TIMEOUT) -> None:
    """Run `pysshfs -f ...` as a child and poll until the kernel shows the mount."""
    m.stderr_path = m.mnt.parent / f"{m.mnt.name}.stderr"
    with open(m.stderr_path, "wb") as err:
        m.proc = subprocess.Popen([*pysshfs_cmd(), *m.argv, "-f"], env=pysshfs_env(m.home),
                                  cwd=str(m.home), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err)
    ok = wait_for(lambda: is_mounted(m.mnt) or m.proc.poll() is not None, timeout)  # type: ignore[union-attr]
    if m.proc.poll() is not None:
        raise AssertionError(f"pysshfs -f exited {m.proc.returncode} before mounting: "
                             f"{m.stderr_text().strip()}")
    assert ok and is_mounted(m.mnt), f"pysshfs -f did not mount within {timeout}s"
    assert wait_for(lambda: os.path.ismount(m.mnt), 10)
