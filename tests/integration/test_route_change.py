"""The round trip a mount sizes its reads and writes in flight by follows the route.

fileio's caps (LinkEstimate) are the link's rate times its round trip, the round trip
being the quickest recent reply to a small request (stats.Traffic.rtt_min). A floor
held from an earlier, shorter route (a laptop moving from the office's network to a
phone's, a VPN, a reconnect that lands elsewhere) capped reads and writes at a fraction
of the link: measured on bench/netem.py's proxy going from 2 to 40 ms, 64 MiB took
3.6-5.6 s to read and 14-22 s to write, against 0.85 and 0.7 s on a fresh mount. Here
the delaying proxy grows the round trip under a real mount, on the same connection and
across a reconnect; `pysshfs status` shows the floor the caps use (no timing is asserted:
each reply through the proxy takes at least its delay). Files written and read across
the change are checked on the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.netem import DelayProxy
from pysshfs.stats import RTT_SAMPLES
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, run_pysshfs, wait_for
from tests.support.sshd import Sshd

MiB = 1024 * 1024
SHORT_MS = 2
LONG_MS = 60


def _status(m: Mount) -> dict[str, Any]:
    r = run_pysshfs(["status", str(m.mnt), "--json"], m.home, timeout=30)
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert len(found) == 1, found
    return found[0]


def _small_requests(m: Mount, name: str, count: int) -> None:
    """`count` LSTATs (cache=no: every stat() reaches the server)."""
    (m.root / name).write_bytes(b"x")
    for _ in range(count):
        assert os.stat(m.mnt / name).st_size == 1


@pytest.fixture
def link(sshd: Sshd, tmp_path: Path) -> Iterator[tuple[DelayProxy, FaultProxy, list[str]]]:
    """sshd behind a proxy that can cut the connection, behind one that delays it; the
    mount options that reach sshd through both."""
    faults = FaultProxy(sshd.port)
    delay = DelayProxy(faults.port, rtt_ms=SHORT_MS)
    known_hosts = tmp_path / "known_hosts_proxy"
    kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{delay.port} {kind} {key}\n")
    try:
        yield delay, faults, ["-o", f"Port={delay.port}", "-o",
                              f"UserKnownHostsFile={known_hosts}", "-o", "cache=no",
                              "-o", "reconnect"]
    finally:
        delay.close()
        faults.close()


def _copy_through(m: Mount, name: str) -> None:
    """A few MiB written onto the mount and read back through it, checked on the server."""
    payload = os.urandom(4 * MiB + 123)
    (m.mnt / name).write_bytes(payload)
    assert (m.root / name).read_bytes() == payload
    assert (m.mnt / name).read_bytes() == payload


def test_a_longer_round_trip_on_the_same_connection_is_learnt(
        link: tuple[DelayProxy, FaultProxy, list[str]], mounter: Mounter) -> None:
    delay, _, options = link
    m = mounter(options)
    _small_requests(m, "before", RTT_SAMPLES)
    _copy_through(m, "short.bin")
    assert _status(m)["rtt_min_ms"] < LONG_MS / 2
    delay.one_way = LONG_MS / 2000
    _small_requests(m, "after", RTT_SAMPLES)
    s = _status(m)
    assert s["rtt_min_ms"] >= LONG_MS - 1, s
    assert s["reconnects"] == 0
    _copy_through(m, "long.bin")


def test_a_reconnect_learns_the_new_route(
        link: tuple[DelayProxy, FaultProxy, list[str]], mounter: Mounter) -> None:
    delay, faults, options = link
    m = mounter(options)
    _small_requests(m, "before", RTT_SAMPLES)
    assert _status(m)["rtt_min_ms"] < LONG_MS / 2
    delay.one_way = LONG_MS / 2000
    accepted = faults.accepted
    assert faults.cut() >= 1
    assert wait_for(lambda: faults.accepted > accepted, 30), "no reconnect"
    assert wait_for(lambda: _status(m)["state"] == "connected", 60)
    _small_requests(m, "after", 1)  # no more: what came before the cut is forgotten
    s = _status(m)
    assert s["reconnects"] == 1
    assert s["rtt_min_ms"] >= LONG_MS - 1, s
    _copy_through(m, "long.bin")
