"""What a failed request really was: every errno decided by asking the server, in one place.

SFTP v3 has eight status codes, and OpenSSH's sftp-server folds most errnos into a bare
SSH_FX_FAILURE (EEXIST, ENOTEMPTY, EROFS, ENOSPC, ...) and EPERM into PERMISSION_DENIED. A
local file system gives the precise errno, and programs act on it (mkdir -p on EEXIST, rm
-r on ENOTEMPTY, cp on ENOSPC). So after a request fails, the client asks the server about
the state it left: does the name exist, is it a directory, does it have entries, is the
file system read-only or full. `RULES` says per operation which questions are asked, in
which order (the first rule that decides wins); `refine` applies them. Nothing is asked
for a request that worked, a question is asked at most once per failure (`Probe` keeps the
answers), and attributes a request read back in its own round trip count as an answer.

Only statuses the server sent are refined: a connection lost under a request (`LOST` in
pysshfs.sftp.errors) is the session's business, not a fact about the file.
Model: gcsfuse's internal/fs/wrappers/error_mapping.go (one table, one function).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pysshfs.sftp.codec import (
    SSH_FXE_STATVFS_ST_RDONLY,
    SSH_FXF_CREAT,
    SSH_FXF_EXCL,
    SSH_FXF_TRUNC,
    SSH_FXF_WRITE,
    Attrs,
)
from pysshfs.sftp.errors import (
    SSH_FX_FAILURE,
    SSH_FX_NO_SUCH_FILE,
    SSH_FX_PERMISSION_DENIED,
    SFTPError,
    refined_error,
)


class Server(Protocol):
    """The requests refinement may send (SFTPClient has them)."""

    @property
    def posix_rename_supported(self) -> bool: ...
    def has_extension(self, name: str) -> bool: ...
    def lstat(self, path: bytes, *, timeout: float | None = None) -> Attrs: ...
    def statvfs(self, path: bytes, *, timeout: float | None = None) -> dict[str, int]: ...
    def fstatvfs(self, handle: bytes, *, timeout: float | None = None) -> dict[str, int]: ...
    def listdir_attr(self, path: bytes, limit: int | None = None, *,
                     timeout: float | None = None) -> list[tuple[bytes, Attrs]] | None: ...


def failure_cause(server: Server, path: bytes | None = None, handle: bytes | None = None, *,
                  timeout: float | None = None) -> int | None:
    """EROFS or ENOSPC when the file system explains a bare FAILURE, else None.

    OpenSSH's sftp-server folds EROFS and ENOSPC into SSH_FX_FAILURE; the file system's
    own numbers (statvfs@openssh.com, of the open file with `handle`, else of `path` or
    of its directory when `path` does not exist yet) say which it was.
    """
    try:
        if handle is not None and server.has_extension("fstatvfs@openssh.com"):
            st = server.fstatvfs(handle, timeout=timeout)
        elif path is not None and server.has_extension("statvfs@openssh.com"):
            try:
                st = server.statvfs(path, timeout=timeout)
            except OSError:
                parent = path.rsplit(b"/", 1)[0] or b"/"
                st = server.statvfs(parent, timeout=timeout)
        else:
            return None
    except OSError:
        return None
    if st.get("f_flag", 0) & SSH_FXE_STATVFS_ST_RDONLY:
        return errno.EROFS
    if st.get("f_bavail", 1) == 0 or st.get("f_favail", 1) == 0:
        return errno.ENOSPC
    return None


@dataclass
class Probe:
    """One failed request and the answers to the questions asked about it (each asked
    once: two rules wanting the same lstat share it)."""

    server: Server
    exc: SFTPError
    path: bytes | None  # the name the errno is about (the new name for links and renames)
    old: bytes | None = None  # rename: the name being renamed
    handle: bytes | None = None  # fsetstat: the open file
    pflags: int = 0  # open: its SSH_FXF_* flags
    attrs: Attrs | None = None  # setstat: the change asked for
    timeout: float | None = None
    known: dict[bytes, Attrs | None] = field(default_factory=dict)  # lstat answers
    _cause: list[int | None] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.exc.status

    @property
    def errno(self) -> int | None:
        return self.exc.errno

    def lstat(self, path: bytes | None) -> Attrs | None:
        """The attributes of `path` (not following a final symlink), None if it cannot
        be seen (whatever the reason)."""
        if path is None:
            return None
        if path not in self.known:
            try:
                self.known[path] = self.server.lstat(path, timeout=self.timeout)
            except OSError:
                self.known[path] = None
        return self.known[path]

    def is_dir(self, path: bytes | None) -> bool | None:
        """Whether `path` is a directory; None when unknown."""
        st = self.lstat(path)
        if st is None or st.mode is None:
            return None
        return stat_mod.S_ISDIR(st.mode)

    def has_entries(self, path: bytes | None) -> bool:
        """Whether the directory `path` lists anything (one listing that stops at the
        first entry); False when an answer already held says it is none or no directory."""
        if path is None:
            return False
        if path in self.known:
            st = self.known[path]
            if st is None or (st.mode is not None and not stat_mod.S_ISDIR(st.mode)):
                return False
        try:
            return self.server.listdir_attr(path, 0, timeout=self.timeout) is None
        except OSError:
            return False

    def cause(self) -> int | None:
        """EROFS/ENOSPC behind the failure (see failure_cause), asked once."""
        if not self._cause:
            self._cause.append(failure_cause(self.server, self.path, self.handle,
                                             timeout=self.timeout))
        return self._cause[0]


# A rule looks at the failure (asking what it needs) and returns the errno the request
# really failed with, or None: no decision, the next rule is asked. Returning the errno
# the error already has keeps it as it is and asks no further rule.
Rule = Callable[[Probe], int | None]


def _name_taken(p: Probe) -> int | None:
    """OpenSSH answers FAILURE when the new name exists (and a server whose status code
    we cannot place gives EIO): if the name is there now, it was EEXIST."""
    return errno.EEXIST if p.errno == errno.EIO and p.lstat(p.path) is not None else None


def _created_exclusively(p: Probe) -> int | None:
    """O_CREAT|O_EXCL on a name that exists."""
    return _name_taken(p) if p.pflags & SSH_FXF_EXCL else None


def _full_or_read_only(p: Probe) -> int | None:
    """OpenSSH folds EROFS and ENOSPC into FAILURE."""
    if p.status != SSH_FX_FAILURE or p.errno != errno.EIO:
        return None
    return p.cause()


def _full_or_read_only_when_writing(p: Probe) -> int | None:
    if not p.pflags & (SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC):
        return None
    return _full_or_read_only(p)


def _not_owner(p: Probe) -> int | None:
    """OpenSSH folds EPERM into PERMISSION_DENIED. Changing mode, owner or times of a
    file you can see but do not own is EPERM on a local file system (EACCES is for paths
    you cannot search, and for a size change without write permission)."""
    if p.status == SSH_FX_PERMISSION_DENIED and p.attrs is not None \
            and p.attrs.size is None and p.lstat(p.path) is not None:
        return errno.EPERM
    return None


def _is_a_directory(p: Probe) -> int | None:
    """REMOVE of a directory: FAILURE from OpenSSH, EISDIR from unlink(2)."""
    return errno.EISDIR if p.status == SSH_FX_FAILURE and p.is_dir(p.path) else None


def _rmdir_read_only(p: Probe) -> int | None:
    """Checked first: on a read-only file system rmdir(2) is EROFS, entries or not."""
    if p.status == SSH_FX_FAILURE and p.cause() == errno.EROFS:
        return errno.EROFS
    return None


def _rmdir_not_a_directory(p: Probe) -> int | None:
    """OpenSSH folds ENOTDIR into NO_SUCH_FILE (and FAILURE)."""
    if p.status in (SSH_FX_FAILURE, SSH_FX_NO_SUCH_FILE) and p.is_dir(p.path) is False:
        return errno.ENOTDIR
    return None


def _rmdir_not_empty(p: Probe) -> int | None:
    """OpenSSH folds ENOTEMPTY into FAILURE: a directory still there was not empty."""
    return errno.ENOTEMPTY if p.status == SSH_FX_FAILURE and p.is_dir(p.path) else None


def _lists_entries(p: Probe) -> int | None:
    """Still EIO: a target directory that has entries makes it ENOTEMPTY."""
    return errno.ENOTEMPTY if p.errno == errno.EIO and p.has_entries(p.path) else None


def _rename_target(p: Probe) -> int | None:
    """What rename(2) says when the new name exists: plain v3 RENAME never replaces
    (EEXIST); posix-rename fails for a directory over a non-empty one (ENOTEMPTY), a file
    over a directory (EISDIR) and a directory over a file (ENOTDIR)."""
    if p.status != SSH_FX_FAILURE:
        return None
    st_new = p.lstat(p.path)
    if st_new is None:
        return None
    if not p.server.posix_rename_supported:
        return errno.EEXIST
    st_old = p.lstat(p.old)
    if st_old is None or st_old.mode is None or st_new.mode is None:
        return None
    old_dir, new_dir = stat_mod.S_ISDIR(st_old.mode), stat_mod.S_ISDIR(st_new.mode)
    if old_dir and new_dir:
        return errno.ENOTEMPTY
    if new_dir:
        return errno.EISDIR
    if old_dir:
        return errno.ENOTDIR
    return None


def _source_missing(p: Probe) -> int | None:
    """The name to rename is not there: ENOENT as the server said."""
    return p.errno if p.status == SSH_FX_NO_SUCH_FILE else None


def _noreplace_name_taken(p: Probe) -> int | None:
    return errno.EEXIST if p.lstat(p.path) is not None else None


def _cannot_rename_noreplace(p: Probe) -> int | None:
    """link(2) failed without "exists" (a directory, no hard links, EXDEV, EPERM):
    EINVAL, the errno that makes callers (mv -n, glib, systemd) check for themselves."""
    return errno.EINVAL


# operation -> its rules, in the order they are asked. `path` is the name the errno is
# about: the new name of symlink, hardlink, rename and rename_noreplace (its hardlink
# step; the REMOVE that follows is refined as "remove").
RULES: dict[str, tuple[Rule, ...]] = {
    "open": (_created_exclusively, _full_or_read_only_when_writing),
    "setstat": (_not_owner, _full_or_read_only),  # also lsetstat and setstat_and_lstat
    "fsetstat": (_full_or_read_only,),
    "mkdir": (_name_taken, _full_or_read_only),  # also mkdir_and_lstat
    "symlink": (_name_taken, _full_or_read_only),
    "hardlink": (_name_taken, _full_or_read_only),
    "remove": (_is_a_directory, _full_or_read_only),
    "rmdir": (_rmdir_read_only, _rmdir_not_a_directory, _rmdir_not_empty, _lists_entries),
    "rename": (_rename_target, _full_or_read_only, _lists_entries),
    "rename_noreplace": (_source_missing, _noreplace_name_taken, _cannot_rename_noreplace),
}

MESSAGES = {
    errno.EEXIST: "file exists",
    errno.ENOTEMPTY: "directory not empty",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EINVAL: "cannot rename without replacing atomically here",
}


def refine(server: Server, op: str, exc: SFTPError, path: bytes | None, *,
           old: bytes | None = None, handle: bytes | None = None, pflags: int = 0,
           attrs: Attrs | None = None, timeout: float | None = None,
           known: dict[bytes, Attrs | None] | None = None) -> SFTPError:
    """`exc` from `op` as a local file system would have failed: the error of the first
    rule of RULES[op] that decides, or `exc` itself. `known`: lstat answers already held
    (a read-back sent in the same round trip as the request)."""
    probe = Probe(server, exc, path, old=old, handle=handle, pflags=pflags, attrs=attrs,
                  timeout=timeout, known=dict(known or {}))
    for rule in RULES[op]:
        err = rule(probe)
        if err is None:
            continue
        if err == exc.errno:
            return exc
        return refined_error(exc.status, err, MESSAGES.get(err) or os.strerror(err), path)
    return exc
