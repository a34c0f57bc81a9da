"""Reaching the server: a TCP socket as ssh makes it, ProxyCommand, or a ProxyJump chain.

Every failure becomes a one-line MountError naming the address and what to check.
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import threading
import time
from typing import IO

import paramiko

from pysshfs.errors import MountError
from pysshfs.lograte import RateLimitedLog
from pysshfs.sanitize import sanitize
from pysshfs.ssh.config import ResolvedTarget

log = logging.getLogger(__name__)
_stderr_log = RateLimitedLog(log, burst=20, period=60.0)  # a chatty command cannot flood
PROXY_LINE_MAX = 300  # characters of one ProxyCommand stderr line that are logged


def endpoint_label(target: ResolvedTarget) -> str:
    """'host:port' (with the alias when it differs), for connection messages."""
    addr = f"{target.hostname}:{target.port}"
    if target.original_host.lower() != target.hostname.lower():
        return f"{target.original_host} ({addr})"
    return addr


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """'user@host:port', 'ssh://user@host:port' or '[v6]:port' → (user, host, port)."""
    if spec.startswith("ssh://"):
        spec = spec[len("ssh://"):]
    user = None
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    port = None
    if spec.startswith("["):
        end = spec.find("]")
        host = spec[1:end]
        rest = spec[end + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, p = spec.split(":")
        if p.isdigit():
            port = int(p)
    else:
        host = spec
    return user, host, port


def _family(target: ResolvedTarget) -> int:
    fam = (target.get("AddressFamily") or "any").lower()
    return {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(fam, socket.AF_UNSPEC)


def tune_socket(sock: socket.socket, target: ResolvedTarget) -> None:
    """TCP_NODELAY (SFTP is request/response) and TCPKeepAlive as configured."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.flag("TCPKeepAlive", True):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError as e:  # e.g. not a TCP socket
        log.debug("socket options not set: %s", e)


def open_tcp(target: ResolvedTarget, timeout: float | None) -> socket.socket:
    """Connect like ssh: every address of the name, ConnectionAttempts times."""
    label = endpoint_label(target)
    try:
        infos = socket.getaddrinfo(target.hostname, target.port, _family(target),
                                   socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            why = "name or service not known"
        else:
            why = f"cannot resolve the name ({e.strerror})"
        raise MountError(errno.EHOSTUNREACH, target.hostname, why,
                         "check the host name") from None
    attempts = max(1, int(target.number("ConnectionAttempts", 1)))
    bind = target.get("BindAddress")
    last: OSError | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(1)  # ssh waits a second between attempts
        for family, kind, proto, _, addr in infos:
            log.debug("Connecting to %s [%s] port %d.", target.hostname, addr[0], target.port)
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout)
                if bind:
                    sock.bind((bind, 0))
                sock.connect(addr)
            except OSError as e:
                sock.close()
                last = e
                log.debug("connect to address %s port %d: %s", addr[0], target.port,
                          e.strerror or e)
                continue
            sock.settimeout(None)
            tune_socket(sock, target)
            log.debug("Connection established.")
            return sock
    raise connect_error(last, label)


def connect_error(e: OSError | None, label: str) -> MountError:
    if isinstance(e, (socket.timeout, TimeoutError)) or (e and e.errno == errno.ETIMEDOUT):
        return MountError(errno.ETIMEDOUT, label, "connection timed out",
                          "is the host up and the port open? see ConnectTimeout")
    code = e.errno if e and e.errno else errno.EIO
    if code == errno.ECONNREFUSED:
        return MountError(code, label, "connection refused", "is sshd running on that port?")
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return MountError(code, label, "no route to host", "check the network and host name")
    why = (e.strerror if e and e.strerror else str(e)).lower() if e else "cannot connect"
    return MountError(code, label, why, "check the host name and port")


def _log_stderr(stream: IO[bytes]) -> None:
    """ProxyCommand's stderr, a line at a time, into our log (rate-limited, escaped)."""
    with stream:
        for raw in iter(lambda: stream.readline(4 * PROXY_LINE_MAX), b""):
            line = sanitize(raw.rstrip(b"\n"))[:PROXY_LINE_MAX]
            _stderr_log.log(logging.WARNING, "proxy-stderr", "ProxyCommand: %s", line)


class CommandSocket:
    """ProxyCommand's stdin/stdout as a socket: a socketpair, so EOF and timeouts behave.

    (paramiko.ProxyCommand spins on a dead command until its timeout.) Its stderr is
    logged (`proxy-stderr` thread), not inherited: the command outlives the mount
    command that daemonizes, and would keep the terminal, or the pipe of whoever ran
    `pysshfs` and waits for its output to end, open for as long as the mount lasts."""

    def __init__(self, command: str) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"],
                                         stdin=theirs.fileno(), stdout=theirs.fileno(),
                                         stderr=subprocess.PIPE, start_new_session=True)
        finally:
            theirs.close()
        assert self.proc.stderr is not None
        threading.Thread(target=_log_stderr, args=(self.proc.stderr,), daemon=True,
                         name="proxy-stderr").start()
        self.sock = ours
        self.command = command

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def fileno(self) -> int:
        return self.sock.fileno()

    def __getattr__(self, name: str) -> object:  # paramiko peeks at socket internals
        return getattr(self.sock, name)

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_proxy_command(command: str, target: ResolvedTarget) -> CommandSocket:
    log.debug("Executing proxy command: exec %s", command)
    try:
        return CommandSocket(command)
    except OSError as e:
        raise MountError(errno.EIO, endpoint_label(target),
                         f"ProxyCommand could not start: {e.strerror}",
                         "check ProxyCommand in the ssh configuration") from None


def open_direct_tcpip(transport: paramiko.Transport, target: ResolvedTarget,
                      via: str, timeout: float | None) -> paramiko.Channel:
    """A channel from a jump host to target's host:port (ssh -J's direct-tcpip)."""
    log.debug("Opening a channel from %s to %s:%d", via, target.hostname, target.port)
    try:
        chan = transport.open_channel("direct-tcpip", (target.hostname, target.port),
                                      ("127.0.0.1", 0), timeout=timeout)
    except paramiko.ChannelException as e:
        raise MountError(errno.ECONNREFUSED, endpoint_label(target),
                         f"jump host {via} could not connect: {e.text or e.code}",
                         "is sshd running there, and does the jump host allow forwarding?"
                         ) from None
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise MountError(errno.ECONNRESET, endpoint_label(target),
                         f"jump host {via} lost the connection ({e})", "") from None
    return chan
