"""ssh_config against real sshd: -o overrides, Include, Match, the dev-environment entry,
one session only, no agent forwarding, connection errors."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time

import paramiko
import pytest

from pysshfs.errors import MountError
from pysshfs.ssh import ConnectRequest, connect
from tests.support import sshkit
from tests.support.sshd import Sshd, free_port, start_sshd

DEVENV_USER = "a332139d39b89a241400013700e665a3/fairydirtenvd"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "never")
    return home


@pytest.fixture
def sshd(tmp_path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def debug_sshd(tmp_path):
    server = start_sshd(tmp_path / "dbg", extra_config=["LogLevel DEBUG1"])
    yield server
    server.stop()


def reach_lines(s: Sshd, identity=None) -> list[str]:  # type: ignore[no-untyped-def]
    return ["HostName 127.0.0.1", f"Port {s.port}", f"User {s.user}",
            f"IdentityFile {identity or s.client_key}", "IdentitiesOnly yes",
            f"UserKnownHostsFile {s.known_hosts}", "StrictHostKeyChecking yes", "BatchMode yes"]


def test_command_line_options_override_config(sshd, tmp_path):
    bogus = tmp_path / "bogus_known_hosts"
    bogus.write_text("")
    cfg = sshkit.client_config(sshd, known_hosts=bogus, lines=["User nobody-at-all"])
    with pytest.raises(MountError):
        connect(ConnectRequest(host="testhost", config_file=str(cfg)))
    req = ConnectRequest(host="testhost", config_file=str(cfg), options={
        "UserKnownHostsFile": str(sshd.known_hosts), "User": sshd.user})
    with connect(req) as conn:
        assert conn.resolved.user == sshd.user
    assert f"Accepted publickey for {sshd.user}" in sshd.log_text()


def test_user_at_host_and_port_from_command_line(sshd, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host 127.0.0.1\n  Port 1\n  User nobody\n" + "".join(
        f"  {line}\n" for line in reach_lines(sshd)[3:]))
    # -p and user@ beat the file's Port/User? No: in ssh, user@host beats the file but
    # ConnectRequest.port comes from -p, which also beats it.
    with connect(ConnectRequest(host="127.0.0.1", user=sshd.user, port=sshd.port,
                                config_file=str(cfg))) as conn:
        assert (conn.resolved.user, conn.resolved.port) == (sshd.user, sshd.port)


def test_include_relative_to_dot_ssh(sshd, isolated_home):
    conf_d = isolated_home / ".ssh" / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-test.conf").write_text(
        "Host viainclude\n" + "".join(f"  {line}\n" for line in reach_lines(sshd)))
    (conf_d / "20-other.conf").write_text("Host viainclude\n  Port 1\n")  # later: loses
    (isolated_home / ".ssh" / "config").write_text("Include conf.d/*.conf\n")
    with connect(ConnectRequest(host="viainclude")) as conn:  # default files, no -F
        assert conn.resolved.port == sshd.port


def test_match_blocks(sshd, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text(
        "Match originalhost other\n  Port 1\n"
        "Match host matched exec \"test -d /\"\n"
        + "".join(f"  {line}\n" for line in reach_lines(sshd))
        + "Match all\n  Port 2\n")
    with connect(ConnectRequest(host="matched", config_file=str(cfg))) as conn:
        assert conn.resolved.port == sshd.port
    cfg.write_text(
        "Match host matched exec false\n  Port 1\n"
        "Match localuser " + sshd.user + " !host other\n"
        + "".join(f"  {line}\n" for line in reach_lines(sshd)))
    with connect(ConnectRequest(host="matched", config_file=str(cfg))) as conn:
        assert conn.resolved.port == sshd.port


def test_no_more_sessions_sent_and_no_agent_forwarded(debug_sshd, tmp_path, monkeypatch):
    s = debug_sshd
    key = sshkit.new_key(s.workdir, "id_agent")
    sshkit.authorize(s, key)
    with sshkit.ssh_agent(s.workdir, key) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", sock)
        cfg = sshkit.client_config(s, identity=key, lines=["ForwardAgent yes"])
        with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
            chan = conn.open_sftp_channel()
            assert sshkit.wait_for(lambda: "no-more-sessions@openssh.com" in s.log_text())
            with pytest.raises(paramiko.SSHException):
                conn.transport.open_session(timeout=10)  # the server must refuse it now
            chan.close()
    log = s.log_text()
    assert "rtype no-more-sessions@openssh.com want_reply 0" in log
    assert "auth-agent-req" not in log
    assert "subsystem: exec() " in log or "subsystem request for sftp" in log, log


def test_sftp_server_command(sshd):
    from tests.support.sshd import sftp_server_path

    with connect(ConnectRequest(host="testhost", config_file=str(sshd.ssh_config))) as conn:
        conn.open_sftp_channel(sftp_server=sftp_server_path()).close()


def _devenv_config(s: Sshd, tmp_path, user: str):  # type: ignore[no-untyped-def]
    """The issue's dev-environment entry, verbatim but for the port, key path and user."""
    keydir = tmp_path / "with space" / ".config" / "envd"
    keydir.mkdir(parents=True, exist_ok=True)
    key = sshkit.new_key(keydir, "id_rsa_envd", "rsa")
    sshkit.authorize(s, key)
    cfg = tmp_path / "devenv_config"
    cfg.write_text(
        "Host fairydirtenvd\n"
        "  ForwardAgent yes\n"
        "  PubkeyAcceptedKeyTypes +ssh-rsa\n"
        "  HostKeyAlgorithms +ssh-rsa\n"
        "  HostName localhost\n"
        f"  Port {s.port}\n"
        "  UserKnownHostsFile /dev/null\n"
        f"  IdentityFile \"{key}\"\n"
        "  StrictHostKeyChecking no\n"
        f"  User {user}\n")
    return cfg


