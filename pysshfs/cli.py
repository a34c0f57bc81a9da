"""argv → MountSpec (pysshfs.mountspec), sshfs-compatible; `main()` is the `pysshfs` command.

Options may stand before, between or after the two positionals (mount(8) puts `-o` last).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from typing import Any

from pysshfs import __version__, options, system
from pysshfs.errors import MountError
from pysshfs.mountspec import MountOptions, MountSpec
from pysshfs.ssh.request import ConnectRequest

USAGE = "usage: pysshfs [user@]host:[dir] mountpoint [options]"
STATUS_USAGE = "usage: pysshfs status [MOUNTPOINT] [--json]"
REFRESH_USAGE = "usage: pysshfs refresh MOUNTPOINT [PATH...]"
# Subcommands: a remote source always has a ':', so these words never are one.
SUBCOMMANDS = ("status", "refresh")


class HelpRequested(Exception):
    """-h/--help: print usage and the option table, exit 0."""


class VersionRequested(Exception):
    """-V/--version: print versions, exit 0."""


def parse_source(text: str) -> tuple[str | None, str, str]:
    """Split `[user@]host:[dir]` into (user, host, dir); host may be `[ipv6]`.

    The user part may contain anything but the last '@' (dev-environment tools generate
    names with '/'); the dir is everything after the first ':' outside brackets.
    """
    if text.startswith(("pysshfs#", "sshfs#")):  # legacy fstab form
        text = text.split("#", 1)[1]
    depth = 0
    colon = -1
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0:
            colon = i
            break
    if colon < 0:
        hint = f"write '{text}:' for the login directory, or '{text}:/path'"
        raise MountError(errno.EINVAL, f"'{text}'", "not a remote source [user@]host:[dir]",
                         hint)
    left, path = text[:colon], text[colon + 1:]
    user: str | None = None
    if "@" in left:
        user, left = left.rsplit("@", 1)
        if not user:
            raise MountError(errno.EINVAL, f"'{text}'", "empty user name before '@'",
                             "write user@host:dir")
    host = left
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or "[" in host or "]" in host:
        raise MountError(errno.EINVAL, f"'{text}'", "no host name before ':'",
                         "write [user@]host:[dir]")
    return user, host, path


def _store(values: dict[str, Any], mount_flags: list[str],
           ssh_opts: dict[str, str | list[str]], item: str) -> None:
    """Apply one `name[=value]` from a -o list: `values` gets MountOptions fields,
    `mount_flags` the mount(8) flags, `ssh_opts` the ssh_config keywords."""
    name, eq, raw = item.partition("=")
    raw_value: str | None = raw if eq else None
    # `user` alone is fstab's "users may mount this", not ssh's User keyword.
    opt = None if (raw_value is None and name in options.ACCEPTED_MOUNT_OPTIONS) else \
        options.lookup(name)
    if opt is None:
        if raw_value is None and name in options.KERNEL_MOUNT_FLAGS:
            opposite = options.KERNEL_MOUNT_FLAGS[name]
            mount_flags[:] = [f for f in mount_flags if f not in (name, opposite)] + [name]
            return
        if options.is_generic_mount_option(name, raw_value):
            return
        sshfs = options.sshfs_only(name)
        if sshfs is not None:
            if sshfs.accepted:
                return
            raise MountError(errno.EINVAL, f"option '{name}'",
                             "an sshfs option pysshfs does not have", sshfs.note)
        raise MountError(errno.EINVAL, f"unknown option '{name}'", "pysshfs does not know it",
                         "see pysshfs -h for the options")
    value = options.parse_value(opt, name, raw_value)
    if opt.negate:
        value = not value
    if opt.group == "ssh":
        key = opt.key
        if opt.kind == "list":
            existing = ssh_opts.setdefault(key, [])
            assert isinstance(existing, list)
            existing.append(value)
        else:
            ssh_opts.setdefault(key, str(value))  # first value wins, as in ssh
        return
    values[opt.key] = value


def parse_args(argv: list[str]) -> MountSpec:
    """Parse the command line; raises MountError for anything malformed."""
    values: dict[str, Any] = {}  # MountOptions fields given; the rest keep their defaults
    mount_flags: list[str] = []
    ssh_opts: dict[str, str | list[str]] = {}
    positionals: list[str] = []
    foreground = debug = single = compression = False
    port: int | None = None
    config_file: str | None = None
    i = 0

    def take_value(flag: str) -> str:
        nonlocal i
        if i + 1 >= len(argv):
            raise MountError(errno.EINVAL, f"option '{flag}'", "needs a value", USAGE)
        i += 1
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positionals.extend(argv[i + 1:])
            break
        if arg in ("-h", "--help"):
            raise HelpRequested
        if arg in ("-V", "--version"):
            raise VersionRequested
        if arg in ("-f",):
            foreground = True
        elif arg in ("-d", "--debug"):
            debug = True
        elif arg == "-s":
            single = True
        elif arg == "-C":
            compression = True
        elif arg == "-o" or (arg.startswith("-o") and len(arg) > 2):
            text = take_value("-o") if arg == "-o" else arg[2:]
            for item in options.split_option_string(text):
                _store(values, mount_flags, ssh_opts, item)
        elif arg == "-p" or (arg.startswith("-p") and arg[2:].isdigit()):
            text = take_value("-p") if arg == "-p" else arg[2:]
            try:
                port = int(text)
            except ValueError:
                raise MountError(errno.EINVAL, f"port '{text}'", "not a number",
                                 "give -p PORT") from None
        elif arg == "-F" or (arg.startswith("-F") and len(arg) > 2):
            config_file = take_value("-F") if arg == "-F" else arg[2:]
        elif arg in ("-1", "-2", "-4", "-6"):
            if arg in ("-4", "-6"):
                ssh_opts.setdefault("AddressFamily", "inet" if arg == "-4" else "inet6")
        elif arg.startswith("-") and arg != "-":
            raise MountError(errno.EINVAL, f"unknown option '{arg}'", "pysshfs does not know it",
                             "see pysshfs -h")
        else:
            positionals.append(arg)
        i += 1

    if len(positionals) != 2:
        what = "missing the remote source and the mountpoint" if not positionals else (
            "missing the mountpoint" if len(positionals) == 1 else
            f"too many arguments: {' '.join(positionals[2:])}")
        raise MountError(errno.EINVAL, "command line", what, USAGE)
    source, mountpoint = positionals
    user, host, path = parse_source(source)

    debug = debug or bool(values.pop("debug", False))
    opts = MountOptions(**values, debug=debug, mount_flags=tuple(mount_flags))
    if compression:
        ssh_opts.setdefault("Compression", "yes")
    if port is None and "Port" in ssh_opts:
        port = int(str(ssh_opts.pop("Port")))
    ssh_opts.pop("Port", None)
    # user@host wins over -o User=, which the SSH layer applies over the config files.
    request = ConnectRequest(
        host=host,
        user=user,
        port=port,
        config_file=config_file,
        options=ssh_opts,
        password_stdin=opts.password_stdin,
        debug=debug,
    )
    return MountSpec(
        host=host,
        remote_path=path,
        mountpoint=mountpoint,
        source=source,
        user=user,
        foreground=foreground or debug,
        debug=debug,
        single_thread=single,
        opts=opts,
        ssh=request,
    )


def check_mountpoint(path: str) -> str:
    """The absolute mountpoint, or a MountError saying why it cannot be used."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(full):
        raise MountError(errno.ENOENT, f"mountpoint '{path}'", "does not exist",
                         f"create it with: mkdir -p {path}")
    if not os.path.isdir(full):
        raise MountError(errno.ENOTDIR, f"mountpoint '{path}'", "is not a directory",
                         "give a directory")
    if os.path.ismount(full) and full != "/":
        raise MountError(errno.EBUSY, f"mountpoint '{path}'", "is already a mount",
                         f"unmount it first: fusermount3 -u {path}")
    return full


