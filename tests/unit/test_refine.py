"""Errno refinement (pysshfs.sftp.refine): which errno a failed request really had, and
which questions it took to find out, against a scripted server state.

The integration tests (test_mount_errno, test_sftp_client) check the same decisions
against OpenSSH's sftp-server; these pin the order of the rules and that no question is
asked twice or without need.
"""

from __future__ import annotations

import errno
import stat

import pytest

from pysshfs.sftp.codec import (
    SSH_FXE_STATVFS_ST_RDONLY,
    SSH_FXF_CREAT,
    SSH_FXF_EXCL,
    SSH_FXF_READ,
    SSH_FXF_WRITE,
    Attrs,
)
from pysshfs.sftp.errors import (
    SSH_FX_CONNECTION_LOST,
    SSH_FX_FAILURE,
    SSH_FX_NO_SUCH_FILE,
    SSH_FX_PERMISSION_DENIED,
    SFTPError,
    status_error,
)
from pysshfs.sftp.refine import RULES, failure_cause, refine

DIR = Attrs(mode=stat.S_IFDIR | 0o755)
FILE = Attrs(mode=stat.S_IFREG | 0o644)


class Server:
    """Names and their attributes, directory entries, file system numbers; every request
    refinement sends is logged in `asked`."""

    def __init__(self, names: dict[bytes, Attrs] | None = None, *,
                 entries: dict[bytes, int] | None = None, f_flag: int = 0,
                 f_bavail: int = 100, posix_rename: bool = True,
                 extensions: tuple[str, ...] = ("statvfs@openssh.com",
                                                "fstatvfs@openssh.com")) -> None:
        self.names = names or {}
        self.entries = entries or {}
        self.st = {"f_flag": f_flag, "f_bavail": f_bavail, "f_favail": 100}
        self.posix_rename_supported = posix_rename
        self.extensions = extensions
        self.asked: list[tuple[str, bytes]] = []

    def has_extension(self, name: str) -> bool:
        return name in self.extensions

    def lstat(self, path: bytes, *, timeout: float | None = None) -> Attrs:
        self.asked.append(("lstat", path))
        if path not in self.names:
            raise OSError(errno.ENOENT, "no such file")
        return self.names[path]

    def statvfs(self, path: bytes, *, timeout: float | None = None) -> dict[str, int]:
        self.asked.append(("statvfs", path))
        if path not in self.names and path != b"/":
            raise OSError(errno.ENOENT, "no such file")
        return self.st

    def fstatvfs(self, handle: bytes, *, timeout: float | None = None) -> dict[str, int]:
        self.asked.append(("fstatvfs", handle))
        return self.st

    def listdir_attr(self, path: bytes, limit: int | None = None, *,
                     timeout: float | None = None) -> list[tuple[bytes, Attrs]] | None:
        self.asked.append(("listdir", path))
        if path not in self.entries:
            raise OSError(errno.ENOTDIR, "not a directory")
        count = self.entries[path]
        if limit is not None and count > limit:
            return None
        return [(b"e%d" % i, FILE) for i in range(count)]


def failed(code: int, path: bytes = b"/p") -> SFTPError:
    return status_error(code, "", path)


def errno_of(server: Server, op: str, code: int, path: bytes = b"/p", **kw: object) -> int:
    exc = failed(code, path)
    refined = refine(server, op, exc, path, **kw)  # type: ignore[arg-type]
    assert refined.status == code  # the server's own code is kept
    return refined.errno or 0


def test_every_operation_has_rules() -> None:
    assert set(RULES) == {"open", "setstat", "fsetstat", "mkdir", "symlink", "hardlink",
                          "remove", "rmdir", "rename", "rename_noreplace"}


@pytest.mark.parametrize("op", ["mkdir", "symlink", "hardlink"])
def test_failure_on_a_taken_name_is_eexist_with_one_lstat(op: str) -> None:
    s = Server({b"/p": DIR})
    assert errno_of(s, op, SSH_FX_FAILURE) == errno.EEXIST
    assert s.asked == [("lstat", b"/p")]


