"""A broken or hostile server must cost an EIO and a log line, never a wedged mount (issue 14).

The server is the real sshd running a misbehaving SFTP server (tests/support/badsftp.py:
the real sftp-server behind a relay that changes one thing), or the real sftp-server
told to log to stderr. Every mount goes through a pass-through `FaultProxy`, whose
`accepted` count is the number of logins the server saw. Each test bounds what it
checks: commands return within io_timeout + 5 s, the daemon stays under 200 MB, unmount
finishes, and the server sees a handful of logins, not thousands.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pysshfs.session import BULK_CHANNELS
from pysshfs.ssh.pushchannel import STDERR_LINES_PER_MINUTE
from tests.support import badsftp
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, is_mounted, pid_alive, run_pysshfs, wait_for
from tests.support.sshd import Sshd, sftp_server_path

# server stderr lines logged in a minute at most: the budget of each SFTP channel
STDERR_LINES = STDERR_LINES_PER_MINUTE * (1 + BULK_CHANNELS)

pytestmark = pytest.mark.slow

RSS_LIMIT_MB = 200
SLACK = 5.0  # seconds past io_timeout a call may take to fail


@pytest.fixture
def proxy(sshd: Sshd) -> Iterator[FaultProxy]:
    p = FaultProxy(sshd.port)
    yield p
    p.close()


@pytest.fixture
def via_proxy(sshd: Sshd, proxy: FaultProxy, tmp_path: Path) -> list[str]:
    """Arguments that make pysshfs reach the test sshd through `proxy`."""
    known_hosts = tmp_path / "known_hosts_proxy"
    kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")
    return ["-o", f"Port={proxy.port}", "-o", f"UserKnownHostsFile={known_hosts}"]


Hostile = Callable[..., Mount]


@pytest.fixture
def hostile(mounter: Mounter, via_proxy: list[str]) -> Hostile:
    """`hostile(server_command, *options)`: a foreground mount whose SFTP server is
    `server_command` (run by the real sshd), reached through the counting proxy."""

    def mount(server: str, *options: str, root: Path | None = None) -> Mount:
        args = [*via_proxy, "-o", f"sftp_server={server}"]
        for opt in options:
            args += ["-o", opt]
        return mounter(args, foreground=True, root=root)

    return mount


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def timed_errno(fn: Callable[[], object]) -> tuple[int | None, float]:
    """(errno fn failed with or None, seconds it took)."""
    t0 = time.monotonic()
    try:
        fn()
    except OSError as exc:
        return exc.errno, time.monotonic() - t0
    return None, time.monotonic() - t0


def in_subprocess(code: str, *args: str) -> subprocess.Popen[bytes]:
    """Run python `code` in a child process (a blocked syscall cannot block the test)."""
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=30)  # a process in D state dies once its request ends
        except subprocess.TimeoutExpired:
            pass


# --- the server's stderr --------------------------------------------------------------------

STAT_LOOP = """
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    os.stat(path)
print("done")
"""


def _descendant_with(pid: int, word: bytes) -> int | None:
    """A descendant process of `pid` whose argv holds `word`."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            try:
                argv = Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(word in a for a in argv):
                return c
            todo.append(c)
    return None


def _wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def test_server_logging_to_stderr_does_not_wedge_the_mount(hostile: Hostile,
                                                            sshd: Sshd) -> None:
    """sftp-server -e -l DEBUG3 writes every request to stderr: 50,000 stats go through
    (4 MiB of stderr, one SSH window, used to wedge the mount for good at ~12,000)."""
    m = hostile(f"{sftp_server_path()} -e -l DEBUG3", "cache=no", "io_timeout=30")
    (m.root / "f").write_bytes(b"x")
    assert m.proc is not None and sshd.proc is not None
    server = _descendant_with(sshd.proc.pid, b"-l")
    assert server is not None, "the sftp-server process was not found"
    written_before = _wchar(server)
    count = 50_000
    proc = in_subprocess(STAT_LOOP, str(m.mnt / "f"), str(count))
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        stop_process(proc)
    assert proc.returncode == 0 and out.strip() == b"done", (err.decode(), m.stderr_text()[-2000:])
    # every stat reached the server, which logged it: well past the 4 MiB window
    stderr_bytes = _wchar(server) - written_before
    assert stderr_bytes > count * 100 > 4 * 1024 * 1024, stderr_bytes
    assert (m.mnt / "f").read_bytes() == b"x"
    log = m.stderr_text()
    assert "server stderr: debug" in log
    assert log.count("server stderr:") <= STDERR_LINES, "server stderr not rate-limited"
    assert rss_mb(m.proc.pid) < RSS_LIMIT_MB
    print(f"{count} stats, {stderr_bytes / 2**20:.1f} MiB written by sftp-server")


