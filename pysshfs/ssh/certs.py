"""OpenSSH certificates (PROTOCOL.certkeys): parse them and check a host certificate.

paramiko can present user certificates but does not check host certificates; this does what
ssh does for ``@cert-authority`` lines: CA signature, certificate type, principals, validity.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import paramiko

CERT_SUFFIX = "-cert-v01@openssh.com"
USER_CERT = 1
HOST_CERT = 2
# Public key fields between the nonce and the serial, per base key type (each a string/mpint).
KEY_FIELDS = {
    "ssh-rsa": 2,  # e, n
    "ssh-ed25519": 1,  # pk
    "ecdsa-sha2-nistp256": 2,  # curve, Q
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "ssh-dss": 4,
}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def string(self) -> bytes:
        (n,) = struct.unpack(">I", self.data[self.pos:self.pos + 4])
        start = self.pos + 4
        if start + n > len(self.data):
            raise ValueError("truncated certificate")
        self.pos = start + n
        return self.data[start:start + n]

    def uint32(self) -> int:
        (v,) = struct.unpack(">I", self.data[self.pos:self.pos + 4])
        self.pos += 4
        return v

    def uint64(self) -> int:
        (v,) = struct.unpack(">Q", self.data[self.pos:self.pos + 8])
        self.pos += 8
        return v


def _pack(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


@dataclass
class Certificate:
    cert_type_name: str
    base_type: str
    key_fields: list[bytes]
    serial: int
    kind: int  # USER_CERT or HOST_CERT
    key_id: str
    principals: list[str]
    valid_after: int
    valid_before: int
    signature_key: bytes
    signed_data: bytes
    signature: bytes

    @property
    def plain_blob(self) -> bytes:
        return _pack(self.base_type.encode(), *self.key_fields)


def parse(blob: bytes) -> Certificate:
    r = _Reader(blob)
    type_name = r.string().decode()
    if not type_name.endswith(CERT_SUFFIX):
        raise ValueError(f"{type_name} is not a certificate")
    base = type_name[: -len(CERT_SUFFIX)]
    if base not in KEY_FIELDS:
        raise ValueError(f"unsupported certificate type {type_name}")
    r.string()  # nonce
    fields = [r.string() for _ in range(KEY_FIELDS[base])]
    serial = r.uint64()
    kind = r.uint32()
    key_id = r.string().decode(errors="replace")
    pr = _Reader(r.string())
    principals = []
    while pr.pos < len(pr.data):
        principals.append(pr.string().decode(errors="replace"))
    valid_after = r.uint64()
    valid_before = r.uint64()
    r.string()  # critical options
    r.string()  # extensions
    r.string()  # reserved
    signature_key = r.string()
    signed_end = r.pos
    signature = r.string()
    return Certificate(type_name, base, fields, serial, kind, key_id, principals,
                       valid_after, valid_before, signature_key, blob[:signed_end], signature)


def plain_key_blob(cert_blob: bytes) -> bytes:
    return parse(cert_blob).plain_blob


def signature_key_blob(cert_blob: bytes) -> bytes:
    try:
        return parse(cert_blob).signature_key
    except (ValueError, struct.error):
        return b""


def _key_from_blob(blob: bytes) -> paramiko.PKey:
    msg = paramiko.Message(blob)
    key_type = msg.get_text()
    return paramiko.PKey.from_type_string(key_type, blob)


def check_host_certificate(cert_blob: bytes, trusted_cas: list[bytes], principal: str,
                           now: float | None = None) -> str | None:
    """None when the certificate is valid for `principal`, else why not (for a message)."""
    try:
        cert = parse(cert_blob)
    except (ValueError, struct.error) as e:
        return f"cannot be parsed ({e})"
    if cert.kind != HOST_CERT:
        return "is not a host certificate"
    if cert.signature_key not in trusted_cas:
        return "is signed by a CA that no @cert-authority line trusts"
    try:
        ca = _key_from_blob(cert.signature_key)
        ok = ca.verify_ssh_sig(cert.signed_data, paramiko.Message(cert.signature))
    except Exception as e:  # an unknown CA key type or a malformed signature
        return f"has a signature that cannot be checked ({e})"
    if not ok:
        return "has an invalid CA signature"
    now = time.time() if now is None else now
    if now < cert.valid_after:
        return "is not yet valid"
    if now >= cert.valid_before:
        return "has expired"
    if cert.principals and principal.lower() not in (p.lower() for p in cert.principals):
        return (f"is not valid for '{principal}' (principals: "
                f"{', '.join(cert.principals)})")
    return None
