"""Host key verification: known_hosts files and StrictHostKeyChecking, as OpenSSH does it.

Understands plain and hashed (``|1|salt|hash``) host patterns, ``[host]:port``, wildcards and
``!`` negation, ``@cert-authority`` (host certificates signed by a trusted CA) and ``@revoked``.
A changed key is always refused (except with StrictHostKeyChecking=no), naming file and line.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

import paramiko

from pysshfs.errors import MountError
from pysshfs.ssh import certs, prompt
from pysshfs.ssh.config import (
    DEFAULT_GLOBAL_KNOWN_HOSTS,
    DEFAULT_USER_KNOWN_HOSTS,
    ResolvedTarget,
    match_pattern_list,
)

log = logging.getLogger(__name__)


def short_path(path: str) -> str:
    """/root/.ssh/known_hosts → ~/.ssh/known_hosts, for messages."""
    home = os.path.expanduser("~")
    if home != "/" and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home):]
    return path


def host_port_name(host: str, port: int) -> str:
    """The name known_hosts uses: 'host' on port 22, '[host]:port' otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(blob: bytes) -> str:
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_type_label(key_type: str) -> str:
    """'ssh-ed25519' → 'ED25519', as ssh prints it."""
    base = key_type.replace("-cert-v01@openssh.com", "")
    if "ed25519" in base:
        return "ED25519"
    if "ecdsa" in base:
        return "ECDSA"
    if "rsa" in base:
        return "RSA"
    return base.upper()


def blob_type(blob: bytes) -> str:
    """The key type name at the start of a public key blob."""
    try:
        return paramiko.Message(blob).get_text()
    except Exception:  # a malformed blob: treated as a type nobody matches
        return ""


def hash_host(name: str, salt: bytes | None = None) -> str:
    """known_hosts hashed form of `name`: |1|base64(salt)|base64(HMAC-SHA1(salt, name))."""
    salt = salt if salt is not None else os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@dataclass
class KnownHost:
    """One line of a known_hosts file."""

    path: str
    lineno: int
    marker: str  # "", "@cert-authority" or "@revoked"
    hosts: str  # comma-separated patterns or one |1|salt|hash
    key_type: str
    blob: bytes

    @property
    def where(self) -> str:
        return f"{short_path(self.path)}:{self.lineno}"

    def matches(self, name: str) -> bool:
        if self.hosts.startswith("|1|"):
            parts = self.hosts.split("|")
            if len(parts) != 4:
                return False
            try:
                salt = base64.b64decode(parts[2])
            except ValueError:
                return False
            return hmac.compare_digest(hash_host(name, salt), self.hosts)
        return match_pattern_list(name, self.hosts.split(","))


def parse_known_hosts(path: str) -> list[KnownHost]:
    """The entries of one file; unreadable files and bad lines are skipped like ssh does."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    entries = []
    for lineno, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        marker = ""
        if words[0].startswith("@"):
            marker = words.pop(0).lower()
            if marker not in ("@cert-authority", "@revoked"):
                log.debug("%s:%d: unknown marker %s, line skipped", path, lineno, marker)
                continue
        if len(words) < 3:
            continue
        try:
            blob = base64.b64decode(words[2], validate=True)
        except ValueError:
            log.debug("%s:%d: bad key data, line skipped", path, lineno)
            continue
        entries.append(KnownHost(path, lineno, marker, words[0], words[1], blob))
    return entries


class KnownHosts:
    """The user's and the global known_hosts files for one target."""

    def __init__(self, target: ResolvedTarget) -> None:
        self.target = target
        self.user_files = target.paths("UserKnownHostsFile", DEFAULT_USER_KNOWN_HOSTS)
        self.global_files = target.paths("GlobalKnownHostsFile", DEFAULT_GLOBAL_KNOWN_HOSTS)
        alias = target.get("HostKeyAlias")
        host = alias if alias else target.hostname
        # HostKeyAlias names the key on its own; otherwise [host]:port as ssh writes it.
        self.name = alias if alias else host_port_name(host, target.port)
        self.entries = [e for p in self.user_files + self.global_files
                        for e in parse_known_hosts(p)]

    def for_host(self, name: str | None = None) -> list[KnownHost]:
        name = name or self.name
        return [e for e in self.entries if e.matches(name)]

    def known_key_types(self) -> list[str]:
        """Key types recorded for this host (plain entries), to ask the server for those first."""
        types: list[str] = []
        for e in self.for_host():
            if e.marker == "" and e.key_type not in types:
                types.append(e.key_type)
            elif e.marker == "@cert-authority" and "cert" not in types:
                types.append("cert")
        return types

    def add(self, key_type: str, blob: bytes, name: str | None = None) -> str | None:
        """Append the key to the first user file (hashed if HashKnownHosts); the file or None."""
        if not self.user_files:
            return None
        path = self.user_files[0]
        name = name or self.name
        hosts = hash_host(name) if self.target.flag("HashKnownHosts", False) else name
        line = f"{hosts} {key_type} {base64.b64encode(blob).decode()}\n"
        try:
            parent = os.path.dirname(path)
            if parent and not os.path.isdir(parent):
                os.makedirs(parent, mode=0o700, exist_ok=True)
            needs_newline = False
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    needs_newline = f.read(1) != b"\n"
            with open(path, "a", encoding="utf-8") as f:
                f.write(("\n" if needs_newline else "") + line)
        except OSError as e:
            log.warning("could not add the host key to %s: %s", short_path(path), e.strerror)
            return None
        return path


