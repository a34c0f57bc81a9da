"""ssh_config resolution: which settings apply to one destination, as OpenSSH decides it.

Reads ``~/.ssh/config`` then ``/etc/ssh/ssh_config`` (or only the ``-F`` file), evaluating
Host and Match blocks while reading (Include, ``!`` patterns, Match exec/localuser/...), first
value wins, command-line ``-o`` values first of all. Tokens (%h %p %r %u %d %% ~ ...) are
expanded where ssh expands them. paramiko.SSHConfig is not used: it lacks Include, Match exec
without `invoke`, several-values-per-line keywords and line numbers for the debug story.
"""

from __future__ import annotations

import errno
import getpass
import glob
import hashlib
import logging
import os
import re
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from pysshfs.errors import MountError
from pysshfs.ssh.request import ConnectRequest

log = logging.getLogger(__name__)

USER_CONFIG = "~/.ssh/config"
SYSTEM_CONFIG = "/etc/ssh/ssh_config"
MAX_INCLUDE_DEPTH = 16

# Keywords whose values accumulate over every matching block instead of first-wins.
MULTI_VALUED = frozenset({
    "identityfile", "certificatefile", "localforward", "remoteforward", "dynamicforward",
    "sendenv",
})
# Keywords whose value is the raw rest of the line (a shell command), not split into words.
RAW_VALUED = frozenset({
    "proxycommand", "localcommand", "remotecommand", "knownhostscommand",
})
DEFAULT_IDENTITY_FILES = (
    "~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
)
DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")

# Canonical spelling of keywords, for messages only (the config is case-insensitive).
KNOWN_KEYWORDS = {
    k.lower(): k for k in (
        "Host", "Match", "Include", "HostName", "Port", "User", "IdentityFile",
        "IdentitiesOnly", "IdentityAgent", "CertificateFile", "ProxyJump", "ProxyCommand",
        "UserKnownHostsFile", "GlobalKnownHostsFile", "StrictHostKeyChecking",
        "HashKnownHosts", "CheckHostIP", "HostKeyAlias", "HostKeyAlgorithms",
        "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes", "Ciphers", "MACs",
        "KexAlgorithms", "Compression", "ConnectTimeout", "ConnectionAttempts",
        "ServerAliveInterval", "ServerAliveCountMax", "TCPKeepAlive",
        "PasswordAuthentication", "KbdInteractiveAuthentication",
        "ChallengeResponseAuthentication", "PubkeyAuthentication",
        "PreferredAuthentications", "NumberOfPasswordPrompts", "BatchMode", "AddressFamily",
        "BindAddress", "ForwardAgent", "Tag", "CanonicalizeHostname", "AddKeysToAgent",
        "UpdateHostKeys", "VisualHostKey", "LogLevel",
    )
}
# What OpenSSH refuses in host and user names given on the command line (readconf.c
# ssh_valid_hostname / ssh_valid_ruser, since CVE-2023-51385): expanded into ProxyCommand
# or Match exec as %h, %n or %r, they would be shell syntax and run as commands.
_HOST_FORBIDDEN = frozenset("'`\"$\\;&<>|(){},")
_USER_FORBIDDEN = frozenset("'`\";&<>|(){}")
_C_SPACE = frozenset(" \t\n\v\f\r")  # C isspace()

ALIASES = {
    "pubkeyacceptedkeytypes": "pubkeyacceptedalgorithms",
    "challengeresponseauthentication": "kbdinteractiveauthentication",
}


def split_args(text: str) -> list[str]:
    """Split a config value into words like OpenSSH's argv_split: quotes group, '#' ends."""
    args: list[str] = []
    cur: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
                cur.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                quote = ""
            else:
                cur.append(c)
        elif c in " \t":
            if in_word:
                args.append("".join(cur))
                cur, in_word = [], False
        elif c == "#" and not in_word:
            break
        elif c in "\"'":
            quote, in_word = c, True
        elif c == "\\" and i + 1 < len(text) and text[i + 1] in "\"'\\ ":
            cur.append(text[i + 1])
            in_word = True
            i += 1
        else:
            cur.append(c)
            in_word = True
        i += 1
    if quote:
        raise ValueError("unterminated quote")
    if in_word:
        args.append("".join(cur))
    return args


def split_keyword(line: str) -> tuple[str, str]:
    """'Key value', 'Key=value' or 'Key = value' → (keyword, rest of line)."""
    line = line.strip()
    end = 0
    while end < len(line) and line[end] not in " \t=":
        end += 1
    keyword, rest = line[:end], line[end:].lstrip(" \t")
    if rest.startswith("="):
        rest = rest[1:].lstrip(" \t")
    return keyword, rest


