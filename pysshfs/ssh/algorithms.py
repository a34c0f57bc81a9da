"""Algorithm lists: our defaults (fast ciphers first) and ssh_config's +/-/^ forms on them.

Names paramiko does not implement (ssh-rsa with SHA-1, chacha20-poly1305, ...) are dropped with
a debug line instead of failing, the way ssh ignores what it does not support in a '+' list.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import paramiko

from pysshfs.errors import MountError
from pysshfs.ssh.config import ResolvedTarget

log = logging.getLogger(__name__)

# Transport's private algorithm tables (what this paramiko implements, in its order of
# preference): the stubs leave them out, hence Any; tests/unit/test_private_hooks.py
# checks they are still there.
T: Any = paramiko.Transport
# AES-GCM first: paramiko runs it about twice as fast as ctr + hmac (see DESIGN.md).
DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
)
DEFAULT_MACS = (
    "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256",
    "hmac-sha2-512", "hmac-sha1",
)
DEFAULT_KEX = tuple(k for k in T._preferred_kex if k in T._kex_info)
_PLAIN_HOST_KEYS = (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "rsa-sha2-512", "rsa-sha2-256",
)
DEFAULT_HOST_KEYS = tuple(
    f"{k}-cert-v01@openssh.com" for k in _PLAIN_HOST_KEYS
) + _PLAIN_HOST_KEYS
DEFAULT_PUBKEYS = _PLAIN_HOST_KEYS

SUPPORTED = {
    "ciphers": tuple(T._cipher_info),
    "macs": tuple(T._mac_info),
    "kexalgorithms": tuple(T._kex_info),
    "hostkeyalgorithms": tuple(T._key_info),
    "pubkeyacceptedalgorithms": tuple(T._key_info),
}
DEFAULTS = {
    "ciphers": DEFAULT_CIPHERS,
    "macs": DEFAULT_MACS,
    "kexalgorithms": DEFAULT_KEX,
    "hostkeyalgorithms": DEFAULT_HOST_KEYS,
    "pubkeyacceptedalgorithms": DEFAULT_PUBKEYS,
}


def apply_spec(default: tuple[str, ...], spec: str | None) -> list[str]:
    """ssh_config list semantics: 'a,b' replaces, '+a' appends, '-a*' removes, '^a' prepends."""
    if not spec:
        return list(default)
    op, rest = spec[0], spec[1:]
    names = [n.strip() for n in (rest if op in "+-^" else spec).split(",") if n.strip()]
    if op == "+":
        return list(default) + [n for n in names if n not in default]
    if op == "^":
        return names + [d for d in default if d not in names]
    if op == "-":
        return [d for d in default if not any(fnmatchcase(d, p) for p in names)]
    # A plain list may use wildcards too; they select from what is supported.
    out: list[str] = []
    for n in names:
        if any(c in n for c in "*?"):
            out.extend(d for d in default if fnmatchcase(d, n) and d not in out)
        elif n not in out:
            out.append(n)
    return out


def _chosen(target: ResolvedTarget, key: str, label: str) -> tuple[str, ...]:
    spec = target.get(key)
    # A replacing list's wildcards select from all paramiko supports; +/-/^ edit our defaults.
    base = SUPPORTED[key] if spec and spec[0] not in "+-^" else DEFAULTS[key]
    wanted = apply_spec(base, spec)
    supported = SUPPORTED[key]
    usable = tuple(n for n in wanted if n in supported)
    dropped = [n for n in wanted if n not in supported]
    if dropped:
        log.debug("%s: not supported by paramiko, ignored: %s", label, ",".join(dropped))
    if not usable:
        raise MountError(errno.EPROTO, f"{target.description}: no usable {label}",
                         f"'{spec}' names none that pysshfs supports "
                         f"({', '.join(supported)})", f"fix {label} in the ssh configuration")
    return usable


@dataclass
class Algorithms:
    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    kex: tuple[str, ...]
    host_keys: tuple[str, ...]
    pubkeys: tuple[str, ...]
    host_keys_configured: bool

    def disabled_pubkeys(self) -> list[str]:
        """What paramiko must not sign with for user auth (PubkeyAcceptedAlgorithms)."""
        return [k for k in SUPPORTED["pubkeyacceptedalgorithms"] if k not in self.pubkeys]

    def order_host_keys(self, known_types: list[str]) -> None:
        """Ask for the key types known_hosts already has for this host first, as ssh does."""
        if self.host_keys_configured or not known_types:
            return
        def rank(alg: str) -> int:
            base = alg.replace("-cert-v01@openssh.com", "")
            if base.startswith("rsa-sha2-"):
                base = "ssh-rsa"
            if alg.endswith("-cert-v01@openssh.com"):
                return 0 if "cert" in known_types else 2
            return 1 if base in known_types else 3
        self.host_keys = tuple(sorted(self.host_keys, key=rank))

    def apply(self, transport: paramiko.Transport) -> None:
        opts = transport.get_security_options()
        opts.ciphers = self.ciphers
        opts.digests = self.macs
        opts.kex = self.kex
        opts.key_types = self.host_keys


def choose(target: ResolvedTarget) -> Algorithms:
    return Algorithms(
        ciphers=_chosen(target, "ciphers", "Ciphers"),
        macs=_chosen(target, "macs", "MACs"),
        kex=_chosen(target, "kexalgorithms", "KexAlgorithms"),
        host_keys=_chosen(target, "hostkeyalgorithms", "HostKeyAlgorithms"),
        pubkeys=_chosen(target, "pubkeyacceptedalgorithms", "PubkeyAcceptedAlgorithms"),
        host_keys_configured=(target.get("hostkeyalgorithms") or "+")[0] not in "+-^",
    )
