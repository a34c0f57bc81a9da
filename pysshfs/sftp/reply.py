"""The Future of one SFTP request, made cheap: a bare lock instead of a Condition.

Every request costs one Future, and handing its reply from the thread that read it to
the thread waiting for it is the busiest hand-off of the daemon. concurrent.futures'
Future does it with an RLock-backed Condition whose every wait allocates a lock and
takes the RLock three times; here a lock held while the reply is pending is released
once when it comes, and each waiter passes it on. Measured by ping-pong of two threads
on the test machine: ~11 us of CPU less per hand-off (28 -> 17 us per round).

A `Reply` is a `Future` for everything pysshfs asks of one (result, exception, done,
add_done_callback, set_result, set_exception); it is never cancelled (the request is on
the wire). `concurrent.futures.wait()` and `as_completed()` do not know it: not used on
these.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

log = logging.getLogger(__name__)

# Guards completion against callback registration; held for a few bytecodes, never
# while a callback runs or anyone waits.
_callbacks_lock = threading.Lock()


class Reply(Future):
    """A Future resolved once, by one thread, that nobody can cancel."""

    def __init__(self) -> None:  # no super().__init__(): no Condition to make
        self._pending = threading.Lock()
        self._pending.acquire()  # released once the outcome is set
        self._finished = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future], Any]] | None = None

    def __repr__(self) -> str:
        if not self._finished:
            return f"<Reply at {id(self):#x} pending>"
        if self._error is not None:
            return f"<Reply at {id(self):#x} raised {type(self._error).__name__}>"
        return f"<Reply at {id(self):#x} returned {type(self._value).__name__}>"

    # --- state --------------------------------------------------------------------------
    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return not self._finished

    def done(self) -> bool:
        return self._finished

    def set_running_or_notify_cancel(self) -> bool:
        return True

    # --- waiting ------------------------------------------------------------------------
    def _wait(self, timeout: float | None) -> None:
        if self._finished:
            return
        if not self._pending.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            raise FutureTimeout()
        self._pending.release()  # the next waiter, if any, passes through too

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        with _callbacks_lock:
            if not self._finished:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        self._call(fn)

    # --- resolving ----------------------------------------------------------------------
    def set_result(self, result: Any) -> None:
        self.settle(result, None)

    def set_exception(self, exception: BaseException | None) -> None:
        self.settle(None, exception)

    def settle(self, value: Any, error: BaseException | None,
               wake_later: list[Callable[[], Any]] | None = None) -> None:
        """Resolve; with `wake_later`, the threads already blocked in result() are woken
        by whoever empties that list, not now (anyone asking from now on has the
        outcome at once, and the done-callbacks run now). The reply thread holds the
        GIL until it next waits for the network: a waiter woken before then wakes only
        to wait for the GIL (measured: a fifth of the daemon's GIL time on loopback was
        this wake-up), so it is woken right before that wait."""
        with _callbacks_lock:
            if self._finished:
                raise InvalidStateError(f"{self!r} is already resolved")
            self._value = value
            self._error = error
            self._finished = True
            callbacks, self._callbacks = self._callbacks, None
        if wake_later is None:
            self._pending.release()
        else:
            wake_later.append(self._pending.release)
        if callbacks:
            for fn in callbacks:
                self._call(fn)

    def _call(self, fn: Callable[[Future], Any]) -> None:
        try:
            fn(self)
        except Exception:  # noqa: BLE001 - as concurrent.futures: a callback cannot break us
            log.exception("exception calling callback for %r", self)
