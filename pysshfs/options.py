"""The one table of `-o` options: name, type, default, help.

`pysshfs -h`, the README option table and the man page are generated from (or checked
against) `OPTIONS`; the CLI parses `-o` with it into `pysshfs.mountspec.MountOptions`.
Adding an option means adding a row here (and, unless it is an ssh_config keyword, the
field of that name in MountOptions, typed; a unit test says which one is missing).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from pysshfs.errors import MountError

# Groups, in the order help shows them.
GROUP_TITLES = {
    "general": "pysshfs options",
    "cache": "cache options",
    "ssh": "SSH options (as in ssh_config(5); override the config files)",
    "fuse": "FUSE options (passed to the kernel / libfuse)",
}


@dataclass(frozen=True)
class Option:
    """One `-o` option. `kind` is how the value is parsed; `dest` where it is stored."""

    name: str
    kind: str  # "flag", "bool" (yes/no), "int", "float", "octal", "str", "choice", "list"
    default: Any
    help: str
    group: str = "general"
    choices: tuple[str, ...] = ()
    dest: str = ""  # attribute in MountOptions; defaults to name
    sshfs: bool = True  # the option exists in sshfs with the same meaning
    # A "flag" may also be given as name=yes/no; `negate` stores the opposite in `dest`
    # (contain_symlinks is the "off" switch of no_contain_symlinks).
    negate: bool = False
    path: bool = False  # the value is a local file (docs say FILE, the shell completes files)

    @property
    def key(self) -> str:
        return self.dest or self.name


def _o(*args: Any, **kw: Any) -> Option:
    return Option(*args, **kw)


OPTIONS: tuple[Option, ...] = (
    # --- general -----------------------------------------------------------------------
    _o("reconnect", "bool", True, "reconnect to the server after the connection drops "
       "(default yes; reconnect=no turns it off)"),
    _o("io_timeout", "float", 60.0, "seconds any request may wait for its answer: a server "
       "that answers nothing for that long is taken as a broken connection (dropped and "
       "reconnected, whatever keepalives say), and an operation fails with EIO once it has "
       "waited that long, also for a lost connection to come back and while mounting "
       "(0 = wait forever)", sshfs=False),
    _o("sftp_server", "str", None, "path of the SFTP server to run on the remote host instead of "
       "the 'sftp' subsystem"),
    _o("follow_symlinks", "flag", False, "follow symlinks on the server: show what they point to"),
    _o("transform_symlinks", "flag", False, "show absolute symlinks that point inside the "
       "mounted directory as relative links, so they work through the mount"),
    _o("no_contain_symlinks", "flag", False, "show symlinks that lead outside the mount as "
       "they are (by default such links cannot be read: a hostile server cannot lead you "
       "to local files)"),
    _o("contain_symlinks", "flag", None, "the default: symlinks that lead outside the mount "
       "cannot be read (EPERM); undoes an earlier no_contain_symlinks",
       dest="no_contain_symlinks", negate=True),
    _o("idmap", "choice", "none", "map remote user/group ids: none, user (the remote user's ids "
       "appear as yours), file (uidfile/gidfile), names (a remote id is the local id of the "
       "same user or group name; needs OpenSSH 9.1+ on the server)",
       choices=("none", "user", "file", "names")),
    _o("uidfile", "str", None, "with idmap=file: lines of local_user:remote_uid",
       path=True),
    _o("gidfile", "str", None, "with idmap=file: lines of local_group:remote_gid",
       path=True),
    _o("nomap", "choice", "error", "with idmap=file or names, an id with no mapping: error "
       "(EPERM, as sshfs) or ignore (show it, or chown to it, as is)",
       choices=("ignore", "error")),
    _o("uid", "int", None, "show every file as owned by this uid"),
    _o("gid", "int", None, "show every file as owned by this gid"),
    _o("umask", "octal", None, "clear these permission bits in every file's mode"),
    _o("password_stdin", "flag", False, "read the password from standard input (for scripts)"),
    _o("sshfs_debug", "flag", False, "print debugging information (same as -d)", dest="debug"),
    _o("max_conns", "int", 1, "accepted for sshfs compatibility; pysshfs uses one connection "
       "with many requests in flight"),
    _o("workaround", "str", None, "accepted for sshfs compatibility (no workaround is needed)"),
    _o("dir_cache", "bool", True, "cache directory listings (yes/no)", group="cache"),
    _o("cache", "bool", True, "cache attributes and listings (yes/no)", group="cache"),
    _o("readdir_ahead", "bool", True, "list directories ahead of need (yes/no): the "
       "directory of a lookup that missed, and subdirectories during a walk (find, ls -R, "
       "git status); off with cache=no or dir_cache=no", group="cache", sshfs=False),
    _o("open_ahead", "bool", True, "open the next small files of a directory ahead while a "
       "program reads them in turn (cp -r, tar c, git status) (yes/no); off with cache=no "
       "or dir_cache=no", group="cache", sshfs=False),
    _o("cache_timeout", "float", 20.0, "seconds cached entries stay valid", group="cache"),
    _o("cache_stat_timeout", "float", None, "seconds cached attributes stay valid",
       group="cache"),
    _o("cache_dir_timeout", "float", None, "seconds cached listings stay valid", group="cache"),
    _o("cache_link_timeout", "float", None, "seconds cached symlink targets stay valid",
       group="cache"),
    _o("cache_max_size", "int", 10000, "most entries each cache holds", group="cache"),
    _o("dcache_timeout", "float", None, "alias of cache_timeout", group="cache",
       dest="cache_timeout"),
    _o("dcache_stat_timeout", "float", None, "alias of cache_stat_timeout", group="cache",
       dest="cache_stat_timeout"),
    _o("dcache_dir_timeout", "float", None, "alias of cache_dir_timeout", group="cache",
       dest="cache_dir_timeout"),
    _o("dcache_link_timeout", "float", None, "alias of cache_link_timeout", group="cache",
       dest="cache_link_timeout"),
    _o("dcache_max_size", "int", None, "alias of cache_max_size", group="cache",
       dest="cache_max_size"),
    # --- ssh (ssh_config keywords; matched case-insensitively) --------------------------
    _o("port", "int", None, "remote port (same as -p)", group="ssh", dest="Port"),
    _o("IdentityFile", "list", None, "private key file (may repeat)", group="ssh", path=True),
    _o("User", "str", None, "remote user name", group="ssh"),
    _o("StrictHostKeyChecking", "choice", None, "host key policy",
       group="ssh", choices=("yes", "no", "ask", "accept-new", "off")),
    _o("UserKnownHostsFile", "list", None, "known_hosts file(s)", group="ssh", path=True),
    _o("GlobalKnownHostsFile", "list", None, "global known_hosts file(s)", group="ssh",
       path=True),
    _o("ConnectTimeout", "int", None, "seconds to wait for the TCP connection", group="ssh"),
    _o("ConnectionAttempts", "int", None, "TCP connection attempts", group="ssh"),
    _o("ServerAliveInterval", "int", None, "seconds between keepalive probes", group="ssh"),
    _o("ServerAliveCountMax", "int", None, "unanswered probes before the link is dead",
       group="ssh"),
    _o("TCPKeepAlive", "str", None, "TCP keepalive (yes/no)", group="ssh"),
    _o("Compression", "str", None, "compress the SSH stream (yes/no; -C)", group="ssh"),
    _o("HostName", "str", None, "real host name to connect to", group="ssh"),
    _o("HostKeyAlias", "str", None, "name to look the host key up under", group="ssh"),
    _o("HostKeyAlgorithms", "str", None, "host key algorithms (+,-,^ forms)", group="ssh"),
    _o("PubkeyAcceptedAlgorithms", "str", None, "public key algorithms (+,-,^ forms)",
       group="ssh"),
    _o("PubkeyAcceptedKeyTypes", "str", None, "old name of PubkeyAcceptedAlgorithms",
       group="ssh"),
    _o("Ciphers", "str", None, "ciphers (+,-,^ forms)", group="ssh"),
    _o("MACs", "str", None, "MACs (+,-,^ forms)", group="ssh"),
    _o("KexAlgorithms", "str", None, "key exchange algorithms (+,-,^ forms)", group="ssh"),
    _o("IdentitiesOnly", "str", None, "use only the configured identity files (yes/no)",
       group="ssh"),
    _o("IdentityAgent", "str", None, "agent socket (or none)", group="ssh"),
    _o("CertificateFile", "list", None, "user certificate file(s)", group="ssh", path=True),
    _o("ProxyJump", "str", None, "jump host(s): [user@]host[:port][,...] or none", group="ssh"),
    _o("ProxyCommand", "str", None, "command whose stdin/stdout is the connection",
       group="ssh"),
    _o("PasswordAuthentication", "str", None, "try password authentication (yes/no)",
       group="ssh"),
    _o("KbdInteractiveAuthentication", "str", None, "try keyboard-interactive (yes/no)",
       group="ssh"),
    _o("PubkeyAuthentication", "str", None, "try public key authentication (yes/no)",
       group="ssh"),
    _o("PreferredAuthentications", "str", None, "order of authentication methods", group="ssh"),
    _o("NumberOfPasswordPrompts", "int", None, "password prompts before giving up", group="ssh"),
    _o("BatchMode", "str", None, "never prompt (yes/no)", group="ssh"),
    _o("AddressFamily", "choice", None, "any, inet or inet6", group="ssh",
       choices=("any", "inet", "inet6")),
    _o("BindAddress", "str", None, "local address to connect from", group="ssh"),
    _o("CheckHostIP", "str", None, "also check the host IP in known_hosts (yes/no)",
       group="ssh"),
    _o("HashKnownHosts", "str", None, "hash names added to known_hosts (yes/no)", group="ssh"),
    _o("ForwardAgent", "str", None, "ignored: a mount never forwards the agent", group="ssh"),
    # --- fuse ---------------------------------------------------------------------------
    _o("ro", "flag", False, "mount read-only", group="fuse"),
    _o("allow_other", "flag", False, "let other users access the mount, all with your rights "
       "on the server unless default_permissions is given too (a warning says so)",
       group="fuse"),
    _o("allow_root", "flag", False, "let root access the mount", group="fuse"),
    _o("default_permissions", "flag", False, "let the kernel check permissions from the mode",
       group="fuse"),
    _o("max_read", "int", None, "largest read request in bytes", group="fuse"),
    _o("fsname", "str", None, "file system name shown in mount tables (default: the source)",
       group="fuse"),
    _o("subtype", "str", None, "file system subtype (default: pysshfs)", group="fuse"),
    _o("entry_timeout", "float", None, "seconds the kernel caches names", group="fuse"),
    _o("attr_timeout", "float", None, "seconds the kernel caches attributes", group="fuse"),
    _o("negative_timeout", "float", None, "seconds the kernel caches missing names",
       group="fuse"),
    _o("kernel_cache", "flag", False, "keep file contents in the page cache across opens",
       group="fuse"),
    _o("auto_cache", "flag", False, "keep file contents cached while mtime/size are unchanged",
       group="fuse"),
    _o("direct_io", "flag", False, "bypass the page cache", group="fuse"),
)

# Generic mount(8)/FUSE options that fstab and mount.fuse pass along: accepted, no effect here.
# suid/dev are among them on purpose: mount.fuse3 adds "dev,suid" to every root mount, and a
# file on the server must never become a set-uid program or a device node here, so a
# pysshfs mount is always nosuid,nodev (as every unprivileged FUSE mount is).
ACCEPTED_MOUNT_OPTIONS = frozenset(
    {"rw", "dev", "nodev", "suid", "nosuid", "auto", "noauto", "user", "users", "nouser",
     "owner", "group", "_netdev", "nofail", "defaults", "relatime", "norelatime",
     "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "big_writes",
     "nonempty", "async_read", "noforget", "hard_remove", "use_ino", "readdir_ino", "intr"}
)
ACCEPTED_MOUNT_PREFIXES = ("x-systemd.", "x-", "comment=", "context=", "fscontext=",
                           "defcontext=", "rootcontext=")

# Kernel mount flags that libfuse applies to the mount: fstab's `user` implies noexec, and a
# mount must honour it. Each pair's last word wins, as with mount(8).
KERNEL_MOUNT_FLAGS = {"exec": "noexec", "noexec": "exec", "sync": "async", "async": "sync",
                      "atime": "noatime", "noatime": "atime", "dirsync": ""}


@dataclass(frozen=True)
class SshfsOnly:
    """An sshfs option pysshfs does not have: accepted and ignored, or refused, and why."""

    name: str
    accepted: bool
    note: str  # what pysshfs does instead, or what to use instead


SSHFS_ONLY: tuple[SshfsOnly, ...] = (
    SshfsOnly("delay_connect", True, "ignored: pysshfs connects before mounting, so that a "
              "wrong host or key is reported at once"),
    SshfsOnly("no_check_root", True, "ignored: the remote directory is always checked"),
    SshfsOnly("no_readahead", True, "ignored: reads ahead only what sequential reads need"),
    SshfsOnly("sync_readdir", True, "ignored: a listing is one request stream either way"),
    SshfsOnly("dcache_clean_interval", True, "ignored: expired cache entries are dropped as "
              "they are met"),
    SshfsOnly("dcache_min_clean_interval", True, "ignored: as dcache_clean_interval"),
    SshfsOnly("ssh_protocol", True, "ignored: there is only SSH protocol 2"),
    SshfsOnly("no_rofd_flush", True, "ignored: closing a read-only file sends nothing"),
    SshfsOnly("ac_attr_timeout", True, "ignored: use attr_timeout"),
    SshfsOnly("remember", True, "ignored: libfuse's default applies"),
    SshfsOnly("sshfs_sync", False, "use fsync(2), or the sync mount option, which makes "
              "every write wait for the server"),
    SshfsOnly("ssh_command", False, "pysshfs does not run ssh: use ProxyCommand= or "
              "ProxyJump= for another way in, -F for another configuration"),
    SshfsOnly("directport", False, "pysshfs always speaks SSH; sftp_server= picks the "
              "server program"),
    SshfsOnly("passive", False, "pysshfs makes its own SSH connection"),
    SshfsOnly("slave", False, "old name of passive: pysshfs makes its own SSH connection"),
    SshfsOnly("disable_hardlink", False, "link(2) always uses hardlink@openssh.com when "
              "the server has it"),
    SshfsOnly("auto_unmount", False, "the daemon exits when unmounted: unmount with "
              "fusermount3 -u"),
    SshfsOnly("modules", False, "FUSE modules are not supported"),
    SshfsOnly("subdir", False, "FUSE modules are not supported: mount host:dir instead"),
    SshfsOnly("rellinks", False, "FUSE modules are not supported: use transform_symlinks"),
    SshfsOnly("from_code", False, "FUSE modules are not supported: names pass unchanged"),
    SshfsOnly("to_code", False, "FUSE modules are not supported: names pass unchanged"),
)
_SSHFS_ONLY = {o.name: o for o in SSHFS_ONLY}


def sshfs_only(name: str) -> SshfsOnly | None:
    """The row for an sshfs option pysshfs does not have under that name, if it is one."""
    return _SSHFS_ONLY.get(name)


_BY_NAME: dict[str, Option] = {}
for _opt in OPTIONS:
    _BY_NAME[_opt.name.lower() if _opt.group == "ssh" else _opt.name] = _opt

_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


def lookup(name: str) -> Option | None:
    """The table row for `name` (ssh keywords are case-insensitive, as in ssh_config)."""
    return _BY_NAME.get(name) or _BY_NAME.get(name.lower())


def defaults() -> dict[str, Any]:
    """Every option's default, keyed by dest (aliases do not override their target);
    `pysshfs.mountspec.MountOptions` takes its field defaults from here."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        values.setdefault(opt.key, opt.default)
    return values


