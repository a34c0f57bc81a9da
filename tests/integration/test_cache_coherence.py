"""Caches: changes made on the server by someone else show within the TTL (at once with
cache=no); changes made through the mount show at once."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mount import Mounter, wait_for

TTL = 4.0
SLACK = 1.5  # polling granularity and scheduling


def _visible_within(check, limit: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    assert wait_for(check, limit + 5, interval=0.05), "change never became visible"
    return time.monotonic() - t0


def test_server_side_changes_show_within_the_ttl(mounter: Mounter) -> None:
    m = mounter(["-o", f"cache_timeout={TTL:g}"])
    (m.root / "f").write_bytes(b"1")
    assert os.stat(m.mnt / "f").st_size == 1
    assert sorted(os.listdir(m.mnt)) == ["f"]
    assert not os.path.exists(m.mnt / "later")

    (m.root / "f").write_bytes(b"12345")
    (m.root / "later").write_bytes(b"new")
    # Cached: the mount does not ask the server again right away.
    assert os.stat(m.mnt / "f").st_size == 1

    took = _visible_within(lambda: os.stat(m.mnt / "f").st_size == 5, TTL)
    assert took <= TTL + SLACK, f"size change visible after {took:.1f}s (TTL {TTL}s)"
    took = _visible_within(lambda: os.path.exists(m.mnt / "later"), TTL)
    assert took <= TTL + SLACK, f"new file visible after {took:.1f}s (TTL {TTL}s)"
    took = _visible_within(lambda: sorted(os.listdir(m.mnt)) == ["f", "later"], TTL)
    assert took <= TTL + SLACK
    assert (m.mnt / "later").read_bytes() == b"new"


def test_cache_no_shows_server_side_changes_at_once(mounter: Mounter) -> None:
    m = mounter(["-o", "cache=no"])
    (m.root / "f").write_bytes(b"1")
    assert os.stat(m.mnt / "f").st_size == 1
    assert not os.path.exists(m.mnt / "g")
    (m.root / "f").write_bytes(b"12345")
    (m.root / "g").write_bytes(b"g")
    assert os.stat(m.mnt / "f").st_size == 5
    assert os.path.exists(m.mnt / "g")
    assert sorted(os.listdir(m.mnt)) == ["f", "g"]
    os.unlink(m.root / "g")
    assert not os.path.exists(m.mnt / "g")
    assert os.listdir(m.mnt) == ["f"]


def test_changes_through_the_mount_show_at_once(mounter: Mounter) -> None:
    """Each change invalidates exactly what it affects, whatever the TTL."""
    m = mounter(["-o", "cache_timeout=600"])
    os.mkdir(m.mnt / "d")
    assert os.listdir(m.mnt) == ["d"]
    (m.mnt / "d" / "a").write_bytes(b"abc")
    assert os.listdir(m.mnt / "d") == ["a"]
    assert os.stat(m.mnt / "d" / "a").st_size == 3
    with open(m.mnt / "d" / "a", "ab") as f:
        f.write(b"defg")
    assert os.stat(m.mnt / "d" / "a").st_size == 7
    os.truncate(m.mnt / "d" / "a", 2)
    assert os.stat(m.mnt / "d" / "a").st_size == 2
    os.chmod(m.mnt / "d" / "a", 0o604)
    assert os.stat(m.mnt / "d" / "a").st_mode & 0o777 == 0o604
    os.utime(m.mnt / "d" / "a", (1_000_000, 1_000_000))
    assert int(os.stat(m.mnt / "d" / "a").st_mtime) == 1_000_000
    os.rename(m.mnt / "d" / "a", m.mnt / "b")
    assert os.listdir(m.mnt / "d") == []
    assert sorted(os.listdir(m.mnt)) == ["b", "d"]
    assert not os.path.exists(m.mnt / "d" / "a")
    os.symlink("b", m.mnt / "l")
    os.link(m.mnt / "b", m.mnt / "h")
    assert sorted(os.listdir(m.mnt)) == ["b", "d", "h", "l"]
    # (SFTP v3 attributes carry no link count: the server side tells.)
    assert os.stat(m.root / "b").st_nlink == 2
    assert (m.mnt / "h").read_bytes() == b"ab"
    os.unlink(m.mnt / "h")
    assert not os.path.exists(m.mnt / "h")
    assert os.stat(m.root / "b").st_nlink == 1
    os.rmdir(m.mnt / "d")
    assert sorted(os.listdir(m.mnt)) == ["b", "l"]
    assert sorted(os.listdir(m.root)) == ["b", "l"]
    assert (m.root / "b").read_bytes() == b"ab"


# --- a directory's times follow the entries added, removed and renamed through the mount ---
OLD = 1_000_000_000  # a directory mtime that no change made now can leave in place


def _make_file(p: Path) -> None:
    p.write_bytes(b"x")


def _mknod(p: Path) -> None:
    os.mknod(p, 0o600 | stat.S_IFREG)


ENTRY_CHANGES: dict[str, Callable[[Path], None]] = {
    "mkdir": lambda d: os.mkdir(d / "sub"),
    "create": lambda d: _make_file(d / "new"),
    "mknod": lambda d: _mknod(d / "node"),
    "symlink": lambda d: os.symlink("target", d / "link"),
    "link": lambda d: os.link(d / "existing", d / "hard"),
    "unlink": lambda d: os.unlink(d / "existing"),
    "rmdir": lambda d: os.rmdir(d / "emptydir"),
    "rename-within": lambda d: os.rename(d / "existing", d / "renamed"),
}


@pytest.mark.parametrize("change", sorted(ENTRY_CHANGES))
def test_a_directory_mtime_follows_a_change_of_its_entries(mounter: Mounter,
                                                           change: str) -> None:
    """stat d; change an entry of d; stat d: the server's new mtime, at once, however long
    the caches' TTL (the kernel drops a parent's attributes itself; we must too)."""
    m = mounter(["-o", "cache_timeout=600"])
    served = m.root / "d"
    served.mkdir()
    (served / "existing").write_bytes(b"e")
    (served / "emptydir").mkdir()
    os.utime(served, (OLD, OLD))
    assert os.stat(m.mnt / "d").st_mtime == OLD
    assert os.stat(m.mnt / "d").st_mtime == OLD  # (now from the caches)

    ENTRY_CHANGES[change](m.mnt / "d")

    server_mtime = int(os.stat(served).st_mtime)
    assert server_mtime != OLD, "the change did not reach the server"
    seen = os.stat(m.mnt / "d")
    assert int(seen.st_mtime) == server_mtime
    assert int(seen.st_ctime) == server_mtime


def test_a_rename_between_directories_moves_both_mtimes(mounter: Mounter) -> None:
    m = mounter(["-o", "cache_timeout=600"])
    for name in ("a", "b"):
        (m.root / name).mkdir()
    (m.root / "a" / "f").write_bytes(b"f")
    for name in ("a", "b"):  # all set before the first look: a lookup lists the parent
        os.utime(m.root / name, (OLD, OLD))
    for name in ("a", "b"):
        assert os.stat(m.mnt / name).st_mtime == OLD
    os.rename(m.mnt / "a" / "f", m.mnt / "b" / "f")
    assert (m.root / "b" / "f").read_bytes() == b"f"
    for name in ("a", "b"):
        server_mtime = int(os.stat(m.root / name).st_mtime)
        assert server_mtime != OLD
        assert int(os.stat(m.mnt / name).st_mtime) == server_mtime


# --- close-to-open: an open checks the file against the server -----------------------------
@pytest.mark.parametrize("extra", [[], ["-o", "kernel_cache"]], ids=["default", "kernel_cache"])
def test_an_open_sees_what_the_server_holds(mounter: Mounter, extra: list[str]) -> None:
    """Read, change the file on the server, open again: the server's bytes, long before
    the caches' TTL (also with kernel_cache, which keeps pages across opens)."""
    m = mounter(["-o", "cache_timeout=600", *extra])
    served = m.root / "f"
    served.write_bytes(b"first")
    assert (m.mnt / "f").read_bytes() == b"first"
    assert os.stat(m.mnt / "f").st_size == 5

    with open(served, "ab") as f:  # grows: the kernel's size would cut the read short
        f.write(b"+appended")
    assert (m.mnt / "f").read_bytes() == b"first+appended"
    assert os.stat(m.mnt / "f").st_size == len(b"first+appended")

    # The same size, other bytes, another mtime: only the mtime tells.
    before = os.stat(served)
    served.write_bytes(b"FIRST+APPENDED")
    os.utime(served, (before.st_atime, before.st_mtime + 100))
    assert (m.mnt / "f").read_bytes() == b"FIRST+APPENDED"
    assert int(os.stat(m.mnt / "f").st_mtime) == int(before.st_mtime + 100)

    # Shrinks: no stale tail.
    served.write_bytes(b"short")
    assert (m.mnt / "f").read_bytes() == b"short"

