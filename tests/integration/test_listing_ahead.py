"""Listings fetched ahead (pysshfs/prefetch.py) and listings of huge directories.

What is asserted is what the server holds and which requests went out (counts from the
-d log, see test_request_budget.py), never timings: prefetched answers stay within
cache_timeout, cache=no and readdir_ahead=no prefetch nothing, a walk finds its
subdirectories' listings already fetched, and a 100,000-entry directory is listed with
every entry's attributes while the daemon stays under 150 MB.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_request_budget import RequestLog
from tests.support.mount import Mounter, wait_for


def walk_tree(root: Path) -> int:
    """a/{b0..b3}/{c0,c1}/file: 1 + 4 + 8 directories."""
    n = 0
    for i in range(4):
        for j in range(2):
            d = root / "a" / f"b{i}" / f"c{j}"
            d.mkdir(parents=True)
            (d / "file").write_text(f"{i}{j}")
            n += 1
    return n


def test_a_walk_fetches_subdirectory_listings_ahead(mounter: Mounter) -> None:
    """find: every directory is listed once, and most listings were on their way before
    the kernel asked (prefetched), so the walk does not wait a listing per directory."""
    root = mounter.new_root()
    files = walk_tree(root)
    m = mounter(["-d"], foreground=True, root=root)
    log = RequestLog(m)
    log.mark()
    out = subprocess.run(["find", str(m.mnt / "a"), "-type", "f"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert len(out) == files
    ops = log.settle("CLOSE", 14)
    # each of the 13 directories listed exactly once, and / (the lookup of a missed)
    assert ops["OPENDIR"] == 14 and ops["LSTAT"] == 1, ops
    text = m.stderr_text()[log.start:]
    # A prefetched listing's OPENDIR goes out before the kernel's readdir of it arrives.
    ahead = [d for d in ("b1", "b2", "b3")
             if text.find(f"OPENDIR {root}/a/{d}\n") < text.find(f"readdir_plus('/a/{d}'")]
    assert ahead, text[-3000:]


@pytest.mark.parametrize("option", ["cache=no", "readdir_ahead=no", "dir_cache=no"])
def test_prefetching_can_be_turned_off(mounter: Mounter, option: str) -> None:
    root = mounter.new_root()
    walk_tree(root)
    (root / "top").write_text("x")
    m = mounter(["-d", "-o", option], foreground=True, root=root)
    log = RequestLog(m)
    log.mark()
    assert os.stat(m.mnt / "top").st_size == 1  # a lookup that misses
    subprocess.run(["find", str(m.mnt / "a")], capture_output=True, check=True)
    ops = log.settle("CLOSE", 13)
    # exactly the kernel's own readdirs: no listing of / for the lookup, none ahead
    assert ops["OPENDIR"] == 13, ops


def test_prefetched_listings_are_never_older_than_cache_timeout(mounter: Mounter) -> None:
    root = mounter.new_root()
    (root / "d").mkdir()
    for i in range(3):
        (root / "d" / f"f{i}").write_bytes(b"x")
    m = mounter(["-o", "cache_timeout=2"], root=root)
    assert os.stat(m.mnt / "d" / "f0").st_size == 1  # lists d in the background
    # f1's attributes came with that listing; the server changes it, and removes f2
    (root / "d" / "f1").write_bytes(b"yyyy")
    (root / "d" / "f2").unlink()
    (root / "d" / "f3").write_bytes(b"new")
    time.sleep(2.2)  # the promise is about time: let cache_timeout pass
    assert os.stat(m.mnt / "d" / "f1").st_size == 4
    assert not os.path.exists(m.mnt / "d" / "f2")
    assert os.stat(m.mnt / "d" / "f3").st_size == 3


def test_created_file_is_found_despite_a_listing_in_flight(mounter: Mounter) -> None:
    """A listing on the wire while a file is created through the mount must not make the
    new file look absent afterwards."""
    root = mounter.new_root()
    (root / "d").mkdir()
    for i in range(2000):
        (root / "d" / f"e{i:04d}").touch()
    m = mounter(root=root)
    for round_ in range(5):
        os.stat(m.mnt / "d" / "e0000")  # may start a listing of d
        new = m.mnt / "d" / f"new{round_}"
        new.write_text("n")
        assert os.stat(new).st_size == 1
        assert (root / "d" / f"new{round_}").read_text() == "n"
        assert f"new{round_}" in os.listdir(m.mnt / "d")


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.timeout(600)
def test_ls_l_of_100000_entries_keeps_the_daemon_small(mounter: Mounter) -> None:
    """Every entry's attributes reach the kernel with the listing (no LOOKUP per entry
    past the cache's size), and the daemon stays under 150 MB."""
    root = mounter.new_root()
    big = root / "big"
    big.mkdir()
    for i in range(100_000):
        (big / f"entry-{i:06d}").touch()
    os.utime(big / "entry-099999", (1_000_000_000, 1_000_000_000))
    m = mounter(["-d"], foreground=True, root=root)
    log = RequestLog(m)
    log.mark()
    out = subprocess.run(["ls", "-l", "--time-style=+%s", str(m.mnt / "big")],
                         capture_output=True, text=True, check=True, timeout=500).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("-")]
    assert len(lines) == 100_000
    assert lines[-1].split()[-2:] == ["1000000000", "entry-099999"]
    ops = log.settle("CLOSE")
    # the directory itself at most (its lookup, and a getattr racing the listing of /)
    assert ops["LSTAT"] + ops["STAT"] <= 2, ops
    assert m.pid is not None
    assert wait_for(lambda: True)
    assert vm_hwm_kib(m.pid) < 150 * 1024, f"VmHWM {vm_hwm_kib(m.pid)} KiB"


