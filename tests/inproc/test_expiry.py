"""The caches' freshness promise, on a clock the test moves: a change made on the server
behind the mount's back is not seen while the cached answer is young, and is seen once
the clock passes its TTL (never later than cache_timeout)."""

from __future__ import annotations

import errno
import os

import pytest

from tests.inproc.conftest import CACHE_TIMEOUT, InProcMount
from tests.inproc.test_ops import WRITE_NEW, names

JUST_UNDER = 0.5  # seconds short of a TTL
PAST = 0.5  # seconds beyond it


def test_attributes_changed_on_the_server_show_after_the_stat_ttl(m: InProcMount) -> None:
    ttl = m.cache.config.stat_ttl
    assert 0 < ttl <= CACHE_TIMEOUT
    (m.root / "f").write_bytes(b"12345")
    assert names(m) == {"f"}  # the listing brings the attributes along
    (m.root / "f").write_bytes(b"1234567890")
    m.clock.advance(ttl - JUST_UNDER)
    assert m.fs.getattr("/f")["st_size"] == 5
    m.clock.advance(JUST_UNDER + PAST)
    assert m.fs.getattr("/f")["st_size"] == 10


def test_a_name_created_on_the_server_shows_after_the_negative_ttl(m: InProcMount) -> None:
    ttl = m.cache.config.negative_ttl
    assert 0 < ttl <= CACHE_TIMEOUT
    assert names(m) == set()
    with pytest.raises(OSError) as info:
        m.fs.getattr("/new")  # known absent from the listing
    assert info.value.errno == errno.ENOENT
    (m.root / "new").write_bytes(b"x")
    m.clock.advance(ttl - JUST_UNDER)
    with pytest.raises(OSError) as info:
        m.fs.getattr("/new")
    assert info.value.errno == errno.ENOENT
    m.clock.advance(JUST_UNDER + PAST)
    assert m.fs.getattr("/new")["st_size"] == 1


def test_a_listing_shows_server_changes_after_the_directory_ttl(m: InProcMount) -> None:
    ttl = m.cache.config.dir_ttl
    assert 0 < ttl <= CACHE_TIMEOUT
    (m.root / "old").write_bytes(b"")
    assert names(m) == {"old"}
    (m.root / "new").write_bytes(b"")
    (m.root / "old").unlink()
    m.clock.advance(ttl - JUST_UNDER)
    assert names(m) == {"old"}
    m.clock.advance(JUST_UNDER + PAST)
    assert names(m) == {"new"}


def test_changes_made_through_the_mount_show_at_once(m: InProcMount) -> None:
    (m.root / "f").write_bytes(b"")
    assert names(m) == {"f"} and m.fs.getattr("/f")["st_size"] == 0
    fh = m.fs.open("/f", os.O_WRONLY)
    m.fs.write("/f", b"abc", 0, fh)
    m.fs.release("/f", fh)
    fh = m.fs.create("/g", 0o644, WRITE_NEW)
    m.fs.release("/g", fh)
    m.fs.mkdir("/d", 0o755)
    # no clock movement: every answer below reflects the changes
    assert m.fs.getattr("/f")["st_size"] == 3
    assert names(m) == {"f", "g", "d"}
    assert names(m, "/d") == set()
    assert (m.root / "f").read_bytes() == b"abc" and (m.root / "g").exists()


def test_cache_no_shows_server_changes_at_once(make_fs) -> None:
    m = make_fs(cache=False)
    (m.root / "f").write_bytes(b"12345")
    assert names(m) == {"f"} and m.fs.getattr("/f")["st_size"] == 5
    (m.root / "f").write_bytes(b"1234567890")
    (m.root / "g").write_bytes(b"")
    assert m.fs.getattr("/f")["st_size"] == 10
    assert names(m) == {"f", "g"}
