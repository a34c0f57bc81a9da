"""User authentication (RFC 4252) in OpenSSH's order: agent keys, identity files (and their
certificates), keyboard-interactive, password.

What was tried is remembered for the one-line failure message; secrets that worked (the
password, decrypted keys) are kept in memory only, in `Secrets`, so a reconnect never prompts.
A password never reaches a log line or a message.
"""

from __future__ import annotations

import base64
import copy
import errno
import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko
from paramiko.agent import AgentSSH
from paramiko.pkey import UnknownKeyType

from pysshfs.errors import MountError
from pysshfs.ssh import prompt
from pysshfs.ssh.config import DEFAULT_IDENTITY_FILES, ResolvedTarget, expand_tilde
from pysshfs.ssh.hostkeys import fingerprint, key_type_label, short_path

log = logging.getLogger(__name__)

DEFAULT_METHODS = "gssapi-with-mic,hostbased,publickey,keyboard-interactive,password"


@dataclass
class Secrets:
    """What the user typed or unlocked, to connect again without asking (memory only)."""

    password: str | None = field(default=None, repr=False)
    keys: dict[str, paramiko.PKey] = field(default_factory=dict, repr=False)  # path → key
    host_keys: set[bytes] = field(default_factory=set, repr=False)  # accepted this session
    hops: dict[str, Secrets] = field(default_factory=dict, repr=False)  # per jump host

    def __repr__(self) -> str:  # never show secrets, even in a traceback
        return "Secrets(...)"


