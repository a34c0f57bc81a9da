"""Bad input: exit 1, exactly one line on stderr that starts with `pysshfs: ` and names the
problem, no traceback, nothing mounted, no process left. Plus -h and -V."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pysshfs import __version__, options
from tests.support.mount import (
    Mounter,
    is_mounted,
    mount_table,
    pid_alive,
    pids_with_arg,
    run_pysshfs,
    wait_for,
)
from tests.support.sshd import Sshd, free_port, keygen


def fails(mounter: Mounter, args: list[str], mnt: Path, *patterns: str) -> str:
    """Run pysshfs with `args`; check it failed the way a user can act on. The line."""
    r = run_pysshfs(args, mounter.home, timeout=90)
    assert r.returncode == 1, f"exit {r.returncode}, stderr: {r.stderr!r}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {r.stderr!r}"
    line = lines[0]
    assert line.startswith("pysshfs: "), line
    for pattern in patterns:
        assert re.search(pattern, line, re.IGNORECASE), f"{pattern!r} not in {line!r}"
    assert r.stdout == ""
    if mnt.is_dir():
        assert not is_mounted(mnt), f"{mnt} is mounted after a failure"
    assert wait_for(lambda: not [p for p in pids_with_arg(str(mnt)) if pid_alive(p)], 10), \
        f"pysshfs processes left after a failure: {pids_with_arg(str(mnt))}"
    return line


def config_with(sshd: Sshd, path: Path, **overrides: str) -> Path:
    """A copy of the test server's ssh_config with some keywords replaced."""
    lines = []
    for line in sshd.ssh_config.read_text().splitlines():
        key = line.strip().split(" ", 1)[0]
        if key in overrides:
            line = f"  {key} {overrides[key]}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the network and the server --------------------------------------------------------------

def test_connection_refused(mounter: Mounter, sshd: Sshd) -> None:
    mnt, port = mounter.new_mountpoint(), free_port()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), *sshd.client_args(), "-p", str(port),
                    "-o", "ConnectTimeout=10"], mnt, r"refused", str(port))


def test_unresolvable_host(mounter: Mounter, sshd: Sshd) -> None:
    mnt = mounter.new_mountpoint()
    fails(mounter, ["nosuchhost.invalid:/tmp", str(mnt), *sshd.client_args(),
                    "-o", "ConnectTimeout=10"], mnt, r"nosuchhost\.invalid",
          r"resolve|not known|no address|unknown host|name or service|lookup")


def test_authentication_failure(mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    wrong = keygen(tmp_path / "wrong_key")
    cfg = config_with(sshd, tmp_path / "cfg", IdentityFile=str(wrong))
    mnt = mounter.new_mountpoint()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), "-F", str(cfg)], mnt,
          r"auth|permission denied")


def test_unknown_host_key(mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    cfg = config_with(sshd, tmp_path / "cfg", UserKnownHostsFile=str(empty))
    mnt = mounter.new_mountpoint()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), "-F", str(cfg),
                    "-o", "StrictHostKeyChecking=yes"], mnt,
          r"host key", r"unknown|not known|no .*key|not (in|found)|known_hosts|verif")
    assert empty.read_text() == "", "StrictHostKeyChecking=yes must not add the key"


def test_changed_host_key(mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_host_key")
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts_changed"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    cfg = config_with(sshd, tmp_path / "cfg", UserKnownHostsFile=str(known))
    mnt = mounter.new_mountpoint()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), "-F", str(cfg)], mnt,
          r"host key", r"chang|mismatch|does not match|differ|wrong|spoof")


def test_missing_remote_dir(mounter: Mounter, sshd: Sshd) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    fails(mounter, [f"testhost:{root}/nope", str(mnt), *sshd.client_args()], mnt,
          r"nope", r"no such|does not exist|not found")


