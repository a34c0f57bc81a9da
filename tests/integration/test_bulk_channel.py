"""Big writes over several SFTP channels (fileio: TWO CHANNELS) keep one channel's order.

The bulk channels pay only where the round trip bounds one channel's upload, so the
mounts here go through bench/netem.py's delaying proxy (RTT 10 ms); on loopback a file
keeps to one channel. Each bulk channel (session.BULK_CHANNELS of them, 2) is one more
sftp-server process that runs independently of the others: what one descriptor wrote
must still be there for the next request on the main channel from any descriptor (a
read, a truncating open, an fsync), as it was when every request went in order on one
channel. Files are written past fileio.BULK_AFTER once the bulk channels are open (the
mount logs it) and read back with
direct_io (every read reaches the daemon), the last bytes written first (the likeliest to
be still on their way); the server's copy is checked with plain os calls. The race is
lost only sometimes: each test gives it a few chances.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.netem import DelayProxy
from pysshfs.session import BULK_CHANNELS, BULK_FIRST_ID  # (lane k's request ids from k times)
from tests.integration.test_request_budget import BULK_OPENED, REQUEST, RequestLog
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, wait_for
from tests.support.sshd import Sshd

MiB = 1024 * 1024
SIZE = 6 * MiB
TRIES = 3
OPEN_BULK = f"{BULK_OPENED}{BULK_CHANNELS} of {BULK_CHANNELS}"
WRITING_OVER_ALL = f"writing over {BULK_CHANNELS + 1} channels"


@pytest.fixture
def delayed(sshd: Sshd, mounter: Mounter, tmp_path: Path) -> Iterator[Mounter]:
    """`mounter` whose mounts reach sshd through a proxy with a 10 ms round trip."""
    proxy = DelayProxy(sshd.port, rtt_ms=10)
    known_hosts = tmp_path / "known_hosts_proxy"
    kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")

    def mount(extra: list[str]) -> Mount:
        m = mounter(["-o", f"Port={proxy.port}", "-o", f"UserKnownHostsFile={known_hosts}",
                     *extra], foreground=True)
        assert wait_for(lambda: OPEN_BULK in m.stderr_text(), 10)
        return m

    yield mount  # type: ignore[misc]
    proxy.close()


def _write_big(fd: int, payload: bytes) -> None:
    for pos in range(0, len(payload), MiB):
        os.pwrite(fd, payload[pos:pos + MiB], pos)


def test_a_big_write_goes_over_every_channel_in_order(delayed: Mounter) -> None:
    """A file written past fileio.BULK_AFTER gets one more OPEN (and its CLOSE) on each
    bulk SFTP channel (lane k's request ids start at k * BULK_FIRST_ID), and its writes
    go over all of them and the main one; a rewrite of bytes still in flight on another
    channel lands last. A small file opens nothing more
    (test_request_budget.test_create_write_close)."""
    m = delayed(["-d"])
    log = RequestLog(m)
    log.mark()
    payload = bytearray(os.urandom(8 * MiB))
    with open(m.mnt / "big.bin", "wb") as f:
        for pos in range(0, len(payload), MiB):
            f.write(payload[pos:pos + MiB])
            f.flush()
        f.seek(5 * MiB + 5)  # over bytes written a moment ago, on either channel
        f.write(b"R" * (MiB + 7))
        os.fsync(f.fileno())
    payload[5 * MiB + 5:6 * MiB + 12] = b"R" * (MiB + 7)
    log.settle("CLOSE", 2)
    wait_for(lambda: (lambda o: o["CLOSE"] >= o["OPEN"] + o["OPENDIR"])(log.since_mark()), 10)
    ops = log.since_mark()
    assert (m.root / "big.bin").read_bytes() == bytes(payload)
    # each bulk OPEN comes with a STAT of the file (Session.open_bulk's check)
    assert ops["OPEN"] == 1 + BULK_CHANNELS and ops["STAT"] == BULK_CHANNELS, ops
    assert ops["CLOSE"] == ops["OPEN"] + ops["OPENDIR"], ops
    requests = REQUEST.findall(m.stderr_text()[log.start:])
    opens = [int(rid) // BULK_FIRST_ID for rid, op in requests if op == "OPEN"]
    assert sorted(opens) == list(range(BULK_CHANNELS + 1)), opens  # one on each lane
    writes = [int(rid) // BULK_FIRST_ID for rid, op in requests if op == "WRITE"]
    assert sorted(set(writes)) == list(range(BULK_CHANNELS + 1)), \
        [writes.count(lane) for lane in range(BULK_CHANNELS + 1)]


def test_fsync_goes_out_behind_the_writes_on_every_channel(delayed: Mounter) -> None:
    """fsync(2) after a big write sends its FSYNCs (on the main channel and on each bulk
    channel with writes on their way) before the last WRITE is answered: one round trip,
    not two (fileio.OpenFile.fsync). Each runs after its channel's writes, so the file
    is whole on the server once fsync returns."""
    m = delayed(["-d"])
    reply = re.compile(r"\[(\d{5,})\] STATUS ")
    early = []
    for i in range(TRIES):
        start = len(m.stderr_text())
        payload = os.urandom(SIZE)
        fd = os.open(m.mnt / f"y{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _write_big(fd, payload)
            os.fsync(fd)
            assert _sha256(m.root / f"y{i}") == _sha256(payload)
        finally:
            os.close(fd)
        text = m.stderr_text()[start:]
        requests = [(match.start(), rid, op) for match in REQUEST.finditer(text)
                    for rid, op in [match.groups()]]
        syncs = [(at, int(rid) // BULK_FIRST_ID) for at, rid, op in requests
                 if op == "fsync@openssh.com"]
        assert 0 in {lane for _, lane in syncs}, syncs  # always one on the main channel
        last_write = max(rid for _, rid, op in requests if op == "WRITE"
                         and int(rid) < BULK_FIRST_ID)  # (the main channel's, say)
        answered = next(match.start() for match in reply.finditer(text)
                        if match.group(1) == last_write)
        early.append(min(at for at, _ in syncs) < answered)
    assert any(early), early  # (a busy machine may lose the race now and then)


def test_another_descriptor_reads_what_was_just_written(delayed: Mounter) -> None:
    m = delayed(["-o", "direct_io"])
    for i in range(TRIES):
        payload = os.urandom(SIZE)
        writer = os.open(m.mnt / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _write_big(writer, payload)
            reader = os.open(m.mnt / f"f{i}", os.O_RDONLY)
            try:
                for pos in reversed(range(0, SIZE, MiB)):  # the writer is still open
                    assert os.pread(reader, MiB, pos) == payload[pos:pos + MiB], (i, pos)
            finally:
                os.close(reader)
        finally:
            os.close(writer)
        assert (m.root / f"f{i}").read_bytes() == payload


def test_a_truncating_open_comes_after_the_writes_before_it(delayed: Mounter) -> None:
    m = delayed(["-o", "direct_io"])
    for i in range(TRIES):
        writer = os.open(m.mnt / f"t{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _write_big(writer, os.urandom(SIZE))
            with open(m.mnt / f"t{i}", "wb") as f:  # O_TRUNC, through another descriptor
                f.write(b"short")
            os.fsync(writer)  # nothing of the big writes may land after the truncation
        finally:
            os.close(writer)
        assert (m.root / f"t{i}").read_bytes() == b"short", i


def test_fsync_of_another_descriptor_waits_for_the_bulk_writes(delayed: Mounter) -> None:
    m = delayed(["-o", "direct_io"])
    for i in range(TRIES):
        payload = os.urandom(SIZE)
        writer = os.open(m.mnt / f"s{i}", os.O_CREAT | os.O_WRONLY, 0o644)
        other = os.open(m.mnt / f"s{i}", os.O_RDONLY)
        try:
            _write_big(writer, payload)
            os.fsync(other)
            with open(m.root / f"s{i}", "rb") as f:  # on the server once fsync returned
                f.seek(SIZE - MiB)
                assert f.read() == payload[-MiB:], i
        finally:
            os.close(other)
            os.close(writer)
        assert (m.root / f"s{i}").read_bytes() == payload


@pytest.mark.parametrize("flags", [os.O_CREAT | os.O_WRONLY,
                                   os.O_CREAT | os.O_EXCL | os.O_WRONLY],  # (tar: unwaited)
                         ids=["created", "created-exclusive"])
def test_utime_after_big_writes_sticks(delayed: Mounter, flags: int) -> None:
    """(test_mount_ops.test_utime_after_write_before_close_sticks, over the bulk channels.)"""
    m = delayed([])
    for i in range(TRIES):
        fd = os.open(m.mnt / f"u{i}", flags, 0o644)
        try:
            _write_big(fd, os.urandom(SIZE))
            os.utime(fd, ns=(1_400_000_000 * 10**9, 1_500_000_000 * 10**9))
        finally:
            os.close(fd)
        assert int(os.stat(m.root / f"u{i}").st_mtime) == 1_500_000_000, i


def _sftp_servers(sshd: Sshd) -> list[tuple[int, int]]:
    """(start time in clock ticks, pid) of the sftp-server processes under `sshd`."""
    assert sshd.proc is not None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"sftp-server" not in cmd:
            continue
        pid, parent = int(entry), int(fields[1])
        while parent > 1 and parent != sshd.proc.pid:  # under this sshd?
            try:
                parent = int(Path(f"/proc/{parent}/stat").read_text()
                             .rsplit(")", 1)[1].split()[1])
            except OSError:
                parent = 0
        if parent == sshd.proc.pid:
            found.append((int(fields[19]), pid))
    return sorted(found)


def _sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.read_bytes()).hexdigest()


@pytest.mark.parametrize("killed", [1, BULK_CHANNELS], ids=["one", "all"])
def test_bulk_channels_dying_alone_lose_nothing(delayed: Mounter, sshd: Sshd,
                                                killed: int) -> None:
    """Bulk channels' sftp-servers killed under a big write (one, or each in turn): their
    writes in flight fail as lost and are sent again on the main channel, which goes on
    with the bulk channels left (no reconnect)."""
    before = set(_sftp_servers(sshd))
    m = delayed(["-d"])
    ours = [p for p in _sftp_servers(sshd) if p not in before]
    assert len(ours) == 1 + BULK_CHANNELS, ours  # the main channel's server first
    bulk_pids = [pid for _, pid in ours[1:]][:killed]
    payload = os.urandom(24 * MiB)
    fd = os.open(m.mnt / "k", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for pos in range(0, len(payload), MiB):
            if pos in range(8 * MiB, (8 + 4 * killed) * MiB, 4 * MiB):
                assert WRITING_OVER_ALL in m.stderr_text()
                os.kill(bulk_pids.pop(), signal.SIGKILL)
            os.pwrite(fd, payload[pos:pos + MiB], pos)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert _sha256(m.root / "k") == _sha256(payload)
    assert "write(s) again" in m.stderr_text()  # some were in flight on the bulk channel
    assert "reconnected" not in m.stderr_text()


def test_a_cut_during_a_two_channel_write_loses_nothing(sshd: Sshd, mounter: Mounter,
                                                        tmp_path: Path) -> None:
    """dd conv=fsync over every channel, the connection cut under it: an identical file
    (the writes of both channels in flight are sent again once reconnected)."""
    faults = FaultProxy(sshd.port)
    delay = DelayProxy(faults.port, rtt_ms=10)
    try:
        known_hosts = tmp_path / "known_hosts_proxy"
        kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{delay.port} {kind} {key}\n")
        m = mounter(["-d", "-o", f"Port={delay.port}", "-o",
                     f"UserKnownHostsFile={known_hosts}"], foreground=True)
        assert wait_for(lambda: OPEN_BULK in m.stderr_text(), 10)
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(48 * MiB))
        dst = m.root / "big.bin"
        dd = subprocess.Popen(["dd", f"if={src}", f"of={m.mnt / 'big.bin'}", "bs=1M",
                               "conv=fsync", "status=none"], stderr=subprocess.PIPE)
        try:
            accepted = faults.accepted
            assert wait_for(lambda: dst.exists() and dst.stat().st_size >= 16 * MiB, 60)
            assert WRITING_OVER_ALL in m.stderr_text()
            assert faults.cut() >= 1
            assert wait_for(lambda: faults.accepted > accepted, 30), "no reconnect"
            _, err = dd.communicate(timeout=180)
        finally:
            if dd.poll() is None:
                dd.kill()
                dd.wait()
        assert dd.returncode == 0, err.decode()
        assert _sha256(dst) == _sha256(src)
        assert "reconnected" in m.stderr_text()
    finally:
        delay.close()
        faults.close()
