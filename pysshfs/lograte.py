"""Rate-limited logging: a misbehaving server must not turn into a flood of log lines.

A server can make the same thing go wrong thousands of times a second (replies to
requests never made, a session that breaks at every login, a stderr that never stops).
Each kind of message gets a budget of lines per period; what is over budget is counted
and summarised in the next line that gets through, so nothing is hidden and nothing floods.
"""

from __future__ import annotations

import logging
import threading
import time

MAX_KEYS = 256  # distinct messages tracked at once; beyond that the oldest are forgotten


class RateLimitedLog:
    """At most `burst` lines per `period` seconds for each key (a message's identity)."""

    def __init__(self, logger: logging.Logger, burst: int = 5, period: float = 60.0) -> None:
        self.logger = logger
        self.burst = burst
        self.period = period
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # key -> [window start, lines, suppressed]

    def allow(self, key: str) -> tuple[bool, int]:
        """Whether a line for `key` may go out now, and how many were held back before it."""
        now = time.monotonic()
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                if len(self._windows) >= MAX_KEYS:
                    self._windows.pop(next(iter(self._windows)))
                w = self._windows[key] = [now, 0, 0]
            elif now - w[0] >= self.period:
                w[0], w[1] = now, 0
            if w[1] >= self.burst:
                w[2] += 1
                return False, 0
            w[1] += 1
            suppressed, w[2] = int(w[2]), 0
            return True, suppressed

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` unless `key` is over budget; True if it was logged."""
        if not self.logger.isEnabledFor(level):
            return False
        ok, suppressed = self.allow(key)
        if not ok:
            return False
        if suppressed:
            msg += " (%d similar message(s) suppressed)"
            args = (*args, suppressed)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, msg: str, *args: object, key: str | None = None) -> bool:
        return self.log(logging.WARNING, key if key is not None else msg % args, msg, *args)
