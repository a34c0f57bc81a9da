"""The round-trip budget (README, "Round trips per operation"): SFTP requests per operation.

Counts, not timings: a foreground mount with -d logs every SFTP request it sends as
"[NNNNN] OP ..."; each test reads the requests one operation caused and compares them
with the budget, so an extra request per file or per directory cannot slip in unseen.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.mount import Mount, Mounter, wait_for

# "[00012] LSTAT /path" - a request going out (replies read "[00012] ATTRS 45 bytes 0.3ms").
REQUEST = re.compile(r"\[(\d{5,})\] (OPEN|OPENDIR|READDIR|READ|WRITE|CLOSE|LSTAT|STAT|FSTAT|"
                     r"SETSTAT|FSETSTAT|MKDIR|RMDIR|REMOVE|RENAME|READLINK|SYMLINK|REALPATH|"
                     r"[a-z-]+@openssh\.com)\b")


# Budgets that change as round trips are cut (README: "Round trips per operation").
BULK_OPENED = "bulk channels open: "  # (session._open_bulk_lane: every lane has ended)
READDIRS_SMALL = 2  # READDIRs sent for a directory answered in one batch: NAME, then EOF


class RequestLog:
    """The SFTP requests a foreground -d mount has sent, read from its stderr."""

    def __init__(self, m: Mount) -> None:
        self.m = m
        self.start = 0

    def _text(self) -> str:
        return self.m.stderr_text()

    def _ops(self, text: str) -> Counter[str]:
        ops: Counter[str] = Counter()
        seen: set[str] = set()
        for rid, op in REQUEST.findall(text):
            if rid not in seen:  # the first line of an id is its request
                seen.add(rid)
                ops[op] += 1
        return ops

    def mark(self) -> None:
        """Count from here on, once every handle opened so far is closed again (listings
        started in the background by earlier lookups have finished) and the bulk channels
        are open: their handshakes (a limits@openssh.com each) run in the background
        after the mount, and are the mount's requests, not the operation's."""
        def quiet() -> bool:
            text = self._text()
            ops = self._ops(text)
            return BULK_OPENED in text and ops["CLOSE"] >= ops["OPEN"] + ops["OPENDIR"]
        assert wait_for(quiet, 10), "handles still open, or the bulk channels not yet"
        self.mark_now()

    def mark_now(self) -> None:
        """Count from here on, whatever is still open."""
        self.start = len(self._text())

    def since_mark(self) -> Counter[str]:
        return self._ops(self._text()[self.start:])

    def settle(self, op: str, n: int = 1) -> Counter[str]:
        """The requests since the mark, once `n` `op` requests were sent (some, like the
        CLOSE of a released file, go out after the system call has returned)."""
        wait_for(lambda: self.since_mark()[op] >= n, 10)
        return self.since_mark()


@pytest.fixture
def counted(mounter: Mounter) -> tuple[Mount, RequestLog]:
    root = mounter.new_root()
    m = mounter(["-d"], foreground=True, root=root)
    return m, RequestLog(m)


def tree(root: Path) -> None:
    """d/f0..f4 (100 bytes each), top-level file `top`."""
    (root / "d").mkdir()
    for i in range(5):
        (root / "d" / f"f{i}").write_bytes(b"x" * 100)
    (root / "top").write_bytes(b"t")


def test_lookup_of_an_uncached_path(counted: tuple[Mount, RequestLog]) -> None:
    """A path nothing is known about: one LSTAT (one round trip), and its directory's
    listing starts meanwhile; the next lookups there of names it holds send nothing. A
    missing name is still asked for (a listing fetched ahead does not vouch for absence:
    a file created on the server meanwhile must show)."""
    m, log = counted
    tree(m.root)
    log.mark()
    assert os.stat(m.mnt / "top").st_size == 1
    ops = log.settle("CLOSE")
    assert ops["LSTAT"] == 1, ops
    assert ops["OPENDIR"] == 1 and ops["READDIR"] <= READDIRS_SMALL, ops
    log.mark()
    assert stat.S_ISDIR(os.stat(m.mnt / "d").st_mode)
    assert sum(log.since_mark().values()) == 0, log.since_mark()
    with pytest.raises(FileNotFoundError):
        os.stat(m.mnt / "absent")
    assert log.since_mark() == Counter({"LSTAT": 1}), log.since_mark()


def test_lookups_after_a_listing_send_nothing(counted: tuple[Mount, RequestLog]) -> None:
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")
    log.mark()
    for i in range(5):
        assert os.stat(m.mnt / "d" / f"f{i}").st_size == 100
    with pytest.raises(FileNotFoundError):
        os.stat(m.mnt / "d" / "absent")
    assert sum(log.since_mark().values()) == 0, log.since_mark()


def test_stat_of_a_cached_path_sends_nothing(counted: tuple[Mount, RequestLog]) -> None:
    m, log = counted
    tree(m.root)
    os.stat(m.mnt / "top")
    log.mark()
    for _ in range(3):
        assert os.stat(m.mnt / "top").st_size == 1
    assert sum(log.since_mark().values()) == 0


def test_listing_is_opendir_readdirs_close(counted: tuple[Mount, RequestLog]) -> None:
    """A small directory: OPENDIR, then READDIRs in flight until the first EOF (2 round
    trips), CLOSE unwaited; `ls -l` then needs no request per entry (READDIRPLUS)."""
    m, log = counted
    tree(m.root)
    os.stat(m.mnt / "d")
    log.settle("CLOSE")  # the listing of / that lookup started
    log.mark()
    out = subprocess.run(["ls", "-l", str(m.mnt / "d")], capture_output=True, text=True,
                         check=True).stdout
    assert out.count("\n-") == 5, out
    ops = log.settle("CLOSE")
    assert ops["OPENDIR"] == 1 and ops["CLOSE"] == 1, ops
    assert ops["READDIR"] <= READDIRS_SMALL, ops
    assert ops["LSTAT"] + ops["STAT"] == 0, ops


def test_listing_longer_than_a_kernel_buffer_needs_no_lookups(mounter: Mounter) -> None:
    """Every buffer of a listing is READDIRPLUS, not only the first: `find -printf %s` over
    600 entries (several kernel buffers, more than the attribute cache holds) sends no LSTAT,
    and the kernel asks no LOOKUP (a getattr call) of any entry. In libfuse's "auto" mode
    the kernel asked plain READDIR after the first buffer, then a LOOKUP per entry."""
    root = mounter.new_root()
    (root / "big").mkdir()
    for i in range(600):
        (root / "big" / f"entry-{i:04d}").write_bytes(b"y" * (i % 7))
    m = mounter(["-d", "-o", "cache_max_size=100"], foreground=True, root=root)
    log = RequestLog(m)
    os.stat(m.mnt / "big")
    log.settle("CLOSE")  # the listing of / that lookup started
    log.mark()
    out = subprocess.run(["find", str(m.mnt / "big"), "-type", "f", "-printf", "%f %s\\n"],
                         capture_output=True, text=True, check=True).stdout
    sizes = dict(line.split() for line in out.splitlines())
    assert sizes == {f"entry-{i:04d}": str(i % 7) for i in range(600)}, out[:500]
    ops = log.settle("CLOSE")
    assert ops["OPENDIR"] == 1, ops
    assert ops["LSTAT"] + ops["STAT"] == 0, ops
    lookups = re.findall(r"getattr\('/big/entry-", m.stderr_text()[log.start:])
    assert not lookups, f"{len(lookups)} LOOKUPs of listed entries"


def test_open_read_close_of_a_small_file(counted: tuple[Mount, RequestLog]) -> None:
    m, log = counted
    tree(m.root)
    os.stat(m.mnt / "d" / "f1")
    log.mark()
    assert (m.mnt / "d" / "f1").read_bytes() == b"x" * 100
    ops = log.settle("CLOSE")
    assert ops["OPEN"] == 1 and ops["CLOSE"] == 1, ops
    # the first chunk only: the size read back with the OPEN stops readahead past it
    assert ops["READ"] == 1, ops
    assert ops["LSTAT"] == 1, ops  # behind the OPEN: the close-to-open check
    assert sum(ops.values()) == 4, ops
    # opened read-only, it has nothing to flush: the kernel sends no FLUSH (FOPEN_NOFLUSH)
    assert wait_for(lambda: "release('/d/f1'" in m.stderr_text()[log.start:], 10)
    calls = m.stderr_text()[log.start:]
    assert "flush('/d/f1'" not in calls, calls[-2000:]


def test_files_read_in_turn_are_opened_ahead_without_lstat_while_listed(
        counted: tuple[Mount, RequestLog]) -> None:
    """The next files of a directory read in turn (cp -r, git status) are opened ahead,
    OPEN and READ each; while the directory's listing is younger than the open-ahead's
    staleness bound (2 s, less a margin) its attributes serve the close-to-open check:
    no LSTAT. With an older listing each OPEN has its LSTAT behind it again."""
    m, log = counted
    for d in ("young", "old"):
        (m.root / d).mkdir()
        for i in range(10):  # f02..f09: one top-up, all opened in open(f01)
            (m.root / d / f"f{i:02d}").write_bytes(d.encode() * (10 + i))
    listed = time.monotonic()
    for d in ("young", "old"):
        os.listdir(m.mnt / d)
    log.mark()
    for i in range(10):
        assert (m.mnt / "young" / f"f{i:02d}").read_bytes() == b"young" * (10 + i)
    assert time.monotonic() - listed < 1.5, "too slow to tell"
    ops = log.settle("CLOSE", 10)
    assert ops["OPEN"] == 10 and ops["READ"] == 10, ops
    assert ops["LSTAT"] == 2, ops  # f00 and f01's, opened before the order showed
    time.sleep(max(0.0, listed + 2.1 - time.monotonic()))
    log.mark()
    for i in range(10):
        assert (m.mnt / "old" / f"f{i:02d}").read_bytes() == b"old" * (10 + i)
    ops = log.settle("CLOSE", 10)
    assert ops["OPEN"] == 10 and ops["READ"] == 10, ops
    assert ops["LSTAT"] == 10, ops


def test_an_old_listing_fetched_ahead_is_fetched_again_for_files_read_in_turn(
        counted: tuple[Mount, RequestLog]) -> None:
    """git status reads its files long after its lstat pass fetched their listings: once
    files are opened ahead with an LSTAT each for a listing fetched ahead 1.75 s before or
    more, with more than 16 entries to come, that listing is fetched again once, and the
    files after it need no LSTAT."""
    m, log = counted
    (m.root / "d").mkdir()
    for i in range(40):
        (m.root / "d" / f"f{i:02d}").write_bytes(b"z" * (10 + i))
    assert os.stat(m.mnt / "d" / "f00").st_size == 10  # lists d ahead, in the background
    assert wait_for(lambda: log.since_mark()["CLOSE"] >= 1, 10)
    time.sleep(2.1)
    log.mark()
    for i in range(40):
        assert (m.mnt / "d" / f"f{i:02d}").read_bytes() == b"z" * (10 + i)
    ops = log.settle("CLOSE", 40)
    assert ops["OPEN"] == 40, ops
    assert ops["OPENDIR"] == 1, ops
    assert ops["LSTAT"] <= 20, ops  # without it: 40


def test_create_write_close(counted: tuple[Mount, RequestLog]) -> None:
    """OPEN with the new attributes read back (one round trip), WRITE, CLOSE."""
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")  # the name is then known absent: no LSTAT for the lookup
    log.mark()
    (m.mnt / "d" / "new").write_bytes(b"y" * 100)
    ops = log.settle("CLOSE")
    assert (m.root / "d" / "new").read_bytes() == b"y" * 100
    assert ops == Counter({"OPEN": 1, "LSTAT": 1, "WRITE": 1, "CLOSE": 1}), ops


def test_mkdir_rename_unlink(counted: tuple[Mount, RequestLog]) -> None:
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")
    log.mark()
    os.mkdir(m.mnt / "d" / "sub")
    ops = log.since_mark()
    assert stat.S_ISDIR((m.root / "d" / "sub").stat().st_mode)
    # the attributes the kernel asks for next come back in the same round trip
    assert ops == Counter({"MKDIR": 1, "LSTAT": 1}), ops
    log.mark()
    os.rename(m.mnt / "d" / "f0", m.mnt / "d" / "g0")
    assert log.since_mark() == Counter({"posix-rename@openssh.com": 1})
    assert (m.root / "d" / "g0").exists() and not (m.root / "d" / "f0").exists()
    log.mark()
    os.unlink(m.mnt / "d" / "g0")
    assert log.since_mark() == Counter({"REMOVE": 1})
    assert not (m.root / "d" / "g0").exists()


def test_new_names_in_a_directory_being_filled(mounter: Mounter) -> None:
    """tar x, cp -r: the lookups of the names about to be created in a directory this
    mount made. While the empty listing mkdir left vouches for them (the negative TTL),
    they send nothing; past it, one new listing answers them all, not an LSTAT each."""
    root = mounter.new_root()
    m = mounter(["-d", "-o", "cache_timeout=6"], foreground=True, root=root)  # negative: 3 s
    log = RequestLog(m)
    os.mkdir(m.mnt / "d")
    log.mark()

    def create(name: str) -> None:
        fd = os.open(m.mnt / "d" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"z" * 10)
        os.close(fd)
        # the kernel releases the file after close(2) returns; a release still running
        # when the next listing goes out (the file's attributes change) keeps that
        # listing out of the cache, and the lookups after it ask by name (counted apart)
        assert wait_for(lambda: f"release('/d/{name}'" in m.stderr_text(), 10)

    for i in range(3):
        create(f"early{i}")
    ops = log.settle("CLOSE", 3)
    assert ops["OPEN"] == 3, ops
    assert not re.findall(r"\] OPENDIR \S*/d$", m.stderr_text()[log.start:], re.MULTILINE)
    # LSTATs of the new names: only the read-backs sent with their OPENs (the kernel may
    # revalidate d or / meanwhile, which is not what is counted here)
    named = re.findall(r"\] LSTAT \S*/d/early\d", m.stderr_text()[log.start:])
    assert len(named) == 3, ops
    time.sleep(3.5)  # the mkdir's listing no longer vouches for missing names
    log.mark()
    for i in range(5):
        create(f"late{i}")
    ops = log.settle("CLOSE", 6)
    # one listing of d (OPENDIR, READDIRs, its CLOSE), then only the creates' own
    # requests (the kernel may revalidate d meanwhile: an LSTAT, a listing of / ahead)
    listings = re.findall(r"\] OPENDIR \S*/d$", m.stderr_text()[log.start:], re.MULTILINE)
    assert len(listings) == 1 and ops["OPEN"] == 5, ops
    named = re.findall(r"\] LSTAT \S*/d/late\d", m.stderr_text()[log.start:])
    assert len(named) == 5, ops
    assert sorted(p.name for p in (root / "d").iterdir()) == \
        [f"early{i}" for i in range(3)] + [f"late{i}" for i in range(5)]
    # a name made on the server meanwhile is found: the listing is fetched now
    (root / "d" / "server-side").write_bytes(b"s")
    time.sleep(3.5)
    assert os.stat(m.mnt / "d" / "server-side").st_size == 1


def test_times_of_a_file_made_here_are_set_unwaited(counted: tuple[Mount, RequestLog]) -> None:
    """tar x: create (O_EXCL), write, set the times, close. The times go as an FSETSTAT
    on the open handle, not waited for and with nothing read back (the kernel is told
    the times it set): the close waits for it with the WRITE, one round trip for both."""
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")
    log.mark()
    fd = os.open(m.mnt / "d" / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"y" * 100)
    os.utime(m.mnt / "d" / "new", ns=(1_500_000_000 * 10**9, 1_400_000_000 * 10**9))
    st = os.stat(m.mnt / "d" / "new")
    assert (st.st_size, st.st_mtime_ns) == (100, 1_400_000_000 * 10**9)
    assert sum(log.since_mark().values()) == 4, log.since_mark()  # OPEN, LSTAT, WRITE, FSETSTAT
    os.close(fd)
    ops = log.settle("CLOSE")
    assert ops == Counter({"OPEN": 1, "LSTAT": 1, "WRITE": 1, "FSETSTAT": 1, "CLOSE": 1}), ops
    on_server = (m.root / "d" / "new").stat()
    assert (on_server.st_size, on_server.st_mtime, on_server.st_atime) == \
        (100, 1_400_000_000, 1_500_000_000)
    # a file that was there before: its times are set waited, read back in the same trip
    log.mark()
    os.utime(m.mnt / "d" / "f1", ns=(10**18, 10**18))
    ops = log.since_mark()
    assert ops["FSETSTAT"] == 0 and ops["LSTAT"] == 1 and sum(ops.values()) == 2, ops


def test_owner_and_mode_of_a_file_made_here_are_set_unwaited(
        counted: tuple[Mount, RequestLog]) -> None:
    """tar x as root (GNU tar 1.34 into a directory named with -C): create with mode 0600,
    write, set the times, chown to the owner it has, chmod to the archive's mode, close.
    Each change goes as an FSETSTAT on the handle, unwaited: the close waits for them
    with the WRITE, one round trip for all (three before: chown and chmod waited)."""
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")
    log.mark()
    path = m.mnt / "d" / "new"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"z" * 300)
    os.utime(fd, ns=(1_500_000_000 * 10**9, 1_400_000_000 * 10**9))
    owner = os.fstat(fd)
    os.fchown(fd, owner.st_uid, owner.st_gid)
    os.fchmod(fd, 0o754)
    st = os.fstat(fd)
    assert (stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime) == (0o754, 300, 1_400_000_000)
    assert sum(log.since_mark().values()) == 6, log.since_mark()  # nothing waited for
    os.close(fd)
    ops = log.settle("CLOSE")
    assert ops == Counter({"OPEN": 1, "LSTAT": 1, "WRITE": 1, "FSETSTAT": 3, "CLOSE": 1}), ops
    on_server = (m.root / "d" / "new").stat()
    assert (stat.S_IMODE(on_server.st_mode), on_server.st_size, on_server.st_mtime,
            on_server.st_uid, on_server.st_gid) == \
        (0o754, 300, 1_400_000_000, owner.st_uid, owner.st_gid)
    assert (m.root / "d" / "new").read_bytes() == b"z" * 300
    # what the server may refuse or change is waited for, read back in the same trip:
    # another owner, and the set-id and sticky bits (S_ISGID is cleared for a group the
    # server's user is not in)
    fd = os.open(m.mnt / "d" / "new2", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        log.mark_now()
        os.fchown(fd, owner.st_uid, owner.st_gid + 4242)
        os.fchmod(fd, 0o2755)
        ops = log.since_mark()
        assert ops == Counter({"lsetstat@openssh.com": 2, "LSTAT": 2}), ops
    finally:
        os.close(fd)
    assert (m.root / "d" / "new2").stat().st_gid == owner.st_gid + 4242


def test_small_writes_to_a_file_made_here_go_as_one(counted: tuple[Mount, RequestLog]) -> None:
    """tar x writes a file in pieces cut at its 10 KiB records: to a file this mount made
    (O_EXCL, write-only) they go out as one WRITE, sent before the times are set; the
    close waits for both replies, one round trip."""
    m, log = counted
    tree(m.root)
    os.listdir(m.mnt / "d")
    log.mark()
    fd = os.open(m.mnt / "d" / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    pieces = [b"a" * 7168, b"b" * 1024, b"c" * 9216, b"d" * 3000]
    for piece in pieces:
        os.write(fd, piece)
    assert os.fstat(fd).st_size == sum(map(len, pieces))  # held, yet the size shows
    os.utime(m.mnt / "d" / "new", ns=(1_500_000_000 * 10**9, 1_400_000_000 * 10**9))
    os.close(fd)
    ops = log.settle("CLOSE")
    assert ops == Counter({"OPEN": 1, "LSTAT": 1, "WRITE": 1, "FSETSTAT": 1, "CLOSE": 1}), ops
    on_server = (m.root / "d" / "new")
    assert on_server.read_bytes() == b"".join(pieces)
    assert on_server.stat().st_mtime == 1_400_000_000  # the WRITE came before the times
    # a file opened without O_EXCL (it may hold others' data): each write as it comes
    log.mark()
    with open(m.mnt / "d" / "other", "wb", buffering=0) as out:
        for piece in pieces:
            out.write(piece)
    assert log.settle("CLOSE")["WRITE"] == 4


def test_a_big_directory_being_filled_is_listed_once_at_most(mounter: Mounter) -> None:
    """Past half cache_max_size entries the listing is given up after its first hundred
    and not tried again for each new name: LSTATs then, as before."""
    root = mounter.new_root()
    m = mounter(["-d", "-o", "cache_timeout=2", "-o", "cache_max_size=100"],
                foreground=True, root=root)
    log = RequestLog(m)
    os.mkdir(m.mnt / "d")
    for i in range(150):
        (root / "d" / f"old{i:03d}").write_bytes(b"")
    time.sleep(1.5)
    log.mark()
    for i in range(4):
        fd = os.open(m.mnt / "d" / f"new{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
    ops = log.settle("CLOSE", 5)
    # one listing of d given up, perhaps one started ahead by a lookup there
    # (pysshfs.prefetch, bounded the same way): not one per new name
    listings = re.findall(r"\] OPENDIR \S*/d$", m.stderr_text()[log.start:], re.MULTILINE)
    assert len(listings) <= 2 and ops["OPEN"] == 4, ops
    # each new name looked up (4) and read back with its OPEN (4)
    named = re.findall(r"\] LSTAT \S*/d/new\d", m.stderr_text()[log.start:])
    assert len(named) == 8, ops
