"""The benchmark's smoke mode runs end to end, so `bench/run.py` cannot rot.

Tiny sizes, one round, real sshd, real pysshfs and sshfs mounts. The benchmark checks every
workload's result on the server side; here we check the table it writes has a number for
both filesystems in every row.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = REPO_ROOT / "bench" / "run.py"

# Row title starts, in table order (titles carry this run's sizes after these words).
WORKLOAD_ROWS = {
    "seq_read": "sequential read",
    "seq_write": "sequential write",
    "find": "find -printf",
    "git_status_cold": "cold git status",
    "ls_l_bigdir": "ls -l of a",
    "ls_lr_warm": "ls -lR",
    "tar_extract": "extract a tar",
    "git_status_warm": "git status",
    "fio_randread": "random 4 KiB reads",
}
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def require_tools() -> None:
    """Missing tools fail the test: bootstrap installs them, and a skip would hide rot."""
    hints = {"sshfs": "apt-get install sshfs", "fusermount3": "apt-get install fuse3",
             "fio": "apt-get install fio", "git": "apt-get install git"}
    missing = [tool for tool in hints if shutil.which(tool) is None]
    if missing:
        pytest.fail("the benchmark needs " + ", ".join(missing) + " (install: "
                    + "; ".join(hints[t] for t in missing) + ")", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the benchmark must run as root (drop_caches, FUSE mounts)", pytrace=False)


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The main table's rows as cell lists, keyed by the workload title."""
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("| workload | pysshfs | sshfs | ratio | goal | met? |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set(cells[0]) <= {"-", " ", ":"}:
                continue
            rows[cells[0]] = cells
    return rows


@pytest.mark.timeout(240)
def test_bench_smoke_writes_a_full_table(tmp_path: Path) -> None:
    require_tools()
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--no-install", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=200, cwd=REPO_ROOT,
    )
    log_tail = proc.stderr[-4000:]
    assert proc.returncode == 0, f"bench/run.py --smoke exited {proc.returncode}:\n{log_tail}"

    table = (out / "latest.md").read_text()
    rows = table_rows(table)
    assert len(rows) == len(WORKLOAD_ROWS), f"expected {len(WORKLOAD_ROWS)} rows:\n{table}"
    for key, start in WORKLOAD_ROWS.items():
        matching = [cells for title, cells in rows.items() if title.startswith(start)]
        assert len(matching) == 1, f"no single row for {key} ({start!r}) in:\n{table}"
        _title, pysshfs, sshfs, ratio, goal, met = matching[0]
        for name, cell in (("pysshfs", pysshfs), ("sshfs", sshfs), ("ratio", ratio)):
            assert NUMBER.search(cell), f"{key}: no number for {name} ({cell!r}) in:\n{table}"
        assert met in ("yes", "**no**"), f"{key}: goal verdict {met!r}"
    assert "Machine:" in table and "Date:" in table
    assert "peak RSS" in table and "ceiling" in table and "CPU seconds per GiB" in table

    record = json.loads((out / "latest.json").read_text())
    for key in WORKLOAD_ROWS:
        for kind in ("pysshfs", "sshfs"):
            rounds = record["rounds"][key][kind]
            assert rounds and all("error" not in r for r in rounds), (key, kind, rounds)
            assert all(r["value"] > 0 for r in rounds), (key, kind, rounds)
    assert record["extra"]["peak_rss_kib"]["pysshfs"]["daemon"] > 0

    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Nothing left behind: no mounts under the work dir, work dir removed.
    assert str(tmp_path / "work") not in Path("/proc/self/mountinfo").read_text()
    assert not (tmp_path / "work").exists()


@pytest.mark.timeout(240)
def test_bench_smoke_over_an_emulated_link(tmp_path: Path) -> None:
    """--rtt: the workloads run through bench/netem.py (delay and rate cap), sshfs's ssh
    and pysshfs alike; a few of issue 10's rows, each with a number for both."""
    require_tools()
    out = tmp_path / "out"
    keys = ["stat_known", "cp_small", "stat_during_read_capped", "stat_during_write_capped"]
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--rtt", "4", "--no-install", "--out", str(out),
         "--workdir", str(tmp_path / "work"), *[a for k in keys for a in ("--workload", k)]],
        capture_output=True, text=True, timeout=200, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, f"bench/run.py --rtt exited {proc.returncode}:\n" \
                                 f"{proc.stderr[-4000:]}"
    table = (out / "latest.md").read_text()
    rows = table_rows(table)
    assert len(rows) == len(keys) and all(t.startswith("[RTT 4 ms") for t in rows), table
    assert "Mbit/s] p95 of a stat" in table and "p50" in table, table
    assert "is written | " in table and ", write " in table, table
    record = json.loads((out / "latest.json").read_text())
    for key in keys:
        for kind in ("pysshfs", "sshfs"):
            rounds = record["rounds"][key][kind]
            assert rounds and all(r.get("value", 0) > 0 for r in rounds), (key, kind, rounds)
    for kind in ("pysshfs", "sshfs"):  # the upload went on during the probes
        rounds = record["rounds"]["stat_during_write_capped"][kind]
        assert all(r["write_mbps"] > 0 for r in rounds), rounds
    assert str(tmp_path / "work") not in Path("/proc/self/mountinfo").read_text()
