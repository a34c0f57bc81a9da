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
import statistics
import threading
import time
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
    extra: dict[str, float] = field(default_factory=dict)  # e.g. p50 beside a p95 value


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
    probes: int = 60  # stat probes per latency measurement
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


def _extract(ctx: Context, kind: str, label: str, tar: Path, top: str,
             expected: int, *, keep_owners: bool = False) -> Measurement:
    """Time `tar -x` of `tar` (read from the local disk: this measures creating files on
    the mount) into a fresh scratch directory, then check the server holds `expected`
    files under `top`. `keep_owners`: as root does by default (each file created 0600,
    then chowned and chmodded), checked against the files the tar was made of."""
    dest = ctx.data.scratch / f"{label}-{kind}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    # The previous round's ~200 MB and thousands of unlinks (ext4 mounted with discard)
    # would otherwise be written back by the kernel during this round, slowing the
    # server under whichever file system comes next: each round starts from a clean disk.
    os.sync()
    try:
        with ctx.mounted(kind, label) as m:
            owners = [] if keep_owners else ["--no-same-owner"]
            r = ctx.timed(m, label, ["tar", "-xf", str(tar), *owners,
                                     "-C", str(m.mountpoint / "scratch" / dest.name)])
        got = count_files(dest / top)
        if got != expected:
            raise WrongResult(f"server has {got} files after extracting {expected}")
        if keep_owners:
            _check_owners(ctx.data.base / top, dest / top)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return Measurement(r.seconds, r.seconds)


def tar_extract(ctx: Context, kind: str) -> Measurement:
    return _extract(ctx, kind, "tar_extract", ctx.data.tar, "tree", ctx.data.tree_files)


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


def ls_lr_cold(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "lslrcold") as m:
        r = ctx.timed(m, "ls_lr_cold", ["ls", "-lR", str(m.mountpoint / "tree")], capture=True)
    listed = sum(1 for line in r.stdout.splitlines() if line[:1] in (b"-", b"d", b"l"))
    expected = count_entries(ctx.data.tree) - 1
    if listed != expected:
        raise WrongResult(f"ls -lR listed {listed} entries, the server has {expected}")
    return Measurement(r.seconds, r.seconds)


def git_status_cold(ctx: Context, kind: str) -> Measurement:
    """The first `git status` on a fresh mount of a repo committed on the server side: the
    index's stat data (inode numbers) do not match the mount's, so git reads every file."""
    env = git_env()
    shutil.copy2(ctx.data.index_copy, ctx.data.repo / ".git" / "index")
    with ctx.mounted(kind, "gitcold") as m:
        r = ctx.timed(m, "git_status_cold", ["git", "-C", str(m.mountpoint / "repo"), "status"],
                      capture=True, env=env)
    if b"working tree clean" not in r.stdout:
        raise WrongResult(f"git status on the mount is not clean: {r.stdout[-400:]!r}")
    return Measurement(r.seconds, r.seconds)


def _check_owners(source: Path, copy: Path) -> None:
    for dirpath, _dirs, files in os.walk(source):
        for name in files:
            want = (Path(dirpath) / name).lstat()
            got = (copy / Path(dirpath).relative_to(source) / name).lstat()
            if (want.st_mode, want.st_uid, want.st_gid, int(want.st_mtime)) != \
                    (got.st_mode, got.st_uid, got.st_gid, int(got.st_mtime)):
                raise WrongResult(f"{name}: mode, owner or mtime not as in the archive")


def tar_small(ctx: Context, kind: str) -> Measurement:
    return _extract(ctx, kind, "tar_small", ctx.data.small_tar, "small", ctx.data.small_files)


def tar_small_owners(ctx: Context, kind: str) -> Measurement:
    return _extract(ctx, kind, "tar_small_owners", ctx.data.small_tar, "small",
                    ctx.data.small_files, keep_owners=True)


def cp_small(ctx: Context, kind: str) -> Measurement:
    dest = ctx.mount_dir.parent / f"cp-{kind}"
    shutil.rmtree(dest, ignore_errors=True)
    try:
        with ctx.mounted(kind, "cp") as m:
            r = ctx.timed(m, "cp_small", ["cp", "-r", str(m.mountpoint / "cpsrc"), str(dest)])
        for dirpath, _dirs, files in os.walk(ctx.data.cpsrc):
            rel = Path(dirpath).relative_to(ctx.data.cpsrc)
            for name in files:
                src, got = Path(dirpath) / name, dest / rel / name
                if not src.is_symlink() and src.read_bytes() != got.read_bytes():
                    raise WrongResult(f"{rel / name} copied off the mount differs")
        if count_files(dest) != ctx.data.cp_files:
            raise WrongResult(f"cp -r copied {count_files(dest)} of {ctx.data.cp_files} files")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return Measurement(r.seconds, r.seconds)