def _bad(name: str, why: str) -> MountError:
    return MountError(errno.EINVAL, f"option '{name}'", why, "see pysshfs -h")


def parse_value(opt: Option, name: str, raw: str | None) -> Any:
    """Turn the text after `name=` into the option's typed value; None means no `=`."""
    if opt.kind == "flag":
        if raw is None:
            return True
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise _bad(name, f"takes no value or yes/no, got '{raw}'")
    if opt.kind == "bool":
        if raw is None:
            return True
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise _bad(name, f"must be yes or no, got '{raw}'")
    if raw is None or raw == "":
        raise _bad(name, "needs a value (name=value)")
    try:
        if opt.kind == "int":
            return int(raw, 10)
        if opt.kind == "float":
            return float(raw)
        if opt.kind == "octal":
            return int(raw, 8)
    except ValueError:
        kind = {"int": "a whole number", "float": "a number", "octal": "an octal number"}
        raise _bad(name, f"must be {kind[opt.kind]}, got '{raw}'") from None
    if opt.kind == "choice":
        if raw.lower() not in opt.choices:
            raise _bad(name, f"must be one of {', '.join(opt.choices)}, got '{raw}'")
        return raw.lower()
    return raw  # "str" and one value of "list"


def is_generic_mount_option(name: str, raw: str | None) -> bool:
    """True for mount(8)/fstab options pysshfs accepts and ignores."""
    if name in ACCEPTED_MOUNT_OPTIONS:
        return True
    text = name if raw is None else f"{name}={raw}"
    return text.startswith(ACCEPTED_MOUNT_PREFIXES)


