"""SFTP v3 wire format: constants, the `Attrs` record, packet building and reply parsing.

Everything read from the server goes through `Reader`, which bounds-checks each field and
raises `ProtocolError` (an OSError with EIO) instead of IndexError or struct.error, so a
hostile or broken server can make a request fail but never crash the client.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pysshfs.sanitize import sanitize
from pysshfs.sftp.errors import (  # noqa: F401 - re-exported: status codes live with the wire format
    SSH_FX_BAD_MESSAGE,
    SSH_FX_CONNECTION_LOST,
    SSH_FX_EOF,
    SSH_FX_FAILURE,
    SSH_FX_NO_CONNECTION,
    SSH_FX_NO_SUCH_FILE,
    SSH_FX_OK,
    SSH_FX_OP_UNSUPPORTED,
    SSH_FX_PERMISSION_DENIED,
)

SFTP_VERSION = 3

# Packet types (draft-ietf-secsh-filexfer-02, section 3).
SSH_FXP_INIT = 1
SSH_FXP_VERSION = 2
SSH_FXP_OPEN = 3
SSH_FXP_CLOSE = 4
SSH_FXP_READ = 5
SSH_FXP_WRITE = 6
SSH_FXP_LSTAT = 7
SSH_FXP_FSTAT = 8
SSH_FXP_SETSTAT = 9
SSH_FXP_FSETSTAT = 10
SSH_FXP_OPENDIR = 11
SSH_FXP_READDIR = 12
SSH_FXP_REMOVE = 13
SSH_FXP_MKDIR = 14
SSH_FXP_RMDIR = 15
SSH_FXP_REALPATH = 16
SSH_FXP_STAT = 17
SSH_FXP_RENAME = 18
SSH_FXP_READLINK = 19
SSH_FXP_SYMLINK = 20
SSH_FXP_STATUS = 101
SSH_FXP_HANDLE = 102
SSH_FXP_DATA = 103
SSH_FXP_NAME = 104
SSH_FXP_ATTRS = 105
SSH_FXP_EXTENDED = 200
SSH_FXP_EXTENDED_REPLY = 201

PACKET_NAMES = {
    value: name[8:] for name, value in globals().items() if name.startswith("SSH_FXP_")
}

# Open flags.
SSH_FXF_READ = 0x01
SSH_FXF_WRITE = 0x02
SSH_FXF_APPEND = 0x04
SSH_FXF_CREAT = 0x08
SSH_FXF_TRUNC = 0x10
SSH_FXF_EXCL = 0x20

# Attribute flags.
SSH_FILEXFER_ATTR_SIZE = 0x00000001
SSH_FILEXFER_ATTR_UIDGID = 0x00000002
SSH_FILEXFER_ATTR_PERMISSIONS = 0x00000004
SSH_FILEXFER_ATTR_ACMODTIME = 0x00000008
SSH_FILEXFER_ATTR_EXTENDED = 0x80000000
_KNOWN_ATTR_FLAGS = (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID
                     | SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME
                     | SSH_FILEXFER_ATTR_EXTENDED)
# What OpenSSH's sftp-server sends for every file: decoded in one go (decode_names).
_COMMON_FLAGS = (SSH_FILEXFER_ATTR_SIZE | SSH_FILEXFER_ATTR_UIDGID
                 | SSH_FILEXFER_ATTR_PERMISSIONS | SSH_FILEXFER_ATTR_ACMODTIME)

# statvfs@openssh.com flag bits (f_flag).
SSH_FXE_STATVFS_ST_RDONLY = 0x1
SSH_FXE_STATVFS_ST_NOSUID = 0x2

STATVFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_fsid", "f_flag", "f_namemax")

# OpenSSH's sftp-server accepts packets up to 256 KiB; a reply carrying a full 255 KiB
# read plus headers must fit, anything much bigger is refused before allocating it.
MAX_PACKET_LENGTH = 34000 * 8
DEFAULT_MAX_READ = 32768  # what sshfs uses when the server does not say (no limits@)
DEFAULT_MAX_WRITE = 32768

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U32X2 = struct.Struct(">II")
_HEADER = struct.Struct(">IBI")  # length, type, request id
_U64_U32 = struct.Struct(">QI")  # a READ's offset and length
_COMMON_ATTRS = struct.Struct(">QIIIII")  # size, uid, gid, mode, atime, mtime
_MAX_U32 = 0xFFFFFFFF
_MAX_U64 = 0xFFFFFFFFFFFFFFFF


class ProtocolError(OSError):
    """The server sent something that is not valid SFTP."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, f"SFTP protocol error: {message}")


