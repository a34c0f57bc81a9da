"""ProxyJump chains and ProxyCommand against real sshd instances."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from pysshfs.errors import MountError
from pysshfs.ssh import ConnectRequest, connect
from tests.support.mount import wait_for
from tests.support.sshd import Sshd, start_sshd

RELAY = Path(__file__).resolve().parents[1] / "support" / "tcprelay.py"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "never")


@pytest.fixture
def servers(tmp_path):
    started = []
    def make(name: str) -> Sshd:  # type: ignore[no-untyped-def]
        s = start_sshd(tmp_path / name, extra_config=["LogLevel DEBUG1"])
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()


def block(name: str, s: Sshd, *extra: str) -> str:
    lines = [f"Host {name}", "  HostName 127.0.0.1", f"  Port {s.port}", f"  User {s.user}",
             f"  IdentityFile {s.client_key}", "  IdentitiesOnly yes",
             f"  UserKnownHostsFile {s.known_hosts}", "  StrictHostKeyChecking yes",
             "  BatchMode yes", *[f"  {e}" for e in extra]]
    return "\n".join(lines) + "\n"


def forwarded(s: Sshd, port: int) -> bool:
    return f"server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {port}" in s.log_text()  # noqa: E501


def test_proxyjump_one_hop(servers, tmp_path):
    jump, target = servers("jump"), servers("target")
    cfg = tmp_path / "cfg"
    cfg.write_text(block("target", target, "ProxyJump jump") + block("jump", jump))
    with connect(ConnectRequest(host="target", config_file=str(cfg))) as conn:
        conn.open_sftp_channel().close()
        assert conn.alive
    assert forwarded(jump, target.port), jump.log_text()[-3000:]
    assert "Accepted publickey" in target.log_text()


def test_proxyjump_chain_with_user_and_port(servers, tmp_path):
    a, b, target = servers("a"), servers("b"), servers("target")
    # Hops named by user@host:port; their keys and known_hosts come from Host 127.0.0.1
    # blocks matched by the hop's host name.
    known = tmp_path / "all_known"
    known.write_text(a.known_hosts.read_text() + b.known_hosts.read_text()
                     + target.known_hosts.read_text())
    cfg = tmp_path / "cfg"
    cfg.write_text(
        block("target", target,
              f"ProxyJump {a.user}@127.0.0.1:{a.port},ssh://{b.user}@127.0.0.1:{b.port}")
        + "Host 127.0.0.1\n"
        f"  IdentityFile {a.client_key}\n  IdentityFile {b.client_key}\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  BatchMode yes\n")
    with connect(ConnectRequest(host="target", config_file=str(cfg))) as conn:
        conn.open_sftp_channel().close()
    assert forwarded(a, b.port)
    assert forwarded(b, target.port)


def test_proxyjump_none_on_command_line(servers, tmp_path):
    jump, target = servers("jump"), servers("target")
    cfg = tmp_path / "cfg"
    cfg.write_text(block("target", target, "ProxyJump jump") + block("jump", jump))
    with connect(ConnectRequest(host="target", config_file=str(cfg),
                                options={"ProxyJump": "none"})):
        pass
    assert "server_request_direct_tcpip" not in jump.log_text()


def test_proxyjump_unreachable_target_is_one_line(servers, tmp_path):
    from tests.support.sshd import free_port

    jump = servers("jump")
    port = free_port()
    cfg = tmp_path / "cfg"
    cfg.write_text(f"Host target\n  HostName 127.0.0.1\n  Port {port}\n  ProxyJump jump\n"
                   + block("jump", jump))
    with pytest.raises(MountError) as e:
        connect(ConnectRequest(host="target", config_file=str(cfg)))
    assert "jump host" in str(e.value) and "\n" not in str(e.value)


def test_proxycommand(servers, tmp_path):
    target = servers("target")
    marker = tmp_path / "ran"
    cfg = tmp_path / "cfg"
    cfg.write_text(block("target", target,
                         f"ProxyCommand {sys.executable} {RELAY} %h %p {marker}"))
    with connect(ConnectRequest(host="target", config_file=str(cfg))) as conn:
        conn.open_sftp_channel().close()
    assert marker.read_text() == f"127.0.0.1:{target.port}\n"


def test_proxycommand_stderr_is_logged_not_inherited(servers, tmp_path, caplog):
    target = servers("target")
    cfg = tmp_path / "cfg"
    cfg.write_text(block("target", target,
                         f"ProxyCommand sh -c 'printf \"hi\\033[2J\\\\n\" >&2; "
                         f"exec {sys.executable} {RELAY} %h %p {tmp_path / 'ran'}'"))
    with caplog.at_level(logging.WARNING, logger="pysshfs.ssh.proxy"), \
            connect(ConnectRequest(host="target", config_file=str(cfg))) as conn:
        conn.open_sftp_channel().close()
        assert wait_for(lambda: any("ProxyCommand: hi" in r.getMessage()
                                    for r in caplog.records), 10), caplog.text
    line = next(r.getMessage() for r in caplog.records if "ProxyCommand: hi" in r.getMessage())
    assert line == "ProxyCommand: hi\\x1b[2J", line  # escaped, one line


def test_proxycommand_failing(servers, tmp_path):
    target = servers("target")
    cfg = tmp_path / "cfg"
    cfg.write_text(block("target", target, "ProxyCommand false"))
    with pytest.raises(MountError) as e:
        connect(ConnectRequest(host="target", config_file=str(cfg), options={
            "ConnectTimeout": "5"}))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("via", ["ProxyJump", "ProxyCommand"])
def test_files_go_through_a_jump_host_or_a_proxy_command(servers, tmp_path, mounter, via):
    """Requests and replies over a stream that is no TCP socket of ours (a jump host's
    channel, a command's pipes): the SFTP packets go through paramiko's own socket code."""
    target = servers("target")
    if via == "ProxyJump":
        text = block("target", target, "ProxyJump jump") + block("jump", servers("jump"))
    else:
        text = block("target", target,
                     f"ProxyCommand {sys.executable} {RELAY} %h %p {tmp_path / 'ran'}")
    cfg = tmp_path / "cfg"
    cfg.write_text(text)
    root = target.root / "via"
    root.mkdir()
    served = os.urandom(3 << 20)
    (root / "served.bin").write_bytes(served)
    mnt = mounter.new_mountpoint()
    m = mounter(args=[f"target:{root}", str(mnt), "-F", str(cfg)], root=root, mnt=mnt)

    assert (m.mnt / "served.bin").read_bytes() == served
    written = os.urandom(3 << 20)
    (m.mnt / "written.bin").write_bytes(written)
    assert (root / "written.bin").read_bytes() == written
    names = {f"n{i:02d}" for i in range(50)}
    for name in names:
        (m.mnt / name).write_text(name)
    assert names <= set(os.listdir(m.mnt))
    assert all((root / n).read_text() == n for n in names)
    m.unmount()
