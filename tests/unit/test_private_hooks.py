"""The private names of paramiko and mfusepy that pysshfs hooks into, checked by name.

pushchannel.py, algorithms.py, connection.py and fuselib.py reach into these libraries'
internals for speed and for what their public API loses. pyproject.toml pins the version
ranges these were tested with; when a new release renames or drops one of them, this test
fails naming it, instead of a mount failing in some stranger way later.
"""

from __future__ import annotations

import inspect

import mfusepy
import paramiko
import paramiko.common
import pytest

from pysshfs import fuselib

CHANNEL_ATTRS = ("in_buffer", "in_stderr_buffer", "lock", "closed", "eof_received",
                 "remote_chanid", "transport")
CHANNEL_METHODS = ("_check_add_window",)
TRANSPORT_ATTRS = ("_send_user_message", "_preferred_kex", "_kex_info", "_cipher_info",
                   "_mac_info", "_key_info")
MFUSEPY_NAMES = ("FUSE", "Operations", "FuseOSError", "fuse_get_context", "c_stat",
                 "set_st_attrs", "fuse_operations", "fuse_version_major", "fuse_version_minor")
MFUSEPY_FUSE_METHODS = ("_wrapper", "_readdir", "rename_fuse_2", "utimens_fuse_2")
# The libfuse operations our FUSE subclass fills in itself.
FUSE_OPERATION_SLOTS = ("readdir", "rename", "utimens", "create", "copy_file_range")


@pytest.mark.parametrize("name", CHANNEL_ATTRS + CHANNEL_METHODS)
def test_paramiko_channel_has(name: str) -> None:
    channel = paramiko.Channel(1)
    assert hasattr(channel, name), \
        f"paramiko {paramiko.__version__}: Channel.{name} is gone (ssh/pushchannel.py uses it)"


@pytest.mark.parametrize("name", TRANSPORT_ATTRS)
def test_paramiko_transport_has(name: str) -> None:
    assert hasattr(paramiko.Transport, name), \
        f"paramiko {paramiko.__version__}: Transport.{name} is gone (pysshfs/ssh uses it)"


def test_paramiko_window_adjust_message() -> None:
    assert paramiko.common.cMSG_CHANNEL_WINDOW_ADJUST == bytes([93])


def test_check_add_window_signature() -> None:
    params = list(inspect.signature(paramiko.Channel._check_add_window).parameters)
    assert params == ["self", "n"], params


@pytest.mark.parametrize("name", MFUSEPY_NAMES)
def test_mfusepy_has(name: str) -> None:
    assert hasattr(mfusepy, name), f"mfusepy.{name} is gone (pysshfs/fuselib.py uses it)"


@pytest.mark.parametrize("name", MFUSEPY_FUSE_METHODS)
def test_mfusepy_fuse_has(name: str) -> None:
    assert callable(getattr(mfusepy.FUSE, name, None)), \
        f"mfusepy.FUSE.{name} is gone (pysshfs/fuselib.py overrides or calls it)"


@pytest.mark.parametrize("slot", FUSE_OPERATION_SLOTS)
def test_fuse_operations_slot(slot: str) -> None:
    fields = [field[0] for field in mfusepy.fuse_operations._fields_]
    assert slot in fields, f"mfusepy's fuse_operations has no {slot} slot"
    assert callable(getattr(fuselib.FUSE, slot, None) or getattr(fuselib.FUSE, f"{slot}_fuse_3",
                                                                 None))
