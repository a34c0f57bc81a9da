"""Authentication against real sshd instances: keys, agent, passphrases, passwords, certs."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pysshfs.errors import MountError
from pysshfs.ssh import ConnectRequest, connect
from tests.support import sshkit
from tests.support.sshd import Sshd, start_sshd

PASSWORD = "Corr3ct-horse-battery"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the real ~/.ssh or talks to the user's agent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    monkeypatch.delenv("SSH_ASKPASS_REQUIRE", raising=False)
    return home


@pytest.fixture
def sshd(tmp_path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


def server(tmp_path: Path, name: str, extra: list[str]) -> Sshd:
    return start_sshd(tmp_path / name, extra_config=extra)


def accepted_lines(s: Sshd) -> list[str]:
    return [line for line in s.log_text().splitlines() if "Accepted " in line]


def sftp_works(conn) -> None:  # type: ignore[no-untyped-def]
    """The SFTP subsystem answers INIT with VERSION 3 on the channel."""
    import struct

    chan = conn.open_sftp_channel()
    try:
        chan.sendall(struct.pack(">IBI", 5, 1, 3))
        header = b""
        while len(header) < 9:
            chunk = chan.recv(9 - len(header))
            assert chunk, "channel closed before SFTP VERSION"
            header += chunk
        _, kind, version = struct.unpack(">IBI", header)
        assert (kind, version) == (2, 3)
    finally:
        chan.close()


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_publickey_each_key_type(tmp_path, kind):
    extra = ["PubkeyAcceptedAlgorithms rsa-sha2-512"] if kind == "rsa" else []
    s = server(tmp_path, "srv", extra)
    try:
        key = sshkit.new_key(s.workdir, f"id_{kind}", kind)
        sshkit.authorize(s, key)
        cfg = sshkit.client_config(s, identity=key)
        with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
            sftp_works(conn)
            assert conn.resolved.hostname == "127.0.0.1"
            assert conn.resolved.port == s.port
        fp = os.popen(f"ssh-keygen -lf {key}.pub").read().split()[1]
        assert any(fp in line for line in accepted_lines(s)), s.log_text()[-2000:]
    finally:
        s.stop()


def test_agent_key(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_agentonly")
        sshkit.authorize(s, key)
        with sshkit.ssh_agent(s.workdir, key) as sock:
            monkeypatch.setenv("SSH_AUTH_SOCK", sock)
            # No IdentityFile that exists: only the agent can have the key.
            cfg = sshkit.client_config(s, identity=s.workdir / "missing", lines=[
                "IdentitiesOnly no"])
            os.unlink(key)  # the private key now exists only inside the agent
            with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
                sftp_works(conn)
        fp = os.popen(f"ssh-keygen -lf {key}.pub").read().split()[1]
        assert any(fp in line for line in accepted_lines(s))
    finally:
        s.stop()


def test_identity_file_naming_a_public_key_selects_agent_key(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_inagent")
        sshkit.authorize(s, key)
        with sshkit.ssh_agent(s.workdir, key) as sock:
            monkeypatch.setenv("SSH_AUTH_SOCK", sock)
            os.unlink(key)
            cfg = sshkit.client_config(s, identity=Path(f"{key}.pub"))  # IdentitiesOnly yes
            with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
                sftp_works(conn)
    finally:
        s.stop()


def test_identity_agent_none_disables_agent(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_agentonly")
        sshkit.authorize(s, key)
        with sshkit.ssh_agent(s.workdir, key) as sock:
            monkeypatch.setenv("SSH_AUTH_SOCK", sock)
            cfg = sshkit.client_config(s, identity=s.workdir / "missing", lines=[
                "IdentitiesOnly no", "IdentityAgent none"])
            with pytest.raises(MountError) as e:
                connect(ConnectRequest(host="testhost", config_file=str(cfg)))
            assert e.value.errno == errno.EACCES
    finally:
        s.stop()


def test_encrypted_key_passphrase_from_askpass(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_locked", passphrase="open sesame")
        sshkit.authorize(s, key)
        askpass = s.workdir / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho \"$1\" >> {s.workdir}/asked\necho 'open sesame'\n")
        askpass.chmod(0o755)
        monkeypatch.setenv("SSH_ASKPASS", str(askpass))
        monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
        cfg = sshkit.client_config(s, identity=key, lines=["BatchMode no"])
        with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
            sftp_works(conn)
            again = conn.reconnect_request()
        assert "Enter passphrase for key" in (s.workdir / "asked").read_text()
        # Reconnecting uses the key decrypted in memory: no second question.
        (s.workdir / "asked").unlink()
        assert again.interactive is False
        with connect(again) as conn2:
            sftp_works(conn2)
        assert not (s.workdir / "asked").exists()
    finally:
        s.stop()


def test_encrypted_key_passphrase_on_terminal(tmp_path, isolated_home):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_locked", passphrase="open sesame")
        sshkit.authorize(s, key)
        cfg = sshkit.client_config(s, identity=key, lines=["BatchMode no"])
        status, out = sshkit.run_connect_on_pty(
            {"host": "testhost", "config_file": str(cfg)},
            [(b"Enter passphrase for key", b"wrong"),
             (b"Enter passphrase for key", b"open sesame")],
            env={"HOME": str(isolated_home)})
        assert "RESULT OK" in out, out
        assert "open sesame" not in out  # not echoed
        assert out.count("Enter passphrase for key") == 2
    finally:
        s.stop()


def test_encrypted_key_batchmode_never_prompts(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_locked", passphrase="open sesame")
        sshkit.authorize(s, key)
        askpass = s.workdir / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\ntouch {s.workdir}/asked\necho 'open sesame'\n")
        askpass.chmod(0o755)
        monkeypatch.setenv("SSH_ASKPASS", str(askpass))
        monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
        cfg = sshkit.client_config(s, identity=key)  # BatchMode yes
        with pytest.raises(MountError) as e:
            connect(ConnectRequest(host="testhost", config_file=str(cfg)))
        assert e.value.errno == errno.EACCES
        assert not (s.workdir / "asked").exists()
    finally:
        s.stop()


@pytest.fixture
def password_server(tmp_path):
    """sshd with PAM password (and keyboard-interactive) auth, and a throwaway user."""
    with sshkit.throwaway_user(PASSWORD) as user:
        yield user, tmp_path


def _password_sshd(tmp_path: Path, kbd: bool) -> Sshd:
    extra = ["UsePAM yes", "KbdInteractiveAuthentication yes" if kbd
             else "KbdInteractiveAuthentication no",
             "PasswordAuthentication no" if kbd else "PasswordAuthentication yes",
             "LogLevel DEBUG1"]
    return server(tmp_path, "pw", extra)


@pytest.mark.parametrize("kbd", [False, True], ids=["password", "keyboard-interactive"])
def test_password_from_stdin(password_server, kbd, isolated_home):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd)
    try:
        cfg = sshkit.client_config(s, lines=[f"User {user}", "PubkeyAuthentication no"])
        args = {"host": "testhost", "config_file": str(cfg), "password_stdin": True,
                "debug": True}
        r = sshkit.run_connect(args, stdin=(PASSWORD + "\n").encode(),
                               env={"HOME": str(isolated_home)})
        assert r.stdout.decode().startswith(f"OK {user}"), (r.stdout, r.stderr[-3000:])
        method = "keyboard-interactive" if kbd else "password"
        assert any(f"Accepted {method}" in line and user in line
                   for line in accepted_lines(s)), s.log_text()[-3000:]
        assert PASSWORD.encode() not in r.stderr + r.stdout
    finally:
        s.stop()


def test_wrong_password_one_line_error(password_server, isolated_home):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd=False)
    try:
        cfg = sshkit.client_config(s, lines=[f"User {user}"])
        r = sshkit.run_connect({"host": "testhost", "config_file": str(cfg),
                                "password_stdin": True, "debug": True},
                               stdin=b"not-the-password\n", env={"HOME": str(isolated_home)})
        out = r.stdout.decode().strip()
        assert out.startswith(f"ERR {errno.EACCES} {user}@testhost:{s.port}: "
                              "authentication failed"), out
        assert "offered: publickey" in out and "password" in out
        assert "the server accepts: publickey, password" in out
        assert "not-the-password" not in r.stdout.decode() + r.stderr.decode()
        assert len(out.splitlines()) == 1
    finally:
        s.stop()


def test_reconnect_request_reuses_password(password_server, monkeypatch):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd=False)
    try:
        cfg = sshkit.client_config(s, lines=[f"User {user}", "PubkeyAuthentication no"])
        # password_stdin in-process: feed our own stdin from a pipe.
        r, w = os.pipe()
        os.write(w, (PASSWORD + "\n").encode())
        os.close(w)
        saved = os.dup(0)
        os.dup2(r, 0)
        os.close(r)
        try:
            conn = connect(ConnectRequest(host="testhost", config_file=str(cfg),
                                          password_stdin=True))
        finally:
            os.dup2(saved, 0)
            os.close(saved)
        again = conn.reconnect_request()
        conn.close()
        assert PASSWORD not in repr(again)
        with connect(again) as conn2:
            sftp_works(conn2)
        assert sum(f"Accepted password for {user}" in line for line in accepted_lines(s)) == 2
    finally:
        s.stop()


def test_batchmode_password_server_fails_without_prompt(password_server):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd=False)
    try:
        cfg = sshkit.client_config(s, lines=[f"User {user}"])  # BatchMode yes
        with pytest.raises(MountError) as e:
            connect(ConnectRequest(host="testhost", config_file=str(cfg)))
        msg = str(e.value)
        assert e.value.errno == errno.EACCES
        assert "authentication failed" in msg and "the server accepts: publickey, password" in msg
    finally:
        s.stop()


def test_auth_failure_names_what_was_offered(sshd):
    other = sshkit.new_key(sshd.workdir, "id_unknown")
    cfg = sshkit.client_config(sshd, identity=other)
    with pytest.raises(MountError) as e:
        connect(ConnectRequest(host="testhost", config_file=str(cfg)))
    assert e.value.errno == errno.EACCES
    assert str(e.value) == (f"{sshd.user}@testhost:{sshd.port}: authentication failed "
                            f"(offered: publickey {other}; the server accepts: publickey)")


def test_user_certificate(tmp_path):
    ca = None
    s = None
    try:
        work = tmp_path / "ca"
        work.mkdir()
        ca = sshkit.new_key(work, "user_ca")
        s = server(tmp_path, "srv", [f"TrustedUserCAKeys {ca}.pub"])
        key = sshkit.new_key(s.workdir, "id_certified")  # NOT in authorized_keys
        cfg_plain = sshkit.client_config(s, "plain", identity=key)
        with pytest.raises(MountError):
            connect(ConnectRequest(host="testhost", config_file=str(cfg_plain)))
        cert = sshkit.sign_cert(ca, Path(f"{key}.pub"), identity="pysshfs-user",
                                principals=[s.user])
        # Found next to the key as id-cert.pub ...
        with connect(ConnectRequest(host="testhost", config_file=str(cfg_plain))) as conn:
            sftp_works(conn)
        # ... and named by CertificateFile.
        moved = s.workdir / "elsewhere-cert.pub"
        shutil.move(cert, moved)
        cfg = sshkit.client_config(s, "withcert", identity=key,
                                   lines=[f"CertificateFile {moved}"])
        with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
            sftp_works(conn)
        accepted = [line for line in accepted_lines(s) if "Accepted publickey" in line]
        assert len(accepted) == 2 and all("ID pysshfs-user" in line for line in accepted), accepted
    finally:
        if s:
            s.stop()


def test_password_never_logged(password_server, caplog, isolated_home):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd=True)
    try:
        cfg = sshkit.client_config(s, lines=[f"User {user}", "PubkeyAuthentication no"])
        r = sshkit.run_connect({"host": "testhost", "config_file": str(cfg),
                                "password_stdin": True, "debug": True},
                               stdin=(PASSWORD + "\n").encode(),
                               env={"HOME": str(isolated_home)})
        assert b"OK" in r.stdout
        assert b"keyboard-interactive" in r.stderr  # the story was told at DEBUG ...
        assert PASSWORD.encode() not in r.stderr  # ... without the secret
    finally:
        s.stop()


def test_key_file_permissions_untouched(sshd):
    mode = stat.S_IMODE(os.stat(sshd.client_key).st_mode)
    with connect(ConnectRequest(host="testhost", config_file=str(sshd.ssh_config))):
        pass
    assert stat.S_IMODE(os.stat(sshd.client_key).st_mode) == mode


logging.getLogger("paramiko").setLevel(logging.WARNING)


def test_identities_only_uses_agent_copy_of_encrypted_identity(tmp_path, monkeypatch):
    s = server(tmp_path, "srv", [])
    try:
        key = sshkit.new_key(s.workdir, "id_locked", passphrase="open sesame")
        sshkit.authorize(s, key)
        decoy = sshkit.new_key(s.workdir, "id_decoy")
        sshkit.authorize(s, decoy)
        env_key = s.workdir / "plain_copy"
        shutil.copy(key, env_key)
        subprocess.run(["ssh-keygen", "-q", "-p", "-P", "open sesame", "-N", "", "-f",
                        str(env_key)], check=True, capture_output=True)
        with sshkit.ssh_agent(s.workdir, env_key, decoy) as sock:
            monkeypatch.setenv("SSH_AUTH_SOCK", sock)
            # BatchMode: the encrypted file cannot be opened, only the agent's copy works;
            # IdentitiesOnly: the decoy in the agent must not be offered.
            cfg = sshkit.client_config(s, identity=key)
            with connect(ConnectRequest(host="testhost", config_file=str(cfg))) as conn:
                sftp_works(conn)
        fp = os.popen(f"ssh-keygen -lf {key}.pub").read().split()[1]
        decoy_fp = os.popen(f"ssh-keygen -lf {decoy}.pub").read().split()[1]
        log = s.log_text()
        assert any(fp in line for line in accepted_lines(s))
        assert decoy_fp not in log
    finally:
        s.stop()


def test_password_from_askpass_without_terminal(password_server, isolated_home):
    user, tmp_path = password_server
    s = _password_sshd(tmp_path, kbd=False)
    try:
        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
        askpass.chmod(0o755)
        cfg = sshkit.client_config(s, lines=[f"User {user}", "PubkeyAuthentication no",
                                             "BatchMode no"])
        r = sshkit.run_connect({"host": "testhost", "config_file": str(cfg)},
                               env={"HOME": str(isolated_home), "SSH_ASKPASS": str(askpass),
                                    "SSH_ASKPASS_REQUIRE": "force"})
        assert r.stdout.decode().startswith(f"OK {user}"), (r.stdout, r.stderr[-2000:])
    finally:
        s.stop()
