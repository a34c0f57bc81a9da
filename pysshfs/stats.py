"""Counters behind `pysshfs status`: traffic on the SFTP channel and the connection's story.

A leaf module (imports nothing of pysshfs) so that any layer may own or update them. The
counters are plain integers updated under locks their owners already hold (the SFTP
client's request table and send lock, the single reader thread), so they cost a few
additions per request and no lock of their own. The round-trip figures, which the file
layer sizes its bytes in flight by and every SFTP channel's reader reports into, have one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Replies whose latency is mostly the link and the server's lookup, not bytes moved: the
# round-trip estimate is made of these.
BULK_OPS = frozenset({"READ", "WRITE", "READDIR"})
_GAIN = 0.125  # weight of a new sample in the smoothed round-trip time (as TCP's SRTT)
# The round trip's floor is the quickest of this many recent small replies, not of all
# time: a route that changes (another network, a VPN, a reconnect elsewhere) must be
# learnt again. Measured at 2 -> 40 ms on the bench proxy, an all-time floor held the
# read and write caps at a twentieth of the round trip: 64 MiB read 3.6-5.6 s and
# written 14-22 s, against 0.85 and 0.7 s on a mount made at 40 ms.
RTT_SAMPLES = 8


@dataclass
class Traffic:
    """Requests and bytes each way on the SFTP channel (across reconnects)."""

    requests: int = 0
    replies: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt: float | None = None  # smoothed seconds, small requests only
    rtt_min: float | None = None  # the link's round trip without our queue: see replied
    # Whether bulk bytes (READs, WRITEs) are in flight now, set by the file layer: a small
    # request sent then waits behind them, and its reply says little of the link.
    busy: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    _quiet: deque[float] = field(default_factory=lambda: deque(maxlen=RTT_SAMPLES),
                                 repr=False, compare=False)
    _queued: deque[float] = field(default_factory=lambda: deque(maxlen=RTT_SAMPLES),
                                  repr=False, compare=False)
    # the round-trip figures: every SFTP channel's reader thread reports here
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def quiet(self) -> bool:
        """Nothing bulk in flight: a small request sent now measures the link alone."""
        busy = self.busy
        return busy is None or not busy()

    def replied(self, nbytes: int, op: str, started: float, now: float | None = None,
                quiet: bool = True) -> None:
        """One reply of `nbytes` to an `op` sent at `started`, come at `now`
        (time.monotonic; None: now); `quiet`: sent with nothing bulk in flight.

        `rtt_min` is the quickest of the last RTT_SAMPLES replies to small requests sent
        quiet (of any small requests until there is one): a lower bound of the link's
        round trip that follows the route when it changes, and that a long copy, with
        every small request queued behind it, does not push up (it only holds)."""
        self.replies += 1
        self.bytes_received += nbytes
        if op in BULK_OPS or not started:
            return
        sample = (time.monotonic() if now is None else now) - started
        with self._lock:
            self.rtt = sample if self.rtt is None else self.rtt + _GAIN * (sample - self.rtt)
            if quiet:
                self._quiet.append(sample)
                self.rtt_min = min(self._quiet)
            else:
                self._queued.append(sample)
                if not self._quiet:
                    self.rtt_min = min(self._queued)

    def new_path(self) -> None:
        """The connection is gone: the next one may take another route; learn it anew."""
        with self._lock:
            self.rtt = self.rtt_min = None
            self._quiet.clear()
            self._queued.clear()


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
