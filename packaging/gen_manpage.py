#!/usr/bin/env python3
"""Write packaging/pysshfs.1 from the option table (a test checks it is up to date).

Usage: python packaging/gen_manpage.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pysshfs import __version__, options  # noqa: E402

MANPAGE = HERE / "pysshfs.1"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("'", "\\(aq")


def render() -> str:
    out = [
        f'.TH PYSSHFS 1 "" "pysshfs {__version__}" "User Commands"',
        ".SH NAME",
        "pysshfs \\- mount a directory of an SSH server with FUSE",
        ".SH SYNOPSIS",
        ".B pysshfs",
        "[\\fIuser\\fP@]\\fIhost\\fP:[\\fIdir\\fP] \\fImountpoint\\fP [\\fIoptions\\fP]",
        ".br",
        ".B fusermount3 \\-u",
        "\\fImountpoint\\fP",
        ".SH DESCRIPTION",
        "pysshfs mounts a directory of any SSH server, like sshfs: it speaks SFTP over one "
        "SSH connection, reads ~/.ssh/config like ssh, verifies host keys like ssh, caches "
        "attributes and listings, and reconnects after the network drops, with open files "
        "intact. It detaches once the mount works, so its exit status tells the truth.",
        ".PP",
        "A host of the form \\fIhost\\fP: mounts the login directory; a relative \\fIdir\\fP "
        "is relative to it; an IPv6 address goes in brackets.",
        ".SH GENERAL OPTIONS",
    ]
    general = [
        ("-o opt[=val][,opt...]", "mount options, below"),
        ("-p PORT", "remote port (same as -o port=PORT)"),
        ("-F FILE", "ssh configuration file (only this one is read)"),
        ("-C", "compression (same as -o Compression=yes)"),
        ("-f", "stay in the foreground"),
        ("-d, --debug", "foreground, and log every FUSE call and SFTP request"),
        ("-s", "single-threaded"),
        ("-h, --help", "print help"),
        ("-V, --version", "print versions"),
    ]
    for flag, text in general:
        out += [".TP", f"\\fB{_esc(flag)}\\fP", _esc(text)]
    for group, title in options.GROUP_TITLES.items():
        out.append(f".SH {_esc(title.upper())}")
        for opt in options.OPTIONS:
            if opt.group != group:
                continue
            value = {"flag": "", "bool": "[=yes|no]",
                     "choice": "=" + "|".join(opt.choices)}.get(
                opt.kind, "=N" if opt.kind in ("int", "float") else "=VALUE")
            default = "" if opt.default in (None, False) or opt.kind == "flag" else \
                f" (default: {options._show_default(opt.default)})"
            out += [".TP", f"\\fB\\-o {_esc(opt.name)}{_esc(value)}\\fP",
                    _esc(opt.help + default)]
    out += [
        ".SH FSTAB",
        "user@host:/srv /mnt/srv fuse.pysshfs "
        "defaults,_netdev,IdentityFile=/home/user/.ssh/id_ed25519 0 0",
        ".SH SEE ALSO",
        "\\fBsshfs\\fP(1), \\fBssh_config\\fP(5), \\fBfusermount3\\fP(1), \\fBmount.fuse3\\fP(8)",
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not MANPAGE.exists() or MANPAGE.read_text() != text:
            sys.stderr.write("packaging/pysshfs.1 is out of date: "
                             "run python packaging/gen_manpage.py\n")
            return 1
        return 0
    MANPAGE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
