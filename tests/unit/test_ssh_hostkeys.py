"""known_hosts parsing and matching, host certificates, algorithm lists."""

from __future__ import annotations

import base64
import subprocess

import paramiko
import pytest

from pysshfs.ssh import certs
from pysshfs.ssh.algorithms import apply_spec, choose
from pysshfs.ssh.config import resolve
from pysshfs.ssh.hostkeys import (
    KnownHosts,
    fingerprint,
    hash_host,
    host_port_name,
    parse_known_hosts,
    short_path,
)
from pysshfs.ssh.request import ConnectRequest


def keypair(tmp_path, name, kind="ed25519"):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    kind_s, b64 = (tmp_path / f"{name}.pub").read_text().split()[:2]
    return path, kind_s, b64


def test_host_port_name():
    assert host_port_name("h", 22) == "h"
    assert host_port_name("h", 2222) == "[h]:2222"


def test_hashed_matches_like_ssh_keygen(tmp_path):
    _, kind, b64 = keypair(tmp_path, "k")
    kh = tmp_path / "known"
    kh.write_text(f"[10.1.2.3]:2222 {kind} {b64}\nplain.example {kind} {b64}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(kh)], check=True, capture_output=True)
    entries = parse_known_hosts(str(kh))
    assert all(e.hosts.startswith("|1|") for e in entries)
    assert entries[0].matches("[10.1.2.3]:2222") and not entries[0].matches("10.1.2.3")
    assert entries[1].matches("plain.example")
    assert hash_host("x", b"s" * 20) == hash_host("x", b"s" * 20)


def test_markers_comments_and_bad_lines(tmp_path):
    _, kind, b64 = keypair(tmp_path, "k")
    kh = tmp_path / "known"
    kh.write_text(f"# c\n\n@cert-authority *.ex {kind} {b64}\n@revoked * {kind} {b64}\n"
                  f"@bogus h {kind} {b64}\nonly-two-fields {kind}\nh {kind} !!notbase64\n"
                  f"a,b,!c {kind} {b64} comment words\n")
    entries = parse_known_hosts(str(kh))
    assert [(e.marker, e.lineno) for e in entries] == [
        ("@cert-authority", 3), ("@revoked", 4), ("", 8)]
    assert entries[2].matches("b") and not entries[2].matches("c")


def test_known_hosts_alias_and_types(tmp_path):
    _, kind, b64 = keypair(tmp_path, "k")
    kh = tmp_path / "known"
    kh.write_text(f"[h]:2222 {kind} {b64}\nalias ssh-rsa {b64}\n")
    cfg = tmp_path / "cfg"
    cfg.write_text(f"Host h\n  Port 2222\n  UserKnownHostsFile {kh}\n"
                   "  GlobalKnownHostsFile none\n")
    t = resolve(ConnectRequest(host="h", config_file=str(cfg)))
    k = KnownHosts(t)
    assert k.name == "[h]:2222" and k.known_key_types() == ["ssh-ed25519"]
    t = resolve(ConnectRequest(host="h", config_file=str(cfg),
                               options={"HostKeyAlias": "alias"}))
    assert KnownHosts(t).name == "alias"


def test_short_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert short_path(str(tmp_path / ".ssh" / "known_hosts")) == "~/.ssh/known_hosts"
    assert short_path("/etc/x") == "/etc/x"


def test_fingerprint_like_ssh_keygen(tmp_path):
    path, _, b64 = keypair(tmp_path, "k")
    out = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], capture_output=True,
                         text=True, check=True).stdout.split()[1]
    assert fingerprint(base64.b64decode(b64)) == out


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_host_certificate_check(tmp_path, kind):
    ca, _, ca_b64 = keypair(tmp_path, "ca")
    host, _, host_b64 = keypair(tmp_path, "host", kind)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "id", "-h", "-n", "h1,h2",
                    f"{host}.pub"], check=True, capture_output=True)
    cert_blob = base64.b64decode((tmp_path / "host-cert.pub").read_text().split()[1])
    ca_blob = base64.b64decode(ca_b64)
    assert certs.plain_key_blob(cert_blob) == base64.b64decode(host_b64)
    assert certs.signature_key_blob(cert_blob) == ca_blob
    assert certs.check_host_certificate(cert_blob, [ca_blob], "h2") is None
    assert "not valid for" in certs.check_host_certificate(cert_blob, [ca_blob], "h3")
    assert "no @cert-authority" in certs.check_host_certificate(cert_blob, [b"x"], "h1")
    assert "expired" in certs.check_host_certificate(cert_blob, [ca_blob], "h1", now=2**64)
    tampered = bytearray(cert_blob)
    tampered[-10] ^= 1
    assert certs.check_host_certificate(bytes(tampered), [ca_blob], "h1") is not None


def test_user_certificate_is_not_a_host_certificate(tmp_path):
    ca, _, ca_b64 = keypair(tmp_path, "ca")
    user, _, _ = keypair(tmp_path, "user")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "id", "-n", "h1", f"{user}.pub"],
                   check=True, capture_output=True)
    blob = base64.b64decode((tmp_path / "user-cert.pub").read_text().split()[1])
    assert certs.check_host_certificate(blob, [base64.b64decode(ca_b64)], "h1") == \
        "is not a host certificate"


def test_apply_spec():
    d = ("a", "b", "c")
    assert apply_spec(d, None) == ["a", "b", "c"]
    assert apply_spec(d, "+x,a") == ["a", "b", "c", "x"]
    assert apply_spec(d, "-b*") == ["a", "c"]
    assert apply_spec(d, "^c,x") == ["c", "x", "a", "b"]
    assert apply_spec(d, "c,a") == ["c", "a"]
    assert apply_spec(d, "*") == ["a", "b", "c"]


def _target(tmp_path, **opts):  # type: ignore[no-untyped-def]
    return resolve(ConnectRequest(host="h", config_file="none", options=opts))


def test_algorithm_defaults_prefer_gcm(tmp_path):
    a = choose(_target(tmp_path))
    assert a.ciphers[0] == "aes128-gcm@openssh.com"
    assert a.host_keys[0].endswith("-cert-v01@openssh.com")
    assert all(x in paramiko.Transport._cipher_info for x in a.ciphers)


def test_algorithm_config_forms(tmp_path):
    a = choose(_target(tmp_path, Ciphers="aes256-ctr,chacha20-poly1305@openssh.com",
                       HostKeyAlgorithms="+ssh-rsa", PubkeyAcceptedAlgorithms="-ecdsa*",
                       KexAlgorithms="^diffie-hellman-group14-sha256"))
    assert a.ciphers == ("aes256-ctr",)  # chacha20 is not in paramiko: dropped
    assert "ssh-rsa" not in a.host_keys and "ssh-ed25519" in a.host_keys
    assert not any(p.startswith("ecdsa") for p in a.pubkeys)
    assert a.kex[0] == "diffie-hellman-group14-sha256"


def test_algorithm_nothing_usable_is_an_error(tmp_path):
    from pysshfs.errors import MountError

    with pytest.raises(MountError) as e:
        choose(_target(tmp_path, Ciphers="chacha20-poly1305@openssh.com"))
    assert "no usable Ciphers" in str(e.value)


def test_order_host_keys_known_types_first(tmp_path):
    a = choose(_target(tmp_path))
    a.order_host_keys(["ssh-rsa"])
    assert a.host_keys[:2] == ("rsa-sha2-512", "rsa-sha2-256")
    a = choose(_target(tmp_path))
    a.order_host_keys(["cert"])
    assert a.host_keys[0].endswith("-cert-v01@openssh.com")