def server_key_blob(key: paramiko.PKey) -> tuple[str, bytes, bytes | None]:
    """(key type, plain key blob, certificate blob or None) of the key the server showed."""
    cert = key.public_blob
    if cert is not None and cert.key_type.endswith("-cert-v01@openssh.com"):
        cert_blob = cert.key_blob
        plain = certs.plain_key_blob(cert_blob)
        return blob_type(plain), plain, cert_blob
    blob = key.asbytes()
    return blob_type(blob), blob, None


def verify(target: ResolvedTarget, key: paramiko.PKey, *, interactive: bool,
           label: str, pinned: set[bytes] | None = None, ip: str | None = None) -> str:
    """Accept or refuse the server's host key; returns how it was accepted (for -d).

    Raises MountError(EPERM) when the key must not be trusted. `ip` is the peer address
    for CheckHostIP (None through a proxy, where the address says nothing).
    """
    kh = KnownHosts(target)
    how = _verify(kh, target, key, interactive=interactive, label=label, pinned=pinned)
    if ip and target.flag("CheckHostIP", False) and not target.get("HostKeyAlias"):
        _check_ip(kh, target, key, ip)
    return how


def _check_ip(kh: KnownHosts, target: ResolvedTarget, key: paramiko.PKey, ip: str) -> None:
    """CheckHostIP: the address's own entry should hold the same key (warn, as ssh does)."""
    name = host_port_name(ip, target.port)
    if name == kh.name:
        return
    key_type, blob, _ = server_key_blob(key)
    entries = [e for e in kh.for_host(name) if e.marker == ""]
    if any(e.blob == blob for e in entries):
        return
    other = next((e for e in entries if blob_type(e.blob) == key_type), None)
    if other is not None:
        log.warning("Warning: the %s host key for '%s' differs from the key for the IP "
                    "address '%s' (%s)", key_type_label(key_type), kh.name, ip, other.where)
    elif kh.add(key_type, blob, name):
        log.info("Warning: Permanently added the %s host key for IP address '%s' to the list "
                 "of known hosts.", key_type_label(key_type), name)