def _print_help() -> None:
    sys.stdout.write(
        f"{USAGE}\n       {STATUS_USAGE[7:]}\n       {REFRESH_USAGE[7:]}\n\n"
        "Mount a directory of an SSH server, like sshfs.\n\n"
        "general options:\n"
        "    -o opt[=val][,opt...]  mount options (below)\n"
        "    -p PORT                remote port (same as -o port=PORT)\n"
        "    -F FILE                ssh configuration file (only this one is read)\n"
        "    -C                     compression (same as -o Compression=yes)\n"
        "    -f                     stay in the foreground\n"
        "    -d, --debug            foreground, log every FUSE call and SFTP request\n"
        "    -s                     single-threaded\n"
        "    -h, --help             this help\n"
        "    -V, --version          print versions\n"
        + options.help_text() + "\n"
    )


def _print_version() -> None:
    import paramiko

    sys.stdout.write(f"pysshfs version {__version__}\nparamiko version {paramiko.__version__}\n")
    try:
        from pysshfs.fuselib import fuse_version_text

        sys.stdout.write(fuse_version_text() + "\n")
    except Exception as exc:  # noqa: BLE001 - version output must not fail on a missing libfuse
        sys.stdout.write(f"libfuse: not available ({exc})\n")


# --- pysshfs status / pysshfs refresh ------------------------------------------------------
def _control_socket(mountpoint: str) -> Any:
    """The control socket of the pysshfs mount on `mountpoint`, or a MountError."""
    from pysshfs import control

    path = control.socket_for(mountpoint)
    if path is None:
        raise MountError(errno.ENOENT, f"'{mountpoint}'", "not a pysshfs mount of yours",
                         "pysshfs status lists them")
    return path


