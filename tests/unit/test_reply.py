"""Reply: the cheap Future of one SFTP request behaves as a Future where pysshfs uses one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from pysshfs.sftp.reply import Reply


def test_result_reaches_every_waiter_in_other_threads() -> None:
    reply = Reply()
    got: list[object] = []
    waiters = [threading.Thread(target=lambda: got.append(reply.result(10))) for _ in range(3)]
    for w in waiters:
        w.start()
    assert not reply.done() and reply.running()
    reply.set_result(b"data")
    for w in waiters:
        w.join(10)
    assert got == [b"data"] * 3
    assert reply.done() and not reply.running() and not reply.cancelled()
    assert reply.result() == b"data" and reply.exception() is None


def test_exception_is_raised_by_result_and_returned_by_exception() -> None:
    reply = Reply()
    reply.set_exception(OSError(5, "boom"))
    with pytest.raises(OSError, match="boom"):
        reply.result()
    assert isinstance(reply.exception(), OSError)


def test_timeout_while_pending_and_no_cancel() -> None:
    reply = Reply()
    with pytest.raises(FutureTimeout):
        reply.result(0.01)
    with pytest.raises(FutureTimeout):
        reply.exception(0)
    assert reply.cancel() is False
    reply.set_result(1)
    assert reply.result(0) == 1


def test_callbacks_run_once_before_or_after_completion() -> None:
    reply = Reply()
    seen: list[object] = []
    reply.add_done_callback(lambda f: seen.append(("early", f.result())))
    reply.add_done_callback(lambda f: 1 / 0)  # logged, does not stop the others
    reply.add_done_callback(lambda f: seen.append(("second", f.result())))
    assert seen == []
    reply.set_result(7)
    reply.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen == [("early", 7), ("second", 7), ("late", 7)]


def test_resolved_only_once() -> None:
    reply = Reply()
    reply.set_result(1)
    with pytest.raises(InvalidStateError):
        reply.set_exception(OSError(5, "late"))
    assert reply.result() == 1


def test_a_held_wake_up_keeps_the_waiter_until_the_list_is_emptied() -> None:
    """settle(wake_later=...): the outcome is there at once for anyone who asks, and
    callbacks run, but a thread already blocked in result() wakes only when the reply
    thread empties the list (right before it waits for the network)."""
    reply = Reply()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(reply.result(10)))
    waiter.start()
    time.sleep(0.1)  # blocked in result() by now
    held: list = []
    seen: list[object] = []
    reply.add_done_callback(lambda f: seen.append(f.result()))
    reply.settle(b"data", None, held)
    assert seen == [b"data"] and reply.done() and reply.result(0) == b"data"
    waiter.join(0.2)
    assert waiter.is_alive() and got == [] and len(held) == 1
    held.pop()()
    waiter.join(10)
    assert got == [b"data"]


def test_a_held_wake_up_of_a_failure() -> None:
    reply = Reply()
    held: list = []
    reply.settle(None, OSError(5, "boom"), held)
    with pytest.raises(OSError, match="boom"):
        reply.result(0)
    with pytest.raises(InvalidStateError):
        reply.settle(1, None, held)
    held.pop()()
    assert reply.exception(0) is not None