def match_pattern(name: str, pattern: str) -> bool:
    """ssh's match_pattern: only '*' and '?' are special ('[' is literal, as in [host]:port)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def match_pattern_list(name: str, patterns: Iterable[str]) -> bool:
    """ssh's match_pattern_list: a '!' match vetoes, otherwise any positive match wins."""
    name = name.lower()
    matched = False
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern.startswith("!"):
            if match_pattern(name, pattern[1:]):
                return False
        elif match_pattern(name, pattern):
            matched = True
    return matched


def _control(c: str) -> bool:
    return ord(c) < 0x20 or c == "\x7f"


def valid_hostname(name: str) -> bool:
    """A host name OpenSSH accepts: no leading '-', no quote, shell metacharacter, comma,
    white space or control character."""
    return not name.startswith("-") and not any(
        c in _HOST_FORBIDDEN or c in _C_SPACE or c.isspace() or _control(c) for c in name)


def valid_username(name: str) -> bool:
    """A remote user name OpenSSH accepts: no leading '-', no quote, shell metacharacter
    or control character, no '-' right after white space, no trailing backslash ('$' is
    allowed: Windows machine accounts end in it)."""
    if name.startswith("-") or name.endswith("\\"):
        return False
    for i, c in enumerate(name):
        if c in _USER_FORBIDDEN or _control(c):
            return False
        if c in _C_SPACE and name[i + 1:i + 2] == "-":
            return False
    return True


def check_command_line_names(req: ConnectRequest) -> None:
    """Refuse, as ssh does, host and user names from the command line that would be shell
    code once a %-token puts them into ProxyCommand or Match exec (checked for every
    destination, whether or not a command uses them, so the answer never depends on the
    configuration). Names from the configuration files are the user's own and trusted."""
    hosts = [("host name", req.host)]
    users = [("user name", req.user)] if req.user is not None else []
    for key, value in req.options.items():
        values = value if isinstance(value, list) else [value]
        if key.lower() == "hostname":
            hosts += [("HostName", v) for v in values]
        elif key.lower() == "user":
            users += [("User", v) for v in values]
    rules = (
        (hosts, valid_hostname, "host names with quotes, spaces, control characters, a "
         "leading '-' or any of $`\\;&<>|(){},", "%h"),
        (users, valid_username, "user names with quotes, control characters, a leading '-' "
         "or any of `;&<>|(){}", "%r"),
    )
    for names, valid, refused, token in rules:
        for what, name in names:
            if not valid(name):
                raise MountError(errno.EINVAL, f"{what} '{name}'", f"ssh refuses {refused}",
                                 f"check the name: through {token} in ProxyCommand or "
                                 "Match exec it would run as shell code")


def expand_tilde(path: str) -> str:
    if path.startswith("~"):
        return os.path.expanduser(path)
    return path


