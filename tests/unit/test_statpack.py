"""statpack: one pack_into gives the same struct stat bytes as mfusepy's set_st_attrs."""

from __future__ import annotations

import ctypes
import random
from typing import Any

import pytest

from pysshfs import statpack
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


@pytest.mark.parametrize("seed", range(10))
def test_values_fill_the_bytes_their_dict_does(seed: int) -> None:
    rnd = random.Random(seed)
    size, mtime = rnd.randrange(1 << 40), rnd.randrange(1 << 33)
    v = statpack.values(0o100640, size, rnd.randrange(1 << 32), rnd.randrange(1 << 32),
                        rnd.randrange(1 << 33), mtime)
    d = statpack.as_dict(v)
    assert d["st_size"] == v[statpack.SIZE] == size
    assert d["st_mtime"] == v[statpack.MTIME] * 1_000_000_000 == mtime * 1_000_000_000
    assert d["st_blocks"] == (size + 511) // 512 and d["st_ctime"] == d["st_mtime"]
    st = mfusepy.c_stat()
    ctypes.memset(ctypes.byref(st), 0xFF, ctypes.sizeof(st))
    StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs).fill_values(st, v)
    assert bytes(st) == _reference(d)


def test_mode_only_is_the_mode_alone() -> None:
    st = mfusepy.c_stat()
    ctypes.memset(ctypes.byref(st), 0xFF, ctypes.sizeof(st))
    StatPacker(mfusepy.c_stat, mfusepy.set_st_attrs).fill_values(
        st, statpack.mode_only_stat(0o40755))
    assert bytes(st) == _reference({"st_mode": 0o40755})


def test_values_fall_back_through_their_dict() -> None:
    calls: list[dict[str, Any]] = []
    packer = StatPacker(_Odd, lambda st, attrs, use_ns: calls.append(attrs))
    packer.fill_values(_Odd(), statpack.mode_only_stat(0o100644))
    assert calls == [statpack.as_dict(statpack.mode_only_stat(0o100644))]
