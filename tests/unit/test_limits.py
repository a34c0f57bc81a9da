"""What the server's answers may make us hold: listing limits, impossible names, symlink
target lengths, and caches bounded in bytes."""

from __future__ import annotations

import errno
import logging

import pytest

from pysshfs import cache as cache_mod
from pysshfs.cache import CacheConfig, MetadataCache
from pysshfs.sftp import limits
from pysshfs.sftp.codec import Attrs
from pysshfs.sftp.limits import ListingGuard, bad_name_reason, check_link_target

A = Attrs(mode=0o100644)


def batch(*names: bytes) -> list[tuple[bytes, bytes, Attrs]]:
    return [(n, n, A) for n in names]


@pytest.mark.parametrize("name,bad", [
    (b"ok", False), (b"x" * 255, False), ("é".encode(), False), (b"\xff\xfe", False),
    (b"", True), (b"a/b", True), (b"/", True), (b"x\0y", True), (b"x" * 256, True),
])
def test_bad_names(name: bytes, bad: bool) -> None:
    assert (bad_name_reason(name) is not None) is bad


def test_guard_keeps_real_names_and_warns_once_per_directory(caplog) -> None:
    limits._warned.clear()
    caplog.set_level(logging.WARNING, logger="pysshfs.sftp.limits")
    for _ in range(3):  # the same directory listed again and again
        g = ListingGuard(b"/srv/d\x1b[2J", "test")
        kept = g.accept(batch(b".", b"..", b"a", b"a/b", b"", b"x\0y", b".", b"b", b"n" * 300))
        assert [n for n, _ in kept] == [b"a", b"b"]
        g.done()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "/srv/d\\x1b[2J" in lines[0] and "skipped 4 name(s)" in lines[0]
    assert "\x1b" not in lines[0] and "\0" not in lines[0]


def test_guard_quiet_for_clean_listings(caplog) -> None:
    caplog.set_level(logging.WARNING)
    g = ListingGuard(b"/d")
    g.accept(batch(b".", b"..", b"x"))
    g.done()
    assert not caplog.records


def test_listing_past_the_entry_limit_fails_with_eoverflow(monkeypatch, caplog) -> None:
    limits._warned.clear()
    monkeypatch.setattr(limits, "MAX_LISTING_ENTRIES", 250)
    g = ListingGuard(b"/big")
    for i in range(2):
        g.accept(batch(*(f"f{i}-{j}".encode() for j in range(100))))
    with pytest.raises(OSError) as info:
        g.accept(batch(*(f"g{j}".encode() for j in range(100))))
    assert info.value.errno == errno.EOVERFLOW and info.value.filename == "/big"
    assert any("/big" in r.getMessage() for r in caplog.records)


def test_bad_names_count_toward_the_limit(monkeypatch) -> None:
    """A server sending nothing but impossible names must still be stopped."""
    monkeypatch.setattr(limits, "MAX_LISTING_ENTRIES", 150)
    g = ListingGuard(b"/bad")
    g.accept(batch(*[b"a/b"] * 100))
    with pytest.raises(OSError):
        g.accept(batch(*[b"a/b"] * 100))


def test_listing_past_the_name_bytes_limit_fails(monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_LISTING_NAME_BYTES", 10_000)
    g = ListingGuard(b"/long")
    with pytest.raises(OSError) as info:
        g.accept(batch(*(f"{j:03d}".encode() + b"n" * 200 for j in range(60))))
    assert info.value.errno == errno.EOVERFLOW


def test_limits_allow_a_million_entry_directory() -> None:
    assert limits.MAX_LISTING_ENTRIES >= 1_000_000
    assert limits.MAX_LISTING_NAME_BYTES >= 1_000_000 * 64


def test_symlink_targets_longer_than_path_max_minus_one() -> None:
    assert check_link_target(b"t" * 4095, "/l") == b"t" * 4095
    with pytest.raises(OSError) as info:
        check_link_target(b"t" * 4096, "/l")
    assert info.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as info:
        check_link_target(b"inside\0/../../etc/passwd", "/l")
    assert info.value.errno == errno.EIO


def test_link_cache_is_bounded_in_bytes(monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "LINKS_BYTES", 100_000)
    c = MetadataCache(CacheConfig(max_size=10_000))
    for i in range(1000):
        c.learned_link(f"/l{i}", b"t" * 4000)
    kept = [i for i in range(1000) if c.link(f"/l{i}") is not None]
    assert 0 < len(kept) <= 100_000 // 4000
    assert kept[-1] == 999  # the newest stay
    # short targets: the item bound still holds
    c2 = MetadataCache(CacheConfig(max_size=50))
    for i in range(200):
        c2.learned_link(f"/s{i}", b"t")
    assert sum(c2.link(f"/s{i}") is not None for i in range(200)) == 50


def test_listing_cache_is_bounded_in_bytes_and_too_big_is_not_cached(monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "LISTINGS_BYTES", 1_000_000)
    c = MetadataCache(CacheConfig(max_size=10_000))
    small = [(f"f{i}", A) for i in range(100)]
    c.learned_listing("/small", small)
    assert c.listing("/small") is not None
    huge = [(f"file-{i:08d}", A) for i in range(10_000)]  # ~1.4 MB estimated
    c.learned_listing("/huge", huge)
    assert c.listing("/huge") is None
    assert c.listing("/small") is not None
    # an old listing replaced by one too big to keep is dropped, not left stale
    c.learned_listing("/small", huge)
    assert c.listing("/small") is None
    for i in range(100):  # many mid-size ones: the oldest go
        c.learned_listing(f"/d{i}", [(f"file-{j:08d}", A) for j in range(500)])
    kept = [i for i in range(100) if c.listing(f"/d{i}") is not None]
    assert kept and len(kept) <= 1_000_000 // (500 * 132) and kept[-1] == 99
