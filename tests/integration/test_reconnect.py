"""Surviving the network: a fault-injection proxy between pysshfs and a real sshd.

Every mount here goes through `FaultProxy` (tests/support/faultproxy.py), which can cut
every connection, blackhole traffic, or refuse new connections. The checks are on the
served directory itself (plain `os` calls) and on the mount's own log (foreground mounts,
stderr): files are byte-identical after drops, operations fail with EIO instead of hanging,
and the mount works again once the server is reachable.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, is_mounted, wait_for
from tests.support.sshd import Sshd, start_sshd

MiB = 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """This module's own sshd: one test restarts it."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-reconnect"))
    yield server
    server.stop()


@pytest.fixture
def proxy(sshd: Sshd) -> Iterator[FaultProxy]:
    p = FaultProxy(sshd.port)
    yield p
    p.close()


Mounted = Callable[..., Mount]


@pytest.fixture
def proxied(mounter: Mounter, proxy: FaultProxy, sshd: Sshd, tmp_path: Path) -> Mounted:
    """`proxied(*options)`: a foreground mount whose connection runs through `proxy`."""
    known_hosts = tmp_path / "known_hosts_proxy"
    kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")

    def mount(*options: str, root: Path | None = None) -> Mount:
        args = ["-o", f"Port={proxy.port}", "-o", f"UserKnownHostsFile={known_hosts}"]
        for opt in options:
            args += ["-o", opt]
        return mounter(args, foreground=True, root=root)

    return mount


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def log_has(m: Mount, text: str) -> bool:
    return text in m.stderr_text()


def wait_reconnected(m: Mount, proxy: FaultProxy, before: int, timeout: float = 30) -> None:
    """Poll until the mount has made a new connection through the proxy."""
    assert wait_for(lambda: proxy.accepted > before and proxy.connections > 0, timeout), \
        f"no reconnect within {timeout}s: {m.stderr_text()[-3000:]}"


def expect_errno(code: int, fn: Callable[[], object]) -> float:
    """Run `fn`, which must fail with `code`; the seconds it took."""
    t0 = time.monotonic()
    with pytest.raises(OSError) as exc:
        fn()
    assert exc.value.errno == code, f"expected {errno.errorcode[code]}, got {exc.value!r}"
    return time.monotonic() - t0


# --- data survives cuts -------------------------------------------------------------------

def test_cut_during_200mib_write_loses_nothing(proxied: Mounted, proxy: FaultProxy,
                                               tmp_path: Path) -> None:
    """`dd ... conv=fsync` across two dropped connections ends with an identical file."""
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(MiB))
    m = proxied()
    dst_server = m.root / "big.bin"
    dd = subprocess.Popen(["dd", f"if={src}", f"of={m.mnt / 'big.bin'}", "bs=1M",
                           "conv=fsync", "status=none"], stderr=subprocess.PIPE)
    try:
        for mark in (50 * MiB, 130 * MiB):
            accepted = proxy.accepted
            assert wait_for(lambda mark=mark: dst_server.exists()  # type: ignore[misc]
                            and dst_server.stat().st_size >= mark, 60), "dd made no progress"
            assert proxy.cut() >= 1
            wait_reconnected(m, proxy, accepted)
        _, err = dd.communicate(timeout=180)
    finally:
        if dd.poll() is None:
            dd.kill()
            dd.wait()
    assert dd.returncode == 0, f"dd failed: {err.decode()}; log: {m.stderr_text()[-3000:]}"
    assert dst_server.stat().st_size == 200 * MiB
    assert sha256(dst_server) == sha256(src)
    assert log_has(m, "lost") and log_has(m, "reconnected")


