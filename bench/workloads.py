"""The workloads of issue 4: each runs once on a fresh mount of one filesystem.

A workload returns a Measurement (wall seconds, or IOPS for fio) and checks the result on
the server side with plain `os` calls, so a filesystem that is fast because it is wrong
fails instead of winning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import mounts, procs, profiler
from bench.datasets import DataSet, MiB, git_env

log = logging.getLogger(__name__)


class WrongResult(RuntimeError):
    """The command succeeded but the server-side state or output is not what it should be."""


@dataclass
class Measurement:
    value: float  # seconds (lower is better) or IOPS (higher is better)
    seconds: float
    cpu_seconds: float | None = None  # daemon (+ children) CPU during the timed command
    nbytes: int | None = None  # bytes moved by the timed command


@dataclass
class Context:
    """What every workload needs: the server, the data, the limits and the RSS log."""

    ssh_config: Path
    host_alias: str
    data: DataSet
    mount_dir: Path
    timeout: float
    mount_timeout: float
    fio_seconds: int
    write_size: int
    cache_dropped: list[bool] = field(default_factory=list)
    peak_rss: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    unmount_problems: list[str] = field(default_factory=list)
    profile_dir: Path | None = None  # --profile: py-spy records pysshfs during timed commands
    _serial: int = 0

    @property
    def source(self) -> str:
        return f"{self.host_alias}:{self.data.base}"

    @contextmanager
    def mounted(self, kind: str, label: str) -> Iterator[mounts.Mounted]:
        """A fresh mount on a never-used mountpoint; peak RSS sampled just before unmount."""
        self._serial += 1
        mp = self.mount_dir / f"{kind}-{label}-{self._serial}"
        m = mounts.mount(kind, self.ssh_config, self.source, mp, self.mount_timeout)
        try:
            yield m
        finally:
            self.peak_rss.setdefault(kind, []).append(m.peak_rss_kib())
            for problem in mounts.unmount(m):
                self.unmount_problems.append(f"{kind} {label}: {problem}")

    def drop_caches(self) -> None:
        self.cache_dropped.append(procs.drop_page_cache())

    def run(self, m: mounts.Mounted, args: list[str], capture: bool = False,
            cwd: str | None = None, env: dict[str, str] | None = None) -> procs.Completed:
        return procs.run_bounded(args, self.timeout, capture_stdout=capture, cwd=cwd,
                                 env=env or plain_env(), on_timeout=m.on_timeout)

    def timed(self, m: mounts.Mounted, label: str, args: list[str], capture: bool = False,
              env: dict[str, str] | None = None) -> procs.Completed:
        """The measured command; with --profile, py-spy samples the pysshfs daemon meanwhile."""
        if self.profile_dir is None or m.kind != "pysshfs":
            return self.run(m, args, capture=capture, env=env)
        with profiler.recording(m.pids[0], self.profile_dir / f"{label}-{self._serial}"):
            return self.run(m, args, capture=capture, env=env)


def plain_env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"  # no locale collation in ls/find: measure the filesystem
    return env


def dd_bytes(stderr: bytes) -> int:
    match = re.search(rb"^(\d+) bytes", stderr, re.MULTILINE)
    if not match:
        raise WrongResult(f"no byte count in dd output: {stderr[-300:]!r}")
    return int(match.group(1))


def count_entries(root: Path) -> int:
    """What find prints for `root`: itself plus every directory, file and symlink below."""
    total = 1
    for _dirpath, dirnames, filenames in os.walk(root):
        total += len(dirnames) + len(filenames)
    return total


def count_files(root: Path) -> int:
    return sum(len(filenames) for _d, _n, filenames in os.walk(root))


# --- the workloads ------------------------------------------------------------------------


def seq_read(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "read") as m:
        ctx.drop_caches()  # server side too: both start from the disk
        cpu0 = m.cpu_seconds()
        r = ctx.timed(m, "seq_read", ["dd", f"if={m.mountpoint / 'big.bin'}", "of=/dev/null",
                                        "bs=1M"])
        cpu = m.cpu_seconds() - cpu0
    moved = dd_bytes(r.stderr)
    if moved != ctx.data.big_size:
        raise WrongResult(f"dd read {moved} bytes of a {ctx.data.big_size}-byte file")
    return Measurement(r.seconds, r.seconds, cpu, moved)


def seq_write(ctx: Context, kind: str) -> Measurement:
    name = f"write-{kind}.bin"
    server_file = ctx.data.scratch / name
    count = ctx.write_size // MiB
    try:
        with ctx.mounted(kind, "write") as m:
            cpu0 = m.cpu_seconds()
            r = ctx.timed(m, "seq_write", ["dd", "if=/dev/zero",
                                           f"of={m.mountpoint / 'scratch' / name}",
                                           "bs=1M", f"count={count}", "conv=fsync"])
            cpu = m.cpu_seconds() - cpu0
        size = server_file.stat().st_size
        if size != ctx.write_size:
            raise WrongResult(f"server has {size} bytes after writing {ctx.write_size}")
    finally:
        server_file.unlink(missing_ok=True)
    return Measurement(r.seconds, r.seconds, cpu, ctx.write_size)


def find_fresh(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "find") as m:
        r = ctx.timed(m, "find", ["find", str(m.mountpoint / "tree"), "-printf", "%s %m\n"],
                      capture=True)
    lines = r.stdout.count(b"\n")
    expected = count_entries(ctx.data.tree)
    if lines != expected:
        raise WrongResult(f"find printed {lines} entries, the server has {expected}")
    return Measurement(r.seconds, r.seconds)


def ls_lr_warm(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "lslr") as m:
        args = ["ls", "-lR", str(m.mountpoint / "tree")]
        first = ctx.run(m, args, capture=True)
        second = ctx.timed(m, "ls_lr_warm", args, capture=True)
    if second.stdout != first.stdout:
        raise WrongResult("the second ls -lR printed something else than the first")
    listed = sum(1 for line in second.stdout.splitlines() if line[:1] in (b"-", b"d", b"l"))
    expected = count_entries(ctx.data.tree) - 1  # every entry below the top directory
    if listed != expected:
        raise WrongResult(f"ls -lR listed {listed} entries, the server has {expected}")
    return Measurement(second.seconds, second.seconds)


def tar_extract(ctx: Context, kind: str) -> Measurement:
    dest = ctx.data.scratch / f"extract-{kind}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    try:
        with ctx.mounted(kind, "tar") as m:
            # The tar is read from the local disk: this measures creating files on the mount.
            r = ctx.timed(m, "tar_extract", [
                "tar", "-xf", str(ctx.data.tar), "--no-same-owner",
                "-C", str(m.mountpoint / "scratch" / dest.name),
            ])
        got = count_files(dest / "tree")
        if got != ctx.data.tree_files:
            raise WrongResult(f"server has {got} files after extracting {ctx.data.tree_files}")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return Measurement(r.seconds, r.seconds)


def git_status_warm(ctx: Context, kind: str) -> Measurement:
    env = git_env()
    with ctx.mounted(kind, "git") as m:
        args = ["git", "-C", str(m.mountpoint / "repo"), "status"]
        ctx.run(m, args, capture=True, env=env)  # refreshes the index's stat data
        r = ctx.timed(m, "git_status_warm", args, capture=True, env=env)
    if b"working tree clean" not in r.stdout:
        raise WrongResult(f"git status on the mount is not clean: {r.stdout[-400:]!r}")
    return Measurement(r.seconds, r.seconds)


def fio_randread(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "fio") as m:
        r = ctx.timed(m, "fio_randread", [
            "fio", "--name=randread", f"--filename={m.mountpoint / 'big.bin'}", "--readonly",
            "--rw=randread", "--bs=4k", "--ioengine=psync", "--iodepth=1", "--numjobs=1",
            f"--size={ctx.data.big_size}", f"--runtime={ctx.fio_seconds}", "--time_based",
            "--output-format=json",
        ], capture=True)
    text = r.stdout.decode(errors="replace")
    try:
        report = json.loads(text[text.index("{"):])
        job = report["jobs"][0]
        iops = float(job["read"]["iops"])
        errors = int(job.get("error", 0))
    except (ValueError, KeyError, IndexError) as exc:
        raise WrongResult(f"cannot read fio's JSON ({exc}): {text[:300]!r}") from None
    if errors or iops <= 0:
        raise WrongResult(f"fio error {errors}, {iops} IOPS")
    return Measurement(iops, r.seconds)


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    goal_op: str  # "<=": ratio of times must not exceed goal; ">=": ratio of IOPS must reach it
    goal: float
    unit: str  # "s" or "IOPS"
    run: Callable[[Context, str], Measurement]

    def met(self, ratio: float) -> bool:
        return ratio <= self.goal if self.goal_op == "<=" else ratio >= self.goal


def workloads(big_mib: int, tree_files: int, fio_seconds: int) -> list[Workload]:
    """The table of issue 4, titled with this run's actual sizes."""
    return [
        Workload("seq_read", f"sequential read {big_mib} MiB, cold cache, dd bs=1M",
                 "<=", 1.0, "s", seq_read),
        Workload("seq_write", f"sequential write {big_mib} MiB, dd bs=1M conv=fsync",
                 "<=", 1.0, "s", seq_write),
        Workload("find", f"find -printf '%s %m' over {tree_files:,} files, fresh mount",
                 "<=", 1.0, "s", find_fresh),
        Workload("ls_lr_warm", f"ls -lR of {tree_files:,} files, warm (2nd run)",
                 "<=", 0.5, "s", ls_lr_warm),
        Workload("tar_extract", f"extract a tar of {tree_files:,} files onto the mount",
                 "<=", 1.0, "s", tar_extract),
        Workload("git_status_warm", f"git status, {tree_files:,}-file repo, warm (2nd run)",
                 "<=", 0.5, "s", git_status_warm),
        Workload("fio_randread", f"random 4 KiB reads, {fio_seconds} s, fio psync",
                 ">=", 1.0, "IOPS", fio_randread),
    ]