def _ask(path: Any, request: dict[str, Any], mountpoint: str) -> dict[str, Any]:
    """One control request; what went wrong as a MountError."""
    from pysshfs import control

    try:
        return control.query(path, request)
    except control.ControlError as exc:
        raise MountError(errno.EIO, f"'{mountpoint}'", str(exc)) from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise MountError(errno.ESRCH, f"'{mountpoint}'", "its pysshfs process is gone",
                         f"unmount it: fusermount3 -u {mountpoint}") from None
    except TimeoutError:
        raise MountError(errno.ETIMEDOUT, f"'{mountpoint}'", "pysshfs does not answer",
                         "it may be stuck; run it with -d to see why") from None
    except OSError as exc:
        raise MountError(exc.errno or errno.EIO, f"'{mountpoint}'",
                         f"cannot reach its pysshfs ({exc.strerror or exc})") from None


def status_command(argv: list[str]) -> int:
    """`pysshfs status [MOUNTPOINT] [--json]`: the state of this user's mounts."""
    import json

    from pysshfs import control
    from pysshfs.statusview import format_status

    as_json = "--json" in argv
    rest = [a for a in argv if a != "--json"]
    if any(a in ("-h", "--help") for a in rest):
        sys.stdout.write(f"{STATUS_USAGE}\n\nShow each pysshfs mount of yours (or the one "
                         "named): server, connection state,\nround-trip time, traffic, "
                         "cache hit ratios, open files. --json for scripts.\n")
        return 0
    if len(rest) > 1 or any(a.startswith("-") for a in rest):
        raise MountError(errno.EINVAL, "pysshfs status", f"unexpected '{rest[-1]}'",
                         STATUS_USAGE)
    mounts: list[dict[str, Any]] = []
    if rest:
        mountpoint = control.normalize_mountpoint(rest[0])
        reply = _ask(_control_socket(mountpoint), {"op": "status"}, rest[0])
        mounts.append(reply["mount"])
    else:
        for path in control.sockets():
            try:
                mounts.append(control.query(path, {"op": "status"})["mount"])
            except (ConnectionRefusedError, FileNotFoundError):
                continue  # a crashed daemon's leftover; its next mount replaces it
            except (OSError, control.ControlError) as exc:
                sys.stderr.write(f"pysshfs: {path}: no answer ({exc})\n")
    if as_json:
        sys.stdout.write(json.dumps(mounts, indent=2, sort_keys=True) + "\n")
    elif not mounts:
        sys.stdout.write("no pysshfs mounts\n")
    else:
        sys.stdout.write("\n\n".join(format_status(m) for m in mounts) + "\n")
    return 0


def mount_relative(mountpoint: str, path: str) -> str:
    """`path` (absolute, or relative to the current directory) as a path inside the
    mount ("/a/b"); MountError when it is outside."""
    from pysshfs.control import normalize_mountpoint

    full = os.path.abspath(path)
    for top in {os.path.abspath(mountpoint), normalize_mountpoint(mountpoint)}:
        if full == top:
            return "/"
        if full.startswith(top.rstrip("/") + "/"):
            return full[len(top.rstrip("/")):]
    raise MountError(errno.EINVAL, f"'{path}'", f"not inside the mount {mountpoint}",
                     "give paths under the mountpoint")


def refresh_command(argv: list[str]) -> int:
    """`pysshfs refresh MOUNTPOINT [PATH...]`: forget what the mount cached for PATHs
    (everything when none is given), so the next access asks the server."""
    if not argv or argv[0] in ("-h", "--help"):
        if argv:
            sys.stdout.write(f"{REFRESH_USAGE}\n\nForget what the mount cached about "
                             "PATHs and everything below them\n(all of it without "
                             "PATH): the next access asks the server.\n")
            return 0
        raise MountError(errno.EINVAL, "pysshfs refresh", "no mountpoint given",
                         REFRESH_USAGE)
    from pysshfs.control import normalize_mountpoint

    mountpoint = normalize_mountpoint(argv[0])
    paths = [mount_relative(mountpoint, p) for p in argv[1:]] or ["/"]
    _ask(_control_socket(mountpoint), {"op": "refresh", "paths": paths}, argv[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `pysshfs` command: exit 0 once mounted (or after -h/-V), 1 on any failure."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        try:
            return (status_command if args[0] == "status" else refresh_command)(args[1:])
        except MountError as exc:
            sys.stderr.write(f"pysshfs: {exc}\n")
            return 1
    debug = "-d" in args or "--debug" in args or any("sshfs_debug" in a for a in args)
    system.use_own_home()
    try:
        spec = parse_args(args)
        spec.mountpoint = check_mountpoint(spec.mountpoint)
        system.check_can_mount(spec.opts)
    except HelpRequested:
        _print_help()
        return 0
    except VersionRequested:
        _print_version()
        return 0
    except MountError as exc:
        sys.stderr.write(f"pysshfs: {exc}\n")
        return 1
    from pysshfs.daemon import run

    try:
        return run(spec)
    except MountError as exc:
        if debug:
            logging.getLogger(__name__).debug("failure", exc_info=True)
        sys.stderr.write(f"pysshfs: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("pysshfs: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback with -d
        if debug:
            raise
        sys.stderr.write(f"pysshfs: unexpected failure: {exc!r} (run with -d for details)\n")
        return 1
