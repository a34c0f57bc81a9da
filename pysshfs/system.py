"""What the local system must allow before a mount can work, checked before connecting.

fusermount3 (the set-uid helper every unprivileged FUSE mount goes through) refuses
allow_other/allow_root unless /etc/fuse.conf says `user_allow_other`, and libfuse cannot
mount at all when /dev/fuse cannot be opened. Both fail late and with two lines of
libfuse text; found here first, they are one line that says what to fix.

It also owns which home directory is "~": mount(8) run by a user for an fstab `user`
mount hands its helpers HOME=/root, so like ssh we trust the passwd entry over a HOME
that is not ours.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd

from pysshfs.errors import MountError
from pysshfs.mountspec import MountOptions

log = logging.getLogger(__name__)

FUSE_CONF = "/etc/fuse.conf"  # where fusermount3 reads user_allow_other (compiled in)
FUSE_DEVICE = "/dev/fuse"


def use_own_home() -> None:
    """Make $HOME the current user's home when it is unset or someone else's directory."""
    home = os.environ.get("HOME")
    uid = os.geteuid()
    try:
        if home and os.stat(home).st_uid == uid:
            return
    except OSError:
        pass
    try:
        own = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return  # no passwd entry: nothing better to offer
    if own and own != home:
        log.debug("HOME=%s is not this user's: using %s", home, own)
        os.environ["HOME"] = own


def user_allow_other(path: str = FUSE_CONF) -> bool:
    """Does fuse.conf let users mount with allow_other/allow_root (as fusermount3 reads it)?"""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return False
    return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in lines)


def check_can_mount(opts: MountOptions, *, euid: int | None = None,
                    fuse_conf: str = FUSE_CONF, device: str = FUSE_DEVICE) -> None:
    """Raise MountError for what fusermount3/libfuse would refuse to this (non-root) user."""
    if (os.geteuid() if euid is None else euid) == 0:
        return
    if not os.access(device, os.R_OK | os.W_OK):
        raise MountError(errno.EACCES, f"cannot open {device}",
                         "this user may not use FUSE",
                         f"a Debian system has it crw-rw-rw-: as root, chmod 0666 {device}")
    given = {"allow_other": opts.allow_other, "allow_root": opts.allow_root}
    wanted = [name for name, on in given.items() if on]
    if wanted and not user_allow_other(fuse_conf):
        raise MountError(errno.EPERM, f"option '{wanted[0]}'",
                         f"only root may use it while {fuse_conf} lacks 'user_allow_other'",
                         f"fix: add the line user_allow_other to {fuse_conf} as root, "
                         f"or mount without {wanted[0]}")


def warn_allow_other(opts: MountOptions, source: str) -> None:
    """Once mounted: warn a user who shares the mount with every local user unchecked.

    With allow_other and without default_permissions nobody checks a file's mode against
    the local user: the server only sees the mounting user, so every local user reads
    and writes with that user's rights. sshfs mounts so too, and so do we; but we say it
    (on stderr while there is one, and in the log).
    """
    if opts.allow_other and not opts.default_permissions:
        log.warning("warning: allow_other without default_permissions: every local user "
                    "can read and change %s with your rights on the server (add -o "
                    "default_permissions to have the kernel check each file's mode and "
                    "owner)", source)