def test_cut_during_sequential_read_gives_exact_bytes(proxied: Mounted,
                                                      proxy: FaultProxy) -> None:
    m = proxied()
    payload = os.urandom(96 * MiB)
    (m.root / "data.bin").write_bytes(payload)
    progress = [0]
    got = hashlib.sha256()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            with open(m.mnt / "data.bin", "rb") as f:
                while chunk := f.read(256 * 1024):
                    got.update(chunk)
                    progress[0] += len(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failure.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        accepted = proxy.accepted
        assert wait_for(lambda: progress[0] >= 24 * MiB or not t.is_alive(), 60)
        assert t.is_alive(), "the read finished before the cut; nothing was tested"
        proxy.cut()
        wait_reconnected(m, proxy, accepted)
    finally:
        t.join(timeout=120)
    assert not t.is_alive(), "reader stuck after the reconnect"
    assert not failure, f"reader failed: {failure[0]!r}; log: {m.stderr_text()[-3000:]}"
    assert progress[0] == len(payload)
    assert got.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_open_file_survives_a_cut(proxied: Mounted, proxy: FaultProxy) -> None:
    """A handle opened before the drop keeps working after it (reopened by path)."""
    m = proxied()
    first, second = os.urandom(3 * MiB), os.urandom(3 * MiB)
    with open(m.mnt / "kept.bin", "wb") as f:
        f.write(first)
        f.flush()
        accepted = proxy.accepted
        proxy.cut()
        wait_reconnected(m, proxy, accepted)
        f.write(second)
    assert (m.root / "kept.bin").read_bytes() == first + second
    with open(m.mnt / "kept.bin", "rb") as f:
        head = f.read(MiB)
        accepted = proxy.accepted
        proxy.cut()
        wait_reconnected(m, proxy, accepted)
        rest = f.read()
    assert head + rest == first + second


def test_times_set_unwaited_survive_a_cut(proxied: Mounted, proxy: FaultProxy) -> None:
    """tar x's utime of a file it made is sent without waiting (FSETSTAT on the handle):
    lost with the connection along with a write before it, both are sent again, in
    order, on the reopened handle, and close(2) succeeds with the times in place."""
    m = proxied()
    path = m.mnt / "made"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"x" * 1000)
        proxy.blackhole(True)
        try:
            os.write(fd, b"y" * 1000)  # write-behind: queued into the dead link
            os.utime(path, (1_000_000_000, 1_000_000_000))  # unwaited, lost as well
            accepted = proxy.accepted
            proxy.cut()
        finally:
            proxy.blackhole(False)
        wait_reconnected(m, proxy, accepted)
    finally:
        os.close(fd)
    assert (m.root / "made").read_bytes() == b"x" * 1000 + b"y" * 1000
    assert log_has(m, "write(s) again"), m.stderr_text()[-3000:]  # the writes were lost
    # after the resent write, not before it: its mtime would otherwise be "now"
    assert (m.root / "made").stat().st_mtime == 1_000_000_000


def test_fifty_cuts_under_load(proxied: Mounted, proxy: FaultProxy) -> None:
    """A writer, a reader and a mkdir/rename/rmdir loop through 50 dropped connections."""
    m = proxied()
    sources = []
    for i in range(60):
        data = os.urandom(2 * MiB)
        (m.root / f"in{i}").write_bytes(data)
        sources.append(hashlib.sha256(data).hexdigest())
    stop = threading.Event()
    errors: list[str] = []
    moved = [0]
    written: list[tuple[str, str]] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            data = os.urandom(MiB + n * 4099)
            name = f"out{n}"
            try:
                with open(m.mnt / name, "wb") as f:
                    for pos in range(0, len(data), 128 * 1024):
                        f.write(data[pos:pos + 128 * 1024])
                        moved[0] += 128 * 1024
            except OSError as exc:
                errors.append(f"writer {name}: {exc!r}")
                return
            written.append((name, hashlib.sha256(data).hexdigest()))
            n += 1

    def reader() -> None:
        i = 0
        while not stop.is_set():
            name = f"in{i % len(sources)}"
            try:
                digest = sha256(m.mnt / name)
            except OSError as exc:
                errors.append(f"reader {name}: {exc!r}")
                return
            if digest != sources[i % len(sources)]:
                errors.append(f"reader {name}: wrong bytes")
                return
            moved[0] += 2 * MiB
            i += 1

    def names() -> None:
        i = 0
        while not stop.is_set():
            try:
                os.makedirs(m.mnt / f"d{i}" / "sub")
                os.rename(m.mnt / f"d{i}", m.mnt / f"e{i}")
                os.rmdir(m.mnt / f"e{i}" / "sub")
                os.rmdir(m.mnt / f"e{i}")
            except OSError as exc:
                errors.append(f"names {i}: {exc!r}")
                return
            moved[0] += 1
            i += 1

    threads = [threading.Thread(target=fn) for fn in (writer, reader, names)]
    for t in threads:
        t.start()
    try:
        for cut in range(50):
            before = moved[0]
            ok = wait_for(lambda before=before: (moved[0] > before + 256 * 1024  # type: ignore[misc]
                                                 and proxy.connections > 0) or bool(errors), 60)
            assert ok, f"no progress before cut {cut}: {m.stderr_text()[-3000:]}"
            assert not errors, f"{errors}; log: {m.stderr_text()[-6000:]}"
            proxy.cut()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a worker is stuck"
    assert not errors, f"{errors}; log: {m.stderr_text()[-3000:]}"
    assert len(written) >= 3
    for name, digest in written:
        assert sha256(m.root / name) == digest, f"{name} corrupted on the server"
    assert not [p for p in os.listdir(m.root) if p[0] in "de"], os.listdir(m.root)


