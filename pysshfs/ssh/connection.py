"""One authenticated SSH connection, made the way ``ssh`` makes it, carrying one SFTP channel.

`connect()` resolves ssh_config, reaches the server (TCP, ProxyCommand or a ProxyJump chain),
negotiates algorithms, verifies the host key, authenticates, and starts ServerAlive probes.
Every failure is a one-line `MountError`; nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paramiko

from pysshfs.errors import MountError
from pysshfs.ssh import hostkeys, proxy
from pysshfs.ssh.algorithms import choose
from pysshfs.ssh.auth import Authenticator, Secrets
from pysshfs.ssh.config import ResolvedTarget, resolve
from pysshfs.ssh.readahead import read_ahead
from pysshfs.ssh.request import ConnectRequest

log = logging.getLogger(__name__)

# Flow control for what the server sends us. Measured (loopback, aes128-gcm, 256 MiB through
# one channel, median of 3): 2 MiB/32 KiB 640 MB/s, 4 MiB/64 KiB 730, 8 MiB/128 KiB 650,
# but 16-64 MiB windows with 32 KiB packets collapse to 80-150 MB/s in paramiko. Issue 4
# re-measures with SFTP on top; these are module globals so it can.
WINDOW_SIZE = 4 * 1024 * 1024
MAX_PACKET_SIZE = 64 * 1024
DEFAULT_SERVER_ALIVE_INTERVAL = 15
DEFAULT_TIMEOUT = 30.0  # handshake/banner when neither ConnectTimeout nor timeout= is given
MAX_JUMP_DEPTH = 8


@dataclass
class KeptRequest(ConnectRequest):
    """A ConnectRequest that carries the secrets of an earlier login (never printed)."""

    secrets: Secrets | None = field(default=None, repr=False, compare=False)


class _KeepAlive(threading.Thread):
    """ServerAliveInterval/CountMax: probe a quiet server, close the link when it is gone."""

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int,
                 label: str) -> None:
        super().__init__(name=f"ssh-keepalive {label}", daemon=True)
        self.t = transport
        self.interval = interval
        self.count_max = max(1, count_max)
        self.label = label
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            if not self.t.is_active():
                return
            answered = threading.Event()
            threading.Thread(target=self._probe, args=(answered,), name="ssh-keepalive-probe",
                             daemon=True).start()
            missed = 0
            while not answered.wait(self.interval):
                if self.stop.is_set():
                    return
                missed += 1
                log.debug("%s: no answer to keepalive (%d/%d)", self.label, missed,
                          self.count_max)
                if missed >= self.count_max:
                    log.warning("Timeout, server %s not responding.", self.label)
                    self.t.close()
                    return


    def _probe(self, answered: threading.Event) -> None:
        try:
            # Any reply counts (sshd answers an unknown request with FAILURE).
            self.t.global_request("keepalive@openssh.com", wait=True)
        except Exception as e:  # the transport died under us
            log.debug("keepalive probe: %s", e)
        answered.set()


class SSHConnection:
    """An authenticated transport (and the jump hosts it runs through)."""

    def __init__(self, transport: paramiko.Transport, target: ResolvedTarget,
                 request: ConnectRequest, secrets: Secrets,
                 jumps: list[paramiko.Transport], keepalive: _KeepAlive | None) -> None:
        self.transport = transport
        self.resolved = target
        self.description = target.description
        self._request = request
        self._secrets = secrets
        self._jumps = jumps
        self._keepalive = keepalive
        self._sent_no_more_sessions = False

    def open_sftp_channel(self, sftp_server: str | None = None, *,
                          last: bool = True) -> paramiko.Channel:
        """The session channel running SFTP; then (`last`) no more sessions on this
        connection. The session opens more for bulk writes (each with its own 2 MiB
        window at the server: see Session._open_bulk), and says `no_more_sessions` after
        them."""
        try:
            chan = self.transport.open_session(window_size=WINDOW_SIZE,
                                               max_packet_size=MAX_PACKET_SIZE,
                                               timeout=DEFAULT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise MountError(errno.ECONNRESET, self.description,
                             f"cannot open a session channel ({e})",
                             "check the server's log") from None
        try:
            if sftp_server:
                log.debug("Sending command: %s", sftp_server)
                chan.exec_command(sftp_server)
            else:
                log.debug("Sending subsystem: sftp")
                chan.invoke_subsystem("sftp")
        except (paramiko.SSHException, OSError, EOFError) as e:
            chan.close()
            if sftp_server:
                why, fix = (f"the server refused to run {sftp_server} ({e})",
                            "check the sftp_server path")
            else:
                why, fix = (f"the server refused the SFTP subsystem ({e})",
                            "check 'Subsystem sftp' in the server's sshd_config, "
                            "or pass -o sftp_server=PATH")
            raise MountError(errno.EPROTO, self.description, why, fix) from None
        if last:
            self.no_more_sessions()
        return chan

    def no_more_sessions(self) -> None:
        """OpenSSH's hardening: this connection will never carry another session."""
        if self._sent_no_more_sessions:
            return
        self._sent_no_more_sessions = True
        try:
            self.transport.global_request("no-more-sessions@openssh.com", wait=False)
        except (paramiko.SSHException, OSError, EOFError) as e:
            log.debug("no-more-sessions@openssh.com not sent: %s", e)
            return
        log.debug("Sent no-more-sessions@openssh.com")

    @property
    def alive(self) -> bool:
        return self.transport.is_active() and self.transport.is_authenticated()

    def reconnect_request(self) -> ConnectRequest:
        """The same destination, never prompting, with what the user typed kept in memory."""
        fields = {f.name: getattr(self._request, f.name)
                  for f in dataclasses.fields(ConnectRequest)}
        fields.update(interactive=False, password_stdin=False)
        fields["options"] = dict(self._request.options)
        return KeptRequest(**fields, secrets=self._secrets)

    def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop.set()
        self.transport.close()
        for t in reversed(self._jumps):
            t.close()

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHConnection({self.description}, alive={self.alive})"


