"""`--profile DIR`: py-spy samples the pysshfs daemon while a workload's command is timed.

Per timed command we keep py-spy's raw (collapsed) stacks, `LABEL.stacks`, which any
flamegraph tool reads, and `LABEL.top.txt`: the functions most often on CPU, by self and
inclusive samples, per thread name. That is the evidence the issue asks for when a goal
is missed. Sampling costs the daemon some CPU: profiled numbers are not the table's.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

RATE = 200  # samples per second


def available() -> bool:
    return shutil.which("py-spy") is not None


@contextmanager
def recording(pid: int, base: Path) -> Iterator[None]:
    """Record `pid` for the duration of the block; never fails the measurement."""
    stacks = base.with_suffix(".stacks")
    base.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-o", str(stacks), "--format", "raw",
         "-r", str(RATE), "--nonblocking", "--threads"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield
    finally:
        # SIGINT makes py-spy write what it has and exit; it is our child, stopped by pid.
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if stacks.exists():
            base.with_suffix(".top.txt").write_text(summarize(stacks.read_text()))
        else:
            log.warning("py-spy wrote nothing for pid %d: %s", pid,
                        err.decode(errors="replace").strip()[-300:])


def summarize(raw: str, top: int = 30) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    thread_counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = ""
        if frames and frames[0].startswith("thread "):
            thread, frames = frames[0], frames[1:]
        if not frames:
            continue  # a thread inside native code only (libfuse waiting): no Python frame
        total += count
        thread_counts[thread or "thread (?)"] += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    lines = [f"{total} samples at {RATE}/s of threads py-spy saw active "
             f"(~{total / RATE:.2f} thread-seconds)", ""]
    for title, counter in (("threads", thread_counts), ("self", self_counts),
                           ("inclusive", incl_counts)):
        lines.append(f"## {title}")
        for name, count in counter.most_common(top):
            lines.append(f"{count:7d} {100 * count / max(total, 1):5.1f}%  {name}")
        lines.append("")
    return "\n".join(lines)
