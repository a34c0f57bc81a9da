"""Processes the benchmark starts or watches: bounded runs, /proc sampling, cache dropping.

Everything here works by pid: we kill only what we started (a process group we created)
and read the daemons' counters from /proc.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CLK_TCK = os.sysconf("SC_CLK_TCK")


class CommandFailed(RuntimeError):
    """A measured command exited non-zero or ran past its time limit."""


@dataclass
class Completed:
    seconds: float
    stdout: bytes
    stderr: bytes


def run_bounded(
    args: list[str],
    timeout: float,
    *,
    capture_stdout: bool = False,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    on_timeout: object = None,
) -> Completed:
    """Run `args` in a new process group, time it, and kill that group after `timeout` s.

    `on_timeout` (a callable) runs before the kill: a process stuck in a FUSE request only
    dies once the FUSE connection is aborted.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if callable(on_timeout):
            try:
                on_timeout()
            except Exception as exc:  # noqa: BLE001 - still kill what we started
                log.warning("timeout hook failed: %s", exc)
        _kill_group(proc)
        raise CommandFailed(f"{args[0]} ran longer than {timeout:g} s: {' '.join(args)}") from None
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (err or b"").decode(errors="replace").strip()[-800:]
        raise CommandFailed(f"{' '.join(args)} exited {proc.returncode}: {tail}")
    return Completed(seconds=seconds, stdout=out or b"", stderr=err or b"")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we created for `proc` and reap it (bounded)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        log.error("pid %d did not die after SIGKILL (stuck in the kernel?)", proc.pid)


def read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime seconds) of `pid`, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: the fields we want follow the last ')'.
    rest = text.rsplit(")", 1)[1].split()
    ppid = int(rest[1])
    cpu_ticks = int(rest[11]) + int(rest[12])
    return ppid, cpu_ticks / CLK_TCK


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of `pid` in KiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(roots: list[int]) -> list[int]:
    """`roots` and every live process below them (sshfs runs ssh as a child)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        st = read_stat(pid)
        if st is not None:
            children.setdefault(st[0], []).append(pid)
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_with_argument(*forms: str) -> list[int]:
    """Live processes (not this one) with one of `forms` as one exact element of their argv."""
    wanted = {form.encode() for form in forms}
    me = os.getpid()
    found = []
    for pid in all_pids():
        if pid == me:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if wanted.intersection(argv) and not os.path.basename(argv[0]).startswith(b"fusermount"):
            found.append(pid)
    return found


def argv0(pid: int) -> str:
    """Base name of the program `pid` runs ("" when gone)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return os.path.basename(argv[0].decode(errors="replace"))


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of `pids` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    st = read_state(pid)
    return st is not None and st != "Z"


def read_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def drop_page_cache() -> bool:
    """Write back and drop the page cache (root only); False when not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as exc:
        log.warning("cannot drop the page cache (%s): read numbers are not cold", exc)
        return False
