"""pysshfs against OpenSSH sshfs, same throwaway sshd, same run: `python bench/run.py`.

    python bench/run.py [--smoke] [--rounds N] [--out bench/results]

Starts its own sshd on 127.0.0.1, builds the data sets once, then for each workload runs
pysshfs and sshfs alternately (the order flips every round), each run on a fresh mount,
and writes latest.md / latest.json / latest.png to --out. Needs root (drop_caches, mounts).
Exit status 0 when every measurement succeeded, 1 when any failed (the table says which),
2 when the benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import datasets, mounts, netem, procs, profiler, report  # noqa: E402
from bench.workloads import Context, Workload, rtt_workloads, workloads  # noqa: E402
from tests.support.sshd import start_sshd  # noqa: E402

log = logging.getLogger("bench")

MiB = datasets.MiB
GiB = 1024**3
HOST_ALIAS = "testhost"
TOOLS = {"sshfs": "sshfs", "fio": "fio", "git": "git", "fusermount3": "fuse3"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="pysshfs vs sshfs benchmark (issue 4)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (8 MiB, ~200 files, fio 2 s), one round: proves it runs")
    p.add_argument("--rounds", type=int, default=None, help="rounds per workload (default 3)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results",
                   help="where latest.md/.json/.png go (default bench/results)")
    p.add_argument("--only", choices=mounts.KINDS, action="append",
                   help="measure only this filesystem (debugging; no ratios)")
    p.add_argument("--workload", action="append", dest="workloads", metavar="KEY",
                   help="run only this workload (repeatable): seq_read, seq_write, find, "
                        "git_status_cold, ls_l_bigdir, ls_lr_warm, tar_extract, "
                        "git_status_warm, fio_randread; with --rtt also seq_read_capped, "
                        "ls_lr_cold, tar_small, tar_small_owners, cp_small, stat_known, "
                        "stat_during_read, stat_during_read_capped, stat_during_write, "
                        "stat_during_write_capped")
    p.add_argument("--size-mib", type=int, default=None, help="big file size (default 512)")
    p.add_argument("--tree-files", type=int, default=None,
                   help="at most this many files in the tree (default: the whole stdlib)")
    p.add_argument("--fio-seconds", type=int, default=None, help="fio run time (default 10)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds any one measured command may take (default 600, smoke 90)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where sshd, data and mountpoints live (default: a new temp dir)")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="py-spy the pysshfs daemon during each timed command, stacks to DIR "
                        "(slows pysshfs a little: not for the published table)")
    p.add_argument("--rtt", type=float, default=None, metavar="MS",
                   help="run the round-trip workloads through a proxy on 127.0.0.1 that "
                        "delays each direction by MS/2 (issue 10's table)")
    p.add_argument("--mbit", type=float, default=None, metavar="N",
                   help="with --rtt: cap the emulated link at N Mbit/s (default: no cap)")
    p.add_argument("--cap-mbit", type=float, default=100.0, metavar="N",
                   help="with --rtt: the cap of the 'capped' rows (default 100)")
    p.add_argument("--bigdir", type=int, default=None,
                   help="entries of the big directory (default 30,000; smoke 500)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-install", action="store_true",
                   help="never apt-get install missing tools (sshfs, fio, git)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    smoke = args.smoke
    rtt = args.rtt is not None
    args.rounds = args.rounds or (1 if smoke or rtt else 3)
    args.size_mib = args.size_mib or (8 if smoke else 64 if rtt else 512)
    # At 20 ms a round trip, issue 10's tree: 1,011 files of the standard library.
    args.tree_files = args.tree_files or (200 if smoke else 1011 if rtt else None)
    args.bigdir = args.bigdir or (500 if smoke else 30000)
    args.fio_seconds = args.fio_seconds or (2 if smoke else 10)
    args.timeout = args.timeout or (90.0 if smoke else 600.0)
    return args


def ensure_tools(no_install: bool) -> list[str]:
    """apt-get install what is missing (as root); returns the tools still missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing and not no_install and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted({TOOLS[t] for t in missing})
        log.info("installing %s with apt-get", " ".join(packages))
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
            subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           timeout=900, check=False)
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing


