"""Filling a C `struct stat` from our stat dicts with one `struct.pack_into` call.

Every getattr and every READDIRPLUS entry hands the kernel a `struct stat`; mfusepy's
`set_st_attrs` fills it field by field through ctypes descriptors (a memset, then ten
getattr/setattr pairs and a divmod per time), about 13 us an entry: 0.4 s of CPU for an
`ls -l` of 30,000 entries. The layout here is read from mfusepy's own `c_stat` (field
offsets and ctypes type codes), so it is the platform's, and checked once against
`set_st_attrs` at import: where the two disagree (an exotic ABI), `fill` falls back to it.

The file system hands its answers over as `values` (a tuple in _CANONICAL order), not as
dicts: a dict built per LOOKUP and per listed entry only to be read back here was half the
cost of an entry of a READDIRPLUS reply. `as_dict` gives the dict face where one is due.
"""

from __future__ import annotations

import ctypes
import logging
import operator
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# What we set; times are integer nanoseconds (SSHFS.use_ns). In x86-64 glibc's order:
# there, values need no reordering.
_FIELDS = ("st_nlink", "st_mode", "st_uid", "st_gid", "st_size", "st_blksize", "st_blocks")
_TIMES = ("st_atime", "st_mtime", "st_ctime")


def _layout(c_stat: Any) -> tuple[struct.Struct, list[str]] | None:
    """A native struct format writing every byte of `c_stat` (zeros between our fields),
    and which value goes in each slot ("st_mtime.sec", ...); None if not representable."""
    slots: list[tuple[int, str, str]] = []  # (offset, type code, value name)
    for name in _FIELDS:
        field = getattr(c_stat, name, None)
        if field is None:
            return None
        ctype = dict(c_stat._fields_)[name]
        slots.append((field.offset, getattr(ctype, "_type_", ""), name))
    for name in _TIMES:
        field = getattr(c_stat, name + "spec", None)
        if field is None:
            return None
        spec = dict(c_stat._fields_)[name + "spec"]
        for part in ("tv_sec", "tv_nsec"):
            sub = getattr(spec, part)
            ctype = dict(spec._fields_)[part]
            slots.append((field.offset + sub.offset, getattr(ctype, "_type_", ""),
                          f"{name}.{part}"))
    slots.sort()
    fmt, at, order = "@", 0, []
    for offset, code, name in slots:
        if len(code) != 1 or offset < at:
            return None
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("@" + code)
        order.append(name)
    end = ctypes.sizeof(c_stat)
    if end < at:
        return None
    fmt += f"{end - at}x" if end > at else ""
    packer = struct.Struct(fmt)
    return (packer, order) if packer.size == end else None


_CANONICAL = (*_FIELDS, *(f"{t}.{part}" for t in _TIMES for part in ("tv_sec", "tv_nsec")))
SIZE = _CANONICAL.index("st_size")  # where a value sits in a tuple of `values`
MTIME = _CANONICAL.index("st_mtime.tv_sec")


def values(mode: int, size: int, uid: int, gid: int, atime: int, mtime: int) -> tuple[int, ...]:
    """A regular stat of whole-second times (SFTP v3's), in _CANONICAL order."""
    return (1, mode, uid, gid, size, 4096, (size + 511) // 512,
            atime, 0, mtime, 0, mtime, 0)


def mode_only_stat(mode: int) -> tuple[int, ...]:
    """Only the file type and permissions known (a READDIR entry's d_type)."""
    return (0, mode, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def as_dict(v: tuple[int, ...]) -> dict[str, Any]:
    """`v` as the stat dict mfusepy's API speaks (times in integer nanoseconds)."""
    return {"st_nlink": v[0], "st_mode": v[1], "st_uid": v[2], "st_gid": v[3],
            "st_size": v[4], "st_blksize": v[5], "st_blocks": v[6],
            "st_atime": v[7] * 1_000_000_000 + v[8], "st_mtime": v[9] * 1_000_000_000 + v[10],
            "st_ctime": v[11] * 1_000_000_000 + v[12]}


def _canonical(d: dict[str, Any]) -> tuple[int, ...]:
    """The values of a stat dict in _CANONICAL order, times split into s and ns."""
    get = d.get
    atime, mtime, ctime = get("st_atime", 0), get("st_mtime", 0), get("st_ctime", 0)
    return (get("st_nlink", 0), get("st_mode", 0), get("st_uid", 0), get("st_gid", 0),
            get("st_size", 0), get("st_blksize", 0), get("st_blocks", 0),
            atime // 1_000_000_000, atime % 1_000_000_000,
            mtime // 1_000_000_000, mtime % 1_000_000_000,
            ctime // 1_000_000_000, ctime % 1_000_000_000)


class StatPacker:
    """`fill(st, attrs)`: the whole `struct stat` `st` (a ctypes c_stat) from `attrs`."""

    def __init__(self, c_stat: Any, fallback: Callable[..., None]) -> None:
        self._fallback = fallback
        self._pack: Callable[..., None] | None = None
        layout = _layout(c_stat)
        if layout is None:
            log.debug("struct stat: layout not representable, filling field by field")
            return
        packer, order = layout
        self._pack = packer.pack_into
        self._reorder: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None
        if tuple(order) != _CANONICAL:
            self._reorder = operator.itemgetter(*(_CANONICAL.index(n) for n in order))
        if not self._agrees(c_stat):
            log.debug("struct stat: packed layout disagrees, filling field by field")
            self._pack = None

    @property
    def packed(self) -> bool:
        return self._pack is not None

    def fill(self, st: Any, attrs: dict[str, Any]) -> None:
        if self._pack is None:
            ctypes.memset(ctypes.byref(st), 0, ctypes.sizeof(st))
            self._fallback(st, attrs, use_ns=True)
            return
        self.fill_values(st, _canonical(attrs))

    def fill_values(self, st: Any, v: tuple[int, ...]) -> None:
        """`fill` from `values` (see the module docstring)."""
        if self._pack is None:
            self.fill(st, as_dict(v))
        elif self._reorder is None:
            self._pack(st, 0, *v)
        else:
            self._pack(st, 0, *self._reorder(v))

    def _agrees(self, c_stat: Any) -> bool:
        """Both ways of filling give the same bytes, for values distinct in every field."""
        sample = {"st_mode": 0o100644, "st_nlink": 3, "st_uid": 1001, "st_gid": 1002,
                  "st_size": 1 << 33, "st_blksize": 4096, "st_blocks": 12345,
                  "st_atime": 1_700_000_001_000_000_123, "st_mtime": 1_700_000_002_000_000_456,
                  "st_ctime": 1_700_000_003_000_000_789}
        mine, theirs = c_stat(), c_stat()
        ctypes.memset(ctypes.byref(mine), 0xAB, ctypes.sizeof(mine))  # pad bytes must go
        try:
            self.fill(mine, sample)
        except (struct.error, TypeError):
            return False
        self._fallback(theirs, sample, use_ns=True)
        return bytes(mine) == bytes(theirs)