def expand_tokens(value: str, tokens: dict[str, str], what: str) -> str:
    """Replace %x tokens in one pass (so %%h stays %h); unknown tokens are kept literally."""
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 1 < len(value):
            t = value[i + 1]
            if t == "%":
                out.append("%")
            elif t in tokens:
                out.append(tokens[t])
            else:
                log.debug("%s: unknown token %%%s left as is", what, t)
                out.append(value[i:i + 2])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class ResolvedTarget:
    """The settings for one destination after ssh_config: what connect() acts on."""

    original_host: str
    hostname: str
    port: int
    user: str
    options: dict[str, list[str]] = field(default_factory=dict)  # keyword (lower) → words
    commands: dict[str, str] = field(default_factory=dict)  # RAW_VALUED keyword → command
    story: list[str] = field(default_factory=list)  # what was read and applied, for -d

    def get(self, key: str, default: str | None = None) -> str | None:
        words = self.options.get(key.lower())
        return words[0] if words else default

    def words(self, key: str) -> list[str]:
        return list(self.options.get(key.lower(), []))

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        return value.lower() in ("yes", "true", "on", "always", "ask", "confirm", "autoask")

    def number(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None or value.lower() == "none":
            return default
        try:
            return float(value)
        except ValueError:
            raise MountError(errno.EINVAL, f"{self.original_host}: bad {key} '{value}'",
                             "a number is expected", "fix the ssh configuration") from None

    @property
    def description(self) -> str:
        """"user@host" (":port" when not 22) as typed, for messages."""
        host = self.original_host
        return f"{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def local_user(self) -> str:
        return getpass.getuser()

    def tokens(self) -> dict[str, str]:
        """The %-tokens ssh offers for paths (IdentityFile, UserKnownHostsFile, ...)."""
        local_fqdn = socket.gethostname()
        local_short = local_fqdn.split(".")[0]
        jump = self.get("proxyjump") or ""
        return {
            "C": hashlib.sha1(
                f"{local_fqdn}{self.hostname}{self.port}{self.user}{jump}".encode()
            ).hexdigest(),
            "d": os.path.expanduser("~"),
            "h": self.hostname,
            "i": str(os.getuid()),
            "j": jump,
            "k": self.get("hostkeyalias") or self.original_host,
            "L": local_short,
            "l": local_fqdn,
            "n": self.original_host,
            "p": str(self.port),
            "r": self.user,
            "u": self.local_user,
        }

    def paths(self, key: str, defaults: Iterable[str] = ()) -> list[str]:
        """A path keyword with ~ and tokens expanded; `defaults` when not configured."""
        words = self.words(key) or list(defaults)
        tokens = self.tokens()
        out = []
        for word in words:
            if word.lower() == "none":
                continue
            out.append(expand_tilde(expand_tokens(word, tokens, key)))
        return out

    def command(self, key: str) -> str | None:
        """ProxyCommand and friends with %h %p %r %n %% expanded; None for 'none'/unset."""
        value = self.commands.get(key.lower())
        if value is None or value.strip().lower() == "none":
            return None
        t = self.tokens()
        allowed = {k: t[k] for k in ("h", "n", "p", "r")}
        return expand_tokens(value, allowed, key)


class _Resolver:
    """Reads config files line by line, applying the blocks that match as ssh does."""

    def __init__(self, req: ConnectRequest) -> None:
        self.req = req
        self.original = req.host
        self.options: dict[str, list[str]] = {}
        self.commands: dict[str, str] = {}
        self.story: list[str] = []
        self.want_final = False
        self.final = False
        self.local_user = getpass.getuser()

    # -- storing values ------------------------------------------------------------------
    def set(self, key: str, rest: str, where: str) -> None:
        key = ALIASES.get(key, key)
        if key in ("proxyjump", "proxycommand") and (
                "proxyjump" in self.options or "proxycommand" in self.commands):
            return  # mutually exclusive in ssh: the first one given wins, even 'none'
        if key in RAW_VALUED:
            if key not in self.commands:
                self.commands[key] = rest.strip()
            return
        try:
            words = split_args(rest)
        except ValueError:
            raise MountError(errno.EINVAL, f"{where}: bad line", "unterminated quote",
                             "fix the ssh configuration") from None
        if not words:
            raise MountError(errno.EINVAL, f"{where}: '{key}' has no value", "a value is missing",
                             "fix the ssh configuration")
        if key in MULTI_VALUED:
            have = self.options.setdefault(key, [])
            have.extend(w for w in words if w not in have)
        elif key not in self.options:
            self.options[key] = words
            if key not in KNOWN_KEYWORDS:
                log.debug("%s: %s is not used by pysshfs, ignored", where, key)

    # -- matching ------------------------------------------------------------------------
    def current_host(self) -> str:
        hostname = self.options.get("hostname")
        if hostname:
            return expand_tokens(hostname[0], {"h": self.original}, "HostName")
        return self.original

    def current_user(self) -> str:
        user = self.options.get("user")
        return user[0] if user else self.local_user

    def match_host(self, rest: str) -> bool:
        return match_pattern_list(self.original, split_args(rest))

    def match_criteria(self, rest: str, where: str) -> bool:
        words = split_args(rest)
        ok = True
        i = 0
        while i < len(words):
            crit = words[i].lower()
            negate = crit.startswith("!")
            crit = crit.lstrip("!")
            i += 1
            if crit == "all":
                result = True
            elif crit == "canonical":
                result = False
            elif crit == "final":
                self.want_final = True
                result = self.final
            else:
                if i >= len(words):
                    raise MountError(errno.EINVAL, f"{where}: Match {crit} needs an argument",
                                     "the argument is missing", "fix the ssh configuration")
                arg = words[i]
                i += 1
                patterns = arg.split(",")
                if crit == "host":
                    result = match_pattern_list(self.current_host(), patterns)
                elif crit == "originalhost":
                    result = match_pattern_list(self.original, patterns)
                elif crit == "user":
                    result = match_pattern_list(self.current_user(), patterns)
                elif crit == "localuser":
                    result = match_pattern_list(self.local_user, patterns)
                elif crit == "tagged":
                    tag = self.options.get("tag", [""])[0]
                    result = match_pattern_list(tag, patterns)
                elif crit == "exec":
                    result = self.match_exec(arg, where)
                else:
                    log.debug("%s: Match %s not supported, treated as not matching", where, crit)
                    result = False
            if negate:
                result = not result
            if not result:
                ok = False  # keep scanning: 'final' must still be noticed
        return ok

    def match_exec(self, command: str, where: str) -> bool:
        port = self.options.get("port", [str(self.req.port or 22)])[0]
        probe = ResolvedTarget(self.original, self.current_host(), int(port),
                               self.current_user(), dict(self.options))
        command = expand_tokens(command, probe.tokens(), "Match exec")
        result = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, check=False)
        log.debug("%s: Match exec '%s' exited %d", where, command, result.returncode)
        return result.returncode == 0

    # -- reading -------------------------------------------------------------------------
    def read_file(self, path: str, *, user_file: bool, depth: int = 0,
                  never_match: bool = False) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            if depth == 0:
                log.debug("config file %s not found", path)
            return
        except OSError as e:
            raise MountError(e.errno or errno.EIO, f"{path}: cannot read ssh configuration",
                             e.strerror or str(e), "check its permissions") from None
        self.story.append(f"reading configuration data {path}")
        active = not never_match
        for lineno, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            keyword, rest = split_keyword(stripped)
            key = keyword.lower()
            where = f"{path}:{lineno}"
            if key == "host":
                active = not never_match and self.match_host(rest)
                if active:
                    self.story.append(f"{where}: applying options for {rest.strip()}")
            elif key == "match":
                active = not never_match and self.match_criteria(rest, where)
                if active:
                    self.story.append(f"{where}: matched 'Match {rest.strip()}'")
            elif key == "include":
                self.include(rest, path, user_file=user_file, depth=depth,
                             never_match=never_match or not active, where=where)
            elif active:
                self.set(key, rest, where)

    def include(self, rest: str, parent: str, *, user_file: bool, depth: int,
                never_match: bool, where: str) -> None:
        if depth >= MAX_INCLUDE_DEPTH:
            raise MountError(errno.ELOOP, f"{where}: Include nested too deep",
                             f"more than {MAX_INCLUDE_DEPTH} levels", "fix the ssh configuration")
        base = os.path.expanduser("~/.ssh") if user_file else os.path.dirname(SYSTEM_CONFIG)
        for word in split_args(rest):
            pattern = expand_tilde(word)
            if not os.path.isabs(pattern):
                pattern = os.path.join(base, pattern)
            for path in sorted(glob.glob(pattern)):
                self.read_file(path, user_file=user_file, depth=depth + 1,
                               never_match=never_match)

    def command_line(self) -> None:
        for keyword, value in self.req.options.items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                key = keyword.lower()
                if key in ("host", "match", "include"):
                    log.debug("-o %s ignored: not allowed on the command line", keyword)
                    continue
                self.set(key, v, f"-o {keyword}")
        if self.req.port is not None and "port" not in self.options:
            self.options["port"] = [str(self.req.port)]
        if self.req.user and "user" not in self.options:
            self.options["user"] = [self.req.user]

    def read_all(self) -> None:
        cfg = self.req.config_file
        if cfg is not None:
            if cfg.lower() != "none":
                path = expand_tilde(cfg)
                if not os.path.exists(path):
                    raise MountError(errno.ENOENT, f"{cfg}: ssh configuration file not found",
                                     "-F names a file that does not exist", "check the path")
                self.read_file(path, user_file=True)
        else:
            self.read_file(os.path.expanduser(USER_CONFIG), user_file=True)
            self.read_file(SYSTEM_CONFIG, user_file=False)


def resolve(req: ConnectRequest) -> ResolvedTarget:
    """Apply the command line and ssh_config to `req` → the settings ssh would use."""
    if not req.host:
        raise MountError(errno.EINVAL, "no host given", "the destination is empty",
                         "use [user@]host:[dir]")
    check_command_line_names(req)
    r = _Resolver(req)
    r.command_line()
    r.read_all()
    if r.want_final:
        r.final = True
        r.story.append("re-reading configuration for 'Match final'")
        r.read_all()
    hostname = r.current_host()
    try:
        port = int(r.options.get("port", ["22"])[0])
    except ValueError:
        raise MountError(errno.EINVAL, f"{req.host}: bad port '{r.options['port'][0]}'",
                         "a number is expected", "fix the Port setting") from None
    target = ResolvedTarget(
        original_host=req.host,
        hostname=hostname,
        port=port,
        user=r.current_user(),
        options=r.options,
        commands=r.commands,
        story=r.story,
    )
    return target