def test_stderr_flood_keeps_memory_bounded(hostile: Hostile) -> None:
    m = hostile(badsftp.command("stderr-flood"), "cache=no")
    assert m.proc is not None
    payload = os.urandom(300_000)
    (m.root / "data").write_bytes(payload)
    peak = 0.0
    deadline = time.monotonic() + 8
    rounds = 0
    while time.monotonic() < deadline:
        assert (m.mnt / "data").read_bytes() == payload
        os.stat(m.mnt / "data")
        peak = max(peak, rss_mb(m.proc.pid))
        rounds += 1
    assert peak < RSS_LIMIT_MB, f"daemon RSS reached {peak:.0f} MB"
    assert rounds > 3
    assert m.stderr_text().count("server stderr:") <= STDERR_LINES
    print(f"peak RSS {peak:.0f} MB over {rounds} rounds")


# --- deadlines ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,arg", [("stall", 0), ("delay", 8)])
def test_mount_against_a_silent_server_fails_in_time(mounter: Mounter, via_proxy: list[str],
                                                     proxy: FaultProxy, mode: str,
                                                     arg: int) -> None:
    io_timeout = 2
    root = mounter.new_root()
    mnt = mounter.new_mountpoint()
    args = mounter.argv(root, mnt, [*via_proxy, "-o", f"io_timeout={io_timeout}",
                                    "-o", f"sftp_server={badsftp.command(mode, arg)}"])
    t0 = time.monotonic()
    r = run_pysshfs(args, mounter.home, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pysshfs: "), r.stderr
    assert f"did not answer within {io_timeout}s" in lines[0], lines[0]
    assert "io_timeout" in lines[0]
    assert took < io_timeout + 15, f"the mount command took {took:.1f}s to fail"
    assert not is_mounted(mnt)
    assert proxy.accepted == 1
    print(f"{mode} {arg}: mount failed after {took:.2f}s: {lines[0]}")


def test_stalled_server_gives_eio_within_io_timeout_then_recovers(hostile: Hostile,
                                                                   proxy: FaultProxy) -> None:
    """After 40 requests the session never answers again (keepalives still do): calls
    fail with EIO within io_timeout + 5 s, the connection is dropped, and the next
    session (which answers its first 40) serves the mount again."""
    io_timeout = 3
    m = hostile(badsftp.command("stall", 40), "cache=no", f"io_timeout={io_timeout}")
    (m.root / "f").write_bytes(b"content")
    failures = []
    for _ in range(60):  # until the 40 requests are used up
        code, took = timed_errno(lambda: os.stat(m.mnt / "f"))
        assert took <= io_timeout + SLACK, f"stat took {took:.1f}s"
        if code is not None:
            failures.append(code)
            break
    assert failures == [errno.EIO], failures
    stat_took = took
    code, took = timed_errno(lambda: os.listdir(m.mnt))
    assert took <= io_timeout + SLACK, f"ls took {took:.1f}s"
    print(f"stalled: stat EIO after {stat_took:.2f}s, then ls {code} after {took:.2f}s")
    assert "no reply to" in m.stderr_text()
    # the next session answers again
    assert wait_for(lambda: timed_errno(lambda: (m.mnt / "f").read_bytes())[0] is None, 30), \
        m.stderr_text()[-3000:]
    assert (m.mnt / "f").read_bytes() == b"content"
    assert proxy.accepted <= 6
    assert m.proc is not None and rss_mb(m.proc.pid) < RSS_LIMIT_MB


# --- unmounting with requests stuck on the server ------------------------------------------

STAT_ONE = "import os, sys\ntry:\n    os.stat(sys.argv[1])\nexcept OSError as e:\n    print(e)\n"


@pytest.mark.parametrize("how", ["SIGTERM", "fusermount3 -u"])
def test_unmount_with_requests_stuck_on_the_server(hostile: Hostile, how: str) -> None:
    """A stat is stuck on a server that stopped answering (and a write is pending):
    the daemon still ends within a few seconds, and says which file lost its writes."""
    io_timeout = 4 if how != "SIGTERM" else 120
    m = hostile(badsftp.command("stall-on", "STALL"), "cache=no", f"io_timeout={io_timeout}")
    assert m.proc is not None
    # an open file keeps the mount busy for fusermount: only the signal case has one
    fd = os.open(m.mnt / "pending.bin", os.O_WRONLY | os.O_CREAT, 0o644) \
        if how == "SIGTERM" else None
    blocked = in_subprocess(STAT_ONE, str(m.mnt / "STALL"))
    try:
        # the stat is on its way to the server, which will never answer it
        wait_for(lambda: blocked.poll() is not None, 1)
        assert blocked.poll() is None, blocked.communicate()
        if fd is not None:
            os.write(fd, b"w" * 100_000)  # write-behind: queued, never answered
        t0 = time.monotonic()
        if how == "SIGTERM":
            m.proc.send_signal(signal.SIGTERM)
        else:
            # the stuck stat keeps the mount busy until io_timeout ends it: then it goes
            assert wait_for(lambda: m.fusermount_u().returncode == 0, io_timeout + SLACK + 5,
                            interval=0.5), "fusermount3 -u never succeeded"
        m.proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        stop_process(blocked)
    bound = 15 if how == "SIGTERM" else io_timeout + SLACK + 10
    assert took < bound, f"the daemon took {took:.1f}s to end"
    assert not is_mounted(m.mnt)
    assert not pid_alive(m.proc.pid)
    print(f"{how}: daemon gone {took:.2f}s later")
    if how == "SIGTERM":
        log = m.stderr_text()
        assert "pending.bin" in log and "lost" in log, log[-3000:]


# --- protocol errors and backoff ------------------------------------------------------------

@pytest.mark.parametrize("mode,arg,what", [
    ("garbage", 30, "read"),
    ("big-read", "", "read"),
    ("status", "7:30", "read"),
    ("status", "6:30", "ls"),
])
def test_protocol_errors_fail_with_eio_without_a_storm(hostile: Hostile, proxy: FaultProxy,
                                                       mode: str, arg: object,
                                                       what: str) -> None:
    """Garbage, a READ answered with 10x the bytes, a STATUS 6/7 from a server whose
    connection is fine: EIO at once (default io_timeout 60 s), not a retry loop."""
    m = hostile(badsftp.command(mode, arg) if arg != "" else badsftp.command(mode), "cache=no")
    (m.root / "f").write_bytes(os.urandom(100_000))
    (m.root / "d").mkdir()
    op: Callable[[], object]
    if what == "read":
        op = lambda: [(m.mnt / "f").read_bytes() for _ in range(40)]  # noqa: E731
    else:
        op = lambda: [os.listdir(m.mnt / "d") for _ in range(40)]  # noqa: E731
    code, took = timed_errno(op)
    assert code == errno.EIO, (code, m.stderr_text()[-2000:])
    assert took < 10, f"EIO only after {took:.1f}s"
    time.sleep(2)  # nothing to poll for: a storm would show in the count
    assert proxy.accepted <= 4, f"{proxy.accepted} logins: {m.stderr_text()[-2000:]}"
    assert len(m.stderr_text().splitlines()) < 60
    assert m.proc is not None and rss_mb(m.proc.pid) < RSS_LIMIT_MB
    print(f"{mode} {arg}: EIO after {took:.2f}s, {proxy.accepted} login(s)")


def test_server_that_breaks_every_session_gets_few_logins(hostile: Hostile,
                                                          proxy: FaultProxy) -> None:
    """Each session dies after 5 requests; a busy stat loop for 25 s: backoff holds
    (a handful of logins, not thousands), and the log says when the next try is."""
    m = hostile(badsftp.command("die", 5), "cache=no", "io_timeout=5")
    (m.root / "f").write_bytes(b"x")
    stop = threading.Event()
    slowest = [0.0]

    def loop() -> None:
        while not stop.is_set():
            _, took = timed_errno(lambda: os.stat(m.mnt / "f"))
            slowest[0] = max(slowest[0], took)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: False, 25)  # the observation window
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not [t for t in threads if t.is_alive()]
    assert slowest[0] <= 5 + SLACK
    assert 2 <= proxy.accepted <= 10, f"{proxy.accepted} logins in 25 s"
    log = m.stderr_text()
    assert "next try in" in log or "reconnecting to" in log and " in " in log
    assert len(log.splitlines()) < 200
    print(f"{proxy.accepted} logins in 25 s")


def test_replies_to_unknown_ids_do_not_flood_the_log(hostile: Hostile) -> None:
    m = hostile(badsftp.command("unknown-ids", 20000), "cache=no")
    (m.root / "f").write_bytes(b"x")
    assert (m.mnt / "f").read_bytes() == b"x"
    log = m.stderr_text()
    assert log.count("unknown request") <= 10, log.count("unknown request")
    assert len(log.splitlines()) < 100
