"""Control socket, status text and counters: the pure parts, and a server in process."""

from __future__ import annotations

import os
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pysshfs import control
from pysshfs.cli import mount_relative
from pysshfs.errors import MountError
from pysshfs.sftp.client import SFTPClient
from pysshfs.stats import RTT_SAMPLES, LinkHistory, Traffic, ratio
from pysshfs.statusview import duration_text, format_status, size_text


def test_runtime_dirs() -> None:
    assert control.runtime_dirs(0, {}) == [Path("/run/pysshfs")]
    assert control.runtime_dirs(0, {"XDG_RUNTIME_DIR": "/run/user/0"}) == \
        [Path("/run/user/0/pysshfs"), Path("/run/pysshfs")]
    assert control.runtime_dirs(1000, {}) == [Path("/run/user/1000/pysshfs"),
                                              Path("/tmp/pysshfs-1000")]
    assert control.runtime_dirs(1000, {"XDG_RUNTIME_DIR": "/run/user/1000"}) == \
        [Path("/run/user/1000/pysshfs"), Path("/tmp/pysshfs-1000")]
    assert control.runtime_dirs(1000, {"XDG_RUNTIME_DIR": "relative"})[0] == \
        Path("/run/user/1000/pysshfs")


def test_socket_names_follow_the_mountpoint_however_spelled(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    os.symlink(tmp_path, tmp_path / "alias")
    name = control.socket_name(str(tmp_path / "mnt"))
    assert name == control.socket_name(str(tmp_path / "alias" / "mnt"))
    assert name == control.socket_name(str(tmp_path / "mnt") + "/")
    assert name != control.socket_name(str(tmp_path / "other"))
    assert name.startswith("mount-") and name.endswith(".sock") and len(name) < 40


def test_check_paths() -> None:
    assert control.check_paths(None) == ["/"]
    assert control.check_paths([]) == ["/"]
    assert control.check_paths(["/a/../b", "/c/./d/", "//e"]) == ["/b", "/c/d", "/e"]
    assert control.check_paths(["/.."]) == ["/"]
    for bad in ("/x", ["x"], [1], ["/a\0b"], {"p": 1}):
        with pytest.raises(ValueError):
            control.check_paths(bad)


def test_mount_relative() -> None:
    assert mount_relative("/mnt/x", "/mnt/x") == "/"
    assert mount_relative("/mnt/x", "/mnt/x/a/b") == "/a/b"
    assert mount_relative("/mnt/x", "/mnt/x/a/../c") == "/c"
    for outside in ("/mnt/xy", "/mnt", "/etc/passwd", "/mnt/x/../y"):
        with pytest.raises(MountError):
            mount_relative("/mnt/x", outside)


def test_traffic_estimates_the_round_trip_from_small_requests() -> None:
    t = Traffic()
    t.replied(100, "READ", 1.0)  # bulk: bytes counted, no RTT sample
    assert t.rtt is None and t.replies == 1 and t.bytes_received == 100
    import time

    now = time.monotonic()
    t.replied(20, "LSTAT", now - 0.010)
    assert t.rtt is not None and 0.009 < t.rtt < 1
    first = t.rtt
    t.replied(20, "LSTAT", time.monotonic() - 0.090)
    assert first < t.rtt < 0.090  # smoothed, not replaced
    assert t.rtt_min is not None and t.rtt_min <= first
    assert ratio(3, 1) == 0.75 and ratio(0, 0) is None


def test_the_round_trip_floor_follows_the_route() -> None:
    """rtt_min is the quickest of the last RTT_SAMPLES small replies sent quiet: a longer
    route (another network, a reconnect elsewhere) is learnt once that many replies say
    so, not held at the old floor for the session (which capped reads and writes at a
    fraction of the link); a shorter one at once."""
    t = Traffic()
    for _ in range(RTT_SAMPLES):
        t.replied(20, "LSTAT", 10.0, now=10.002)
    assert t.rtt_min == pytest.approx(0.002)
    for i in range(RTT_SAMPLES):
        assert t.rtt_min == pytest.approx(0.002), i  # the old floor, until all say longer
        t.replied(20, "LSTAT", 20.0, now=20.040)
    assert t.rtt_min == pytest.approx(0.040)
    t.replied(20, "OPEN", 30.0, now=30.021)
    assert t.rtt_min == pytest.approx(0.021)


def test_small_replies_queued_behind_a_copy_neither_lower_nor_raise_the_floor() -> None:
    """A small request sent while READs or WRITEs are in flight waits behind them: its
    reply does not move the floor (a long copy with an ls now and then would otherwise
    push it up, and the caps with it, queue after queue), unless no quiet one is known."""
    t = Traffic()
    t.replied(20, "LSTAT", 1.0, now=1.020, quiet=False)
    assert t.rtt_min == pytest.approx(0.020)  # nothing better known yet
    t.replied(20, "LSTAT", 2.0, now=2.030)
    for _ in range(3 * RTT_SAMPLES):
        t.replied(20, "LSTAT", 3.0, now=3.080, quiet=False)
        t.replied(20, "LSTAT", 3.0, now=3.001, quiet=False)
    assert t.rtt_min == pytest.approx(0.030)
    assert t.rtt is not None and t.rtt > 0.030  # the smoothed figure takes every reply


def test_a_lost_connection_forgets_the_round_trip() -> None:
    t = Traffic()
    t.replied(20, "LSTAT", 1.0, now=1.002)
    t.new_path()
    assert t.rtt is None and t.rtt_min is None and t.replies == 1
    t.replied(20, "LSTAT", 2.0, now=2.050)
    assert t.rtt_min == pytest.approx(0.050)


class _Sent:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.data.append(bytes(data))

    def close(self) -> None:
        pass


def test_requests_sent_behind_bulk_bytes_are_marked_queued() -> None:
    """The SFTP client asks Traffic.busy (the file layer's bytes in flight) as it sends a
    small request, and reports the reply's round trip as quiet or queued accordingly."""
    t = Traffic()
    stream = _Sent()
    client = SFTPClient(stream, traffic=t)  # type: ignore[arg-type]
    client._awaiting_version = False
    busy = [False]
    t.busy = lambda: busy[0]
    calm = client.lstat_async(b"/a")
    busy[0] = True
    queued = client.lstat_async(b"/b")
    client.read_async(b"h", 0, 4096)  # bulk: no sample, whatever is in flight
    assert [req.quiet for req in client._pending.values()] == [True, False, True]
    for packet in stream.data[:2]:
        request_id = packet[5:9]
        client._consume(struct.pack(">IB", 9, 105) + request_id + struct.pack(">I", 0))
    calm.result(timeout=1)
    queued.result(timeout=1)
    assert len(t._quiet) == 1 and len(t._queued) == 1
    assert t.rtt_min == t._quiet[0]


def test_link_history() -> None:
    h = LinkHistory()
    h.lost(ConnectionResetError("reset"))
    assert h.lost_at is not None and h.last_error == "reset"
    h.attempt_failed("refused")
    h.reconnected()
    assert h.reconnects == 1 and h.lost_at is None and h.last_error == "refused"


def test_sizes_and_durations() -> None:
    assert size_text(0) == "0 B" and size_text(1023) == "1023 B"
    assert size_text(1536) == "1.5 KiB" and size_text(5 * 1024 ** 3) == "5.0 GiB"
    assert duration_text(59) == "59s" and duration_text(61) == "1m01s"
    assert duration_text(3 * 3600 + 120) == "3h02m" and duration_text(90000) == "1d01h"


STATUS: dict[str, Any] = {
    "mountpoint": "/home/a/srv", "source": "a@host:/srv", "server": "a@host:22",
    "remote_dir": "/srv", "pid": 42, "mounted_at": 1000.0, "state": "reconnecting",
    "state_since": 1090.0, "error": "Connection refused", "rtt_ms": 12.345,
    "rtt_min_ms": 9.0, "reconnects": 2, "requests_sent": 12345, "replies_received": 12340,
    "bytes_sent": 2048, "bytes_received": 3 * 1024 * 1024,
    "cache": {"attr_hits": 90, "attr_misses": 10, "attr_hit_ratio": 0.9,
              "listing_hits": 0, "listing_misses": 0, "listing_hit_ratio": None,
              "link_hits": 1, "link_misses": 0, "link_hit_ratio": 1.0},
    "open_files": 3, "unacked_write_bytes": 65536,
}


def test_status_text_reads_at_a_glance() -> None:
    text = format_status(STATUS, now=1100.0)
    lines = text.splitlines()
    assert lines[0] == "/home/a/srv (a@host:/srv)"
    rows = {line[2:14].strip(): line[14:] for line in lines[1:]}
    assert rows["server"] == "a@host:22"
    assert rows["remote dir"] == "/srv"
    assert rows["state"].startswith("RECONNECTING since ")
    assert rows["state"].endswith("(10s): Connection refused")
    assert rows["round trip"] == "12.3 ms (best 9.0 ms)"
    assert rows["reconnects"] == "2"
    assert rows["requests"] == "12,345 sent, 12,340 answered"
    assert rows["traffic"] == "2.0 KiB sent, 3.0 MiB received"
    assert rows["cache hits"] == "attributes 90% of 100, listings unused, links 100% of 1"
    assert rows["open files"] == "3, 64.0 KiB written and not yet acknowledged"
    assert rows["daemon"] == "pid 42, mounted 1m40s ago"
    failed = format_status({**STATUS, "state": "failed", "error": "host key changed"})
    assert "FAILED: host key changed (unmount and mount again)" in failed


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[control.ControlServer]:
    d = tempfile.mkdtemp(prefix="pst-u-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", d)

    def boom(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    srv = control.ControlServer("/some/mnt", {
        "status": lambda request: {"mount": {"mountpoint": "/some/mnt"}},
        "refresh": lambda request: {"paths": control.check_paths(request.get("paths"))},
        "boom": boom,
    })
    assert srv.start()
    yield srv
    srv.close()
    os.rmdir(Path(d) / "pysshfs")
    os.rmdir(d)


def test_server_answers_and_survives_errors(server: control.ControlServer) -> None:
    path = control.socket_for("/some/mnt")
    assert path == server.path
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert control.query(path, {"op": "status"})["mount"] == {"mountpoint": "/some/mnt"}
    assert control.query(path, {"op": "refresh", "paths": ["/a/"]})["paths"] == ["/a"]
    with pytest.raises(control.ControlError, match="internal error"):
        control.query(path, {"op": "boom"})
    with pytest.raises(control.ControlError, match="list of strings"):
        control.query(path, {"op": "refresh", "paths": 3})
    assert control.query(path, {"op": "status"})["ok"] is True
    # ours first (XDG_RUNTIME_DIR); as root /run/pysshfs follows, with the sockets of any
    # other mount running on this machine
    found = control.sockets()
    assert found[0] == path and path not in found[1:], found
    assert [p for p in found if p.parent == path.parent] == [path], found


def test_close_removes_only_our_socket(server: control.ControlServer) -> None:
    path = server.path
    assert path is not None
    server.close()
    assert not os.path.lexists(path)
    with pytest.raises(OSError):
        control.query(path, {"op": "status"})


def test_a_stale_socket_is_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    d = Path(tempfile.mkdtemp(prefix="pst-u-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    (d / "pysshfs").mkdir(mode=0o755)  # too open: tightened
    stale = d / "pysshfs" / control.socket_name("/m")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    assert control.is_stale(stale)
    srv = control.ControlServer("/m", {"status": lambda r: {}})
    try:
        assert srv.start() and srv.path == stale
        assert not control.is_stale(stale)
        assert stat.S_IMODE(os.lstat(d / "pysshfs").st_mode) == 0o700
    finally:
        srv.close()
        os.rmdir(d / "pysshfs")
        os.rmdir(d)
