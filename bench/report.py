"""Turn raw rounds into the Markdown table, the JSON record and the PNG chart of ratios."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MB = 1_000_000
GiB = 1024**3


def _first_line(args: list[str], env: dict[str, str] | None = None) -> str:
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc.__class__.__name__})"
    text = (res.stdout + res.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_info(repo_root: Path) -> dict[str, str]:
    """What a reader needs to judge the numbers: hardware, kernel, every version involved."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import paramiko

        paramiko_version = paramiko.__version__
    except ImportError:
        paramiko_version = "not installed"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root)
    pysshfs_v = _first_line([sys.executable, "-m", "pysshfs", "-V"], env=env)
    sshfs_lines = subprocess.run(["sshfs", "-V"], capture_output=True, text=True,
                                 timeout=30).stdout if _which("sshfs") else ""
    sshfs_v = next((ln for ln in sshfs_lines.splitlines() if ln.startswith("SSHFS")), "missing")
    fuse_v = next((ln for ln in sshfs_lines.splitlines() if ln.startswith("FUSE library")), "")
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "sshfs": sshfs_v + (f" ({fuse_v})" if fuse_v else ""),
        "openssh": _first_line(["ssh", "-V"]),
        "paramiko": paramiko_version,
        "python": platform.python_version(),
        "pysshfs": pysshfs_v,
        "fio": _first_line(["fio", "--version"]),
        "git": _first_line(["git", "--version"]),
    }


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def median_of(rounds: list[dict[str, Any]], key: str = "value") -> float | None:
    values = [r[key] for r in rounds if "error" not in r and r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per workload: medians, ratio pysshfs/sshfs and whether the goal holds."""
    rows = []
    for w in record["workloads"]:
        rounds = record["rounds"][w["key"]]
        row: dict[str, Any] = {**w}
        for kind in ("pysshfs", "sshfs"):
            row[kind] = median_of(rounds.get(kind, []))
            row[f"{kind}_errors"] = [r["error"] for r in rounds.get(kind, []) if "error" in r]
        p, s = row["pysshfs"], row["sshfs"]
        row["ratio"] = p / s if p is not None and s else None
        if w["goal_op"] == "abs<=":  # a goal for pysshfs's own figure (a latency)
            row["met"] = None if p is None else p <= w["goal"]
        elif row["ratio"] is None:
            row["met"] = None
        elif w["goal_op"] == "<=":
            row["met"] = row["ratio"] <= w["goal"]
        else:
            row["met"] = row["ratio"] >= w["goal"]
        rows.append(row)
    return rows


def _cell(row: dict[str, Any], kind: str, record: dict[str, Any]) -> str:
    value = row[kind]
    if value is None:
        errors = row[f"{kind}_errors"]
        return "error" if errors else "–"
    if row["unit"] == "IOPS":
        return f"{value:,.0f} IOPS"
    text = _secs(value)
    nbytes = record["sizes"].get(row["key"])
    if nbytes:
        text += f" ({nbytes / value / MB:,.0f} MB/s)"
    extra = [r for r in record["rounds"][row["key"]].get(kind, []) if "error" not in r]
    p50 = median_of(extra, "p50")
    if p50 is not None:
        way = "write" if any("write_mbps" in r for r in extra) else "read"
        text += f" (p50 {_secs(p50)}, {way} {median_of(extra, f'{way}_mbps'):,.1f} MB/s)"
    return text


def _secs(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.3g} ms"


def _fmt_mb(kib: float | None) -> str:
    return "–" if kib is None else f"{kib * 1024 / MB:,.0f} MB"


def _fmt(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown(record: dict[str, Any]) -> str:
    rows = summarize(record)
    m = record["machine"]
    extra = record["extra"]
    lines = [
        "# pysshfs vs OpenSSH sshfs",
        "",
        f"Date: {record['date']} · mode: {record['mode']} · rounds: {record['rounds_count']} "
        f"(median) · alternating pysshfs/sshfs, fresh mount per run",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}; "
        f"{m['sshfs']}; {m['openssh']}; paramiko {m['paramiko']}; Python {m['python']}; "
        f"{m['pysshfs'].replace('version ', '')}; {m['fio']}; {m['git']}",
        "",
        "| workload | pysshfs | sshfs | ratio | goal | met? |",
        "| --- | ---: | ---: | ---: | :---: | :---: |",
    ]
    for row in rows:
        op = "≥" if row["goal_op"] == ">=" else "≤"
        goal = (f"{op} {_secs(row['goal'])}" if row["goal_op"] == "abs<=" else
                f"{op} {row['goal']:.1f}")
        ratio = _fmt(row["ratio"], ".2f")
        met = "–" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['title']} | {_cell(row, 'pysshfs', record)} | "
                     f"{_cell(row, 'sshfs', record)} | {ratio} | {goal} | {met} |")
    lines += [
        "",
        "Ratio = pysshfs / sshfs: median wall time (lower is better), for fio median IOPS "
        "(higher is better); a goal in ms is for pysshfs's own figure.",
        "",
        "| figure | pysshfs | sshfs (+ its ssh) | goal | met? |",
        "| --- | ---: | ---: | :---: | :---: |",
    ]
    ceiling = extra.get("ceiling_mbps") or {}
    lines.append(
        f"| ceiling: `ssh host cat` of the {record['sizes_mib']} MiB file, cold / warm "
        f"server cache | {_fmt(ceiling.get('cold'), ',.0f')} / "
        f"{_fmt(ceiling.get('warm'), ',.0f')} MB/s | | | |")
    rss = extra.get("peak_rss_kib", {})
    p_rss = (rss.get("pysshfs") or {}).get("daemon")
    s_rss = rss.get("sshfs") or {}
    met = "–" if p_rss is None else ("yes" if p_rss * 1024 < 150 * MB else "**no**")
    lines.append(
        f"| peak RSS over all workloads (VmHWM before unmount) | {_fmt_mb(p_rss)} | "
        f"{_fmt_mb(s_rss.get('daemon'))} (+ ssh: {_fmt_mb(s_rss.get('tree'))} total) "
        f"| < 150 MB | {met} |")
    cpu = extra.get("cpu_s_per_gib", {})
    for key, what in (("seq_read", "read"), ("seq_write", "written")):
        c = cpu.get(key, {})
        lines.append(f"| CPU seconds per GiB {what} (daemon + children, user+sys) | "
                     f"{_fmt(c.get('pysshfs'), '.2f')} | {_fmt(c.get('sshfs'), '.2f')} | | |")
    notes = record.get("notes", [])
    errors = [f"{row['key']} {kind}: {e}" for row in rows for kind in ("pysshfs", "sshfs")
              for e in row[f"{kind}_errors"]]
    if notes or errors:
        lines += ["", "Notes:"]
        lines += [f"- {n}" for n in notes]
        lines += [f"- error: {e}" for e in errors]
    return "\n".join(lines) + "\n"


def chart(record: dict[str, Any], path: Path) -> bool:
    """Bar chart of pysshfs/sshfs cost per workload with each goal; False without matplotlib.

    Every bar is a cost ratio (lower is better): for fio the ratio of time per I/O, i.e.
    sshfs IOPS / pysshfs IOPS, so one axis and one direction fit all goals.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install matplotlib): no chart")
        return False
    rows = summarize(record)
    labels, values, goals, colours = [], [], [], []
    for row in rows:
        ratio = row["ratio"]
        if row["goal_op"] == ">=":
            cost = (1 / ratio) if ratio else None
            goal = 1 / row["goal"]
            label = row["title"] + "\n(time per I/O)"
        elif row["goal_op"] == "abs<=":  # the goal as a ratio to sshfs's figure
            cost = ratio
            goal = row["goal"] / row["sshfs"] if row["sshfs"] else 1.0
            label = row["title"]
        else:
            cost, goal, label = ratio, row["goal"], row["title"]
        if label.startswith("[") and "]" in label:  # --rtt titles: the link once, in the title
            link, label = label[1:].split("] ", 1)
            if "Mbit" in link:
                label += " (" + link.split(", ", 1)[1] + ")"
        labels.append(textwrap.fill(label, 18))
        values.append(cost if cost is not None else 0.0)
        goals.append(goal)
        colours.append("#9e9e9e" if cost is None else ("#2e7d32" if cost <= goal else "#c62828"))
    fig, ax = plt.subplots(figsize=(12, 6))
    xs = list(range(len(rows)))
    bars = ax.bar(xs, values, color=colours, width=0.6)
    for x, goal in zip(xs, goals, strict=True):
        ax.hlines(goal, x - 0.4, x + 0.4, colors="black", linestyles="dashed", linewidth=1.5,
                  zorder=3)
    for bar, value, row in zip(bars, values, rows, strict=True):
        text = f"{value:.2f}" if row["ratio"] is not None else "n/a"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                    textcoords="offset points")
    ax.axhline(1.0, color="#607d8b", linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("pysshfs / sshfs (lower is better)")
    ax.set_title(f"pysshfs vs sshfs: cost ratio per workload, dashed = goal "
                 f"({record['date']}, {record['mode']}, median of {record['rounds_count']})",
                 fontsize=10)
    ax.set_ylim(0, max([*values, *goals, 1.0]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(record: dict[str, Any], out: Path) -> dict[str, Path]:
    """latest.md, latest.json and latest.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "latest.md", "json": out / "latest.json", "png": out / "latest.png"}
    record = {**record, "summary": summarize(record)}
    paths["json"].write_text(json.dumps(record, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(record))
    if not chart(record, paths["png"]):
        del paths["png"]
    return paths
