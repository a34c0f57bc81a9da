"""The one map from SFTP status codes to errno values.

SFTP v3 has only eight codes, so OpenSSH's sftp-server folds most errnos into FAILURE;
servers speaking later drafts send the finer v4-v6 codes even on a v3 session, so those
are mapped too. What a bare FAILURE meant for a given request (rmdir → ENOTEMPTY, mkdir →
EEXIST, ...) is decided by asking the server afterwards: see `pysshfs.sftp.refine`.
`LOST` is the other side of the coin: the errnos that mean the connection itself is gone.
"""

from __future__ import annotations

import errno
import os

from pysshfs.sanitize import sanitize

# The connection is gone (our stream, not the server's own link: see SSH_FX_CONNECTION_LOST
# below). The session reconnects on these and sends the request again where that is safe.
LOST = (errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)

SSH_FX_OK = 0
SSH_FX_EOF = 1
SSH_FX_NO_SUCH_FILE = 2
SSH_FX_PERMISSION_DENIED = 3
SSH_FX_FAILURE = 4
SSH_FX_BAD_MESSAGE = 5
SSH_FX_NO_CONNECTION = 6
SSH_FX_CONNECTION_LOST = 7
SSH_FX_OP_UNSUPPORTED = 8
# Codes from later filexfer drafts (v4-v6); not v3, but seen in the wild.
SSH_FX_INVALID_HANDLE = 9
SSH_FX_NO_SUCH_PATH = 10
SSH_FX_FILE_ALREADY_EXISTS = 11
SSH_FX_WRITE_PROTECT = 12
SSH_FX_NO_MEDIA = 13
SSH_FX_NO_SPACE_ON_FILESYSTEM = 14
SSH_FX_QUOTA_EXCEEDED = 15
SSH_FX_UNKNOWN_PRINCIPAL = 16
SSH_FX_LOCK_CONFLICT = 17
SSH_FX_DIR_NOT_EMPTY = 18
SSH_FX_NOT_A_DIRECTORY = 19
SSH_FX_INVALID_FILENAME = 20
SSH_FX_LINK_LOOP = 21
SSH_FX_CANNOT_DELETE = 22
SSH_FX_INVALID_PARAMETER = 23
SSH_FX_FILE_IS_A_DIRECTORY = 24
SSH_FX_BYTE_RANGE_LOCK_CONFLICT = 25
SSH_FX_BYTE_RANGE_LOCK_REFUSED = 26
SSH_FX_DELETE_PENDING = 27
SSH_FX_FILE_CORRUPT = 28
SSH_FX_OWNER_INVALID = 29
SSH_FX_GROUP_INVALID = 30
SSH_FX_NO_MATCHING_BYTE_RANGE_LOCK = 31

STATUS_ERRNO: dict[int, int] = {
    SSH_FX_EOF: errno.ENODATA,  # only an error where EOF is not a normal answer
    SSH_FX_NO_SUCH_FILE: errno.ENOENT,
    SSH_FX_PERMISSION_DENIED: errno.EACCES,
    SSH_FX_FAILURE: errno.EIO,
    SSH_FX_BAD_MESSAGE: errno.EBADMSG,
    # 6 and 7 come from the server about ITS connection: our own is fine, so these are
    # not the "connection lost" errnos that make the session reconnect and send again.
    SSH_FX_NO_CONNECTION: errno.EIO,
    SSH_FX_CONNECTION_LOST: errno.EIO,
    SSH_FX_OP_UNSUPPORTED: errno.EOPNOTSUPP,
    SSH_FX_INVALID_HANDLE: errno.EBADF,
    SSH_FX_NO_SUCH_PATH: errno.ENOENT,
    SSH_FX_FILE_ALREADY_EXISTS: errno.EEXIST,
    SSH_FX_WRITE_PROTECT: errno.EROFS,
    SSH_FX_NO_MEDIA: errno.ENODEV,
    SSH_FX_NO_SPACE_ON_FILESYSTEM: errno.ENOSPC,
    SSH_FX_QUOTA_EXCEEDED: errno.EDQUOT,
    SSH_FX_UNKNOWN_PRINCIPAL: errno.EINVAL,
    SSH_FX_LOCK_CONFLICT: errno.EBUSY,
    SSH_FX_DIR_NOT_EMPTY: errno.ENOTEMPTY,
    SSH_FX_NOT_A_DIRECTORY: errno.ENOTDIR,
    SSH_FX_INVALID_FILENAME: errno.EINVAL,
    SSH_FX_LINK_LOOP: errno.ELOOP,
    SSH_FX_CANNOT_DELETE: errno.EACCES,
    SSH_FX_INVALID_PARAMETER: errno.EINVAL,
    SSH_FX_FILE_IS_A_DIRECTORY: errno.EISDIR,
    SSH_FX_BYTE_RANGE_LOCK_CONFLICT: errno.EAGAIN,
    SSH_FX_BYTE_RANGE_LOCK_REFUSED: errno.ENOLCK,
    SSH_FX_DELETE_PENDING: errno.ENOENT,
    SSH_FX_FILE_CORRUPT: errno.EIO,
    SSH_FX_OWNER_INVALID: errno.EINVAL,
    SSH_FX_GROUP_INVALID: errno.EINVAL,
    SSH_FX_NO_MATCHING_BYTE_RANGE_LOCK: errno.ENOLCK,
}


class SFTPError(OSError):
    """An error status from the server; `status` keeps the SSH_FX_* code it came from."""

    status: int = SSH_FX_FAILURE


def path_str(path: bytes | str | None) -> str | None:
    """A server path as the `filename` of an OSError (undecodable bytes survive)."""
    if path is None or isinstance(path, str):
        return path
    return bytes(path).decode("utf-8", "surrogateescape")


def status_errno(code: int) -> int:
    """The errno of a status code, before any refinement (an unknown code is EIO)."""
    return STATUS_ERRNO.get(code, errno.EIO)


def status_error(code: int, message: str | bytes | None,
                 path: bytes | str | None = None) -> SFTPError:
    """The OSError for a STATUS reply; the server's message when it gave one (sanitised:
    it ends up in logs and on the terminal)."""
    err = status_errno(code)
    text = sanitize(message) or os.strerror(err)
    filename = path_str(path)
    exc = SFTPError(err, text, filename) if filename is not None else SFTPError(err, text)
    exc.status = code
    return exc


def refined_error(code: int, err: int, message: str, path: bytes | str | None) -> SFTPError:
    """An error whose errno was worked out by asking the server (see pysshfs.sftp.refine)."""
    filename = path_str(path)
    exc = SFTPError(err, message, filename) if filename is not None else SFTPError(err, message)
    exc.status = code
    return exc