def known_paths(tree: Path, count: int) -> list[Path]:
    """`count` regular files spread over the tree (every k-th in walk order)."""
    files = [Path(d) / f for d, _n, fs in sorted(os.walk(tree)) for f in sorted(fs)
             if not (Path(d) / f).is_symlink()]
    step = max(1, len(files) // count)
    return files[::step][:count]


def stat_known(ctx: Context, kind: str) -> Measurement:
    paths = known_paths(ctx.data.tree, 200)
    with ctx.mounted(kind, "stat") as m:
        args = [str(m.mountpoint / p.relative_to(ctx.data.base)) for p in paths]
        r = ctx.timed(m, "stat_known", ["stat", "-c", "%s", *args], capture=True)
    sizes = [int(x) for x in r.stdout.split()]
    if sizes != [p.stat().st_size for p in paths]:
        raise WrongResult("stat sizes differ from the server's")
    return Measurement(r.seconds, r.seconds)


def ls_l_bigdir(ctx: Context, kind: str) -> Measurement:
    with ctx.mounted(kind, "bigdir") as m:
        r = ctx.timed(m, "ls_l_bigdir", ["ls", "-l", str(m.mountpoint / "bigdir")],
                      capture=True)
    listed = sum(1 for line in r.stdout.splitlines() if line.startswith(b"-"))
    if listed != ctx.data.bigdir_entries:
        raise WrongResult(f"ls -l listed {listed} of {ctx.data.bigdir_entries} entries")
    return Measurement(r.seconds, r.seconds)


def _stream(path: Path, stop: threading.Event, moved: list[int]) -> None:
    """Read `path` over and over (page cache dropped before each pass) until `stop`."""
    while not stop.is_set():
        procs.drop_page_cache()
        with open(path, "rb", buffering=0) as f:
            while not stop.is_set():
                chunk = f.read(MiB)
                if not chunk:
                    break
                moved[0] += len(chunk)


def _upload(path: Path, stop: threading.Event, moved: list[int]) -> None:
    """Write `path` over and over, 1 MiB at a time (64 MiB a pass), until `stop`."""
    block = os.urandom(MiB)
    while not stop.is_set():
        with open(path, "wb", buffering=0) as f:
            for _ in range(64):
                if stop.is_set():
                    break
                f.write(block)
                moved[0] += len(block)


def stat_during_read(ctx: Context, kind: str) -> Measurement:
    """p95 (and p50) of a `stat` that must reach the server while a big file streams.

    Each probe stats probes/dNNNN/f in a directory never visited before, so every
    filesystem needs at least one request for it; the streaming read's throughput during
    the probes is reported too (MB/s), to check it still gets the link.
    """
    return _stat_during(ctx, kind, "statlat", _stream, "big.bin", "read_mbps")


def stat_during_write(ctx: Context, kind: str) -> Measurement:
    """The same while a big file is written onto the mount (a copy to the server): the
    writes' bytes queue in front of the stat's request, on the way up."""
    dest = ctx.data.scratch / f"upload-{kind}.bin"
    try:
        return _stat_during(ctx, kind, "statlat-up", _upload, f"scratch/{dest.name}",
                            "write_mbps")
    finally:
        dest.unlink(missing_ok=True)


def _stat_during(ctx: Context, kind: str, label: str,
                 streamer: Callable[[Path, threading.Event, list[int]], None], name: str,
                 rate_key: str) -> Measurement:
    latencies: list[float] = []
    with ctx.mounted(kind, label) as m:
        stop = threading.Event()
        moved = [0]
        reader = threading.Thread(target=streamer, args=(m.mountpoint / name, stop, moved),
                                  daemon=True)
        reader.start()
        try:
            time.sleep(1.0)  # pacing, not synchronisation: let the stream fill the link
            start_bytes, started = moved[0], time.monotonic()
            for i in range(min(ctx.probes, ctx.data.probe_dirs)):
                t0 = time.perf_counter()
                os.stat(m.mountpoint / "probes" / f"d{i:04d}" / "f")
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.05)
            rate = (moved[0] - start_bytes) / (time.monotonic() - started)
        finally:
            stop.set()
            reader.join(ctx.timeout)
            if reader.is_alive():
                m.on_timeout()
                raise WrongResult("the streaming transfer did not stop")
    qs = statistics.quantiles(latencies, n=20, method="inclusive")
    return Measurement(qs[-1], sum(latencies), extra={"p50": statistics.median(latencies),
                                                      rate_key: rate / 1e6})


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    goal_op: str  # "<=": ratio of times must not exceed goal; ">=": ratio of IOPS must reach it
    goal: float
    unit: str  # "s" or "IOPS"
    run: Callable[[Context, str], Measurement]
    mbit: float | None = None  # rate cap of the emulated link for this workload (--rtt)


