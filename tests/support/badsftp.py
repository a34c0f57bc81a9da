#!/usr/bin/env python3
"""A misbehaving SFTP server for tests: the real sftp-server behind a tampering relay.

Run by a real sshd as the SFTP command (`pysshfs ... -o sftp_server="python3 badsftp.py
MODE [ARG]"`), it starts this system's OpenSSH sftp-server, relays every packet between
it and the client, and changes one thing, chosen by MODE. Everything the server does right
stays real; only the behaviour under test is wrong. Standard library only: it runs under
the system python3 on the server side.

Modes (ARG in brackets, N counts requests after INIT):
  pass                    relay unchanged
  stall [N]               after N requests, never answer again (keep reading)
  delay SECONDS           hold every reply this long
  garbage [N]             after N requests, send a packet with an impossible length
  big-read                answer every READ with 10x the bytes asked for
  status [CODE[:N]]       after N requests, answer everything with STATUS CODE (default 7)
  die [N]                 exit after N requests (the session breaks)
  endless-readdir         READDIR never reaches EOF: fresh names for ever
  bad-names               every READDIR batch also carries names no directory can hold
  long-link [BYTES]       READLINK answers a target of BYTES (default 122880) bytes
  stderr-flood            write to stderr without end, as fast as the pipe takes it
  escapes                 STATUS messages and an extension name carry terminal escapes
  unknown-ids [COUNT]     before the first real reply, COUNT replies to ids never used
  no-extension NAME[,..]  the VERSION reply does not advertise these extensions
  stall-on NAME           once a request carries NAME (e.g. a path), never answer again
Add a mode by adding a function to MODES.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                "/usr/libexec/sftp-server")

FXP_INIT, FXP_VERSION = 1, 2
FXP_READ, FXP_READDIR, FXP_READLINK = 5, 12, 19
FXP_STATUS, FXP_DATA, FXP_NAME = 101, 103, 104
FX_EOF = 1


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def sstr(b: bytes) -> bytes:
    return u32(len(b)) + b


def packet(ptype: int, body: bytes) -> bytes:
    return u32(len(body) + 1) + bytes([ptype]) + body


def status(req_id: int, code: int, message: bytes = b"") -> bytes:
    return packet(FXP_STATUS, u32(req_id) + u32(code) + sstr(message) + sstr(b""))


def names(req_id: int, entries: list[bytes]) -> bytes:
    attrs = u32(0)  # no attributes
    body = u32(req_id) + u32(len(entries))
    for name in entries:
        body += sstr(name) + sstr(name) + attrs
    return packet(FXP_NAME, body)


class Relay:
    """Client stdin/stdout <-> sftp-server; `on_request`/`on_reply` may change packets."""

    def __init__(self, mode: str, args: list[str]) -> None:
        self.mode = mode
        self.args = args
        server = next(p for p in SFTP_SERVERS if os.path.exists(p))
        self.server = subprocess.Popen([server], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.out_lock = threading.Lock()
        self.requests = 0  # requests after INIT
        self.kinds: dict[int, int] = {}  # request id -> packet type
        self.lengths: dict[int, int] = {}  # READ id -> length asked

    # --- plumbing -----------------------------------------------------------------------
    @staticmethod
    def read_packet(stream) -> bytes | None:  # type: ignore[no-untyped-def]
        head = stream.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack(">I", head)
        body = stream.read(length)
        if len(body) < length:
            return None
        return head + body

    def to_client(self, data: bytes) -> None:
        with self.out_lock:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def to_server(self, data: bytes) -> None:
        assert self.server.stdin is not None
        self.server.stdin.write(data)
        self.server.stdin.flush()

    def run(self) -> None:
        threading.Thread(target=self.replies, daemon=True).start()
        stdin = sys.stdin.buffer
        while True:
            pkt = self.read_packet(stdin)
            if pkt is None:
                break
            ptype = pkt[4]
            if ptype != FXP_INIT:
                (req_id,) = struct.unpack(">I", pkt[5:9])
                self.kinds[req_id] = ptype
                if ptype == FXP_READ:
                    (hlen,) = struct.unpack(">I", pkt[9:13])
                    (self.lengths[req_id],) = struct.unpack(">I", pkt[13 + hlen + 8:13 + hlen + 12])
                self.requests += 1
            handled = MODES[self.mode](self, "request", pkt)
            if handled is None:
                self.to_server(pkt)
            elif handled:
                self.to_client(handled)
        os._exit(0)

    def replies(self) -> None:
        assert self.server.stdout is not None
        while True:
            pkt = self.read_packet(self.server.stdout)
            if pkt is None:
                os._exit(0)
            out = MODES[self.mode](self, "reply", pkt)
            self.to_client(pkt if out is None else out)

    def arg(self, i: int, default: str) -> str:
        return self.args[i] if len(self.args) > i else default

    def reply_id(self, pkt: bytes) -> int:
        return struct.unpack(">I", pkt[5:9])[0] if pkt[4] != FXP_VERSION else 0


# A mode: (relay, "request" | "reply", packet) -> None to relay unchanged, else the bytes
# to send to the client instead (b"" = nothing; for a request, it is then not forwarded).
Mode = Callable[[Relay, str, bytes], "bytes | None"]


def mode_pass(r: Relay, where: str, pkt: bytes) -> bytes | None:
    return None


def mode_stall(r: Relay, where: str, pkt: bytes) -> bytes | None:
    after = int(r.arg(0, "0"))
    if where == "reply" and pkt[4] != FXP_VERSION and r.requests > after:
        return b""
    return None


def mode_delay(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] != FXP_VERSION:
        time.sleep(float(r.arg(0, "30")))
    return None


def mode_garbage(r: Relay, where: str, pkt: bytes) -> bytes | None:
    after = int(r.arg(0, "0"))
    if where == "reply" and pkt[4] != FXP_VERSION and r.requests > after:
        return u32(0x7FFFFFFF) + b"\x65garbage"
    return None


def mode_big_read(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] == FXP_DATA:
        req_id = r.reply_id(pkt)
        length = r.lengths.pop(req_id, 4096)
        return packet(FXP_DATA, u32(req_id) + sstr(b"x" * (length * 10)))
    return None


def mode_status(r: Relay, where: str, pkt: bytes) -> bytes | None:
    code, _, after = r.arg(0, "7").partition(":")
    if where == "reply" and pkt[4] != FXP_VERSION and r.requests > int(after or 0):
        return status(r.reply_id(pkt), int(code), b"server says no")
    return None


def mode_die(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "request" and r.requests > int(r.arg(0, "0")):
        os._exit(1)
    return None


def mode_endless_readdir(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "request" and pkt[4] == FXP_READDIR:
        req_id = struct.unpack(">I", pkt[5:9])[0]
        base = r.requests * 100
        return names(req_id, [f"f{base + i:012d}".encode() for i in range(100)])
    return None


def mode_bad_names(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] == FXP_NAME and r.kinds.get(r.reply_id(pkt)) == FXP_READDIR:
        (count,) = struct.unpack(">I", pkt[9:13])
        bad = [b"a/b", b"..", b".", b"", b"x\0y"]
        head = u32(len(pkt) - 4 + sum(8 + 2 * len(n) + 4 for n in bad)) + pkt[4:9]
        body = u32(count + len(bad)) + pkt[13:]
        for name in bad:
            body += sstr(name) + sstr(name) + u32(0)
        return head + body
    return None


def mode_long_link(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] == FXP_NAME and r.kinds.get(r.reply_id(pkt)) == FXP_READLINK:
        target = b"t" * int(r.arg(0, "122880"))
        return names(r.reply_id(pkt), [target])
    return None


def mode_stderr_flood(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "request" and pkt[4] == FXP_INIT:
        def flood() -> None:
            line = b"sftp-server: debug3: " + b"x" * 200 + b"\n"
            while True:
                os.write(2, line * 64)
        threading.Thread(target=flood, daemon=True).start()
    return None


def mode_escapes(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] == FXP_VERSION:
        body = pkt[5:] + sstr(b"evil\x1b[2J\x1b]0;title\x07@x") + sstr(b"1")
        return u32(len(body) + 1) + bytes([FXP_VERSION]) + body
    if where == "reply" and pkt[4] == FXP_STATUS:
        req_id = r.reply_id(pkt)
        (code,) = struct.unpack(">I", pkt[9:13])
        if code != 0:
            return status(req_id, code, b"\x1b[2J\rpysshfs: forged line\x1b]0;owned\x07")
    return None


def mode_unknown_ids(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "reply" and pkt[4] != FXP_VERSION and not getattr(r, "_flooded", False):
        r._flooded = True  # type: ignore[attr-defined]
        count = int(r.arg(0, "20000"))
        return b"".join(status(0x7F000000 + i, 0) for i in range(count)) + pkt
    return None


def mode_no_extension(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where != "reply" or pkt[4] != FXP_VERSION:
        return None
    hidden = set(r.arg(0, "").encode().split(b","))
    body, pos = pkt[5:9], 9  # the version number, then name/data string pairs
    while pos < len(pkt):
        (n,) = struct.unpack(">I", pkt[pos:pos + 4])
        name = pkt[pos + 4:pos + 4 + n]
        (m,) = struct.unpack(">I", pkt[pos + 4 + n:pos + 8 + n])
        end = pos + 8 + n + m
        if name not in hidden:
            body += pkt[pos:end]
        pos = end
    return u32(len(body) + 1) + bytes([FXP_VERSION]) + body
def mode_stall_on(r: Relay, where: str, pkt: bytes) -> bytes | None:
    if where == "request" and r.arg(0, "STALL").encode() in pkt:
        r._stalled = True  # type: ignore[attr-defined]
    if where == "reply" and getattr(r, "_stalled", False):
        return b""
    return None


MODES: dict[str, Mode] = {
    "pass": mode_pass,
    "stall": mode_stall,
    "delay": mode_delay,
    "garbage": mode_garbage,
    "big-read": mode_big_read,
    "status": mode_status,
    "die": mode_die,
    "endless-readdir": mode_endless_readdir,
    "bad-names": mode_bad_names,
    "long-link": mode_long_link,
    "stderr-flood": mode_stderr_flood,
    "escapes": mode_escapes,
    "unknown-ids": mode_unknown_ids,
    "no-extension": mode_no_extension,
    "stall-on": mode_stall_on,
}


def command(mode: str, *args: object) -> str:
    """The -o sftp_server= value that runs this relay in `mode` on the test sshd."""
    parts = ["/usr/bin/python3", os.path.abspath(__file__), mode, *map(str, args)]
    return " ".join(parts)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        sys.stderr.write(f"usage: badsftp.py {{{','.join(MODES)}}} [ARG]\n")
        sys.exit(2)
    Relay(sys.argv[1], sys.argv[2:]).run()