@dataclass(slots=True)
class Attrs:
    """File attributes as SFTP v3 carries them; None = the server did not say / leave alone.

    Never changed once decoded: decode_attrs hands out one shared instance for "no
    attributes" (a listing of names alone then costs a third less memory per entry).
    """

    size: int | None = None
    uid: int | None = None
    gid: int | None = None
    mode: int | None = None  # full st_mode incl. file type bits ("permissions" on the wire)
    atime: int | None = None  # seconds
    mtime: int | None = None


NO_ATTRS = Attrs()  # what a server that sends no attributes says: shared, never changed


# --- encoding ---------------------------------------------------------------------------
def u32(value: int) -> bytes:
    return _U32.pack(value)


def u64(value: int) -> bytes:
    return _U64.pack(value)


def string(value: bytes | bytearray | memoryview | str) -> bytes:
    """An SSH string: uint32 length + bytes. str is UTF-8 (surrogateescape for raw names)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return _U32.pack(len(value)) + bytes(value)


def _time32(value: int) -> int:
    # v3 times are uint32: clamp what cannot be said instead of failing the whole setattr.
    return min(max(int(value), 0), _MAX_U32)


def encode_attrs(attrs: Attrs | None) -> bytes:
    """ATTRS on the wire. uid/gid and atime/mtime only travel in pairs in v3."""
    if attrs is None:
        return _U32.pack(0)
    flags = 0
    parts: list[bytes] = []
    if attrs.size is not None:
        if not 0 <= attrs.size <= _MAX_U64:
            raise OSError(errno.EINVAL, f"file size out of range: {attrs.size}")
        flags |= SSH_FILEXFER_ATTR_SIZE
        parts.append(_U64.pack(attrs.size))
    if attrs.uid is not None or attrs.gid is not None:
        if attrs.uid is None or attrs.gid is None:
            raise OSError(errno.EINVAL, "SFTP v3 sets uid and gid together; give both")
        if not (0 <= attrs.uid <= _MAX_U32 and 0 <= attrs.gid <= _MAX_U32):
            raise OSError(errno.EINVAL, f"uid/gid out of range: {attrs.uid}/{attrs.gid}")
        flags |= SSH_FILEXFER_ATTR_UIDGID
        parts.append(_U32X2.pack(attrs.uid, attrs.gid))
    if attrs.mode is not None:
        flags |= SSH_FILEXFER_ATTR_PERMISSIONS
        parts.append(_U32.pack(attrs.mode & _MAX_U32))
    if attrs.atime is not None or attrs.mtime is not None:
        if attrs.atime is None or attrs.mtime is None:
            raise OSError(errno.EINVAL, "SFTP v3 sets atime and mtime together; give both")
        flags |= SSH_FILEXFER_ATTR_ACMODTIME
        parts.append(_U32X2.pack(_time32(attrs.atime), _time32(attrs.mtime)))
    return _U32.pack(flags) + b"".join(parts)


def read_body(handle: bytes, offset: int, length: int) -> bytes:
    """The arguments of a READ (handle, offset, length) in two packs, not three calls:
    random 4 KiB reads send one per kernel request."""
    return _U32.pack(len(handle)) + handle + _U64_U32.pack(offset, length)


def header(ptype: int, request_id: int, body_length: int) -> bytes:
    """length + type + id for a request whose remaining payload is `body_length` bytes."""
    return _HEADER.pack(body_length + 5, ptype, request_id)


def build_packet(ptype: int, request_id: int, parts: Iterable[bytes | memoryview]) -> bytes:
    """One whole request packet, joined once (write data is not copied twice)."""
    parts = list(parts)
    length = sum(map(len, parts))
    return b"".join((header(ptype, request_id, length), *parts))


def build_init(version: int = SFTP_VERSION) -> bytes:
    return _U32.pack(5) + bytes((SSH_FXP_INIT,)) + _U32.pack(version)


# --- decoding ---------------------------------------------------------------------------
def _truncated(what: str, need: int, have: int) -> ProtocolError:
    return ProtocolError(f"truncated packet reading {what} (need {need} bytes, have {have})")


class Reader:
    """Bounds-checked cursor over one packet payload."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise _truncated(what, n, self.end - pos)
        self.pos = pos + n
        return pos

    def byte(self) -> int:
        return self.data[self._need(1, "byte")]

    def u32(self) -> int:
        return _U32.unpack_from(self.data, self._need(4, "uint32"))[0]

    def u64(self) -> int:
        return _U64.unpack_from(self.data, self._need(8, "uint64"))[0]

    def string(self) -> bytes:
        n = self.u32()
        start = self._need(n, "string")
        return bytes(self.data[start:start + n])

    def rest(self) -> bytes:
        start = self.pos
        self.pos = self.end
        return bytes(self.data[start:self.end])

    def attrs(self) -> Attrs:
        return decode_attrs(self)