def _verify(kh: KnownHosts, target: ResolvedTarget, key: paramiko.PKey, *, interactive: bool,
            label: str, pinned: set[bytes] | None) -> str:
    key_type, blob, cert_blob = server_key_blob(key)
    fp = fingerprint(blob)
    type_label = key_type_label(key_type)
    entries = kh.for_host()
    log.debug("Server host key: %s %s%s", key_type, fp, " (certificate)" if cert_blob else "")

    for e in entries:
        if e.marker == "@revoked" and e.blob in (blob, cert_blob):
            raise MountError(errno.EPERM, label,
                             f"host key verification failed: the {type_label} host key "
                             f"{fp} is marked as revoked in {e.where}",
                             "the server's key must be replaced; ask its administrator")
    # @revoked may also name a CA key: a certificate it signed is revoked too.
    if cert_blob is not None:
        ca_blob = certs.signature_key_blob(cert_blob)
        for e in kh.entries:
            if e.marker == "@revoked" and e.blob == ca_blob:
                raise MountError(errno.EPERM, label,
                                 f"host key verification failed: the certificate authority "
                                 f"that signed the host certificate is revoked in {e.where}",
                                 "ask the server's administrator")

    strict = (target.get("StrictHostKeyChecking") or "ask").lower()
    if strict in ("off", "false"):
        strict = "no"
    elif strict in ("on", "true"):
        strict = "yes"

    if cert_blob is not None:
        cas = [e for e in entries if e.marker == "@cert-authority"]
        if cas:
            principal = target.get("HostKeyAlias") or target.hostname
            problem = certs.check_host_certificate(cert_blob, [e.blob for e in cas], principal)
            if problem is None:
                ca = next(e for e in cas if e.blob == certs.signature_key_blob(cert_blob))
                return f"host certificate signed by a CA trusted in {ca.where}"
            if strict != "no":
                raise MountError(errno.EPERM, label,
                                 f"host key verification failed: host certificate {problem}",
                                 f"check the @cert-authority line in {cas[0].where}")
            log.warning("%s: host certificate %s; accepted because StrictHostKeyChecking=no",
                        label, problem)
            return "accepted without verification (StrictHostKeyChecking=no)"

    plain = [e for e in entries if e.marker == ""]
    for e in plain:
        if e.blob == blob:
            return f"matching host key found in {e.where}"

    same_type = [e for e in plain if e.key_type.replace("-cert-v01@openssh.com", "")
                 == key_type or (blob_type(e.blob) == key_type)]
    if same_type:
        old = same_type[0]
        if strict == "no":
            log.warning("%s: the %s host key has CHANGED (now %s, %s holds another one); "
                        "accepted because StrictHostKeyChecking=no, password authentication "
                        "disabled", label, type_label, fp, old.where)
            target.options["passwordauthentication"] = ["no"]
            target.options["kbdinteractiveauthentication"] = ["no"]
            return "CHANGED host key accepted (StrictHostKeyChecking=no)"
        raise MountError(
            errno.EPERM,
            f"WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for {kh.name}",
            f"the server now shows the {type_label} key {fp}, but {old.where} holds a "
            "different one: someone may be eavesdropping right now (man-in-the-middle), "
            "or the host key was just replaced",
            f"if you know the key was changed on purpose, remove line {old.lineno} of "
            f"{short_path(old.path)} (ssh-keygen -R '{kh.name}' -f {short_path(old.path)}) "
            "and connect again",
        )

    # Unknown key.
    if pinned and key.asbytes() in pinned:
        return "the key accepted earlier in this session"
    others = "" if not plain else (
        f" (keys of other types are known for this host: "
        f"{', '.join(sorted({key_type_label(e.key_type) for e in plain}))})")
    checked = ", ".join(short_path(p) for p in kh.user_files) or "no known_hosts file"
    if strict == "yes":
        raise MountError(errno.EPERM, kh.name,
                         f"host key verification failed: no matching key in {checked}{others}",
                         "connect once with ssh to add it, "
                         "or pass -o StrictHostKeyChecking=accept-new")
    if strict == "ask":
        if not interactive or target.flag("BatchMode", False) or not prompt.can_ask():
            raise MountError(errno.EPERM, kh.name,
                             f"host key verification failed: no matching key in {checked}"
                             f"{others}, and no terminal to ask on",
                             "connect once with ssh to add it, "
                             "or pass -o StrictHostKeyChecking=accept-new")
        _ask_user(kh, target, type_label, fp, others, label)
    added = kh.add(key_type, blob)
    how = "accepted new host key" if strict != "no" else "accepted (StrictHostKeyChecking=no)"
    if added:
        log.info("Permanently added '%s' (%s) to the list of known hosts (%s).",
                 kh.name, type_label, short_path(added))
        return f"{how}, added to {short_path(added)}"
    return how


def _ask_user(kh: KnownHosts, target: ResolvedTarget, type_label: str, fp: str,
              others: str, label: str) -> None:
    shown = host_port_name(target.hostname, target.port)
    text = (f"The authenticity of host '{kh.name} ({shown})' can't be established.\n"
            f"{type_label} key fingerprint is {fp}.\n")
    if others:
        text += f"Note:{others}.\n"
    question = text + "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    while True:
        try:
            answer = prompt.ask(question, echo=True, confirm=True).strip()
        except prompt.NoWayToAsk as e:
            raise MountError(errno.EPERM, kh.name, f"host key verification failed: {e}",
                             "pass -o StrictHostKeyChecking=accept-new") from None
        if answer.lower() == "yes" or answer == fp:
            return
        if answer.lower() == "no" or answer == "":
            raise MountError(errno.EPERM, kh.name,
                             "host key verification failed: you did not accept the key")
        if answer.startswith("SHA256:"):
            raise MountError(errno.EPERM, kh.name,
                             "host key verification failed: the fingerprint you typed "
                             "does not match the server's")
        question = "Please type 'yes', 'no' or the fingerprint: "