def _tell_agreements(t: paramiko.Transport) -> None:
    """Log the negotiated kex/host key/cipher/MAC/compression like ssh -v's "kex:" lines.

    paramiko reports them only through its private _log_agreement hook; borrow it."""
    if not hasattr(t, "_log_agreement"):
        return

    def agreement(which: str, local: str, remote: str) -> None:
        if which == "HostKey":  # the kex algorithm was just chosen too
            kex = next((n for n, c in t._kex_info.items()  # type: ignore[attr-defined]
                        if type(t.kex_engine) is c), "?")
            log.debug("kex: algorithm: %s", kex)
        if which == "MAC" and "gcm" in (t.local_cipher or ""):
            local = remote = "<implicit>"
        if local == remote:
            log.debug("kex: %s: %s", which, local)
        else:
            log.debug("kex: %s: client->server %s, server->client %s", which, local, remote)

    t._log_agreement = agreement


def _handshake_error(e: BaseException, target: ResolvedTarget, sock: Any = None) -> MountError:
    label = proxy.endpoint_label(target)
    text = str(e)
    if isinstance(sock, proxy.CommandSocket):
        status = sock.proc.poll()
        if status is not None:
            return MountError(errno.ECONNRESET, label,
                              f"the ProxyCommand exited with status {status}",
                              "check ProxyCommand in the ssh configuration")
    if isinstance(e, paramiko.ssh_exception.IncompatiblePeer) or "Incompatible" in text:
        return MountError(errno.EPROTO, label, f"no algorithm in common with the server ({text})",
                          "see Ciphers/MACs/KexAlgorithms/HostKeyAlgorithms")
    if "banner" in text.lower():
        return MountError(errno.EPROTO, label,
                          "the server did not answer as an SSH server (no protocol banner)",
                          "is this the right port?")
    if isinstance(e, (socket.timeout, TimeoutError)):
        return MountError(errno.ETIMEDOUT, label, "SSH handshake timed out", "")
    return MountError(errno.ECONNRESET, label,
                      f"SSH handshake failed ({text or type(e).__name__})",
                      "check the server's log")


def _start_client(t: paramiko.Transport, target: ResolvedTarget, timeout: float,
                  sock: Any) -> None:
    """Key exchange, or a MountError; paramiko may also just stop waiting at `timeout`."""
    started = time.monotonic()
    error: BaseException | None = None
    try:
        t.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as e:
        error = e
    if error is None and t.is_active() and t.initial_kex_done:
        return
    error = error or t.get_exception()
    t.close()
    if isinstance(sock, proxy.CommandSocket):
        with contextlib.suppress(subprocess.TimeoutExpired):
            sock.proc.wait(timeout=1)  # so its exit status can explain the failure
    slow = time.monotonic() - started >= timeout * 0.9
    if slow and (error is None or "banner" in str(error).lower()):
        # paramiko words a silent server like a closed one; the clock tells them apart
        raise MountError(errno.ETIMEDOUT, proxy.endpoint_label(target),
                         "connection timed out during banner exchange",
                         "is sshd running on that port? see ConnectTimeout")
    if error is None:
        error = paramiko.SSHException("the server closed the connection")
    raise _handshake_error(error, target, sock)


def _peer_ip(sock: Any) -> str | None:
    if isinstance(sock, socket.socket):
        try:
            return str(sock.getpeername()[0])
        except OSError:
            return None
    return None