def split_option_string(text: str) -> list[str]:
    """Split `-o a,b=c,d` at commas; `\\,` keeps a comma inside a value (as libfuse does)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p]


def value_form(opt: Option) -> str:
    """How the value is written after the name: "", "[=yes|no]", "=a|b", "=N", "=FILE"..."""
    if opt.kind == "flag":
        return ""
    if opt.kind == "bool":
        return "[=yes|no]"
    if opt.kind == "choice":
        return "=" + "|".join(opt.choices)
    if opt.path:
        return "=FILE"
    return "=" + {"int": "N", "float": "N", "octal": "MASK"}.get(opt.kind, "VALUE")


def default_text(opt: Option) -> str:
    """The default as the docs show it; "" when there is nothing worth saying."""
    if opt.default in (None, False) or opt.kind == "flag":
        return ""
    if opt.default is True:
        return "yes"
    if isinstance(opt.default, float) and opt.default.is_integer():
        return str(int(opt.default))
    return str(opt.default)


def help_text() -> str:
    """The option section of `pysshfs -h`, generated from the table."""
    lines: list[str] = []
    for group, title in GROUP_TITLES.items():
        lines.append(f"\n{title}:")
        for opt in OPTIONS:
            if opt.group != group:
                continue
            form = f"-o {opt.name}{value_form(opt)}"
            default = f" [{default_text(opt)}]" if default_text(opt) else ""
            lines.append(f"    {form:<38} {opt.help}{default}")
    lines.append("\nmount(8) options applied to the mount: "
                 + ", ".join(sorted(KERNEL_MOUNT_FLAGS)))
    lines.append("Also accepted and ignored (from fstab/mount): "
                 + ", ".join(sorted(ACCEPTED_MOUNT_OPTIONS))
                 + ", x-systemd.*, comment=*; a pysshfs mount is always nosuid,nodev")
    lines.append("sshfs options accepted and ignored: "
                 + ", ".join(o.name for o in SSHFS_ONLY if o.accepted))
    return "\n".join(lines)


def markdown_table() -> str:
    """The README's option table (a test checks README.md holds exactly this)."""
    rows = ["| option | group | default | sshfs | meaning |", "| --- | --- | --- | --- | --- |"]
    for opt in OPTIONS:
        value = value_form(opt).replace("|", "\\|")
        rows.append(f"| `{opt.name}{value}` | {opt.group} | {default_text(opt)} | "
                    f"{'yes' if opt.sshfs else 'no'} | {opt.help} |")
    return "\n".join(rows)


def sshfs_markdown_table() -> str:
    """README's "sshfs option -> pysshfs" table: every sshfs -o option and what pysshfs does."""
    rows: list[tuple[str, str]] = []
    for opt in OPTIONS:
        if opt.sshfs and opt.group != "ssh":
            alias = opt.dest and not opt.negate and lookup(opt.dest) is not None
            same = "the same" + (f" (alias of `{opt.dest}`)" if alias else "")
            if opt.help.startswith("accepted for sshfs compatibility"):
                same = "accepted, no effect" + opt.help[len("accepted for sshfs compatibility"):]
            rows.append((opt.name, same))
    for only in SSHFS_ONLY:
        rows.append((only.name, ("accepted, " if only.accepted else "refused: ") + only.note))
    lines = ["| sshfs option | pysshfs |", "| --- | --- |"]
    lines += [f"| `{name}` | {what} |" for name, what in sorted(rows, key=lambda r: r[0].lower())]
    lines.append("| `SSHOPT=VAL` (`port=`, `IdentityFile=`, ...) | the same for the ssh_config "
                 "keywords in the option table (group ssh): pysshfs reads them itself, it does "
                 "not run ssh |")
    return "\n".join(lines)