def workloads(big_mib: int, tree_files: int, fio_seconds: int,
              bigdir: int) -> list[Workload]:
    """The loopback table (issues 4 and 10), titled with this run's actual sizes."""
    return [
        Workload("seq_read", f"sequential read {big_mib} MiB, cold cache, dd bs=1M",
                 "<=", 1.0, "s", seq_read),
        Workload("seq_write", f"sequential write {big_mib} MiB, dd bs=1M conv=fsync",
                 "<=", 1.0, "s", seq_write),
        Workload("find", f"find -printf '%s %m' over {tree_files:,} files, fresh mount",
                 "<=", 1.0, "s", find_fresh),
        Workload("git_status_cold", f"cold git status, {tree_files:,}-file repo committed "
                 "on the server, fresh mount", "<=", 1.0, "s", git_status_cold),
        Workload("ls_l_bigdir", f"ls -l of a {bigdir:,}-entry directory, fresh mount",
                 "<=", 1.0, "s", ls_l_bigdir),
        Workload("ls_lr_warm", f"ls -lR of {tree_files:,} files, warm (2nd run)",
                 "<=", 0.5, "s", ls_lr_warm),
        Workload("tar_extract", f"extract a tar of {tree_files:,} files onto the mount",
                 "<=", 1.0, "s", tar_extract),
        Workload("git_status_warm", f"git status, {tree_files:,}-file repo, warm (2nd run)",
                 "<=", 0.5, "s", git_status_warm),
        Workload("fio_randread", f"random 4 KiB reads, {fio_seconds} s, fio psync",
                 ">=", 1.0, "IOPS", fio_randread),
    ]


def rtt_workloads(big_mib: int, data: DataSet, rtt_ms: float, mbit: float | None,
                  cap_mbit: float) -> list[Workload]:
    """The table of issue 10: what round trips decide, through the delaying proxy."""
    link = f"RTT {rtt_ms:g} ms" + (f", {mbit:g} Mbit/s" if mbit else "")
    capped = f"RTT {rtt_ms:g} ms, {cap_mbit:g} Mbit/s"
    n = data.tree_files
    return [
        Workload("seq_read", f"[{link}] read {big_mib} MiB, dd bs=1M", "<=", 0.2, "s",
                 seq_read),
        Workload("seq_read_capped", f"[{capped}] read {big_mib} MiB, dd bs=1M", "<=", 1.0,
                 "s", seq_read, mbit=cap_mbit),
        Workload("seq_write", f"[{link}] write {big_mib} MiB, dd conv=fsync", "<=", 0.7, "s",
                 seq_write),
        Workload("find", f"[{link}] find over {n:,} files, fresh mount", "<=", 0.3, "s",
                 find_fresh),
        Workload("ls_lr_cold", f"[{link}] ls -lR of {n:,} files, fresh mount", "<=", 0.3,
                 "s", ls_lr_cold),
        Workload("git_status_cold", f"[{link}] git status, {n:,}-file repo committed on the "
                 "server, fresh mount", "<=", 0.5, "s", git_status_cold),
        Workload("tar_small", f"[{link}] tar x of {data.small_files} small files", "<=", 0.4,
                 "s", tar_small),
        Workload("tar_small_owners", f"[{link}] tar x of {data.small_files} small files as "
                 "root, owners and modes kept", "<=", 0.4, "s", tar_small_owners),
        Workload("cp_small", f"[{link}] cp -r of {data.cp_files} small files off the mount",
                 "<=", 0.6, "s", cp_small),
        Workload("stat_known", f"[{link}] stat of 200 known paths, no listing first", "<=",
                 0.2, "s", stat_known),
        Workload("ls_l_bigdir", f"[{link}] ls -l of a {data.bigdir_entries:,}-entry "
                 "directory, fresh mount", "<=", 1.0, "s", ls_l_bigdir),
        Workload("stat_during_read", f"[{link}] p95 of a stat while a big file streams",
                 "abs<=", 0.060, "s", stat_during_read),
        Workload("stat_during_read_capped", f"[{capped}] p95 of a stat while a big file "
                 "streams", "abs<=", 0.060, "s", stat_during_read, mbit=cap_mbit),
        Workload("stat_during_write", f"[{link}] p95 of a stat while a big file is written",
                 "abs<=", 0.060, "s", stat_during_write),
        Workload("stat_during_write_capped", f"[{capped}] p95 of a stat while a big file is "
                 "written", "abs<=", 0.060, "s", stat_during_write, mbit=cap_mbit),
    ]