def _session(target: ResolvedTarget, sock: Any, *, request: ConnectRequest, secrets: Secrets,
             timeout: float, password_stdin: bool) -> paramiko.Transport:
    """Key exchange, host key verification and authentication on an open stream."""
    algs = choose(target)
    known = hostkeys.KnownHosts(target)
    algs.order_host_keys(known.known_key_types())
    try:
        t = paramiko.Transport(read_ahead(sock), default_window_size=WINDOW_SIZE,
                               default_max_packet_size=MAX_PACKET_SIZE,
                               disabled_algorithms={"pubkeys": algs.disabled_pubkeys()})
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise _handshake_error(e, target) from None
    try:
        algs.apply(t)
        _tell_agreements(t)
        t.use_compression(target.flag("Compression", False))
        t.banner_timeout = timeout
        t.handshake_timeout = timeout
        t.auth_timeout = max(timeout, 30.0)
        log.debug("Local version string %s", t.local_version)
        _start_client(t, target, timeout, sock)
        log.debug("Remote protocol version: %s", t.remote_version)
        key = t.get_remote_server_key()
        how = hostkeys.verify(target, key, interactive=request.interactive,
                              label=proxy.endpoint_label(target),
                              pinned=secrets.host_keys, ip=_peer_ip(sock))
        log.debug("Host key for %s: %s", known.name, how)
        secrets.host_keys.add(key.asbytes())
        if target.flag("ForwardAgent", False):
            log.debug("ForwardAgent ignored: an SFTP mount never needs your agent on the server")
        Authenticator(t, target, interactive=request.interactive,
                      password_stdin=password_stdin, secrets=secrets,
                      allowed_pubkeys=algs.pubkeys).run()
        return t
    except BaseException:
        t.close()
        raise


def _reach(target: ResolvedTarget, request: ConnectRequest, secrets: Secrets, timeout: float,
           connect_timeout: float | None, jumps: list[paramiko.Transport],
           depth: int = 0) -> Any:
    """An open byte stream to the target's sshd: TCP, ProxyCommand or through jump hosts."""
    if depth > MAX_JUMP_DEPTH:
        raise MountError(errno.ELOOP, target.description, "ProxyJump chain too long or a loop",
                         "check the ProxyJump settings")
    jump = target.get("ProxyJump")
    if jump and jump.lower() != "none":
        upstream: paramiko.Transport | None = None
        upstream_label = ""
        for hop in jump.split(","):
            user, host, port = proxy.parse_jump(hop)
            hop_req = ConnectRequest(host=host, user=user, port=port,
                                     config_file=request.config_file,
                                     interactive=request.interactive, debug=request.debug)
            if upstream is not None:
                # Later hops are reached through the previous one, whatever their config says.
                hop_req.options = {"ProxyJump": "none"}
            hop_target = resolve(hop_req)
            hop_secrets = secrets.hops.setdefault(hop_target.description, Secrets())
            log.debug("Jump host %s", hop_target.description)
            if upstream is None:
                stream = _reach(hop_target, hop_req, hop_secrets, timeout, connect_timeout,
                                jumps, depth + 1)
            else:
                stream = proxy.open_direct_tcpip(upstream, hop_target, upstream_label, timeout)
            t = _session(hop_target, stream, request=hop_req, secrets=hop_secrets,
                         timeout=timeout, password_stdin=False)
            # A jump host only forwards: it will never need a session.
            t.global_request("no-more-sessions@openssh.com", wait=False)
            jumps.append(t)
            upstream, upstream_label = t, hop_target.description
        assert upstream is not None
        return proxy.open_direct_tcpip(upstream, target, upstream_label, timeout)
    command = target.command("ProxyCommand")
    if command:
        return proxy.open_proxy_command(command, target)
    return proxy.open_tcp(target, connect_timeout)


def quiet_paramiko(debug: bool) -> None:
    """paramiko logs handshake failures with tracebacks at ERROR; ours is the one-line
    MountError. Left alone with -d or when someone configured the paramiko logger."""
    plog = logging.getLogger("paramiko")
    if not debug and plog.level == logging.NOTSET:
        plog.setLevel(logging.CRITICAL)


def connect(req: ConnectRequest, *, timeout: float | None = None) -> SSHConnection:
    """Connect and authenticate as ``ssh`` would for `req`; raises MountError."""
    quiet_paramiko(req.debug)
    secrets = getattr(req, "secrets", None) or Secrets()
    target = resolve(req)
    for line in target.story:
        log.debug("%s", line)
    connect_timeout = target.number("ConnectTimeout", 0) or timeout
    hs_timeout = connect_timeout or DEFAULT_TIMEOUT
    jumps: list[paramiko.Transport] = []
    try:
        stream = _reach(target, req, secrets, hs_timeout, connect_timeout, jumps)
        t = _session(target, stream, request=req, secrets=secrets, timeout=hs_timeout,
                     password_stdin=req.password_stdin)
    except MountError:
        for j in reversed(jumps):
            j.close()
        raise
    except (paramiko.SSHException, OSError, EOFError, ValueError) as e:
        # Whatever slipped past the specific handlers is still one line for the user.
        log.debug("connection to %s failed", target.description, exc_info=True)
        for j in reversed(jumps):
            j.close()
        raise MountError(errno.EIO, target.description, f"SSH connection failed ({e})",
                         "run with -d to see the details") from None
    except BaseException:
        for j in reversed(jumps):
            j.close()
        raise
    keepalive = None
    # Like sshfs, probe every 15 s unless configured: a dead link must be noticed.
    interval = target.number("ServerAliveInterval", DEFAULT_SERVER_ALIVE_INTERVAL)
    if interval > 0:
        keepalive = _KeepAlive(t, interval, int(target.number("ServerAliveCountMax", 3)),
                               target.description)
        keepalive.start()
    return SSHConnection(t, target, req, secrets, jumps, keepalive)
