"""The session's retry policy per operation, with the network taken out.

Stand-in clients answer from a script, so a test chooses which attempt loses the
connection and what the next attempt finds: resent as is, judged by the state it left
(the errno a resend gets when the first attempt had worked means done), or not resent.
"""

from __future__ import annotations

import errno
import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pysshfs import session as session_mod
from pysshfs.remote import RemoteFile, RemoteFS
from pysshfs.session import Session
from pysshfs.sftp.codec import SSH_FXF_CREAT, SSH_FXF_EXCL, SSH_FXF_WRITE, Attrs
from pysshfs.ssh.request import ConnectRequest

CUT = OSError(errno.ECONNABORTED, "connection lost")


class Scripted:
    """A stand-in SFTPClient: each request takes the next outcome scripted for its name
    (an exception is raised, anything else returned; nothing scripted: None), shared by
    every client the session makes. `sent` logs (client number, name, timeout)."""

    def __init__(self, number: int, script: dict[str, list[Any]],
                 sent: list[tuple[int, str, float | None]]) -> None:
        self.number = number
        self.script = script
        self.sent = sent
        self.closed = False
        self.on_closed: Any = None
        self.replies = self.bytes_moved = 0
        self.max_read = self.max_write = 32768

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def request(*args: Any, timeout: float | None = None, **kw: Any) -> Any:
            if self.closed:
                raise OSError(errno.ECONNABORTED, "closed")
            self.sent.append((self.number, name, timeout))
            outcomes = self.script.get(name) or [None]
            outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return request

    def stat(self, path: bytes, timeout: float | None = None) -> Attrs:
        return Attrs(mode=0o40755)  # the reconnect check of the mounted directory

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Session, list[Any]]]]:
    monkeypatch.setattr(session_mod, "BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(session_mod, "BACKOFF_MAX", 0.02)
    made: list[Session] = []

    def make_session(script: dict[str, list[Any]], **kw: Any) -> tuple[Session, list[Any]]:
        s = Session(ConnectRequest(host="h"), "/r", io_timeout=kw.pop("io_timeout", 5.0),
                    **kw)
        sent: list[tuple[int, str, float | None]] = []
        clients: list[Scripted] = []

        def open_client(request: Any, timeout: float | None = None) -> Scripted:
            clients.append(Scripted(len(clients), script, sent))
            return clients[-1]

        s._open_client = open_client  # type: ignore[method-assign,assignment]
        s.root = b"/r"
        s._install(open_client(None))  # type: ignore[arg-type]
        made.append(s)
        return s, sent

    yield make_session
    for s in made:
        s.close()


def test_session_has_every_remote_operation() -> None:
    """RemoteFS is what fs.py may ask; Session must answer all of it, same parameters."""
    for name, member in inspect.getmembers(RemoteFS, inspect.isfunction):
        if name.startswith("_"):
            continue
        mine = getattr(Session, name, None)
        assert mine is not None, name
        assert list(inspect.signature(mine).parameters) == \
            list(inspect.signature(member).parameters), name
    assert not hasattr(Session, "__getattr__")
    assert not hasattr(Session, "call")


def test_idempotent_request_is_resent_with_what_is_left_of_io_timeout(make: Any) -> None:
    s, sent = make({"lstat": [CUT, Attrs(size=7)]})
    assert s.lstat(b"/r/f").size == 7
    assert [(n, name) for n, name, _ in sent] == [(0, "lstat"), (1, "lstat")]
    assert sent[0][2] is None  # a first attempt waits as long as the client lets it
    assert sent[1][2] is not None and 0 < sent[1][2] <= 5.0


def test_judged_request_that_had_worked_is_done(make: Any) -> None:
    s, sent = make({"mkdir_and_lstat": [CUT, OSError(errno.EEXIST, "exists")],
                    "rename": [CUT, OSError(errno.ENOENT, "gone")]})
    assert s.mkdir_and_lstat(b"/r/d") is None
    s.rename(b"/r/a", b"/r/b")
    assert [name for _, name, _ in sent] == ["mkdir_and_lstat"] * 2 + ["rename"] * 2


def test_judged_request_errno_on_a_first_attempt_is_the_answer(make: Any) -> None:
    s, sent = make({"rmdir": [OSError(errno.ENOENT, "no such directory")],
                    "symlink": [CUT, OSError(errno.ENOENT, "no parent")]})
    with pytest.raises(OSError) as info:
        s.rmdir(b"/r/d")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(OSError) as info:
        s.symlink(b"t", b"/r/l")  # the errno that means "done" for symlink is EEXIST
    assert info.value.errno == errno.ENOENT


def test_rename_noreplace_is_not_resent(make: Any) -> None:
    s, sent = make({"rename_noreplace": [CUT]})
    with pytest.raises(OSError) as info:
        s.rename_noreplace(b"/r/a", b"/r/b")
    assert info.value.errno == errno.EIO
    assert [name for _, name, _ in sent] == ["rename_noreplace"]


def test_resend_without_a_reply_in_time_is_eio(make: Any) -> None:
    s, sent = make({"listdir_attr": [CUT, OSError(errno.ETIMEDOUT, "no reply")]})
    with pytest.raises(OSError) as info:
        s.listdir_attr(b"/r")
    assert info.value.errno == errno.EIO


def test_lost_with_reconnect_no_is_eio_at_once(make: Any) -> None:
    s, sent = make({"lstat": [CUT]}, reconnect=False)
    start = time.monotonic()
    with pytest.raises(OSError) as info:
        s.lstat(b"/r/f")
    assert info.value.errno == errno.EIO and time.monotonic() - start < 2
    assert len(sent) == 1


def test_open_is_resent_but_an_exclusive_create_is_not(make: Any) -> None:
    s, sent = make({"open_and_lstat": [CUT, (b"h2", Attrs(size=0))]})
    rf = s.open(b"/r/f", SSH_FXF_WRITE, read_back=True)
    assert rf.handle == b"h2" and rf.generation == 2 and rf.attrs_at_open is not None
    assert [(n, t) for n, _, t in sent] == [(0, None), (1, None)]  # no timeout of its own
    s, sent = make({"open": [CUT, b"h"]})
    with pytest.raises(OSError) as info:
        s.open(b"/r/new", SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL)
    assert info.value.errno == errno.EIO
    assert len(sent) == 1


def test_file_request_is_resent_on_the_reopened_handle(make: Any) -> None:
    s, sent = make({"open": [b"h1", b"h2"], "fstat": [Attrs(size=10)],
                    "read": [CUT, b"data"]})
    rf = s.open(b"/r/f", SSH_FXF_WRITE)
    assert isinstance(rf, RemoteFile) and rf.handle == b"h1"
    assert s.read(rf, 0, 4) == b"data"
    assert rf.handle == b"h2" and rf.generation == s.generation
    assert [(n, name, t) for n, name, t in sent] == [
        (0, "open", None), (0, "read", None),
        (1, "open", None), (1, "fstat", None), (1, "read", None)]


class _DiesAtFlush:
    """SFTPClient.batched of a connection that dies as the batch's write goes out."""

    def __init__(self, client: Any, error: OSError) -> None:
        self.client, self.error = client, error

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        self.client.closed = True  # (what _transmit's failure does: _shutdown)
        raise self.error


def test_a_batch_whose_write_finds_the_connection_dead_raises_nothing(make: Any) -> None:
    """Open-ahead sends its OPENs and READs in a batch from inside open() and release():
    a connection lost as that write goes out fails the futures, not the program's open()
    (a cut under load gave a reader ECONNABORTED from open(2))."""
    s, _ = make({})
    client = s.sftp
    client.batched = lambda: _DiesAtFlush(client, OSError(errno.ECONNABORTED, "cut"))
    with s.batched():
        pass  # (requests would be sent here)
    assert client.closed


def test_a_batch_failing_otherwise_raises(make: Any) -> None:
    s, _ = make({})
    client = s.sftp
    client.batched = lambda: _DiesAtFlush(client, OSError(errno.EACCES, "no"))
    with pytest.raises(PermissionError):
        with s.batched():
            pass