def measure_ceiling(ctx: Context, rounds: int, timeout: float) -> dict[str, Any]:
    """`ssh host cat file > /dev/null`: what one SSH channel on this sshd can carry.

    The time of `ssh host true` (connection setup) is subtracted so the figure is the
    stream's throughput, comparable to dd on an existing mount.
    """
    ssh = ["ssh", "-F", str(ctx.ssh_config), HOST_ALIAS]
    size = ctx.data.big_size
    cold, warm, setup = [], [], []
    for _ in range(rounds):
        setup.append(procs.run_bounded([*ssh, "true"], timeout).seconds)
        procs.drop_page_cache()
        cold.append(procs.run_bounded([*ssh, "cat", str(ctx.data.big)], timeout).seconds)
        warm.append(procs.run_bounded([*ssh, "cat", str(ctx.data.big)], timeout).seconds)
    s = statistics.median(setup)
    return {
        "cold": size / max(statistics.median(cold) - s, 1e-6) / report.MB,
        "warm": size / max(statistics.median(warm) - s, 1e-6) / report.MB,
        "raw_seconds": {"setup": setup, "cold": cold, "warm": warm},
    }


def ssh_cipher(ssh_config: Path) -> str:
    """The cipher/MAC OpenSSH (and so sshfs) negotiates with this sshd, from `ssh -v`."""
    res = subprocess.run(["ssh", "-v", "-F", str(ssh_config), HOST_ALIAS, "true"],
                         capture_output=True, text=True, timeout=60)
    for line in res.stderr.splitlines():
        if "kex: server->client cipher:" in line:
            return line.split("cipher:", 1)[1].strip()
    return "unknown"


def run_workloads(ctx: Context, chosen: list[Workload], kinds: list[str], rounds: int,
                  record: dict[str, Any], proxy: netem.DelayProxy | None = None,
                  mbit: float | None = None) -> int:
    """Every workload, every round, both filesystems alternating; returns the failure count."""
    failures = 0
    for w in chosen:
        if proxy is not None:
            proxy.set_rate(w.mbit or mbit)
        per_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        record["rounds"][w.key] = per_kind
        for rnd in range(rounds):
            order = kinds if rnd % 2 == 0 else list(reversed(kinds))
            for kind in order:
                started = time.monotonic()
                try:
                    m = w.run(ctx, kind)
                except (procs.CommandFailed, OSError, RuntimeError) as exc:
                    failures += 1
                    log.error("%s round %d %s failed: %s", w.key, rnd + 1, kind, exc)
                    per_kind[kind].append({"round": rnd + 1, "error": str(exc)[:1000]})
                    continue
                shown = f"{m.value:,.0f} IOPS" if w.unit == "IOPS" else f"{m.value:.3f} s"
                log.info("%-16s round %d/%d %-8s %s  (%.1f s with mount/unmount)", w.key,
                         rnd + 1, rounds, kind, shown, time.monotonic() - started)
                per_kind[kind].append({"round": rnd + 1, "value": m.value,
                                       "seconds": m.seconds, "cpu_seconds": m.cpu_seconds,
                                       "nbytes": m.nbytes, **m.extra})
    return failures


