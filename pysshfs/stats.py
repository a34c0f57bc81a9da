"""Counters behind `pysshfs status`: traffic on the SFTP channel and the connection's story.

A leaf module (imports nothing of pysshfs) so that any layer may own or update them. The
counters are plain integers updated under locks their owners already hold (the SFTP
client's request table and send lock, the single reader thread), so they cost a few
additions per request and no lock of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Replies whose latency is mostly the link and the server's lookup, not bytes moved: the
# round-trip estimate is made of these.
_BULK = frozenset({"READ", "WRITE", "READDIR"})
_GAIN = 0.125  # weight of a new sample in the smoothed round-trip time (as TCP's SRTT)


@dataclass
class Traffic:
    """Requests and bytes each way on the SFTP channel (across reconnects)."""

    requests: int = 0
    replies: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt: float | None = None  # smoothed seconds, small requests only
    rtt_min: float | None = None

    def replied(self, nbytes: int, op: str, started: float, now: float | None = None) -> None:
        """One reply of `nbytes` to an `op` sent at `started`, come at `now`
        (time.monotonic; None: now)."""
        self.replies += 1
        self.bytes_received += nbytes
        if op in _BULK or not started:
            return
        sample = (time.monotonic() if now is None else now) - started
        self.rtt = sample if self.rtt is None else self.rtt + _GAIN * (sample - self.rtt)
        if self.rtt_min is None or sample < self.rtt_min:
            self.rtt_min = sample


@dataclass
class LinkHistory:
    """What happened to the connection: losses, reconnects, the last error."""

    connected_at: float = field(default_factory=time.time)
    lost_at: float | None = None  # wall clock, while disconnected
    reconnects: int = 0
    last_error: str | None = None

    def lost(self, why: object) -> None:
        self.lost_at = time.time()
        if why:
            self.last_error = str(why)

    def attempt_failed(self, why: object) -> None:
        self.last_error = str(why)

    def reconnected(self) -> None:
        self.reconnects += 1
        self.lost_at = None
        self.connected_at = time.time()


@dataclass
class SessionStats:
    """Owned by the Session; the SFTP clients it makes count into `traffic`."""

    traffic: Traffic = field(default_factory=Traffic)
    link: LinkHistory = field(default_factory=LinkHistory)


def ratio(hits: int, misses: int) -> float | None:
    """hits / lookups, None before the first lookup."""
    total = hits + misses
    return None if total == 0 else hits / total
