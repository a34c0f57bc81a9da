"""What a hostile or broken server sends costs an error and a log line, never the machine's
memory, a hidden directory, a driven terminal or a command run locally (issue 14, 6-9).

The server is the real sshd running the real sftp-server behind tests/support/badsftp.py,
which changes one thing per mode; results are checked against the served directory.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

import pytest

from tests.integration.test_cli_errors import fails
from tests.support import badsftp
from tests.support.mount import Mount, Mounter, run_pysshfs
from tests.support.sshd import Sshd

RSS_LIMIT_KB = 200 * 1024
HANG_GUARD = 120.0  # seconds any one call may take before the test calls it hung
RAW_CONTROLS = ("\x1b", "\x07", "\r")


def peak_rss_kb(pid: int) -> int:
    """The most resident memory the process ever had (VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


def bad_server(mode: str, *args: object) -> list[str]:
    return ["-o", f"sftp_server={badsftp.command(mode, *args)}"]


def within(seconds: float, fn, *args):  # type: ignore[no-untyped-def]
    """fn(*args) in a thread: its result or exception, or a failure if it hangs."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__}{args} still running after {seconds}s"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


def served_tree(mounter: Mounter) -> Path:
    root = mounter.new_root()
    (root / "file.txt").write_bytes(b"real content\n")
    (root / "sub").mkdir()
    (root / "sub" / "inner.bin").write_bytes(bytes(range(256)) * 16)
    return root


# --- item 6: bounded memory ------------------------------------------------------------------

@pytest.mark.slow  # ~15 s: a million entries must arrive before the limit
def test_endless_listing_fails_cleanly_and_memory_stays_bounded(mounter: Mounter) -> None:
    root = served_tree(mounter)
    m = mounter(bad_server("endless-readdir"), foreground=True, root=root)
    assert m.pid is not None
    with pytest.raises(OSError) as info:
        within(HANG_GUARD, os.listdir, m.mnt)
    assert info.value.errno == errno.EOVERFLOW
    peak = peak_rss_kb(m.pid)
    assert peak < RSS_LIMIT_KB, f"daemon peaked at {peak} KiB"
    # the rest of the mount still works, byte for byte
    assert within(HANG_GUARD, (m.mnt / "file.txt").read_bytes) == b"real content\n"
    assert within(HANG_GUARD, (m.mnt / "sub" / "inner.bin").read_bytes) == \
        (root / "sub" / "inner.bin").read_bytes()
    lines = [ln for ln in m.stderr_text().splitlines() if "listing of" in ln]
    assert len(lines) == 1 and str(root) in lines[0], m.stderr_text()[-2000:]
    m.unmount()


@pytest.mark.slow  # ~10 s: 2,000 readlinks of 120 KB each
def test_overlong_symlink_targets_are_refused_and_not_kept(mounter: Mounter) -> None:
    root = mounter.new_root()
    for i in range(2000):
        os.symlink(f"target{i}", root / f"l{i}")
    m = mounter(bad_server("long-link", 120 * 1024), root=root)
    assert m.pid is not None

    def read_all() -> list[int]:
        codes = []
        for i in range(2000):
            try:
                os.readlink(m.mnt / f"l{i}")
                codes.append(0)
            except OSError as exc:
                codes.append(exc.errno or 0)
        return codes

    assert within(HANG_GUARD, read_all) == [errno.ENAMETOOLONG] * 2000
    peak = peak_rss_kb(m.pid)
    assert peak < RSS_LIMIT_KB, f"daemon peaked at {peak} KiB"
    # a target just short enough still reads
    m.unmount()
    m2 = mounter(bad_server("long-link", 4095), root=root)
    assert within(HANG_GUARD, os.readlink, m2.mnt / "l0") == "t" * 4095
    m2.unmount()


# --- item 7: one bad entry does not hide a directory ------------------------------------------

def test_impossible_names_are_skipped_and_the_rest_listed(mounter: Mounter) -> None:
    root = mounter.new_root()
    names = ["plain", "with space", "-dash", ".hidden", "ünïcödé", "x" * 255, "a\\b"]
    for name in names:
        (root / name).write_bytes(name.encode())
    (root / "sub").mkdir()
    (root / "sub" / "deep").write_bytes(b"deep")
    m = mounter(bad_server("bad-names") + ["-o", "dir_cache=no"], foreground=True, root=root)
    for _ in range(3):  # listed again and again: one warning, not one per listing
        assert sorted(within(HANG_GUARD, os.listdir, m.mnt)) == sorted(os.listdir(root))
    assert within(HANG_GUARD, os.listdir, m.mnt / "sub") == ["deep"]
    assert within(HANG_GUARD, (m.mnt / "with space").read_bytes) == b"with space"
    warnings = [ln for ln in m.stderr_text().splitlines() if "no directory can hold" in ln]
    top = [ln for ln in warnings if re.search(re.escape(str(root)) + r": skipped", ln)]
    assert len(top) == 1, warnings
    assert "'a/b'" in top[0] and "'x\\x00y'" in top[0]
    assert len([ln for ln in warnings if f"{root}/sub:" in ln]) == 1, warnings
    m.unmount()


# --- item 8: untrusted strings, untrusted names ---------------------------------------------

def test_server_escape_sequences_never_reach_log_or_terminal(mounter: Mounter,
                                                             sshd: Sshd) -> None:
    root = served_tree(mounter)
    (root / "full").mkdir()
    (root / "full" / "x").write_bytes(b"x")
    m = mounter(bad_server("escapes") + ["-d"], foreground=True, root=root)
    with pytest.raises(FileNotFoundError):
        within(HANG_GUARD, (m.mnt / "missing").read_bytes)
    with pytest.raises(OSError):
        within(HANG_GUARD, os.rmdir, m.mnt / "full")  # a FAILURE status with the message
    assert within(HANG_GUARD, (m.mnt / "file.txt").read_bytes) == b"real content\n"
    m.unmount()
    log = m.stderr_text()
    assert "evil\\x1b[2J\\x1b]0;title\\x07@x" in log  # the extension name, shown escaped
    for raw in RAW_CONTROLS:
        assert raw not in log, f"{raw!r} reached the log"
    # a failing command: the server's message ends up in the one line on stderr
    mnt = mounter.new_mountpoint()
    long_path = "/" + "p" * 5000  # ENAMETOOLONG on the server: BAD_MESSAGE + its message
    r = run_pysshfs([f"testhost:{long_path}", str(mnt), *sshd.client_args(),
                     *bad_server("escapes")], mounter.home, timeout=90)
    assert r.returncode == 1, r.stderr
    assert "forged line" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    for raw in RAW_CONTROLS:
        assert raw not in r.stderr, f"{raw!r} reached the terminal: {r.stderr!r}"


@pytest.mark.parametrize("source", ["h$(touch {marker}):", "u$(touch {marker})@testhost:",
                                    "h`touch {marker}`:", "-oProxyCommand=touch{marker}:"])
def test_shell_code_in_host_or_user_never_runs(mounter: Mounter, tmp_path: Path,
                                               source: str) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ProxyCommand /bin/true %h %n %r\n")
    mnt = mounter.new_mountpoint()
    line = fails(mounter, ["-F", str(config), "--", source.format(marker=marker), str(mnt)],
                 mnt, r"(host|user) name", r"refuses")
    assert not marker.exists(), f"the shell ran the name: {line}"


# --- item 9: allow_other without default_permissions ------------------------------------------

def test_allow_other_without_default_permissions_warns_once(mounter: Mounter) -> None:
    if os.geteuid() != 0:
        pytest.skip("allow_other needs root or user_allow_other in /etc/fuse.conf")
    m = mounter(["-o", "allow_other"])
    assert m.result is not None
    warned = [ln for ln in m.result.stderr.splitlines() if "allow_other" in ln]
    assert len(warned) == 1 and "default_permissions" in warned[0], m.result.stderr
    m.unmount()
    quiet: Mount = mounter(["-o", "allow_other,default_permissions"])
    assert quiet.result is not None and "allow_other" not in quiet.result.stderr
    quiet.unmount()