def cpu_per_gib(record: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in ("seq_read", "seq_write"):
        for kind, rounds in record["rounds"].get(key, {}).items():
            values = [r["cpu_seconds"] / (r["nbytes"] / GiB) for r in rounds
                      if "error" not in r and r.get("cpu_seconds") is not None and r["nbytes"]]
            if values:
                out.setdefault(key, {})[kind] = statistics.median(values)
    return out


def sweep_mounts(mount_dir: Path) -> None:
    """Unmount anything still mounted under our mountpoint directory (after a crash)."""
    prefix = str(mount_dir) + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target.startswith(prefix):
            mp = Path(target)
            kind = "pysshfs" if mp.name.startswith("pysshfs") else "sshfs"
            log.warning("leftover mount %s: unmounting", mp)
            mounts.unmount(mounts.Mounted(kind, mp, procs.pids_with_argument(target)))


def proxied_config(sshd: Any, port: int, workdir: Path) -> Path:
    """An ssh_config whose testhost goes through the proxy, its host key known there too."""
    known = workdir / "known_hosts_proxied"
    pub = sshd.host_key.with_suffix(".pub").read_text().split()
    known.write_text(sshd.known_hosts.read_text() + f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    text = netem.proxied_ssh_config(sshd.ssh_config.read_text(), port)
    text = text.replace(str(sshd.known_hosts), str(known))
    path = workdir / "ssh_config_proxied"
    path.write_text(text)
    return path


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    signal.signal(signal.SIGTERM, _terminate)
    if os.geteuid() != 0:
        log.error("run as root: the benchmark drops the page cache and mounts FUSE")
        return 2
    missing = ensure_tools(args.no_install)
    if "sshfs" in missing or "fusermount3" in missing:
        log.error("sshfs is not installed (apt-get install sshfs): nothing to compare with")
        return 2
    kinds = [k for k in mounts.KINDS if not args.only or k in args.only]
    if args.profile is not None and not profiler.available():
        log.error("--profile needs py-spy (pip install py-spy)")
        return 2

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pysshfs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mount_dir = workdir / "mnt"
    mount_dir.mkdir(exist_ok=True)
    sshd = None
    proxy = None
    failures = 0
    started = time.monotonic()
    try:
        sshd = start_sshd(workdir / "sshd")
        small = 30 if args.smoke else 300
        data = datasets.build(sshd.root / "bench", args.size_mib * MiB, args.tree_files,
                              small_files=small, cp_files=small * 2 // 3,
                              bigdir_entries=args.bigdir, probe_dirs=20 if args.smoke else 200)
        ssh_config = sshd.ssh_config
        if args.rtt is not None:
            proxy = netem.DelayProxy(sshd.port, args.rtt, args.mbit)
            ssh_config = proxied_config(sshd, proxy.port, workdir)
            log.info("emulated link: RTT %g ms, %s, via 127.0.0.1:%d", args.rtt,
                     f"{args.mbit:g} Mbit/s" if args.mbit else "no rate cap", proxy.port)
        ctx = Context(ssh_config=ssh_config, host_alias=HOST_ALIAS, data=data,
                      mount_dir=mount_dir, timeout=args.timeout,
                      mount_timeout=min(args.timeout, 60.0), fio_seconds=args.fio_seconds,
                      write_size=data.big_size,
                      profile_dir=args.profile.resolve() if args.profile else None,
                      probes=10 if args.smoke else 60)
        if args.rtt is not None:
            table = rtt_workloads(args.size_mib, data, args.rtt, args.mbit, args.cap_mbit)
        else:
            table = workloads(args.size_mib, data.tree_files, args.fio_seconds,
                              data.bigdir_entries)
        chosen = [w for w in table if not args.workloads or w.key in args.workloads]
        record: dict[str, Any] = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": ("smoke" if args.smoke else "full") + (
                f", RTT {args.rtt:g} ms" + (f" {args.mbit:g} Mbit/s" if args.mbit else "")
                if args.rtt is not None else ""),
            "rounds_count": args.rounds,
            "machine": report.machine_info(REPO_ROOT),
            "sizes": {"seq_read": data.big_size, "seq_write": data.big_size},
            "sizes_mib": args.size_mib,
            "tree": {"files": data.tree_files, "bytes": data.tree_bytes,
                     "source": str(datasets.stdlib_dir())},
            "workloads": [{"key": w.key, "title": w.title, "goal_op": w.goal_op,
                           "goal": w.goal, "unit": w.unit} for w in chosen],
            "rounds": {},
            "extra": {},
            "notes": [],
        }
        cipher = ssh_cipher(sshd.ssh_config)
        record["notes"].append(f"OpenSSH client (sshfs's transport) negotiates: {cipher}")
        if args.rtt is not None:
            record["notes"].append(
                f"through bench/netem.py: each direction delayed {args.rtt / 2:g} ms, "
                "deep buffer; rows marked with a rate ran with that cap")
        try:
            record["extra"]["ceiling_mbps"] = measure_ceiling(ctx, args.rounds, args.timeout)
        except procs.CommandFailed as exc:
            failures += 1
            record["notes"].append(f"ceiling not measured: {exc}")
        failures += run_workloads(ctx, chosen, kinds, args.rounds, record, proxy, args.mbit)
        record["extra"]["peak_rss_kib"] = {
            kind: {"daemon": max(s["daemon"] for s in samples),
                   "tree": max(s["tree"] for s in samples)}
            for kind, samples in ctx.peak_rss.items() if samples
        }
        record["extra"]["cpu_s_per_gib"] = cpu_per_gib(record)
        if ctx.cache_dropped and not all(ctx.cache_dropped):
            record["notes"].append("the page cache could not be dropped: reads were not cold")
        record["notes"] += [f"unclean unmount: {p}" for p in ctx.unmount_problems]
        if args.profile:
            record["notes"].append(f"py-spy sampled pysshfs during timed commands (stacks in "
                                   f"{args.profile}): its numbers include that overhead")
        if missing:
            record["notes"].append(f"missing tools: {', '.join(missing)}")
        record["elapsed_seconds"] = round(time.monotonic() - started, 1)
        paths = report.write_all(record, args.out)
        log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
        sys.stdout.write(paths["md"].read_text())
    except KeyboardInterrupt as exc:
        log.error("interrupted (%s): cleaning up", exc)
        return 130
    finally:
        sweep_mounts(mount_dir)
        if proxy is not None:
            proxy.close()
        if sshd is not None:
            sshd.stop()
        if args.keep:
            log.info("work directory kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