def test_remote_path_is_a_file(mounter: Mounter, sshd: Sshd) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    (root / "afile").write_text("x")
    fails(mounter, [f"testhost:{root}/afile", str(mnt), *sshd.client_args()], mnt,
          r"afile", r"not a directory")


# --- the mountpoint --------------------------------------------------------------------------

def test_mountpoint_missing(mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    mnt = tmp_path / "no" / "such" / "dir"
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), *sshd.client_args()], mnt,
          re.escape(str(mnt)), r"does not exist|no such")


def test_mountpoint_is_a_file(mounter: Mounter, sshd: Sshd, tmp_path: Path) -> None:
    mnt = tmp_path / "plainfile"
    mnt.write_text("x")
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), *sshd.client_args()], mnt,
          r"plainfile", r"not a directory")


def test_mountpoint_already_mounted(mounter: Mounter, sshd: Sshd) -> None:
    first = mounter()
    before = [row for row in mount_table() if row[0] == str(first.mnt)]
    r = run_pysshfs([f"testhost:{sshd.root}", str(first.mnt), *sshd.client_args()],
                    mounter.home, timeout=90)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pysshfs: "), r.stderr
    assert re.search(r"already", lines[0], re.IGNORECASE), lines[0]
    assert [row for row in mount_table() if row[0] == str(first.mnt)] == before
    (first.mnt / "still").write_text("fine")  # the first mount is untouched
    assert (first.root / "still").read_text() == "fine"


# --- the command line ------------------------------------------------------------------------

def test_user_at_host_without_colon(mounter: Mounter, sshd: Sshd) -> None:
    mnt = mounter.new_mountpoint()
    line = fails(mounter, ["user@host", str(mnt), *sshd.client_args()], mnt, r"user@host")
    assert "user@host:" in line, f"no hint to add the colon: {line}"


def test_unknown_o_option(mounter: Mounter, sshd: Sshd) -> None:
    mnt = mounter.new_mountpoint()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), *sshd.client_args(),
                    "-o", "rw,bogus_option=3"], mnt, r"bogus_option")


def test_unknown_dash_option(mounter: Mounter, sshd: Sshd) -> None:
    mnt = mounter.new_mountpoint()
    fails(mounter, ["--frobnicate", f"testhost:{sshd.root}", str(mnt), *sshd.client_args()],
          mnt, r"--frobnicate")


def test_bad_option_value(mounter: Mounter, sshd: Sshd) -> None:
    mnt = mounter.new_mountpoint()
    fails(mounter, [f"testhost:{sshd.root}", str(mnt), *sshd.client_args(),
                    "-o", "port=abc"], mnt, r"port", r"abc")


@pytest.mark.parametrize("args", [[], ["testhost:/tmp"]], ids=["nothing", "no-mountpoint"])
def test_missing_positionals(mounter: Mounter, args: list[str]) -> None:
    mnt = mounter.new_mountpoint()
    fails(mounter, args, mnt, r"usage|missing|mountpoint")


def test_version(mounter: Mounter) -> None:
    r = run_pysshfs(["-V"], mounter.home)
    assert r.returncode == 0, r.stderr
    assert __version__ in r.stdout
    assert "pysshfs" in r.stdout
    r2 = run_pysshfs(["--version"], mounter.home)
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_help_lists_the_options(mounter: Mounter) -> None:
    r = run_pysshfs(["-h"], mounter.home)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    text = r.stdout
    assert "host:[dir] mountpoint" in text
    for flag in ("-o", "-p", "-F", "-f", "-d", "-s", "-C", "-h", "-V"):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", text, re.MULTILINE), flag
    # generated from the one option table: every row is there
    for opt in options.OPTIONS:
        assert re.search(rf"-o {re.escape(opt.name)}\b", text), opt.name
    for name in ("reconnect", "IdentityFile", "sftp_server", "idmap", "follow_symlinks",
                 "allow_other", "uid", "gid", "umask", "max_read", "fsname", "subtype"):
        assert name in text
    assert run_pysshfs(["--help"], mounter.home).stdout == text