def test_devenv_entry_user_name_arrives_unchanged(tmp_path):
    s = start_sshd(tmp_path / "devenv", extra_config=["LogLevel DEBUG1"])
    try:
        cfg = _devenv_config(s, tmp_path, DEVENV_USER)
        with pytest.raises(MountError) as e:
            connect(ConnectRequest(host="fairydirtenvd", config_file=str(cfg)))
        assert e.value.errno == errno.EACCES
        assert str(e.value).startswith(f"{DEVENV_USER}@fairydirtenvd:{s.port}: "
                                       "authentication failed")
        # sshd reads "name/role": its DEBUG1 log shows the whole name as it arrived.
        assert f"userauth-request for user {DEVENV_USER} service ssh-connection" in s.log_text()
    finally:
        s.stop()


def test_devenv_entry_with_valid_user(tmp_path):
    s = start_sshd(tmp_path / "devenv")
    try:
        cfg = _devenv_config(s, tmp_path, s.user)
        with connect(ConnectRequest(host="fairydirtenvd", config_file=str(cfg))) as conn:
            conn.open_sftp_channel().close()
        assert f"Accepted publickey for {s.user}" in s.log_text()
        assert "RSA SHA256:" in s.log_text()
    finally:
        s.stop()


def test_connection_refused():
    port = free_port()
    with pytest.raises(MountError) as e:
        connect(ConnectRequest(host="127.0.0.1", port=port, config_file="none"))
    assert e.value.errno == errno.ECONNREFUSED
    assert str(e.value) == f"127.0.0.1:{port}: connection refused (is sshd running on that port?)"


def test_unknown_host_name():
    with pytest.raises(MountError) as e:
        connect(ConnectRequest(host="no-such-host.invalid", config_file="none"))
    assert e.value.errno == errno.EHOSTUNREACH
    assert str(e.value) == "no-such-host.invalid: name or service not known (check the host name)"


def test_connect_timeout_on_silent_server():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(MountError) as e:
            connect(ConnectRequest(host="127.0.0.1", port=port, config_file="none",
                                   options={"ConnectTimeout": "1"}))
        assert e.value.errno == errno.ETIMEDOUT
        assert time.monotonic() - started < 10
    finally:
        listener.close()


def test_server_alive_closes_dead_link(sshd):
    from tests.support.faultproxy import FaultProxy

    proxy = FaultProxy(sshd.port)
    try:
        kh = sshd.workdir / "kh_proxy"
        kh.write_text(sshd.known_hosts.read_text().replace(f":{sshd.port} ", f":{proxy.port} "))
        req = ConnectRequest(host="testhost", config_file=str(sshd.ssh_config), port=proxy.port,
                             options={"ServerAliveInterval": "1", "ServerAliveCountMax": "2",
                                      "UserKnownHostsFile": str(kh)})
        conn = connect(req)
        assert conn.alive
        proxy.blackhole(True)
        assert sshkit.wait_for(lambda: not conn.alive, timeout=15)
        conn.close()
    finally:
        proxy.close()


def test_unused_keywords_are_ignored(sshd, tmp_path, caplog):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host testhost\n  LocalForward 8080 localhost:80\n  VisualHostKey yes\n"
                   "  SomeFutureKeyword whatever\n"
                   + "".join(f"  {line}\n" for line in reach_lines(sshd)))
    with caplog.at_level("DEBUG", logger="pysshfs.ssh"):
        connect(ConnectRequest(host="testhost", config_file=str(cfg))).close()
    assert any("somefuturekeyword" in r.getMessage() for r in caplog.records)


def test_identity_file_tokens(sshd, tmp_path, isolated_home):
    keys = isolated_home / ".ssh" / "keys"
    keys.mkdir()
    shutil.copy(sshd.client_key, keys / f"{sshd.user}@127.0.0.1")
    os.chmod(keys / f"{sshd.user}@127.0.0.1", 0o600)
    cfg = tmp_path / "cfg"
    lines = reach_lines(sshd)
    lines[3] = "IdentityFile ~/.ssh/keys/%r@%h"
    cfg.write_text("Host testhost\n" + "".join(f"  {line}\n" for line in lines))
    connect(ConnectRequest(host="testhost", config_file=str(cfg))).close()


def test_devenv_entry_mounts(tmp_path, isolated_home):
    """The issue's entry, mounted with the real CLI (`pysshfs fairydirtenvd:DIR mnt`)."""
    import subprocess
    import sys

    s = start_sshd(tmp_path / "devenv")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = None
    try:
        cfg = _devenv_config(s, tmp_path, s.user)
        (s.root / "hello.txt").write_text("from the server\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pysshfs", f"fairydirtenvd:{s.root}", str(mnt),
             "-F", str(cfg), "-f"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=sshkit.REPO, env={**os.environ, "HOME": str(isolated_home)})
        assert sshkit.wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, 30)
        assert os.path.ismount(mnt), proc.communicate(timeout=10)
        assert (mnt / "hello.txt").read_text() == "from the server\n"
        (mnt / "back.txt").write_text("from the client\n")
        assert (s.root / "back.txt").read_text() == "from the client\n"
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        s.stop()