def decode_attrs(r: Reader) -> Attrs:
    """ATTRS from the wire; extended (type, data) pairs are read and dropped."""
    flags = r.u32()
    if flags & ~_KNOWN_ATTR_FLAGS:
        raise ProtocolError(f"unknown attribute flags 0x{flags:08x}")
    if not flags:
        return NO_ATTRS
    a = Attrs()
    if flags & SSH_FILEXFER_ATTR_SIZE:
        a.size = r.u64()
    if flags & SSH_FILEXFER_ATTR_UIDGID:
        a.uid = r.u32()
        a.gid = r.u32()
    if flags & SSH_FILEXFER_ATTR_PERMISSIONS:
        a.mode = r.u32()
    if flags & SSH_FILEXFER_ATTR_ACMODTIME:
        a.atime = r.u32()
        a.mtime = r.u32()
    if flags & SSH_FILEXFER_ATTR_EXTENDED:
        count = r.u32()
        if count * 8 > r.remaining:  # each pair is at least two empty strings
            raise ProtocolError(f"extended attribute count {count} exceeds packet")
        for _ in range(count):
            r.string()
            r.string()
    return a


def decode_version(payload: bytes | memoryview) -> tuple[int, dict[str, bytes]]:
    """VERSION payload (after the type byte): version and extension name → data.

    Names are sanitised (they are logged; a real one is plain ASCII and stays as it is)."""
    r = Reader(payload)
    version = r.u32()
    extensions: dict[str, bytes] = {}
    while r.remaining:
        name = sanitize(r.string().decode("utf-8", "replace"))
        extensions[name] = r.string()
    return version, extensions


def decode_status(r: Reader) -> tuple[int, str]:
    """STATUS body after the id: code and message (some old servers omit the message)."""
    code = r.u32()
    message = ""
    if r.remaining >= 4:
        message = r.string().decode("utf-8", "replace")
        if r.remaining >= 4:
            r.string()  # language tag
    return code, message


def decode_names(r: Reader) -> list[tuple[bytes, bytes, Attrs]]:
    """NAME body after the id: (filename, longname, attrs) triples.

    The hot loop of every listing (one pass per entry of a 100,000-entry directory):
    fields are cut out with struct and slices inline, no call per string, and the
    attributes OpenSSH always sends (size, ids, mode, times) in one unpack; anything else
    goes through decode_attrs. Same checks as Reader's: a short packet is a ProtocolError."""
    count = r.u32()
    if count * 12 > r.remaining:  # two empty strings and empty attrs at least
        raise ProtocolError(f"name count {count} exceeds packet")
    data, pos, end = r.data, r.pos, r.end
    if not isinstance(data, bytes):
        data = bytes(data)  # slices of it are then the strings themselves
    unpack_u32, unpack_attrs, common = _U32.unpack_from, _COMMON_ATTRS.unpack_from, _COMMON_FLAGS
    names: list[tuple[bytes, bytes, Attrs]] = []
    append = names.append
    for _ in range(count):
        if pos + 4 > end:
            raise _truncated("uint32", 4, end - pos)
        name_at = pos + 4
        pos = name_at + unpack_u32(data, pos)[0]  # after the name
        if pos + 4 > end:
            if pos > end:
                raise _truncated("string", pos - name_at, end - name_at)
            raise _truncated("uint32", 4, end - pos)
        long_at = pos + 4
        after = long_at + unpack_u32(data, pos)[0]
        if after > end:
            raise _truncated("string", after - long_at, end - long_at)
        if after + 32 <= end and unpack_u32(data, after)[0] == common:
            append((data[name_at:pos], data[long_at:after],
                    Attrs(*unpack_attrs(data, after + 4))))
            pos = after + 32
        else:
            r.pos = after
            append((data[name_at:pos], data[long_at:after], decode_attrs(r)))
            pos = r.pos
    r.pos = pos
    return names


def decode_statvfs(r: Reader) -> dict[str, int]:
    return {field: r.u64() for field in STATVFS_FIELDS}


def decode_limits(r: Reader) -> tuple[int, int, int, int]:
    """limits@openssh.com reply: max packet, read, write length, open handles (0 = none)."""
    return r.u64(), r.u64(), r.u64(), r.u64()


def parse_packet_header(packet: bytes | memoryview) -> tuple[int, int, Reader]:
    """type, request id and a Reader on the rest of a reply payload (after the length)."""
    r = Reader(packet)
    ptype = r.byte()
    request_id = r.u32()
    return ptype, request_id, r