@pytest.mark.parametrize("op", ["mkdir", "symlink", "hardlink"])
def test_failure_on_a_free_name_asks_the_file_system(op: str) -> None:
    s = Server({b"/": DIR}, f_flag=SSH_FXE_STATVFS_ST_RDONLY)
    assert errno_of(s, op, SSH_FX_FAILURE) == errno.EROFS
    # the name is asked about once, the file system of its directory once
    assert s.asked == [("lstat", b"/p"), ("statvfs", b"/p"), ("statvfs", b"/")]
    s = Server({b"/": DIR}, f_bavail=0)
    assert errno_of(s, op, SSH_FX_FAILURE) == errno.ENOSPC
    s = Server({b"/": DIR})
    assert errno_of(s, op, SSH_FX_FAILURE) == errno.EIO


def test_an_eio_status_that_is_not_failure_still_finds_eexist() -> None:
    """A server answering a status we fold into EIO for a name that exists: what fs.py
    used to find out with a second LSTAT of its own."""
    s = Server({b"/p": DIR})
    assert errno_of(s, "mkdir", SSH_FX_CONNECTION_LOST) == errno.EEXIST
    s = Server({}, f_flag=SSH_FXE_STATVFS_ST_RDONLY)
    assert errno_of(s, "mkdir", SSH_FX_CONNECTION_LOST) == errno.EIO
    assert s.asked == [("lstat", b"/p")]  # the file system explains FAILURE only


def test_a_read_back_answers_without_a_request() -> None:
    s = Server({b"/p": DIR})
    exc = failed(SSH_FX_FAILURE)
    assert refine(s, "mkdir", exc, b"/p", known={b"/p": DIR}).errno == errno.EEXIST
    assert refine(s, "mkdir", exc, b"/p", known={b"/p": None}).errno == errno.EIO
    assert ("lstat", b"/p") not in s.asked


def test_other_statuses_are_kept_as_they_are() -> None:
    s = Server({b"/p": DIR})
    exc = failed(SSH_FX_NO_SUCH_FILE)
    assert refine(s, "mkdir", exc, b"/p") is exc
    exc = failed(SSH_FX_PERMISSION_DENIED)
    assert refine(s, "symlink", exc, b"/p") is exc
    assert s.asked == []


def test_open() -> None:
    s = Server({b"/p": FILE})
    excl = SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_EXCL
    assert errno_of(s, "open", SSH_FX_FAILURE, pflags=excl) == errno.EEXIST
    s = Server({b"/p": FILE}, f_bavail=0)
    assert errno_of(s, "open", SSH_FX_FAILURE, pflags=SSH_FXF_WRITE) == errno.ENOSPC
    assert s.asked == [("statvfs", b"/p")]  # not exclusive: whether it exists is no news
    s = Server({b"/p": FILE}, f_bavail=0)
    assert errno_of(s, "open", SSH_FX_FAILURE, pflags=SSH_FXF_READ) == errno.EIO
    assert s.asked == []  # reading is not refused for a full disk


def test_setstat_of_what_you_do_not_own_is_eperm() -> None:
    s = Server({b"/p": FILE})
    assert errno_of(s, "setstat", SSH_FX_PERMISSION_DENIED, attrs=Attrs(mode=0o600)) \
        == errno.EPERM
    # a size change without write permission stays EACCES, as truncate(2) says
    assert errno_of(s, "setstat", SSH_FX_PERMISSION_DENIED, attrs=Attrs(size=0)) \
        == errno.EACCES
    # a path that cannot be seen stays EACCES
    assert errno_of(Server(), "setstat", SSH_FX_PERMISSION_DENIED,
                    attrs=Attrs(mode=0o600)) == errno.EACCES


