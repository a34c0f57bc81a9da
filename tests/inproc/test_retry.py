"""Losing the server mid-way: the session reconnects (a fresh sftp-server process), sends
idempotent requests again, and judges the others by the state they left on the server."""

from __future__ import annotations

import errno
import os

import pytest

from tests.inproc.conftest import InProcMount
from tests.inproc.test_ops import WRITE_NEW, names


def test_a_lookup_after_the_server_was_killed_succeeds_on_a_new_one(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"abc")
    first = m.server.kill()
    assert m.fs.getattr("/f")["st_size"] == 3
    assert m.server.connects == 2 and m.server.pid != first
    assert m.session.stats.link.reconnects == 1


def test_a_lookup_whose_reply_was_lost_is_sent_again(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"abc")
    m.server.lose_next_reply()
    assert m.fs.getattr("/f")["st_size"] == 3
    assert m.server.connects == 2


def test_mkdir_whose_reply_was_lost_succeeds_once(m: InProcMount) -> None:
    m.server.lose_next_reply()  # the server makes it; the answer never comes
    assert m.fs.mkdir("/d", 0o755) == 0  # the retry's EEXIST means the first one worked
    assert m.server.connects == 2
    assert (m.root / "d").is_dir()
    assert names(m) == {"d"}


def test_rmdir_whose_reply_was_lost_succeeds_once(m: InProcMount) -> None:
    (m.root / "d").mkdir()
    m.server.lose_next_reply()
    assert m.fs.rmdir("/d") == 0  # the retry's ENOENT means the first one worked
    assert m.server.connects == 2
    assert not (m.root / "d").exists()


def test_unlink_whose_reply_was_lost_succeeds_once(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"x")
    m.server.lose_next_reply()
    assert m.fs.unlink("/f") == 0
    assert m.server.connects == 2
    assert not (m.root / "f").exists()


def test_rename_whose_reply_was_lost_succeeds_once(m: InProcMount) -> None:
    (m.root / "a").write_bytes(b"x")
    m.server.lose_next_reply()
    assert m.fs.rename("/a", "/b") == 0
    assert m.server.connects == 2
    assert not (m.root / "a").exists() and (m.root / "b").read_bytes() == b"x"


def test_a_file_open_for_writing_survives_a_reconnect(m: InProcMount) -> None:
    fh = m.fs.create("/f", 0o644, WRITE_NEW)
    m.fs.write("/f", b"a" * 1000, 0, fh)
    m.fs.flush("/f", fh)
    m.server.kill()
    m.wait_reconnected()
    m.fs.write("/f", b"b" * 1000, 1000, fh)  # on the handle reopened by path
    m.fs.flush("/f", fh)
    m.fs.release("/f", fh)
    assert (m.root / "f").read_bytes() == b"a" * 1000 + b"b" * 1000


def test_a_file_open_for_reading_survives_a_reconnect(m: InProcMount) -> None:
    data = os.urandom(300_000)
    (m.root / "f").write_bytes(data)
    fh = m.fs.open("/f", os.O_RDONLY)
    assert m.fs.read("/f", 4096, 0, fh) == data[:4096]
    m.server.kill()
    m.wait_reconnected()
    assert m.fs.read("/f", 4096, 250_000, fh) == data[250_000:254_096]
    m.fs.release("/f", fh)


def test_a_reconnect_forgets_what_the_cache_held(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"12345")
    assert names(m) == {"f"} and m.fs.getattr("/f")["st_size"] == 5
    (m.root / "f").write_bytes(b"1234567890")
    m.server.kill()
    m.wait_reconnected()
    assert m.fs.getattr("/f")["st_size"] == 10  # the clock never moved


def test_reconnect_no_fails_with_eio_and_stays_down(make_fs) -> None:
    m = make_fs(reconnect=False)
    (m.root / "f").write_bytes(b"x")
    m.server.kill()
    with pytest.raises(OSError) as info:
        m.fs.getattr("/f")
    assert info.value.errno == errno.EIO
    assert m.server.connects == 1