def test_files_read_in_turn_are_opened_ahead(mounter: Mounter) -> None:
    """cp -r: after two files in a row, the next ones are opened (and their first chunk
    asked for) before cp asks; every file still arrives byte for byte, each opened once."""
    root = mounter.new_root()
    src = root / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i:02d}").write_bytes(os.urandom(100 + i))
    m = mounter(["-d"], foreground=True, root=root)
    log = RequestLog(m)
    os.listdir(m.mnt / "src")
    log.mark()
    dest = m.mnt.parent / "copied"
    subprocess.run(["cp", "-r", str(m.mnt / "src"), str(dest)], check=True)
    for i in range(12):
        assert (dest / f"f{i:02d}").read_bytes() == (src / f"f{i:02d}").read_bytes()
    text = m.stderr_text()[log.start:]
    # some OPEN went out before the kernel's open() of that file reached us
    ahead = [i for i in range(2, 12)
             if 0 <= text.find(f"OPEN {src}/f{i:02d} ") < text.find(f"open('/src/f{i:02d}'")]
    assert ahead, text[-3000:]
    opens = log.since_mark()["OPEN"]
    assert opens <= 12 + 8, opens  # at most `ahead` opened for nothing
    assert wait_for(lambda: log.since_mark()["CLOSE"] >= log.since_mark()["OPEN"], 15)


def test_files_read_in_git_index_order_are_opened_ahead_across_directories(
        mounter: Mounter) -> None:
    """git's content check reads every file in index order (full paths sorted: a walk in
    name order, into each subdirectory where its name sorts): files in the subdirectory
    and after it are opened before git asks, and nothing is opened for nothing."""
    root = mounter.new_root()
    files = ["d/a1", "d/a2", *[f"d/b/x{i}" for i in range(5)], "d/c1", "d/c2", "d/c3"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode() * 10)
    m = mounter(["-d"], foreground=True, root=root)
    log = RequestLog(m)
    for name in files:  # git's lstat pass: the listings come with it
        os.lstat(m.mnt / name)
    log.mark()
    for name in sorted(files):
        assert (m.mnt / name).read_bytes() == name.encode() * 10
    text = m.stderr_text()[log.start:]
    ahead = [name for name in files[2:]
             if 0 <= text.find(f"OPEN {root}/{name} ") < text.find(f"open('/{name}'")]
    assert "d/b/x0" in ahead and "d/c1" in ahead, text[-3000:]
    assert log.since_mark()["OPEN"] == len(files), m.stderr_text()[log.start:]
    assert wait_for(lambda: log.since_mark()["CLOSE"] >= log.since_mark()["OPEN"], 15)


def test_a_file_changed_through_the_mount_is_not_served_from_ahead(mounter: Mounter) -> None:
    root = mounter.new_root()
    for i in range(6):
        (root / f"f{i}").write_bytes(b"old")
    m = mounter(root=root)
    os.listdir(m.mnt)
    assert (m.mnt / "f0").read_bytes() == b"old"
    assert (m.mnt / "f1").read_bytes() == b"old"  # f2.. are opened ahead now
    (m.mnt / "f3").write_bytes(b"new content")
    assert (m.mnt / "f2").read_bytes() == b"old"
    assert (m.mnt / "f3").read_bytes() == b"new content"
    assert (root / "f3").read_bytes() == b"new content"


def test_a_file_created_on_the_server_after_a_listing_ahead_shows(mounter: Mounter) -> None:
    """A listing fetched because of a lookup answers for the names it holds, not for
    absence: a file the server gains afterwards is found at its first lookup."""
    root = mounter.new_root()
    (root / "d").mkdir()
    (root / "d" / "old").write_text("o")
    m = mounter(root=root)
    assert os.stat(m.mnt / "d" / "old").st_size == 1  # lists d in the background
    time.sleep(0.5)  # let that listing land (the point is that it is there)
    (root / "d" / "new").write_text("nn")
    assert os.stat(m.mnt / "d" / "new").st_size == 2
