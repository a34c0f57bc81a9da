"""`pysshfs status` and `pysshfs refresh` against real mounts, and their control socket:
private to the mounting user, replaced when stale, robust to garbage, gone at unmount."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pysshfs import control
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, Mounter, run_pysshfs, wait_for
from tests.support.sshd import Sshd
from tests.support.system import LocalUser


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private $XDG_RUNTIME_DIR for this test (short: socket paths have a limit), so
    `status` sees this test's mounts only."""
    d = Path(tempfile.mkdtemp(prefix="pst-rt-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pysshfs(m: Mount | Mounter, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pysshfs(list(args), m.home, timeout=30)


def status_json(m: Mount | Mounter, *args: str) -> list[dict[str, Any]]:
    """`status --json`, this test's mounts only: as root, status also lists the mounts of
    /run/pysshfs, which other test runs on the machine may have."""
    r = pysshfs(m, "status", *args, "--json")
    assert r.returncode == 0, r.stderr
    base = str((m.mnt.parent if isinstance(m, Mount) else m.base).resolve()) + "/"
    return [s for s in json.loads(r.stdout) if s["mountpoint"].startswith(base)]


def sock_of(m: Mount) -> Path:
    path = control.socket_for(str(m.mnt))
    assert path is not None, "no control socket for the mount"
    return path


def raw_request(path: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return json.loads(reply)


def test_status_after_some_io(runtime_dir: Path, mounter: Mounter) -> None:
    m = mounter(["-o", "cache_timeout=600"])
    data = os.urandom(300_000)
    (m.mnt / "f").write_bytes(data)
    assert (m.root / "f").read_bytes() == data
    for _ in range(3):
        os.stat(m.mnt / "f")
    os.listdir(m.mnt)
    with open(m.mnt / "f", "rb") as held:
        assert held.read() == data
        [s] = status_json(m, str(m.mnt))
        assert s["open_files"] == 1
    [s] = status_json(m, str(m.mnt))
    assert s["mountpoint"] == str(m.mnt)
    assert s["remote_dir"] == str(m.root)
    assert s["source"] == f"testhost:{m.root}"
    assert s["pid"] == m.pid
    assert s["state"] == "connected" and s["error"] is None
    assert s["reconnects"] == 0
    assert s["open_files"] == 0 and s["unacked_write_bytes"] == 0
    assert s["bytes_sent"] > len(data)  # the file went up once...
    assert s["bytes_received"] > len(data)  # ...and came back once (or more)
    assert s["requests_sent"] >= s["replies_received"] > 10
    assert s["rtt_ms"] is not None and s["rtt_ms"] > 0
    assert s["cache"]["attr_hits"] + s["cache"]["attr_misses"] > 0
    assert 0 <= s["cache"]["attr_hit_ratio"] <= 1
    assert s["kernel_invalidation"] is True

    r = pysshfs(m, "status")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith(f"{m.mnt} (testhost:{m.root})\n")
    for label in ("server", "remote dir", "state", "round trip", "reconnects", "requests",
                  "traffic", "cache hits", "open files", "daemon"):
        assert f"\n  {label} " in text, label
    assert "connected since" in text
    assert f"pid {m.pid}" in text


def test_status_lists_every_mount(runtime_dir: Path, mounter: Mounter) -> None:
    a, b = mounter(), mounter()
    listed = status_json(a)
    assert sorted(s["mountpoint"] for s in listed) == sorted([str(a.mnt), str(b.mnt)])
    r = pysshfs(a, "status", str(b.mnt / ".." / b.mnt.name))  # any spelling of it
    assert r.returncode == 0 and r.stdout.startswith(f"{b.mnt} "), r.stdout + r.stderr


def test_status_of_something_else_is_one_clear_line(runtime_dir: Path,
                                                    mounter: Mounter) -> None:
    r = pysshfs(mounter, "status", str(mounter.base))
    assert r.returncode == 1
    assert r.stderr == f"pysshfs: '{mounter.base}': not a pysshfs mount of yours " \
                       "(pysshfs status lists them)\n"
    assert status_json(mounter) == []
    r = pysshfs(mounter, "refresh")
    assert r.returncode == 1 and r.stderr.startswith("pysshfs: pysshfs refresh: no mountpoint")


def test_refresh_shows_server_changes_before_the_ttl(runtime_dir: Path,
                                                     mounter: Mounter) -> None:
    m = mounter(["-o", "cache_timeout=600"])
    (m.root / "d").mkdir()
    (m.root / "d" / "f").write_bytes(b"1")
    (m.root / "g").write_bytes(b"g")
    assert os.stat(m.mnt / "d" / "f").st_size == 1
    assert os.listdir(m.mnt / "d") == ["f"]
    assert not os.path.exists(m.mnt / "d" / "later")  # the kernel keeps that "no" too
    assert os.stat(m.mnt / "g").st_size == 1

    (m.root / "d" / "f").write_bytes(b"12345")
    (m.root / "d" / "later").write_bytes(b"new")
    (m.root / "g").write_bytes(b"gg")
    assert os.stat(m.mnt / "d" / "f").st_size == 1  # cached, as promised
    assert not os.path.exists(m.mnt / "d" / "later")

    r = pysshfs(m, "refresh", str(m.mnt), str(m.mnt / "d"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    assert os.stat(m.mnt / "d" / "f").st_size == 5
    assert sorted(os.listdir(m.mnt / "d")) == ["f", "later"]
    assert (m.mnt / "d" / "later").read_bytes() == b"new"
    assert os.stat(m.mnt / "g").st_size == 1  # outside what was refreshed

    r = pysshfs(m, "refresh", str(m.mnt))  # everything
    assert r.returncode == 0, r.stderr
    assert os.stat(m.mnt / "g").st_size == 2

    os.unlink(m.root / "g")
    r = run_pysshfs(["refresh", str(m.mnt), "g"], m.home, timeout=30)  # relative to the cwd
    assert r.returncode == 1 and "not inside the mount" in r.stderr
    r = subprocess.run([*_cmd(), "refresh", ".", "g"], cwd=m.mnt, env=_env(m),
                       capture_output=True, text=True, timeout=30)  # (now inside the mount)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(m.mnt / "g")

    # A shell sitting in a refreshed directory stays there.
    probe = ("import os, subprocess, sys\n"
             "os.chdir(sys.argv[1])\n"
             "subprocess.run(sys.argv[2:], check=True)\n"
             "print(os.getcwd(), sorted(os.listdir('.')))\n")
    r = subprocess.run([sys.executable, "-c", probe, str(m.mnt / "d"), *_cmd(), "refresh",
                        str(m.mnt), str(m.mnt / "d")], env=_env(m), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{m.mnt / 'd'} ['f', 'later']\n"


def _cmd() -> list[str]:
    from tests.support.mount import pysshfs_cmd

    return pysshfs_cmd()


def _env(m: Mount) -> dict[str, str]:
    from tests.support.mount import pysshfs_env

    return pysshfs_env(m.home)


def test_the_socket_is_private_and_goes_at_unmount(runtime_dir: Path,
                                                   mounter: Mounter) -> None:
    m = mounter()
    path = sock_of(m)
    assert path.parent == runtime_dir / "pysshfs"
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
    m.unmount()
    assert not os.path.lexists(path)
    assert status_json(m) == []


def test_a_stale_socket_is_replaced(runtime_dir: Path, mounter: Mounter) -> None:
    """A crashed daemon leaves its socket behind: the next mount there takes the name,
    and status skips leftovers quietly."""
    mnt = mounter.new_mountpoint()
    d = runtime_dir / "pysshfs"
    d.mkdir(mode=0o700)
    stale = d / control.socket_name(str(mnt))
    other = d / control.socket_name("/nowhere/else")
    for path in (stale, other):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.close()  # bound, never listening: what a killed daemon leaves
        assert control.is_stale(path)
    m = mounter(mnt=mnt)
    assert sock_of(m) == stale and not control.is_stale(stale)
    [s] = status_json(m)
    assert s["mountpoint"] == str(mnt)


def test_garbage_on_the_socket_gets_errors(runtime_dir: Path, mounter: Mounter) -> None:
    m = mounter()
    (m.root / "f").write_bytes(b"still here")
    path = sock_of(m)
    for data, expect in [
        (b"garbage\n", "not a JSON request"),
        (b"[1, 2]\n", 'an object with an "op"'),
        (b'{"op": "format-disk"}\n', "unknown op"),
        (b'{"op": "refresh", "paths": "/etc"}\n', "list of strings"),
        (b'{"op": "refresh", "paths": ["relative"]}\n', "not a path inside the mount"),
        (b"\xff\xfe\x00\n", "not a JSON request"),
        (b"x" * 200_000, "larger than"),
    ]:
        reply = raw_request(path, data)
        assert reply["ok"] is False and expect in reply["error"], (data[:40], reply)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # says nothing, leaves
        s.connect(str(path))
    assert raw_request(path, b'{"op": "status"}\n')["ok"] is True
    assert (m.mnt / "f").read_bytes() == b"still here"
    [s] = status_json(m)
    assert s["state"] == "connected" and s["pid"] == m.pid


def test_another_user_is_refused(runtime_dir: Path, mounter: Mounter,
                                 local_accounts: list[LocalUser]) -> None:
    """The socket's mode keeps others out; were it opened up, its peer check still does."""
    m = mounter()
    path = sock_of(m)
    alice = local_accounts[0]
    probe = ("import json, socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             "    s.connect(sys.argv[1])\n"
             "except OSError as e:\n"
             "    print('connect:', e.__class__.__name__); sys.exit(0)\n"
             "s.sendall(b'{\"op\": \"status\"}\\n'); s.shutdown(socket.SHUT_WR)\n"
             "print('reply:', s.recv(65536).decode())\n")
    r = alice.run(["/usr/bin/python3", "-c", probe, str(path)])
    assert r.stdout.strip() == "connect: PermissionError", r.stdout + r.stderr

    runtime_dir.chmod(0o711)
    path.parent.chmod(0o711)
    path.chmod(0o666)
    r = alice.run(["/usr/bin/python3", "-c", probe, str(path)])
    assert r.stdout.startswith("reply: "), r.stdout + r.stderr
    reply = json.loads(r.stdout[len("reply: "):])
    assert reply == {"ok": False, "error": "permission denied: not the mounting user"}
    assert status_json(m)[0]["state"] == "connected"  # and we, the owner, still are


def test_an_unchanged_file_is_not_read_again_with_kernel_cache(runtime_dir: Path,
                                                               mounter: Mounter) -> None:
    """The check on open costs no data when nothing changed: with kernel_cache the pages
    stay, and a second read of the file moves no file bytes over the link."""
    m = mounter(["-o", "cache_timeout=600,kernel_cache"])
    data = os.urandom(500_000)
    (m.root / "f").write_bytes(data)
    assert (m.mnt / "f").read_bytes() == data
    before = status_json(m)[0]["bytes_received"]
    assert (m.mnt / "f").read_bytes() == data
    after = status_json(m)[0]["bytes_received"]
    assert after - before < 10_000  # an OPEN + LSTAT + CLOSE, no READ data
    mtime = os.stat(m.root / "f").st_mtime
    (m.root / "f").write_bytes(data[::-1])  # changed: read again, for real
    # (SFTP v3 times are whole seconds: a same-size rewrite within the second is not seen)
    os.utime(m.root / "f", (mtime + 100, mtime + 100))
    assert (m.mnt / "f").read_bytes() == data[::-1]
    assert status_json(m)[0]["bytes_received"] - after > len(data)


def test_status_follows_a_reconnect(runtime_dir: Path, mounter: Mounter, sshd: Sshd,
                                    tmp_path: Path) -> None:
    """While the link is down status says reconnecting, since when and why; then
    connected again, one reconnect counted."""
    proxy = FaultProxy(sshd.port)
    try:
        known_hosts = tmp_path / "known_hosts_proxy"
        kind, key = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {kind} {key}\n")
        m = mounter(["-o", f"Port={proxy.port}", "-o", f"UserKnownHostsFile={known_hosts}"])
        assert status_json(m)[0]["reconnects"] == 0
        proxy.refuse(600)
        cut_at = time.time()
        assert proxy.cut() >= 1

        def down() -> dict[str, Any] | None:
            s = status_json(m)[0]
            return s if s["state"] == "reconnecting" and s["error"] else None

        assert wait_for(down, 30), status_json(m)
        s = status_json(m)[0]
        assert cut_at - 1 <= s["state_since"] <= time.time()
        assert "RECONNECTING since" in pysshfs(m, "status").stdout
        proxy.refuse(0)
        assert wait_for(lambda: status_json(m)[0]["state"] == "connected", 60)
        s = status_json(m)[0]
        assert s["reconnects"] == 1 and s["error"] is None
        (m.root / "after").write_bytes(b"back")
        assert (m.mnt / "after").read_bytes() == b"back"
    finally:
        proxy.refuse(0)
        mounter.cleanup()
        proxy.close()