def test_fsetstat_asks_the_open_file() -> None:
    s = Server({}, f_flag=SSH_FXE_STATVFS_ST_RDONLY)
    exc = failed(SSH_FX_FAILURE, b"")
    assert refine(s, "fsetstat", exc, None, handle=b"h1").errno == errno.EROFS
    assert s.asked == [("fstatvfs", b"h1")]


def test_remove_of_a_directory_is_eisdir() -> None:
    s = Server({b"/p": DIR})
    assert errno_of(s, "remove", SSH_FX_FAILURE) == errno.EISDIR
    assert s.asked == [("lstat", b"/p")]


def test_rmdir() -> None:
    s = Server({b"/p": DIR}, f_flag=SSH_FXE_STATVFS_ST_RDONLY)
    assert errno_of(s, "rmdir", SSH_FX_FAILURE) == errno.EROFS  # first, entries or not
    s = Server({b"/p": DIR}, entries={b"/p": 3})
    assert errno_of(s, "rmdir", SSH_FX_FAILURE) == errno.ENOTEMPTY
    assert s.asked == [("statvfs", b"/p"), ("lstat", b"/p")]  # no listing needed
    s = Server({b"/p": FILE})
    assert errno_of(s, "rmdir", SSH_FX_NO_SUCH_FILE) == errno.ENOTDIR
    assert errno_of(Server(), "rmdir", SSH_FX_NO_SUCH_FILE) == errno.ENOENT


def test_rmdir_with_an_eio_status_lists_the_directory() -> None:
    """What fs.py's _has_entries did: one listing that stops at the first entry."""
    s = Server({b"/p": DIR}, entries={b"/p": 500})
    assert errno_of(s, "rmdir", SSH_FX_CONNECTION_LOST) == errno.ENOTEMPTY
    assert s.asked == [("listdir", b"/p")]
    s = Server({b"/p": DIR}, entries={b"/p": 0})
    assert errno_of(s, "rmdir", SSH_FX_CONNECTION_LOST) == errno.EIO


def test_rename() -> None:
    s = Server({b"/old": DIR, b"/new": DIR})
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.ENOTEMPTY
    assert ("listdir", b"/new") not in s.asked
    s = Server({b"/old": FILE, b"/new": DIR})
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.EISDIR
    s = Server({b"/old": DIR, b"/new": FILE})
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.ENOTDIR
    s = Server({b"/old": FILE, b"/new": FILE}, posix_rename=False)
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.EEXIST
    assert s.asked == [("lstat", b"/new")]


def test_rename_to_a_free_name_does_not_list_it() -> None:
    s = Server({b"/old": FILE, b"/": DIR}, f_bavail=0)
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.ENOSPC
    s = Server({b"/old": FILE, b"/": DIR})
    assert errno_of(s, "rename", SSH_FX_FAILURE, b"/new", old=b"/old") == errno.EIO
    assert not [q for q in s.asked if q[0] == "listdir"]


def test_rename_noreplace() -> None:
    s = Server({b"/new": FILE})
    exc = failed(SSH_FX_NO_SUCH_FILE, b"/new")
    assert refine(s, "rename_noreplace", exc, b"/new") is exc  # the source is missing
    assert errno_of(s, "rename_noreplace", SSH_FX_FAILURE, b"/new") == errno.EEXIST
    # link(2) refused for another reason, whatever the status: callers check themselves
    assert errno_of(Server(), "rename_noreplace", SSH_FX_FAILURE, b"/new") == errno.EINVAL
    assert errno_of(Server(), "rename_noreplace", SSH_FX_PERMISSION_DENIED, b"/new") \
        == errno.EINVAL


def test_failure_cause_without_statvfs_is_unknown() -> None:
    s = Server({b"/p": FILE}, f_bavail=0, extensions=())
    assert failure_cause(s, b"/p", b"h") is None
    assert s.asked == []
    s = Server({b"/p": FILE}, f_bavail=0, extensions=("statvfs@openssh.com",))
    assert failure_cause(s, b"/p", b"h") == errno.ENOSPC  # no fstatvfs: by its path
