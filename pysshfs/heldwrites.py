"""Small writes to a file this mount just made, held and sent as one WRITE (tar x, cp -r).

tar writes a small file in pieces cut at its 10 KiB records (7 KiB, 1 KiB, 9 KiB, ...):
each an SFTP WRITE, a reply and a wake-up, all on the way to close(2), which waits for the
replies. Held while they follow on from each other, they go out as one WRITE when the next
would not fit or not follow on, when something must reach the server after them (the
file's times, its close, an fsync, a truncate, another open of it: the caller sends what is
held first), and at the latest HOLD_SECONDS after the first was held. Only for a file
created here with O_EXCL and open write-only, until any file is opened on the mount (a
second handle of it may have another name): nobody reads it meanwhile, and this mount
answers its size from the high water. tar x and cp -r close a file before opening the
next, so they keep the holding.

An error of a WRITE sent in the background is raised by the next call on the file, as an
error of a WRITE sent at once is (fileio.OpenFile keeps it, reports it once).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

HOLD_BYTES = 64 * 1024  # at most this much held per file (one WRITE)
HOLD_SECONDS = 0.2  # held bytes go out at the latest this long after the first was held


class Writable(Protocol):
    high_water: int
    wrote: bool

    def write(self, data: bytes, offset: int) -> int: ...


class HeldWrites:
    """The bytes held for one open file: contiguous, `size` of them from `start`."""

    def __init__(self, f: Writable, limit: int = HOLD_BYTES,
                 on_sent: Callable[[], None] | None = None) -> None:
        """`on_sent`: called whenever bytes went out (the file's attributes on the
        server change only then, not when bytes are held)."""
        self.f = f
        self.limit = limit
        self.on_sent = on_sent
        self.lock = threading.Lock()  # also orders the WRITEs of this file as they go out
        self.parts: list[bytes] = []
        self.start = 0
        self.size = 0
        self.held_at = 0.0
        self.holding = True
        self.error: OSError | None = None  # of a send in the background, raised once

    def write(self, data: bytes, offset: int) -> int:
        """Hold `data` if it follows on from what is held and fits; otherwise send what
        is held, then hold `data` (small) or send it (big)."""
        n = len(data)
        with self.lock:
            self._raise_error()
            if self.holding and n < self.limit:
                if self.parts and offset == self.start + self.size \
                        and self.size + n <= self.limit:
                    self.parts.append(bytes(data))
                    self.size += n
                    self._written_to(offset + n)
                    return n
                self._send_locked()
                self.parts, self.start, self.size = [bytes(data)], offset, n
                self.held_at = time.monotonic()
                self._written_to(offset + n)
                _DEADLINES.add(self, self.held_at)
                return n
            self._send_locked()
            written = self.f.write(data, offset)
            if self.on_sent is not None:
                self.on_sent()
            return written

    def send(self, *, stop: bool = False, report: bool = True) -> None:
        """Send what is held (`stop`: and hold nothing more). `report`: raise the error
        of a WRITE that failed and was not reported yet (the owner's close, fsync);
        otherwise it is kept for the next call that reports (a request on the file by
        someone else, or one that does not report write errors)."""
        with self.lock:
            if stop:
                self.holding = False
            try:
                self._send_locked()
            except OSError as exc:
                if report:
                    raise
                self.error = self.error or exc
            if report:
                self._raise_error()

    def send_if_due(self, due: float) -> None:
        """(the deadline thread) Send what is held if it was held by `due`."""
        with self.lock:
            if not self.parts or self.held_at + HOLD_SECONDS > due:
                return
            try:
                self._send_locked()
            except OSError as exc:
                self.error = self.error or exc
            except Exception as exc:  # noqa: BLE001 - kept with an errno for the owner
                self.error = self.error or OSError(errno.EIO, str(exc))

    def _send_locked(self) -> None:
        if not self.parts:
            return
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        start = self.start
        self.parts, self.size = [], 0
        self.f.write(data, start)
        if self.on_sent is not None:
            self.on_sent()

    def _written_to(self, end: int) -> None:
        # the size getattr answers while the bytes are held (see SSHFS._stat_of); the
        # file's own writes all come through here, so nothing races this
        if end > self.f.high_water:
            self.f.high_water = end
        self.f.wrote = True

    def _raise_error(self) -> None:
        err, self.error = self.error, None
        if err is not None:
            raise err


class _Deadlines:
    """One thread sending held bytes that waited HOLD_SECONDS (deadlines come in order:
    each is the time a hold began plus the same delay). A hold that ended before its
    deadline (the file's times, its close: tar x and cp -r end each file's long before)
    is passed over unwaited, so the thread wakes about once a HOLD_SECONDS, not once a
    file: a wake-up a file was 3 % of the daemon's CPU in tar x on loopback."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: deque[tuple[float, HeldWrites]] = deque()  # (hold began, holder)
        self.thread: threading.Thread | None = None

    def add(self, held: HeldWrites, began: float) -> None:
        with self.cond:
            self.queue.append((began, held))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="held-writes",
                                               daemon=True)
                self.thread.start()
            elif len(self.queue) == 1:
                self.cond.notify()

    def _run(self) -> None:
        queue = self.queue
        while True:
            with self.cond:
                while queue and _ended(*queue[0]):
                    queue.popleft()
                if not queue:
                    self.cond.wait()
                    continue
                began, held = queue[0]
                now = time.monotonic()
                if now < began + HOLD_SECONDS:
                    self.cond.wait(began + HOLD_SECONDS - now)
                    continue
                queue.popleft()
            try:
                held.send_if_due(now)
            except Exception:  # noqa: BLE001 - never let the thread die
                log.exception("sending held writes")


def _ended(began: float, held: HeldWrites) -> bool:
    """The hold that began at `began` is over: its bytes went out (a later hold has an
    entry of its own). Read without the holder's lock: parts and held_at change under
    it only as a hold ends or a new one begins, and a new hold queues its own entry
    once begun; one taken for live is judged again, under the lock, by send_if_due."""
    return not held.parts or held.held_at != began


_DEADLINES = _Deadlines()