# --- dead links and dead servers ----------------------------------------------------------

def test_blackhole_is_noticed_and_survived(proxied: Mounted, proxy: FaultProxy) -> None:
    """30 s of silence: keepalive (ServerAliveInterval=1) drops the link within ~3 s,
    and the mount works again once traffic flows."""
    m = proxied("ServerAliveInterval=1")
    (m.mnt / "before").write_bytes(b"1")
    accepted = proxy.accepted
    t0 = time.monotonic()
    proxy.blackhole(True)
    try:
        assert wait_for(lambda: log_has(m, "lost"), 15), m.stderr_text()[-3000:]
        noticed = time.monotonic() - t0
        (m.root / "during").write_bytes(b"made on the server while the link was dead")
        assert noticed <= 6, f"dead link noticed only after {noticed:.1f}s"
        wait_for(lambda: False, max(0.0, 30 - (time.monotonic() - t0)))  # the 30 s outage
    finally:
        proxy.blackhole(False)
    wait_reconnected(m, proxy, accepted, timeout=45)
    assert wait_for(lambda: (m.mnt / "during").exists(), 30)
    assert (m.mnt / "during").read_bytes() == b"made on the server while the link was dead"
    (m.mnt / "after").write_bytes(b"2")
    assert (m.root / "after").read_bytes() == b"2"
    print(f"blackhole noticed after {noticed:.1f}s")


def test_server_gone_longer_than_io_timeout(proxied: Mounted, proxy: FaultProxy) -> None:
    """Operations fail with EIO after io_timeout instead of hanging; then it recovers."""
    m = proxied("io_timeout=3", "cache=no")
    (m.mnt / "f").write_bytes(b"x")
    proxy.refuse(3600)
    proxy.cut()
    took = expect_errno(errno.EIO, lambda: os.stat(m.mnt / "f"))
    assert took <= 3 + 5, f"EIO only after {took:.1f}s"
    took = expect_errno(errno.EIO, lambda: (m.mnt / "g").write_bytes(b"y"))
    assert took <= 3 + 5, f"EIO only after {took:.1f}s"
    t0 = time.monotonic()
    expect_errno(errno.EIO, lambda: os.listdir(m.mnt))
    assert time.monotonic() - t0 <= 3 + 5
    assert not (m.root / "g").exists()
    accepted = proxy.accepted
    proxy.refuse(0)
    wait_reconnected(m, proxy, accepted, timeout=30)
    (m.root / "back").write_bytes(b"server side")
    assert (m.mnt / "back").read_bytes() == b"server side"
    (m.mnt / "g").write_bytes(b"y")
    assert (m.root / "g").read_bytes() == b"y"
    assert log_has(m, "reconnect")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def test_sshd_restart(proxied: Mounted, proxy: FaultProxy, sshd: Sshd) -> None:
    """The listener and its sessions are killed, a new sshd starts on the same port with
    the same host key: the mount carries on, an open file included."""
    m = proxied()
    (m.mnt / "a").write_bytes(b"before restart")
    f = open(m.mnt / "open.bin", "wb")
    try:
        f.write(b"first half|")
        f.flush()
        assert sshd.proc is not None
        sessions = _children(sshd.proc.pid)
        assert sessions, "no sshd session process to kill"
        accepted = proxy.accepted
        sshd.stop()
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sshd.start()
        wait_reconnected(m, proxy, accepted, timeout=45)
        f.write(b"second half")
    finally:
        f.close()
    (m.mnt / "b").write_bytes(b"after restart")
    assert (m.root / "a").read_bytes() == b"before restart"
    assert (m.root / "b").read_bytes() == b"after restart"
    assert (m.root / "open.bin").read_bytes() == b"first half|second half"


