"""MountOptions and the option table agree: one field per option, typed, same default."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from typing import Any, Literal

import pytest

from pysshfs import options
from pysshfs.cli import parse_args
from pysshfs.daemon import fuse_options
from pysshfs.mountspec import MountOptions, MountSpec

# Fields that are not rows of the table.
DERIVED = {"mount_flags"}
# How each kind of row is typed; None is allowed where the table's default is None.
KIND_TYPES: dict[str, type] = {"flag": bool, "bool": bool, "int": int, "float": float,
                               "octal": int, "str": str}
MOUNT_ROWS = [opt for opt in options.OPTIONS if opt.group != "ssh"]
HINTS = typing.get_type_hints(MountOptions)


def _first_row(key: str) -> options.Option:
    """The row whose default the destination keeps (aliases come after their target)."""
    return next(opt for opt in options.OPTIONS if opt.key == key)


def test_one_field_per_option_destination() -> None:
    fields = {f.name for f in dataclasses.fields(MountOptions)}
    assert fields - DERIVED == {opt.key for opt in MOUNT_ROWS}


@pytest.mark.parametrize("key", sorted({opt.key for opt in MOUNT_ROWS}))
def test_field_default_and_type_follow_the_table(key: str) -> None:
    row = _first_row(key)
    assert getattr(MountOptions(), key) == row.default
    hint = HINTS[key]
    if row.kind == "choice":
        assert typing.get_origin(hint) is Literal
        assert set(typing.get_args(hint)) == set(row.choices)
        return
    wanted: Any = KIND_TYPES[row.kind]
    assert hint == (wanted | None if row.default is None and row.kind not in ("flag", "bool")
                    else wanted), key


def _sample(opt: options.Option) -> tuple[str, Any]:
    """An `-o` item for the row and the value MountOptions must then hold."""
    if opt.kind == "choice":
        return "=" + opt.choices[-1], opt.choices[-1]
    samples: dict[str, tuple[str, Any]] = {
        "flag": ("", True), "bool": ("=no", False), "int": ("=7", 7), "float": ("=2.5", 2.5),
        "octal": ("=027", 0o27), "str": (r"=some\,thing", "some,thing")}
    return samples[opt.kind]


@pytest.mark.parametrize("opt", MOUNT_ROWS, ids=lambda o: o.name)
def test_every_option_reaches_its_field_typed(opt: options.Option) -> None:
    text, value = _sample(opt)
    spec = parse_args(["h:", "/m", "-o", opt.name + text])
    got = getattr(spec.opts, opt.key)
    if opt.negate:
        value = not value
    assert got == value and type(got) is type(value)
    assert spec.ssh.options == {}


def test_options_are_read_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MountOptions().ro = True  # type: ignore[misc]


def test_daemon_no_longer_imports_the_command_line() -> None:
    code = "import sys, pysshfs.daemon; print('pysshfs.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "False"


def test_fuse_options_from_mount_options() -> None:
    spec = parse_args(["h:/d", "/m", "-o", "ro,allow_other,noexec,max_read=65536,"
                       "attr_timeout=3,fsname=box\\,1,kernel_cache"])
    kw = fuse_options(spec)
    assert kw["fsname"] == "box\\,1" and kw["subtype"] == "pysshfs"
    for flag in ("ro", "allow_other", "kernel_cache", "noexec"):
        assert kw[flag] is True
    for flag in ("allow_root", "default_permissions", "auto_cache", "direct_io"):
        assert flag not in kw
    assert kw["max_read"] == 65536
    assert (kw["entry_timeout"], kw["attr_timeout"], kw["negative_timeout"]) == (10.0, 3.0, 10.0)
    plain = fuse_options(MountSpec(host="h", remote_path="", mountpoint="/m", source="h:"))
    assert plain["fsname"] == "h:" and "max_read" not in plain and "ro" not in plain