class _Agent(AgentSSH):
    """An ssh-agent reached through a given socket (IdentityAgent or SSH_AUTH_SOCK)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        self._connect(conn)  # type: ignore[attr-defined]  # private: test_private_hooks

    def close(self) -> None:
        self._close()  # type: ignore[attr-defined]  # private: test_private_hooks


@dataclass
class Identity:
    """One key we may offer: from the agent or a file, possibly as a certificate."""

    label: str  # for messages: "~/.ssh/id_ed25519" or "agent: comment"
    blob: bytes | None  # public blob if known without decrypting
    path: str | None = None
    key: paramiko.PKey | None = None
    cert_path: str | None = None


def _read_pub(path: str) -> bytes | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            words = f.read().split()
        if len(words) < 2 or words[0].startswith("-"):  # not a public key line
            return None
        return base64.b64decode(words[1])
    except (OSError, ValueError):
        return None


def _agent_socket(target: ResolvedTarget) -> str | None:
    configured = target.get("IdentityAgent")
    if configured is None or configured == "SSH_AUTH_SOCK":
        return os.environ.get("SSH_AUTH_SOCK") or None
    if configured.lower() == "none":
        return None
    if configured.startswith("$"):
        return os.environ.get(configured[1:]) or None
    return target.paths("IdentityAgent")[0] if target.paths("IdentityAgent") else None


class Authenticator:
    """Runs the authentication conversation on a transport for one target."""

    def __init__(self, transport: paramiko.Transport, target: ResolvedTarget, *,
                 interactive: bool, password_stdin: bool, secrets: Secrets,
                 allowed_pubkeys: tuple[str, ...] | None = None) -> None:
        self.t = transport
        self.target = target
        self.user = target.user
        self.batch = target.flag("BatchMode", False)
        self.interactive = interactive and not self.batch
        self.password_stdin = password_stdin
        self.secrets = secrets
        self.allowed_pubkeys = allowed_pubkeys
        self.offered: list[str] = []
        self.server_accepts: list[str] = []
        self.prompts = int(target.number("NumberOfPasswordPrompts", 3))
        self.agent: _Agent | None = None
        self.kept_password = secrets.password
        self.stdin_read = False

    # -- the conversation ----------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        finally:
            if self.agent is not None:
                self.agent.close()

    def _run(self) -> None:
        try:
            self.t.auth_none(self.user)
            log.debug("Authenticated to %s without credentials (none).", self.target.hostname)
            return
        except paramiko.BadAuthenticationType as e:
            remaining = list(e.allowed_types)
        except paramiko.AuthenticationException:
            remaining = ["publickey", "password", "keyboard-interactive"]
        except paramiko.SSHException as e:
            raise self._lost(e) from None
        self.server_accepts = remaining
        log.debug("Authentications that can continue: %s", ",".join(remaining))
        tried: set[str] = set()
        while not self.t.is_authenticated():
            method = self._next_method(remaining, tried)
            if method is None:
                raise self._failed()
            tried.add(method)
            log.debug("Next authentication method: %s", method)
            step = {"publickey": self._publickey,
                    "keyboard-interactive": self._keyboard_interactive,
                    "password": self._password}[method]
            result = step()
            if result is not None and not self.t.is_authenticated():
                # Partial success: the server wants another method as well.
                remaining = result
                self.server_accepts = remaining
                tried.discard("publickey")
                log.info("Partial success; authentications that can continue: %s",
                         ",".join(remaining))

    def _next_method(self, remaining: list[str], tried: set[str]) -> str | None:
        order = (self.target.get("PreferredAuthentications") or DEFAULT_METHODS).split(",")
        enabled = {
            "publickey": self.target.flag("PubkeyAuthentication", True),
            "keyboard-interactive": self.target.flag("KbdInteractiveAuthentication", True),
            "password": self.target.flag("PasswordAuthentication", True),
        }
        for m in order:
            if m in remaining and m not in tried and enabled.get(m, False):
                return m
        return None

    # -- failures ------------------------------------------------------------------------
    def _failed(self) -> MountError:
        offered = ", ".join(self.offered) if self.offered else "nothing"
        if not self.offered and self.batch:
            offered += " (BatchMode forbids prompting)"
        elif not self.offered and not self.interactive:
            offered += " (no terminal to ask for a password)"
        return MountError(errno.EACCES, self.target.description, "authentication failed",
                          f"offered: {offered}; the server accepts: "
                          f"{', '.join(self.server_accepts) or 'nothing'}")

    def _lost(self, e: Exception) -> MountError:
        return MountError(errno.ECONNRESET, self.target.description,
                          f"connection lost during authentication ({e})",
                          "check the server's log")

    def _try(self, fn: Callable[[], list[str]]) -> list[str] | None:
        """Run one auth attempt: its partial-success list, or None when refused."""
        try:
            return fn()
        except paramiko.BadAuthenticationType as e:
            self.server_accepts = list(e.allowed_types)
            log.debug("Authentications that can continue: %s", ",".join(e.allowed_types))
            return None
        except paramiko.AuthenticationException as e:
            log.debug("Authentication refused: %s", e)
            return None
        except paramiko.SSHException as e:
            if not self.t.is_active():
                raise self._lost(e) from None
            log.debug("Authentication attempt failed: %s", e)
            return None

    # -- publickey -----------------------------------------------------------------------
    def identities(self) -> list[Identity]:
        """Agent keys then key files, as ssh orders them; IdentitiesOnly limits the agent."""
        files = self.target.paths("IdentityFile")
        explicit = bool(files)
        if not files:
            files = [expand_tilde(p) for p in DEFAULT_IDENTITY_FILES]
        cert_files = self.target.paths("CertificateFile")
        only = self.target.flag("IdentitiesOnly", False)
        file_ids: list[Identity] = []
        for path in files:
            if not os.path.exists(path):
                if explicit:
                    log.debug("identity file %s not found", short_path(path))
                continue
            # IdentityFile may name the .pub itself, to pick that key from the agent.
            blob = _read_pub(path + ".pub") or _read_pub(path)
            file_ids.append(Identity(short_path(path), blob, path=path))
        agent_ids: list[Identity] = []
        sock = _agent_socket(self.target)
        if sock:
            try:
                self.agent = _Agent(sock)
                for k in self.agent.get_keys():
                    name = k.comment or key_type_label(k.get_name())
                    agent_ids.append(Identity(f"agent key {name}", k.asbytes(), key=k))
                log.debug("agent %s holds %d key(s)", sock, len(agent_ids))
            except (OSError, paramiko.SSHException) as e:
                log.debug("cannot use the ssh agent at %s: %s", sock, e)
        file_blobs = {i.blob for i in file_ids if i.blob}
        result: list[Identity] = []
        # Identity files the agent holds: use the agent's copy (no passphrase needed).
        for f in file_ids:
            for a in agent_ids:
                if a.blob == f.blob:
                    result.append(Identity(f"{f.label} (agent)", a.blob, key=a.key))
        for c in cert_files:
            result.append(Identity(f"certificate {short_path(c)}", None, cert_path=c))
        for a in agent_ids:
            if a.blob in file_blobs or only:
                continue
            result.append(a)
        for f in file_ids:
            if f.blob and any(a.blob == f.blob for a in agent_ids):
                continue
            cert = f.path + "-cert.pub" if f.path else None
            if cert and os.path.exists(cert):
                result.append(Identity(f"{f.label} certificate", f.blob, path=f.path,
                                       cert_path=cert))
            result.append(f)
        return result

    def _load_key(self, path: str) -> paramiko.PKey | None:
        kept = self.secrets.keys.get(path)
        if kept is not None:
            return kept
        key: paramiko.PKey | None
        try:
            key = paramiko.PKey.from_path(path)
        except TypeError:  # encrypted: needs its passphrase
            key = self._load_encrypted(path)
        except (OSError, ValueError, paramiko.SSHException, UnknownKeyType) as e:
            log.debug("cannot load key %s: %s", short_path(path), e)
            return None
        if key is not None:
            key.public_blob = None  # from_path attaches -cert.pub; certs are offered separately
            self.secrets.keys[path] = key
        return key

    def _load_encrypted(self, path: str) -> paramiko.PKey | None:
        if not self.interactive:
            log.debug("key %s needs a passphrase and prompting is not allowed, skipped",
                      short_path(path))
            return None
        for _ in range(max(1, self.prompts)):
            try:
                passphrase = prompt.ask(f"Enter passphrase for key '{short_path(path)}': ")
            except prompt.NoWayToAsk as e:
                log.debug("key %s skipped: %s", short_path(path), e)
                return None
            if not passphrase:
                return None
            try:
                # bytes, though paramiko's hint says str: cryptography underneath wants
                # bytes and raises TypeError for a str.
                return paramiko.PKey.from_path(path, passphrase.encode())  # type: ignore[arg-type]
            except (TypeError, ValueError, paramiko.SSHException):
                log.info("Bad passphrase for %s, try again.", short_path(path))
        return None

    def _key_for(self, ident: Identity) -> paramiko.PKey | None:
        if ident.key is not None and ident.cert_path is None:
            return ident.key
        if ident.path is None and ident.cert_path is not None:
            # CertificateFile alone: its key is the identity file with the same public key.
            cert_blob = _read_pub(ident.cert_path)
            for path in self.target.paths("IdentityFile"):
                key = self._load_key(path) if os.path.exists(path) else None
                if key is not None and cert_blob is not None and _cert_matches(key, cert_blob):
                    return _with_cert(key, ident.cert_path)
            if self.agent is not None and cert_blob is not None:
                for k in self.agent.get_keys():
                    if _cert_matches(k, cert_blob):
                        return _with_cert(k, ident.cert_path)
            log.debug("no private key for %s", ident.label)
            return None
        key = self._load_key(ident.path) if ident.path else None
        if key is None:
            return None
        if ident.cert_path:
            return _with_cert(key, ident.cert_path)
        return key

    def _publickey(self) -> list[str] | None:
        for ident in self.identities():
            key = self._key_for(ident)
            if key is None:
                continue
            name = key.public_blob.key_type if key.public_blob else key.get_name()
            if self.allowed_pubkeys is not None and not _algorithm_allowed(
                    name, self.allowed_pubkeys):
                log.debug("Skipping %s: %s not in PubkeyAcceptedAlgorithms", ident.label, name)
                continue
            blob = key.public_blob.key_blob if key.public_blob else key.asbytes()
            log.debug("Offering public key: %s %s %s", ident.label, key_type_label(name),
                      fingerprint(blob))
            self.offered.append(f"publickey {ident.label}")
            result = self._try(functools.partial(self.t.auth_publickey, self.user, key))
            if self.t.is_authenticated():
                log.debug("Authenticated to %s using \"publickey\" (%s).",
                         self.target.hostname, ident.label)
                return []
            if result:
                return result
            if not self.t.is_active():
                raise self._lost(Exception("server closed the connection"))
        return None

    # -- passwords -------------------------------------------------------------------------
    def _get_password(self, question: str) -> str | None:
        if self.kept_password is not None:
            # The one that worked last time (a reconnect): tried once, never asked for.
            password, self.kept_password = self.kept_password, None
            return password
        if self.password_stdin:
            if self.stdin_read:
                return None  # one line, one try: a script cannot answer twice
            self.stdin_read = True
            try:
                return prompt.read_stdin_line()
            except prompt.NoWayToAsk as e:
                log.debug("%s", e)
                return None
        if not self.interactive:
            return None
        try:
            return prompt.ask(question)
        except prompt.NoWayToAsk as e:
            log.debug("cannot ask for a password: %s", e)
            return None

    def _password(self) -> list[str] | None:
        question = f"{self.user}@{self.target.hostname}'s password: "
        for _ in range(max(1, self.prompts)):
            password = self._get_password(question)
            if password is None:
                return None
            self.offered.append("password") if "password" not in self.offered else None
            result = self._try(functools.partial(self.t.auth_password, self.user, password,
                                                 fallback=False))
            if self.t.is_authenticated():
                self.secrets.password = password
                log.debug("Authenticated to %s using \"password\".", self.target.hostname)
                return []
            if result:
                self.secrets.password = password
                return result
            if not self.t.is_active():
                raise self._lost(Exception("server closed the connection"))
            log.info("Permission denied, please try again.")
            if self.password_stdin:
                return None
        return None

    def _keyboard_interactive(self) -> list[str] | None:
        answered_with: list[str | None] = [None]
        gave_up = [False]

        def handler(title: str, instructions: str,
                    prompts: list[tuple[str, bool]]) -> list[str]:
            if title or instructions:
                for line in (title, instructions):
                    if line and self.interactive:
                        prompt.tell(line)
            answers = []
            for text, echo in prompts:
                if not echo and "password" in text.lower():
                    answer = self._get_password(f"({self.user}@{self.target.hostname}) {text}")
                    answered_with[0] = answer
                elif self.interactive:
                    try:
                        answer = prompt.ask(text, echo=echo)
                    except prompt.NoWayToAsk:
                        answer = None
                else:
                    answer = None
                if answer is None:
                    gave_up[0] = True
                    raise paramiko.AuthenticationException("no answer to the server's question")
                answers.append(answer)
            return answers

        for _ in range(max(1, self.prompts)):
            if "keyboard-interactive" not in self.offered:
                self.offered.append("keyboard-interactive")
            result = self._try(lambda: self.t.auth_interactive(self.user, handler))
            if self.t.is_authenticated():
                if answered_with[0] is not None:
                    self.secrets.password = answered_with[0]
                log.debug("Authenticated to %s using \"keyboard-interactive\".",
                         self.target.hostname)
                return []
            if result:
                if answered_with[0] is not None:
                    self.secrets.password = answered_with[0]
                return result
            if not self.t.is_active():
                raise self._lost(Exception("server closed the connection"))
            if gave_up[0] or self.password_stdin:
                return None
            log.info("Permission denied, please try again.")
        return None


def _algorithm_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    base = name.replace("-cert-v01@openssh.com", "")
    if base == "ssh-rsa":  # signed with rsa-sha2-256/512 when allowed
        return any(a.startswith("rsa-sha2-") for a in allowed)
    return base in allowed or any(a.startswith(base) for a in allowed)


def _cert_matches(key: paramiko.PKey, cert_blob: bytes) -> bool:
    from pysshfs.ssh import certs

    try:
        return certs.plain_key_blob(cert_blob) == key.asbytes()
    except Exception:
        return False


def _with_cert(key: paramiko.PKey, cert_path: str) -> paramiko.PKey | None:
    certified = copy.copy(key)
    try:
        certified.load_certificate(cert_path)
    except (OSError, ValueError, paramiko.SSHException) as e:
        log.debug("cannot use certificate %s: %s", short_path(cert_path), e)
        return None
    return certified