def test_changed_host_key_across_reconnect_is_refused(proxied: Mounted, proxy: FaultProxy,
                                                      tmp_path: Path) -> None:
    """Another server (another host key) answers after the drop: nothing is sent to it,
    the mount reports EIO, and the log says why."""
    m = proxied("io_timeout=3")
    (m.mnt / "before").write_bytes(b"ok")
    impostor = start_sshd(tmp_path / "impostor")
    try:
        impostor.authorized_keys.write_text(Path(str(m.sshd.authorized_keys)).read_text())
        proxy.target_port = impostor.port
        proxy.cut()
        took = expect_errno(errno.EIO, lambda: (m.mnt / "secret").write_bytes(b"not for you"))
        assert took <= 3 + 10
        assert wait_for(lambda: log_has(m, "refusing to reconnect"), 10), m.stderr_text()
        assert "host key" in m.stderr_text().lower()
        assert not (impostor.root / "secret").exists()
        assert not (m.root / "secret").exists()
        assert not any(impostor.root.rglob("*")), "something reached the impostor"
    finally:
        impostor.stop()
    assert (m.root / "before").read_bytes() == b"ok"


def test_unmount_while_disconnected(proxied: Mounted, proxy: FaultProxy) -> None:
    m = proxied("ServerAliveInterval=1")
    (m.mnt / "f").write_bytes(b"x")
    proxy.refuse(3600)
    proxy.cut()
    assert wait_for(lambda: log_has(m, "lost"), 15)
    t0 = time.monotonic()
    r = m.fusermount_u()
    assert r.returncode == 0, r.stderr
    assert m.wait_exit(timeout=15), "pysshfs did not exit after unmount while disconnected"
    assert time.monotonic() - t0 < 15
    assert not is_mounted(m.mnt)
    assert m.proc is not None and m.proc.returncode == 0
    assert (m.root / "f").read_bytes() == b"x"


def test_reconnect_no_fails_fast(proxied: Mounted, proxy: FaultProxy) -> None:
    """With -o reconnect=no a drop is final: EIO at once, no reconnect attempt."""
    m = proxied("reconnect=no", "cache=no")
    (m.mnt / "f").write_bytes(b"x")
    accepted = proxy.accepted
    proxy.cut()
    took = expect_errno(errno.EIO, lambda: os.stat(m.mnt / "f"))
    assert took < 3
    assert proxy.accepted == accepted


# --- a flapping link ----------------------------------------------------------------------

def test_flapping_link_with_parallel_workers_recovers(proxied: Mounted,
                                                      proxy: FaultProxy) -> None:
    """Six workers stat and read in parallel while the link drops a few requests after
    every reconnect, five times in a row: a loss noticed during or right after a
    reconnect must lead to another one, and the mount works at the end (issue 14)."""
    m = proxied("cache=no", "io_timeout=20")
    # what a login and the mount's first requests cost the client; the cuts land in the
    # first requests after that, the moment a reconnect has just been published
    handshake = proxy.client_bytes[-1]
    contents = {f"f{i}": os.urandom(1000 + i) for i in range(6)}
    for name, data in contents.items():
        (m.root / name).write_bytes(data)
    assert (m.mnt / "f0").read_bytes() == contents["f0"]
    stop = threading.Event()
    done = [0] * 6
    errors: list[str] = []

    def worker(i: int) -> None:
        name = f"f{i}"
        while not stop.is_set():
            try:
                os.stat(m.mnt / name)
                if (m.mnt / name).read_bytes() != contents[name]:
                    errors.append(f"{name}: wrong bytes")
                done[i] += 1
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO is fair while the link is down
                    errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    flaps = 5
    for t in threads:
        t.start()
    try:
        proxy.cut_after(handshake, connections=flaps, jitter=600)
        proxy.cut()
        assert wait_for(lambda: proxy.flaps >= flaps, 90), \
            f"only {proxy.flaps} flaps: {m.stderr_text()[-3000:]}"
        before = list(done)
        assert wait_for(lambda: all(d > b + 3 for d, b in zip(done, before, strict=True)), 60), \
            f"workers stuck after the flapping stopped: {m.stderr_text()[-3000:]}"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not [t for t in threads if t.is_alive()], "a worker is stuck"
    assert not errors, errors[:5]
    for name, data in contents.items():
        assert (m.mnt / name).read_bytes() == data
    (m.mnt / "after").write_bytes(b"flapped and back")
    assert (m.root / "after").read_bytes() == b"flapped and back"
