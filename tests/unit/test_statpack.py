"""statpack: one pack_into gives the same struct stat bytes as mfusepy's set_st_attrs."""

from __future__ import annotations

import ctypes
import random
from typing import Any

import pytest

from pysshfs.fuselib import mfusepy  # the libfuse it was loaded for
from pysshfs.statpack import StatPacker


def _reference(attrs: dict[str, Any]) -> bytes:
    st = mfusepy.c_stat()
    mfusepy.set_st_attrs(st, attrs, use_ns=True)
    return bytes(st)


def test_this_platform_packs_in_one_call() -> None:
    assert StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs).packed


@pytest.mark.parametrize("seed", range(20))
def test_same_bytes_as_set_st_attrs(seed: int) -> None:
    rnd = random.Random(seed)
    attrs = {"st_mode": rnd.choice([0o100644, 0o40755, 0o120777]) | rnd.randrange(0o7777),
             "st_nlink": rnd.randrange(1, 1 << 16), "st_uid": rnd.randrange(1 << 32),
             "st_gid": rnd.randrange(1 << 32), "st_size": rnd.randrange(1 << 62),
             "st_blksize": 4096, "st_blocks": rnd.randrange(1 << 53),
             **{key: rnd.randrange(1 << 62) for key in ("st_atime", "st_mtime", "st_ctime")}}
    st = mfusepy.c_stat()
    ctypes.memset(ctypes.byref(st), 0xFF, ctypes.sizeof(st))  # what was there must go
    StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs).fill(st, attrs)
    assert bytes(st) == _reference(attrs)


def test_missing_keys_are_zero() -> None:
    st = mfusepy.c_stat()
    ctypes.memset(ctypes.byref(st), 0xFF, ctypes.sizeof(st))
    StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs).fill(st, {"st_mode": 0o40755})
    assert bytes(st) == _reference({"st_mode": 0o40755})


class _Odd(ctypes.Structure):
    """A struct stat with a field of a type struct cannot express: packing is refused."""
    _fields_ = [("st_nlink", ctypes.c_ulong), ("st_mode", ctypes.c_uint * 1)]


def test_unrepresentable_layout_falls_back() -> None:
    calls: list[dict[str, Any]] = []
    packer = StatPacker(_Odd, lambda st, attrs, use_ns: calls.append(attrs))
    assert not packer.packed
    packer.fill(_Odd(), {"st_mode": 1})
    assert calls == [{"st_mode": 1}]
