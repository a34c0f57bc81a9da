"""The session's connection state machine, with the network taken out (issue 14).

`Session._open_client` is replaced by a factory of stand-in clients, so the order of
events (published, lost, reconnected) is chosen by the test instead of by timing: these
are the races a flapping link only hits now and then.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import pytest

from pysshfs import session as session_mod
from pysshfs.lograte import RateLimitedLog
from pysshfs.session import CONNECTED, FAILED, Session
from pysshfs.sftp.codec import Attrs
from pysshfs.ssh.request import ConnectRequest


class StandIn:
    """The part of SFTPClient the session's reconnect machinery uses."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.on_closed: Any = None
        self.replies = 0
        self.bytes_moved = 0
        self.max_read = self.max_write = 32768

    def stat(self, path: bytes, timeout: float | None = None) -> Attrs:
        if self.closed:
            raise OSError(errno.ECONNABORTED, "lost")
        return Attrs(mode=0o40755)

    def close(self) -> None:
        self.closed = True

    def cut(self) -> None:
        """The link drops: like SFTPClient, close and tell whoever listens."""
        self.closed = True
        if self.on_closed is not None:
            self.on_closed(None)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(session_mod, "BACKOFF_MAX", 0.02)


def make_session(**kw: Any) -> tuple[Session, list[StandIn]]:
    s = Session(ConnectRequest(host="h"), "/r", io_timeout=kw.pop("io_timeout", 5.0), **kw)
    made: list[StandIn] = []

    def open_client(request: Any, timeout: float | None = None) -> StandIn:
        made.append(StandIn(len(made)))
        return made[-1]

    s._open_client = open_client  # type: ignore[method-assign]
    s.root = b"/r"
    s._install(open_client(None))  # type: ignore[arg-type]
    return s, made


def live(s: Session, timeout: float = 5.0) -> StandIn:
    client = s._client(time.monotonic() + timeout)
    assert not client.closed
    return client  # type: ignore[return-value]


def test_loss_right_after_a_reconnect_leads_to_another(fast_backoff: None) -> None:
    """The reconnector has published the new connection and is still running its hooks
    when that connection dies: another reconnect must follow (it used to be dropped)."""
    s, made = make_session()
    cuts = [0]

    def hook() -> None:
        if cuts[0] < 3:  # three times in a row, the fresh connection dies at once
            cuts[0] += 1
            made[-1].cut()

    s.on_reconnect.append(hook)
    made[0].cut()
    deadline = time.monotonic() + 5
    while (cuts[0] < 3 or len(made) < 5) and time.monotonic() < deadline:
        time.sleep(0.01)
    client = live(s)
    assert client is made[-1] and len(made) == 5
    assert s._state == CONNECTED
    s.close()


def test_loss_noticed_by_many_threads_makes_one_reconnect(fast_backoff: None) -> None:
    s, made = make_session()
    first = made[0]
    first.closed = True
    threads = [threading.Thread(target=s._mark_lost, args=(first,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live(s)
    time.sleep(0.1)  # any stray second reconnector would have made a client by now
    assert len(made) == 2
    s.close()


def test_young_deaths_grow_the_backoff_and_work_resets_it(fast_backoff: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    s, made = make_session()
    delays = []
    for _ in range(3):
        made[-1].cut()  # dies having done nothing
        live(s)
        delays.append(s._delay)
    assert delays == sorted(delays) and delays[-1] > delays[0]
    made[-1].replies = session_mod.STABLE_REPLIES  # this one did real work
    made[-1].cut()
    live(s)
    assert s._delay == 0.0
    s.close()


def test_reconnect_no_fails_for_good() -> None:
    s, made = make_session(reconnect=False)
    made[0].cut()
    assert s._state == FAILED
    with pytest.raises(OSError) as info:
        s._client(time.monotonic() + 1)
    assert info.value.errno == errno.EIO
    assert len(made) == 1


def test_rate_limited_log_summarises(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    def ours() -> list[logging.LogRecord]:
        # caplog hears every logger: a session of an earlier test may still be logging
        return [r for r in caplog.records if r.name == "t.lograte"]

    limited = RateLimitedLog(logging.getLogger("t.lograte"), burst=3, period=3600)
    with caplog.at_level(logging.WARNING, logger="t.lograte"):
        for i in range(1000):
            limited.warning("same thing %d", i, key="same")
    assert len(ours()) == 3
    limited.period = 0  # a new period: the next line says how many were held back
    limited.warning("same thing again", key="same")
    assert "997 similar message(s) suppressed" in ours()[-1].getMessage()
