"""`pysshfs status` as text: one block per mount, readable at a glance.

Pure functions of the daemon's status reply (see pysshfs.control), so they are tested
without a mount.
"""

from __future__ import annotations

import time
from typing import Any


def size_text(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # not reached


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _percent(ratio: float | None, hits: int, misses: int) -> str:
    if ratio is None:
        return "unused"
    return f"{ratio * 100:.0f}% of {hits + misses:,}"


def _state_line(m: dict[str, Any], now: float) -> str:
    state = m.get("state") or "?"
    since = m.get("state_since")
    when = ""
    if isinstance(since, int | float):
        when = f" since {time.strftime('%H:%M:%S', time.localtime(since))} " \
               f"({duration_text(now - since)})"
    error = m.get("error")
    if state == "connected":
        return f"connected{when}"
    if state == "reconnecting":
        return f"RECONNECTING{when}" + (f": {error}" if error else "")
    if state == "failed":
        return f"FAILED: {error or 'unknown reason'} (unmount and mount again)"
    return state + (f": {error}" if error else "")


def format_status(m: dict[str, Any], now: float | None = None) -> str:
    """One mount's status as an indented block of `label  value` lines."""
    now = time.time() if now is None else now
    cache = m.get("cache") or {}
    rtt = m.get("rtt_ms")
    rtt_text = "not measured yet" if rtt is None else \
        f"{rtt:.1f} ms (best {m.get('rtt_min_ms') or 0:.1f} ms)"
    open_files = m.get("open_files", 0)
    rows = [
        ("server", f"{m.get('server')}"),
        ("remote dir", f"{m.get('remote_dir')}"),
        ("state", _state_line(m, now)),
        ("round trip", rtt_text),
        ("reconnects", f"{m.get('reconnects', 0)}"),
        ("requests", f"{m.get('requests_sent', 0):,} sent, "
                     f"{m.get('replies_received', 0):,} answered"),
        ("traffic", f"{size_text(m.get('bytes_sent'))} sent, "
                    f"{size_text(m.get('bytes_received'))} received"),
        ("cache hits", "attributes {}, listings {}, links {}".format(
            _percent(cache.get("attr_hit_ratio"), cache.get("attr_hits", 0),
                     cache.get("attr_misses", 0)),
            _percent(cache.get("listing_hit_ratio"), cache.get("listing_hits", 0),
                     cache.get("listing_misses", 0)),
            _percent(cache.get("link_hit_ratio"), cache.get("link_hits", 0),
                     cache.get("link_misses", 0)))),
        ("open files", f"{open_files}, {size_text(m.get('unacked_write_bytes', 0))} "
                       "written and not yet acknowledged"),
        ("daemon", f"pid {m.get('pid')}, mounted {duration_text(now - m['mounted_at'])} ago"
         if isinstance(m.get("mounted_at"), int | float) else f"pid {m.get('pid')}"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{m.get('mountpoint')} ({m.get('source')})"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)
