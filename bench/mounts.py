"""Mount pysshfs or sshfs on a fresh mountpoint, find the daemon, always unmount.

Both are mounted the same way a user would: the command returns once the mount works and
the daemon runs detached. We find the daemon by the unique mountpoint in its argv, sample
its CPU time and peak RSS from /proc, and unmount with fusermount3 -u, then wait for the
daemon pid to exit. A mount that will not go away is detached lazily, its FUSE
connection aborted and its daemon killed, by pid.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ("pysshfs", "sshfs")


def mount_command(kind: str, ssh_config: Path, source: str, mountpoint: Path) -> list[str]:
    """The user's command line for `kind`: same sshd, same ssh_config, default options."""
    if kind == "sshfs":
        return ["sshfs", "-F", str(ssh_config), source, str(mountpoint)]
    if kind == "pysshfs":
        return [sys.executable, "-m", "pysshfs", source, str(mountpoint), "-F", str(ssh_config)]
    raise ValueError(f"unknown filesystem {kind!r}")


def mount_entry(mountpoint: Path) -> tuple[str, str] | None:
    """(major:minor, fstype) of the mount at `mountpoint` from mountinfo, never stat()ing it.

    A stat() on a hung FUSE mount hangs too; /proc/self/mountinfo does not.
    """
    wanted = str(mountpoint)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        target = fields[4].replace("\\040", " ")
        if target == wanted:
            sep = fields.index("-")
            return fields[2], fields[sep + 1]
    return None


def abort_connection(mountpoint: Path) -> None:
    """Abort the FUSE connection behind `mountpoint`: stuck requests fail with ENOTCONN."""
    entry = mount_entry(mountpoint)
    if entry is None:
        return
    minor = entry[0].split(":")[1]
    abort = Path(f"/sys/fs/fuse/connections/{minor}/abort")
    if abort.exists():
        log.warning("aborting FUSE connection %s of %s", minor, mountpoint)
        abort.write_text("1")


@dataclass
class Mounted:
    """One live mount and the daemon processes serving it."""

    kind: str
    mountpoint: Path
    pids: list[int] = field(default_factory=list)
    # Processes working for the daemon but not below it: sshfs starts ssh before it
    # daemonizes, so its ssh is reparented away. Found by the run's unique ssh_config path.
    helpers: list[int] = field(default_factory=list)

    def process_tree(self) -> list[int]:
        return procs.descendants(self.pids + self.helpers)

    def cpu_seconds(self) -> float:
        """utime+stime of the daemon and its children so far (sshfs's ssh does its crypto)."""
        total = 0.0
        for pid in self.process_tree():
            st = procs.read_stat(pid)
            if st is not None:
                total += st[1]
        return total

    def peak_rss_kib(self) -> dict[str, int]:
        """VmHWM of the daemon, and summed over the daemon and its children."""
        daemon = max((procs.peak_rss_kib(p) for p in self.pids), default=0)
        tree = sum(procs.peak_rss_kib(p) for p in self.process_tree())
        return {"daemon": daemon, "tree": tree}

    def on_timeout(self) -> None:
        abort_connection(self.mountpoint)


def mount(
    kind: str, ssh_config: Path, source: str, mountpoint: Path, timeout: float
) -> Mounted:
    """Mount and return once the kernel shows the mount and we know the daemon's pid."""
    mountpoint.mkdir(parents=True, exist_ok=False)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    args = mount_command(kind, ssh_config, source, mountpoint)
    mounted = Mounted(kind=kind, mountpoint=mountpoint)
    config_forms = (str(ssh_config), f"-F{ssh_config}")  # sshfs hands ssh "-F<file>"
    before = set(procs.pids_with_argument(*config_forms))
    try:
        procs.run_bounded(args, timeout, env=env, cwd=str(REPO_ROOT),
                          on_timeout=mounted.on_timeout)
    except procs.CommandFailed as exc:
        _cleanup_failed_mount(mounted)
        raise procs.CommandFailed(f"{kind} did not mount: {exc}") from None
    deadline = time.monotonic() + timeout
    while True:
        entry = mount_entry(mountpoint)
        mounted.pids = procs.pids_with_argument(str(mountpoint))
        if entry is not None and mounted.pids:
            mounted.helpers = [
                pid for pid in procs.pids_with_argument(*config_forms)
                if pid not in before and pid not in mounted.pids
                and procs.argv0(pid) == "ssh"
            ]
            break
        if time.monotonic() > deadline:
            _cleanup_failed_mount(mounted)
            raise procs.CommandFailed(
                f"{kind} exited 0 but no mount/daemon on {mountpoint} after {timeout:.0f}s")
        time.sleep(0.02)
    log.debug("%s mounted on %s, daemon pid(s) %s", kind, mountpoint, mounted.pids)
    return mounted


def _cleanup_failed_mount(mounted: Mounted) -> None:
    mounted.pids = procs.pids_with_argument(str(mounted.mountpoint))
    try:
        unmount(mounted, timeout=10)
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        log.warning("cleanup of %s failed: %s", mounted.mountpoint, exc)


def unmount(mounted: Mounted, timeout: float = 30) -> list[str]:
    """fusermount3 -u, wait for the daemon to exit; escalate by pid when it will not.

    Returns what went wrong (empty when the unmount was clean): a daemon that outlives its
    unmount is a bug worth reporting, not a reason to lose the measurement.
    """
    mp = mounted.mountpoint
    problems: list[str] = []
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    while mount_entry(mp) is not None and time.monotonic() < deadline:
        res = subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True, timeout=timeout)
        if res.returncode == 0:
            break
        errors.append(res.stderr.decode(errors="replace").strip())
        time.sleep(0.1)  # EBUSY: a process of ours still finishing; retry until the deadline
    if mount_entry(mp) is not None:
        problems.append(f"fusermount3 -u failed: {errors[-1:]}; detached lazily")
        abort_connection(mp)
        subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True, timeout=timeout)
    alive = procs.wait_gone(mounted.pids + mounted.helpers, timeout)
    if alive:
        problems.append(f"daemon pid(s) {alive} still alive {timeout:.0f}s after unmount: killed")
        for pid in alive:
            _signal(pid, signal.SIGTERM)
        for pid in procs.wait_gone(alive, 10):
            _signal(pid, signal.SIGKILL)
        procs.wait_gone(alive, 10)
    try:
        mp.rmdir()
    except OSError as exc:
        problems.append(f"cannot remove mountpoint: {exc}")
    for problem in problems:
        log.warning("%s on %s: %s", mounted.kind, mp, problem)
    return problems


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
