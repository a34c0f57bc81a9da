"""The private names of paramiko and mfusepy that pysshfs hooks into, checked by name.

pushchannel.py, leanpackets.py, algorithms.py, auth.py, connection.py and fuselib.py reach
into these libraries' internals for speed and for what their public API loses. pyproject.toml pins
the version ranges these were tested with; when a new release renames or drops one of
them, this test fails naming it and the range, instead of a mount failing in some
stranger way later. In the code, mypy (with types-paramiko, which leaves private names
out) makes each paramiko hook visible: a `# type: ignore[...]` on the line, or Any.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import inspect
import re

import mfusepy
import paramiko
import paramiko.agent
import paramiko.buffered_pipe
import paramiko.channel
import paramiko.common
import paramiko.packet
import pytest
from packaging.requirements import Requirement

from pysshfs import fuselib
from pysshfs.ssh import leanpackets, pushchannel

CHANNEL_ATTRS = ("in_buffer", "in_stderr_buffer", "lock", "closed", "eof_received",
                 "remote_chanid", "transport", "eof_sent", "out_window_size",
                 "out_max_packet_size")
CHANNEL_METHODS = ("_check_add_window",)
TRANSPORT_ATTRS = ("_send_user_message", "_preferred_kex", "_kex_info", "_cipher_info",
                   "_mac_info", "_key_info", "_log_agreement")
# Set in Transport.__init__, read by connection._tell_agreements.
TRANSPORT_INSTANCE_ATTRS = ("kex_engine", "local_cipher")
# Read by pushchannel.PushStream.sendall's short way (as _send_user_message does).
TRANSPORT_SEND_ATTRS = ("active", "clear_to_send", "clear_to_send_lock", "packetizer")
# Read by leanpackets.LeanReader._steady (Transport.run's own conditions for a packet).
TRANSPORT_READ_ATTRS = ("in_kex", "_expected_packet", "active", "sock")
AGENT_METHODS = ("_connect", "_close")  # auth._Agent: an agent on a socket we choose
MFUSEPY_NAMES = ("FUSE", "Operations", "FuseOSError", "fuse_get_context", "c_stat",
                 "set_st_attrs", "fuse_operations", "fuse_version_major", "fuse_version_minor",
                 "_libfuse", "fuse_context", "fuse_file_info", "c_utimbuf", "c_timespec")
MFUSEPY_FUSE_METHODS = ("_wrapper", "_readdir", "rename_fuse_2", "utimens_fuse_2",
                        "fgetattr")
# The fields of mfusepy's ctypes structures that fuselib.py reads.
MFUSEPY_STRUCT_FIELDS = {
    "fuse_context": ("fuse",),  # KernelCache.attach, current_fuse
    "fuse_file_info": ("fh", "flags"),  # FUSE.create, FUSE.copy_file_range
    "c_utimbuf": ("actime", "modtime"),  # FUSE.utimens_fuse_2
    "c_timespec": ("tv_sec", "tv_nsec"),  # _timespec, statpack
    "fuse_conn_info": ("want",),  # always_readdirplus
}
# The libfuse operations our FUSE subclass fills in itself.
FUSE_OPERATION_SLOTS = ("readdir", "rename", "utimens", "create", "copy_file_range")


def _tested(dist: str) -> str:
    """`paramiko 5.1.0 (pysshfs wants paramiko<6,>=5.1)`: what a failure must name."""
    wanted = [r for r in importlib.metadata.requires("pysshfs") or []
              if Requirement(r).name == dist and Requirement(r).marker is None]
    return f"{dist} {importlib.metadata.version(dist)} (pysshfs wants {', '.join(wanted)})"


def _gone(dist: str, name: str, user: str) -> str:
    return (f"{_tested(dist)}: {name} is gone or changed ({user} uses it); keep {dist} "
            f"within the tested range or adapt {user}")


@pytest.mark.parametrize("name", CHANNEL_ATTRS + CHANNEL_METHODS)
def test_paramiko_channel_has(name: str) -> None:
    channel = paramiko.Channel(1)
    assert hasattr(channel, name), _gone("paramiko", f"Channel.{name}", "ssh/pushchannel.py")


@pytest.mark.parametrize("name", TRANSPORT_ATTRS)
def test_paramiko_transport_has(name: str) -> None:
    assert hasattr(paramiko.Transport, name), \
        _gone("paramiko", f"Transport.{name}", "ssh/algorithms.py, connection.py, pushchannel.py")


def test_paramiko_transport_instance_has() -> None:
    import socket

    ours, theirs = socket.socketpair()
    transport = paramiko.Transport(ours)  # not started: no thread, no traffic
    try:
        for name in TRANSPORT_INSTANCE_ATTRS:
            assert hasattr(transport, name), \
                _gone("paramiko", f"Transport().{name}", "ssh/connection.py")
        for name in TRANSPORT_SEND_ATTRS:
            assert hasattr(transport, name), \
                _gone("paramiko", f"Transport().{name}", "ssh/pushchannel.py")
        for name in TRANSPORT_READ_ATTRS:
            assert hasattr(transport, name), \
                _gone("paramiko", f"Transport().{name}", "ssh/leanpackets.py")
        packetizer = transport.packetizer
        for name in (*leanpackets.PRIVATE_FIELDS, *leanpackets.PRIVATE_OUT_FIELDS,
                     "_initial_kex_done", "read_all", "read_message", "write_all",
                     "send_message", "REKEY_BYTES", "REKEY_PACKETS"):
            assert hasattr(packetizer, name), \
                _gone("paramiko", f"Packetizer().{name}", "ssh/leanpackets.py")
    finally:
        transport.close()
        theirs.close()


def test_paramiko_still_calls_log_agreement() -> None:
    """connection._tell_agreements replaces the method: it must still be what paramiko
    calls, with (which, local, remote), or `-d` silently loses the "kex:" lines."""
    params = list(inspect.signature(paramiko.Transport._log_agreement).parameters)
    assert params == ["self", "which", "local", "remote"], \
        _gone("paramiko", f"Transport._log_agreement{params}", "ssh/connection.py")
    assert "self._log_agreement(" in inspect.getsource(paramiko.Transport), \
        _gone("paramiko", "the call of Transport._log_agreement", "ssh/connection.py")


@pytest.mark.parametrize("name", AGENT_METHODS)
def test_paramiko_agent_has(name: str) -> None:
    assert callable(getattr(paramiko.agent.AgentSSH, name, None)), \
        _gone("paramiko", f"agent.AgentSSH.{name}", "ssh/auth.py")


def test_paramiko_window_adjust_message() -> None:
    assert paramiko.common.cMSG_CHANNEL_WINDOW_ADJUST == bytes([93]), \
        _gone("paramiko", "common.cMSG_CHANNEL_WINDOW_ADJUST", "ssh/pushchannel.py")


def test_paramiko_sends_user_messages_the_way_sendall_copies() -> None:
    """PushStream.sendall does what Channel._send + Transport._send_user_message do, and
    hands Packetizer.send_message an object with asbytes() only: check they still are
    that (the window taken under channel.lock, the send under clear_to_send_lock)."""
    send = inspect.getsource(paramiko.Transport._send_user_message)
    assert "self.clear_to_send_lock.acquire()" in send and "self._send_message(data)" in send, \
        _gone("paramiko", "Transport._send_user_message's locking", "ssh/pushchannel.py")
    chan = inspect.getsource(paramiko.Channel._send)
    assert "self._wait_for_send_window(size)" in chan and "m.add_string(" in chan, \
        _gone("paramiko", "Channel._send's window bookkeeping", "ssh/pushchannel.py")
    window = inspect.getsource(paramiko.Channel._wait_for_send_window)
    assert "self.out_window_size -= size" in window and "out_max_packet_size - 64" in window, \
        _gone("paramiko", "Channel._wait_for_send_window", "ssh/pushchannel.py")
    packet = inspect.getsource(paramiko.packet.Packetizer.send_message)
    assert "data = data.asbytes()" in packet, \
        _gone("paramiko", "Packetizer.send_message(Message)", "ssh/pushchannel.py")
    assert paramiko.common.MSG_CHANNEL_DATA == 94, \
        _gone("paramiko", "common.MSG_CHANNEL_DATA", "ssh/pushchannel.py")


def test_mfusepy_calls_fuse_main_real_by_its_global_name() -> None:
    """fuselib.FUSE puts its lean read callback in the operations table by wrapping the
    module global fuse_main_real that mfusepy.FUSE.__init__ calls with the table."""
    source = inspect.getsource(mfusepy.FUSE.__init__)
    assert "fuse_main_real(" in source and "ctypes.pointer(fuse_ops)" in source, \
        _gone("mfusepy", "FUSE.__init__ calling fuse_main_real(..., pointer(ops), ...)",
              "fuselib.py")
    assert callable(mfusepy.fuse_main_real), \
        _gone("mfusepy", "mfusepy.fuse_main_real", "fuselib.py")
    fields = dict(field[:2] for field in mfusepy.fuse_operations._fields_)
    assert "read" in fields and len(fields["read"]._argtypes_) == 5, \
        _gone("mfusepy", "fuse_operations.read(path, buf, size, offset, fi)", "fuselib.py")


def test_check_add_window_signature() -> None:
    params = list(inspect.signature(paramiko.Channel._check_add_window).parameters)
    assert params == ["self", "n"], \
        _gone("paramiko", f"Channel._check_add_window{params}", "ssh/pushchannel.py")


def test_push_pipes_stand_in_for_buffered_pipe() -> None:
    """PushStream swaps the channel's BufferedPipes for its own: every method paramiko
    calls on them (and every public one BufferedPipe has) must be there."""
    channel = paramiko.Channel(1)
    assert isinstance(channel.in_buffer, paramiko.buffered_pipe.BufferedPipe), \
        _gone("paramiko", "Channel.in_buffer as a BufferedPipe", "ssh/pushchannel.py")
    called = set(re.findall(r"\bin_(?:stderr_)?buffer\.(\w+)\(",
                            inspect.getsource(paramiko.channel)))
    public = {name for name in vars(paramiko.buffered_pipe.BufferedPipe)
              if not name.startswith("_") or name == "__len__"}
    assert called, "no call on Channel.in_buffer found in paramiko's source: re-read it"
    for pipe in (pushchannel._ConsumerPipe, pushchannel._StderrPipe):
        missing = sorted(name for name in called | public if not hasattr(pipe, name))
        assert not missing, (f"{_tested('paramiko')}: its channels now call {missing} on "
                             f"their BufferedPipe, which pushchannel.{pipe.__name__} lacks")


@pytest.mark.parametrize("name", MFUSEPY_NAMES)
def test_mfusepy_has(name: str) -> None:
    assert hasattr(mfusepy, name), _gone("mfusepy", f"mfusepy.{name}", "fuselib.py")


@pytest.mark.parametrize("name", MFUSEPY_FUSE_METHODS)
def test_mfusepy_fuse_has(name: str) -> None:
    assert callable(getattr(mfusepy.FUSE, name, None)), \
        _gone("mfusepy", f"FUSE.{name}", "fuselib.py (overrides or calls it)")


def test_mfusepy_signatures() -> None:
    """The private methods fuselib.py calls, called the way it calls them."""
    expected = {
        mfusepy.FUSE._readdir: ["self", "path", "buf", "filler", "offset", "fip"],
        mfusepy.FUSE.rename_fuse_2: ["self", "old", "new"],
    }
    for func, params in expected.items():
        got = list(inspect.signature(func).parameters)
        assert got == params, _gone("mfusepy", f"FUSE.{func.__name__}{got}", "fuselib.py")
    assert "use_ns" in inspect.signature(mfusepy.set_st_attrs).parameters, \
        _gone("mfusepy", "set_st_attrs(use_ns=)", "fuselib.py")


def test_mfusepy_getattr_goes_through_fgetattr() -> None:
    """fuselib.FUSE overrides fgetattr (statpack's one-call fill): libfuse 3's getattr
    must still reach it."""
    source = inspect.getsource(mfusepy.FUSE.getattr_fuse_3)
    assert "self.fgetattr(path, buf, fip)" in source, \
        _gone("mfusepy", "FUSE.getattr_fuse_3 -> fgetattr", "fuselib.py")


def test_mfusepy_fuse_keeps_its_attributes() -> None:
    """fuselib.FUSE's methods read self.operations/encoding/errors, set in __init__."""
    source = inspect.getsource(mfusepy.FUSE.__init__)
    for name in ("operations", "encoding", "errors"):
        assert f"self.{name} = " in source, _gone("mfusepy", f"FUSE().{name}", "fuselib.py")


@pytest.mark.parametrize("struct", sorted(MFUSEPY_STRUCT_FIELDS))
def test_mfusepy_struct_fields(struct: str) -> None:
    fields = {field[0] for field in getattr(mfusepy, struct)._fields_}
    for name in MFUSEPY_STRUCT_FIELDS[struct]:
        assert name in fields, _gone("mfusepy", f"{struct}.{name}", "fuselib.py")


def test_mfusepy_types_fuse_get_context() -> None:
    """fuselib calls _libfuse.fuse_get_context() and reads .contents.fuse: that needs the
    prototype mfusepy sets (else ctypes returns a plain int)."""
    assert mfusepy._libfuse.fuse_get_context.restype is ctypes.POINTER(mfusepy.fuse_context), \
        _gone("mfusepy", "_libfuse.fuse_get_context's restype", "fuselib.py")


def test_libfuse_has_what_loop_exited_calls() -> None:
    needed = ("fuse_get_session", "fuse_session_exited") if fuselib.FUSE_MAJOR >= 3 \
        else ("fuse_exited",)
    for name in needed:
        assert hasattr(mfusepy._libfuse, name), \
            f"{fuselib.fuse_version_text()} has no {name} (fuselib.loop_exited calls it)"


@pytest.mark.parametrize("slot", FUSE_OPERATION_SLOTS)
def test_fuse_operations_slot(slot: str) -> None:
    """mfusepy picks `slot_fuse_N`, else `slot`, and refuses a class that has both: our
    override must be what it picks."""
    fields = [field[0] for field in mfusepy.fuse_operations._fields_]
    assert slot in fields, _gone("mfusepy", f"fuse_operations.{slot}", "fuselib.py")
    suffixed = f"{slot}_fuse_{fuselib.FUSE_MAJOR}"
    both = hasattr(fuselib.FUSE, suffixed) and hasattr(fuselib.FUSE, slot)
    assert not both, (f"{_tested('mfusepy')}: fuselib.FUSE has both {slot} and {suffixed}, "
                      "which mfusepy refuses: keep the name mfusepy.FUSE uses")
    picked = getattr(fuselib.FUSE, suffixed, None) or getattr(fuselib.FUSE, slot)
    assert picked.__qualname__.startswith("FUSE.") and picked.__module__ == fuselib.__name__, \
        _gone("mfusepy", f"the dispatch of {slot} (it picks {picked.__qualname__} from "
              f"{picked.__module__})", "fuselib.py")


def test_cachetools_ttlcache_keeps_its_dicts() -> None:
    """cache._Slot.get reads TTLCache's own dicts (one call a lookup instead of `in` and
    []); without them it falls back to those, slower and as correct."""
    from pysshfs import cache

    slot: cache._Slot[int] = cache._Slot(True, 10.0, 10)
    assert slot._links is not None, \
        _gone("cachetools", f"TTLCache.{cache.CACHETOOLS_LINKS} / {cache.CACHETOOLS_DATA}",
              "cache.py")
