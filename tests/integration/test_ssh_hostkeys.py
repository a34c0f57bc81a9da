"""Host key verification against real sshd: known_hosts forms, CA, changed keys, accept-new."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from pysshfs.errors import MountError
from pysshfs.ssh import ConnectRequest, connect
from pysshfs.ssh.hostkeys import fingerprint
from tests.support import sshkit
from tests.support.sshd import keygen, start_sshd


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "never")
    return home


@pytest.fixture
def sshd(tmp_path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


def host_pub(sshd) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    kind, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    return kind, b64


def connect_with(sshd, known: Path, strict: str, lines: list[str] | None = None,  # type: ignore[no-untyped-def]
                 interactive: bool = False):
    cfg = sshkit.client_config(sshd, "kh_cfg", known_hosts=known, strict=strict, lines=lines)
    return connect(ConnectRequest(host="testhost", config_file=str(cfg),
                                  interactive=interactive))


def test_plain_entry(sshd):
    connect_with(sshd, sshd.known_hosts, "yes").close()


def test_hashed_entry(sshd, tmp_path):
    known = tmp_path / "hashed"
    known.write_text(sshd.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True,
                   capture_output=True)
    text = known.read_text()
    assert text.startswith("|1|") and "127.0.0.1" not in text
    connect_with(sshd, known, "yes").close()


def test_wildcard_entry_and_other_files_ignored(sshd, tmp_path):
    kind, b64 = host_pub(sshd)
    known = tmp_path / "wild"
    other = keygen(tmp_path / "other", "ed25519").with_suffix(".pub").read_text().split()
    known.write_text(f"# comment\n[10.0.0.1]:{sshd.port} {other[0]} {other[1]}\n"
                     f"[127.0.0.?]:* {kind} {b64}\n")
    connect_with(sshd, known, "yes").close()


def test_unknown_host_refused_with_yes(sshd, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(MountError) as e:
        connect_with(sshd, empty, "yes")
    assert e.value.errno == errno.EPERM
    assert str(e.value) == (
        f"[127.0.0.1]:{sshd.port}: host key verification failed: no matching key in {empty} "
        "(connect once with ssh to add it, or pass -o StrictHostKeyChecking=accept-new)")


def test_unknown_host_ask_without_terminal_refused(sshd, tmp_path):
    empty = tmp_path / "empty"
    with pytest.raises(MountError) as e:
        connect_with(sshd, empty, "ask", interactive=False)
    assert e.value.errno == errno.EPERM
    assert "no terminal" in str(e.value)
    assert not empty.exists()


def test_ask_on_terminal_yes_adds_key(sshd, tmp_path, isolated_home):
    known = tmp_path / "asked"
    cfg = sshkit.client_config(sshd, "ask_cfg", known_hosts=known, strict="ask",
                               lines=["BatchMode no"])
    status, out = sshkit.run_connect_on_pty(
        {"host": "testhost", "config_file": str(cfg)},
        [(b"(yes/no/[fingerprint])? ", b"maybe"), (b"Please type 'yes', 'no'", b"yes")],
        env={"HOME": str(isolated_home)})
    kind, b64 = host_pub(sshd)
    import base64
    fp = fingerprint(base64.b64decode(b64))
    assert f"The authenticity of host '[127.0.0.1]:{sshd.port}" in out
    assert f"ED25519 key fingerprint is {fp}." in out
    assert "RESULT OK" in out, out
    assert known.read_text().split()[1:3] == [kind, b64]


def test_ask_on_terminal_no_refuses(sshd, tmp_path, isolated_home):
    known = tmp_path / "asked"
    cfg = sshkit.client_config(sshd, "ask_cfg", known_hosts=known, strict="ask",
                               lines=["BatchMode no"])
    status, out = sshkit.run_connect_on_pty(
        {"host": "testhost", "config_file": str(cfg)},
        [(b"(yes/no/[fingerprint])? ", b"no")], env={"HOME": str(isolated_home)})
    assert "RESULT ERR" in out and "did not accept" in out
    assert not known.exists()


@pytest.mark.parametrize("hashed", [False, True])
def test_accept_new_adds_then_verifies(sshd, tmp_path, hashed):
    known = tmp_path / "new" / "known_hosts"  # directory created on demand
    lines = ["HashKnownHosts yes"] if hashed else ["HashKnownHosts no"]
    connect_with(sshd, known, "accept-new", lines).close()
    entry = known.read_text().split()
    kind, b64 = host_pub(sshd)
    assert entry[1:3] == [kind, b64]
    if hashed:
        assert entry[0].startswith("|1|")
    else:
        assert entry[0] == f"[127.0.0.1]:{sshd.port}"
    # The added key is now what is checked: strict mode passes.
    connect_with(sshd, known, "yes").close()
    assert len(known.read_text().splitlines()) == 1


def _changed_known_hosts(sshd, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    old = keygen(tmp_path / "oldhost", "ed25519").with_suffix(".pub").read_text().split()
    known = tmp_path / "changed"
    known.write_text(f"otherhost ssh-ed25519 {old[1]}\n"
                     f"[127.0.0.1]:{sshd.port} {old[0]} {old[1]}\n")
    return known


@pytest.mark.parametrize("strict", ["yes", "accept-new", "ask"])
def test_changed_key_refused_naming_file_and_line(sshd, tmp_path, strict):
    known = _changed_known_hosts(sshd, tmp_path)
    before = known.read_text()
    with pytest.raises(MountError) as e:
        connect_with(sshd, known, strict)
    msg = str(e.value)
    assert e.value.errno == errno.EPERM
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in msg
    assert f"{known}:2" in msg and "line 2" in msg
    assert "\n" not in msg
    assert known.read_text() == before


def test_changed_key_accepted_only_with_no(sshd, tmp_path, caplog):
    known = _changed_known_hosts(sshd, tmp_path)
    with caplog.at_level("WARNING", logger="pysshfs.ssh"):
        connect_with(sshd, known, "no").close()
    assert any("CHANGED" in r.getMessage() for r in caplog.records)


def test_revoked_key_refused_even_with_no(sshd, tmp_path):
    kind, b64 = host_pub(sshd)
    known = tmp_path / "revoked"
    known.write_text(f"@revoked * {kind} {b64}\n[127.0.0.1]:{sshd.port} {kind} {b64}\n")
    with pytest.raises(MountError) as e:
        connect_with(sshd, known, "no")
    assert "revoked" in str(e.value) and f"{known}:1" in str(e.value)


def _host_cert_server(tmp_path, principals):  # type: ignore[no-untyped-def]
    work = tmp_path / "hostca"
    work.mkdir(exist_ok=True)
    ca = sshkit.new_key(work, "host_ca")
    s = start_sshd(tmp_path / "certsrv")  # creates the host key
    s.stop()
    cert = sshkit.sign_cert(ca, s.host_key.with_suffix(".pub"), identity="testhost-key",
                            principals=principals, host=True)
    s.extra_config = [f"HostCertificate {cert}"]
    s.start()
    return s, ca


def test_host_certificate_trusted_via_cert_authority(tmp_path):
    s, ca = _host_cert_server(tmp_path, ["127.0.0.1"])
    try:
        kind, b64 = Path(f"{ca}.pub").read_text().split()[:2]
        known = tmp_path / "ca_known"
        known.write_text(f"@cert-authority [127.0.0.1]:* {kind} {b64}\n")
        conn = connect_with(s, known, "yes")
        assert conn.transport.host_key_type.endswith("-cert-v01@openssh.com")
        conn.close()
        assert known.read_text().count("\n") == 1  # nothing added
    finally:
        s.stop()


def test_host_certificate_wrong_principal_refused(tmp_path):
    s, ca = _host_cert_server(tmp_path, ["some.other.host"])
    try:
        kind, b64 = Path(f"{ca}.pub").read_text().split()[:2]
        known = tmp_path / "ca_known"
        known.write_text(f"@cert-authority * {kind} {b64}\n")
        with pytest.raises(MountError) as e:
            connect_with(s, known, "yes")
        assert "not valid for '127.0.0.1'" in str(e.value)
    finally:
        s.stop()


def test_host_certificate_untrusted_ca_falls_back_to_plain_key(tmp_path):
    s, _ca = _host_cert_server(tmp_path, ["127.0.0.1"])
    try:
        # No @cert-authority line: the plain key in known_hosts is what counts.
        connect_with(s, s.known_hosts, "yes").close()
    finally:
        s.stop()


def test_host_key_alias(sshd, tmp_path):
    kind, b64 = host_pub(sshd)
    known = tmp_path / "alias"
    known.write_text(f"my-alias {kind} {b64}\n")
    connect_with(sshd, known, "yes", ["HostKeyAlias my-alias"]).close()


def test_check_host_ip_adds_address_entry(sshd, tmp_path):
    kind, b64 = host_pub(sshd)
    known = tmp_path / "byname"
    known.write_text(f"[localhost]:{sshd.port} {kind} {b64}\n")
    cfg = sshkit.client_config(sshd, "ip_cfg", known_hosts=known,
                               lines=["HostName localhost", "CheckHostIP yes",
                                      "AddressFamily inet"])
    connect(ConnectRequest(host="testhost", config_file=str(cfg))).close()
    assert known.read_text().splitlines()[1] == f"[127.0.0.1]:{sshd.port} {kind} {b64}"


def test_ask_through_askpass_confirm(sshd, tmp_path, monkeypatch):
    askpass = tmp_path / "confirm.sh"
    askpass.write_text(f"#!/bin/sh\necho \"$SSH_ASKPASS_PROMPT|$1\" > {tmp_path}/asked\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    known = tmp_path / "k"
    connect_with(sshd, known, "ask", ["BatchMode no"], interactive=True).close()
    assert (tmp_path / "asked").read_text().startswith("confirm|The authenticity of host")
    assert host_pub(sshd)[1] in known.read_text()
