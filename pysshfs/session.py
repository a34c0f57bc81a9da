"""The live remote: one SSH connection, its SFTP channel, and the mounted base directory.

Everything above talks to the server only through `Session`. Its SFTP methods are the
`SFTPClient` ones, wrapped so that a lost connection is survived: the session reconnects
in the background (capped exponential backoff, never prompting), callers wait up to
`io_timeout` for it and then get EIO, idempotent requests are sent again, and the few
that are not (mkdir, rmdir, remove, rename, symlink, hardlink) are judged by the state
they left behind. Open files are `RemoteFile`s, reopened by path after a reconnect.

The connection is one state machine under `_cond`: CONNECTED, RECONNECTING (one
reconnect thread at most, which leaves only when it finds the state CONNECTED under
the lock, so a loss noticed during or right after a reconnect always leads to another),
FAILED (reconnect=no, or a changed host key: final). A connection that dies young (within
STABLE_AFTER seconds, having done next to no work: fewer than STABLE_REPLIES replies and
STABLE_TRAFFIC bytes) counts as a failed attempt: the backoff keeps growing, so a server
that breaks every session is not logged into more than a few times a minute, while a
link cut under load (real work done each time) is reconnected at once.
"""

from __future__ import annotations

import errno
import inspect
import logging
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pysshfs.errors import MountError
from pysshfs.lograte import RateLimitedLog
from pysshfs.sftp.client import SFTPClient, Stream
from pysshfs.sftp.codec import SSH_FXF_CREAT, SSH_FXF_EXCL, SSH_FXF_TRUNC, Attrs
from pysshfs.ssh.pushchannel import PushStream
from pysshfs.ssh.request import ConnectRequest
from pysshfs.stats import SessionStats

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)

CONNECTED, RECONNECTING, FAILED = "connected", "reconnecting", "failed"
# Backoff between reconnect attempts: the first comes at once after a connection that had
# lived STABLE_AFTER seconds; then 0.25 s doubling up to 30 s (2 logins a minute).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0
STABLE_REPLIES = 100
STABLE_TRAFFIC = 64 * 1024
FAIL_FAST_AFTER_TIMEOUT = 0.25  # seconds (see _client)

LOST = (errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)
# Seconds one reconnect attempt may take (TCP, handshake, auth, first reply) unless
# ConnectTimeout says otherwise: a stalled attempt must not delay the next one for long.
RECONNECT_TIMEOUT = 15.0
# Requests whose result does not depend on whether they already ran once.
IDEMPOTENT = frozenset({
    "stat", "lstat", "setstat", "lsetstat", "setstat_and_lstat", "realpath", "readlink",
    "listdir_attr", "statvfs", "expand_path", "has_extension", "users_groups_by_id",
})
# Not idempotent: a second attempt may fail *because* the first one worked. The errno a
# retry gives when the first attempt had succeeded.
DONE_IF = {
    "mkdir": errno.EEXIST,
    "mkdir_and_lstat": errno.EEXIST,
    "rmdir": errno.ENOENT,
    "remove": errno.ENOENT,
    "symlink": errno.EEXIST,
    "hardlink": errno.EEXIST,
    "rename": errno.ENOENT,
}

# Opens a fresh byte stream to an SFTP server, within `timeout` seconds (None: no limit of
# its own), for the session to run SFTP over instead of an SSH connection: how the
# in-process tests put a local sftp-server process behind a Session. Called again on
# every reconnect.
Connector = Callable[[float | None], Stream]


def _takes_timeout(method: Any) -> bool:
    """Whether an SFTPClient method has a `timeout=` (asked on the rare retry only)."""
    try:
        return "timeout" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class RemoteFile:
    """An open remote file that outlives the connection it was opened on."""

    path: bytes
    pflags: int
    handle: bytes
    generation: int
    size_floor: int = 0  # bytes the server acknowledged: a reopened file shorter is another
    lost: bool = False
    closed: bool = False
    attrs_at_open: Attrs | None = None


class Session:
    """Owns the connection; knows where the mount's root is on the server."""

    def __init__(self, request: ConnectRequest, remote_dir: str, *,
                 sftp_server: str | None = None, label: str = "",
                 reconnect: bool = True, io_timeout: float = 60.0,
                 connector: Connector | None = None) -> None:
        self.request = request
        self.connector = connector
        self.remote_dir = remote_dir
        self.sftp_server = sftp_server
        self.label = label or f"{request.host}:{remote_dir}"
        self.reconnect = reconnect
        self.io_timeout = io_timeout
        self.root = b"/"
        self.sftp: SFTPClient | None = None
        self.generation = 0
        self.max_read = 32768
        self.max_write = 32768
        self._conn: Any = None
        self._cond = threading.Condition()
        # GUARDED_BY(_cond): _state, generation, sftp, _connected_at, _delay, _reconnector
        self._state = RECONNECTING  # until connect() installs the first client
        self._connected_at = 0.0
        self._down_since = 0.0  # when the connection was lost (monotonic)
        self._gave_up_at = 0.0  # when a caller last waited io_timeout in vain (monotonic)
        self._delay = 0.0  # seconds before the next reconnect attempt
        self._reconnector = False  # a reconnect thread is running
        self._refused: str | None = None  # why reconnecting was given up for good
        self.closed = False
        self.on_reconnect: list[Any] = []  # callbacks after a successful reconnect
        self.stats = SessionStats()  # for pysshfs status

    # --- connecting ---------------------------------------------------------------------
    def connect(self) -> None:
        """Connect, authenticate, start SFTP and check the remote directory."""
        client = self._open_client(self.request)
        try:
            self.root = self._resolve_root(client)
        except MountError:
            self._close_quietly(client)
            raise
        self.max_read = client.max_read
        self.max_write = client.max_write
        self._install(client)

    def _open_client(self, request: ConnectRequest, timeout: float | None = None) -> SFTPClient:
        connector = self.connector
        conn: Any = None  # the SSH connection, unless the connector gives the stream
        if connector is None:
            from pysshfs.ssh import connect

            conn = connect(request, timeout=timeout)
        where = self.label if conn is None else conn.description
        try:
            stream: Stream = connector(timeout) if connector is not None \
                else PushStream(conn.open_sftp_channel(self.sftp_server))
            client = SFTPClient(stream, name=where, traffic=self.stats.traffic,
                                request_timeout=self.io_timeout)
            client.start()
        except OSError as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, MountError):
                raise
            if exc.errno == errno.ETIMEDOUT:
                raise self._no_answer(where) from None
            raise MountError(exc.errno or errno.EIO, f"{where}",
                             f"could not start SFTP: {exc.strerror or exc}",
                             "check that the server has an sftp subsystem "
                             "(or give -o sftp_server=PATH)") from None
        if conn is not None:
            old, self._conn = self._conn, conn
            if old is not None:
                try:
                    old.close()
                except OSError:
                    pass
        log.info("connected to %s: SFTP version %d, extensions: %s", where,
                 client.version, ", ".join(sorted(client.extensions)) or "none")
        return client

    def _no_answer(self, where: str) -> MountError:
        return MountError(errno.ETIMEDOUT, where,
                          f"the SFTP server did not answer within {self.io_timeout:g}s",
                          "check the server, or give a longer -o io_timeout")

    def _install(self, client: SFTPClient) -> None:
        with self._cond:
            self.generation += 1
            generation = self.generation
            self.sftp = client
            self._state = CONNECTED
            self._connected_at = time.monotonic()
            self._cond.notify_all()
        client.on_closed = lambda exc: self._lost(generation, exc)
        if client.closed:  # it died before the hook was in place: nobody else will tell
            self._lost(generation, None)

    def _resolve_root(self, client: SFTPClient) -> bytes:
        raw = self.remote_dir.encode("utf-8", "surrogateescape")
        where = f"{self.request.host}:{self.remote_dir}"
        try:
            if not raw:
                root = client.realpath(b".")
            elif raw.startswith(b"/"):
                root = raw
            else:
                root = client.realpath(raw)
            attrs = client.stat(root)
        except OSError as exc:
            if client.closed and self.io_timeout > 0 \
                    and "io_timeout" in str(getattr(client, "_close_reason", "")):
                raise self._no_answer(where) from None
            if exc.errno == errno.ENOENT:
                raise MountError(errno.ENOENT, f"remote directory '{where}'",
                                 "no such directory on the server",
                                 "check the path after the ':'") from None
            raise MountError(exc.errno or errno.EIO, f"remote directory '{where}'",
                             exc.strerror or str(exc), "check the path and its permissions") \
                from None
        if attrs.mode is not None and not stat.S_ISDIR(attrs.mode):
            raise MountError(errno.ENOTDIR, f"remote path '{where}'", "is not a directory",
                             "mount a directory, not a file")
        root = root.rstrip(b"/") or b"/"
        log.debug("remote root is %r", root)
        return root

    # --- losing and regaining the connection ---------------------------------------------
    def _lost(self, generation: int, exc: BaseException | None) -> None:
        """The connection of `generation` is gone: reconnect (once, whoever noticed)."""
        with self._cond:
            if self.closed or generation != self.generation or self._state != CONNECTED:
                return
            self._down_since = time.monotonic()
            self.stats.link.lost(exc)
            lived = self._down_since - self._connected_at
            client = self.sftp
            worked = client is not None and (client.replies >= STABLE_REPLIES
                                             or client.bytes_moved >= STABLE_TRAFFIC)
            self._state = RECONNECTING if self.reconnect else FAILED
            if lived >= STABLE_AFTER or worked:
                self._delay = 0.0
            else:  # it died young: as good as a failed attempt
                self._delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._delay * 2))
            self._cond.notify_all()
            start = self.reconnect and not self._reconnector
            if start:
                self._reconnector = True
        why = f": {exc}" if exc else ""
        _limited.warning("connection to %s lost%s", self.label, why,
                         key=f"lost {self.label}{why}")
        if start:
            threading.Thread(target=self._reconnect_loop, name="pysshfs-reconnect",
                             daemon=True).start()

    def _reconnect_loop(self) -> None:
        """Attempt until connected; the one way out is finding CONNECTED under the lock."""
        attempt = 0
        try:
            while True:
                with self._cond:
                    if self.closed or self._state != RECONNECTING:
                        self._reconnector = False
                        return
                    delay = self._delay
                if delay > 0:
                    _limited.warning("reconnecting to %s in %.2gs", self.label, delay,
                                     key=f"next try {self.label} {delay}")
                    with self._cond:
                        self._cond.wait_for(lambda: self.closed, timeout=delay)
                        if self.closed:
                            self._reconnector = False
                            return
                attempt += 1
                log.info("reconnecting to %s (attempt %d)", self.label, attempt)
                try:
                    self._reconnect_once()
                    self.stats.link.reconnected()
                    log.warning("reconnected to %s after %d attempt(s)", self.label, attempt)
                    attempt = 0
                    for callback in list(self.on_reconnect):
                        try:
                            callback()
                        except Exception:  # noqa: BLE001 - a cache hook must not stop us
                            log.exception("reconnect hook failed")
                    continue  # the top of the loop decides whether we are done
                except MountError as exc:
                    if exc.errno == errno.EPERM:
                        # The host key no longer matches: this may not be our server.
                        # Never retry into it; every request fails until unmounted.
                        with self._cond:
                            self._refused = str(exc)
                            self._state = FAILED
                            self._cond.notify_all()
                        log.error("refusing to reconnect to %s: %s; the mount stays "
                                  "unusable until it is unmounted", self.label, exc)
                        continue
                    failure = str(exc)
                    self.stats.link.attempt_failed(exc)
                except OSError as exc:
                    failure = str(exc)
                    self.stats.link.attempt_failed(exc)
                with self._cond:
                    self._delay = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._delay * 2))
                    delay = self._delay
                _limited.warning("reconnect to %s failed: %s; next try in %.2gs", self.label,
                                 failure, delay, key=f"failed {self.label} {failure}")
        except BaseException:
            with self._cond:
                self._reconnector = False
            raise

    def _reconnect_once(self) -> None:
        request = self._conn.reconnect_request() if self._conn is not None else self.request
        client = self._open_client(request, timeout=RECONNECT_TIMEOUT)
        try:
            client.stat(self.root, timeout=RECONNECT_TIMEOUT)
        except OSError:
            self._close_quietly(client)
            raise
        self._install(client)

    def _client(self, deadline: float | None) -> SFTPClient:
        """The live client, waiting for a reconnect until `deadline` (monotonic)."""
        with self._cond:
            while True:
                if self.closed:
                    raise OSError(errno.ENOTCONN, "the mount is shutting down")
                if self._refused is not None:
                    raise OSError(errno.EIO, f"not reconnected: {self._refused}")
                client = self.sftp
                if self._state == CONNECTED and client is not None:
                    if not client.closed:
                        return client
                    # it died and nobody has said so yet: say it (idempotent)
                    generation = self.generation
                    self._cond.release()
                    try:
                        self._lost(generation, None)
                    finally:
                        self._cond.acquire()
                    continue
                if not self.reconnect:
                    raise OSError(errno.EIO, f"connection to {self.label} lost "
                                  "(mounted with reconnect=no)")
                now = time.monotonic()
                remaining = None if deadline is None else deadline - now
                # Right after a caller has waited io_timeout in vain, the next ones fail at
                # once: one stat can be two or three FUSE requests in a row (a failed
                # revalidation is followed by a fresh LOOKUP), and each must not wait
                # io_timeout again.
                if remaining is not None and remaining <= 0:
                    self._gave_up_at = now
                if (remaining is not None and remaining <= 0) \
                        or now - self._gave_up_at < FAIL_FAST_AFTER_TIMEOUT:
                    raise OSError(errno.EIO, f"connection to {self.label} lost; "
                                  f"no reconnect within {self.io_timeout:g}s")
                self._cond.wait(timeout=remaining if remaining is not None else 1.0)

    def _deadline(self) -> float | None:
        return None if self.io_timeout <= 0 else time.monotonic() + self.io_timeout

    @staticmethod
    def _check_deadline(deadline: float | None, what: str) -> None:
        """After a loss: no second try once io_timeout has passed."""
        if deadline is not None and time.monotonic() >= deadline:
            raise OSError(errno.EIO, f"connection lost during {what}")

    # --- calls --------------------------------------------------------------------------
    def call(self, name: str, *args: Any) -> Any:
        """Run one SFTPClient method, surviving a reconnect as described above."""
        deadline = self._deadline()
        retried = False
        while True:
            client = self._client(deadline)
            try:
                method = getattr(client, name)
                if retried and deadline is not None and _takes_timeout(method):
                    # a second try gets what is left of io_timeout, not a fresh one
                    remaining = max(0.1, deadline - time.monotonic())
                    return method(*args, timeout=remaining)
                return method(*args)
            except OSError as exc:
                if exc.errno in LOST:
                    self._mark_lost(client)
                    if self.reconnect and (name in IDEMPOTENT or name in DONE_IF) \
                            and (deadline is None or time.monotonic() < deadline):
                        retried = True
                        continue
                    raise OSError(errno.EIO, f"connection lost during {name}") from None
                if exc.errno == errno.ETIMEDOUT and retried:
                    raise OSError(errno.EIO, f"{name}: no reply within io_timeout "
                                  f"({self.io_timeout:g}s)") from None
                if retried and DONE_IF.get(name) == exc.errno:
                    log.info("%s: had succeeded before the connection dropped", name)
                    return None
                raise

    def _mark_lost(self, client: SFTPClient) -> None:
        """A request saw the stream die; make sure the reconnect machinery knows."""
        if not client.closed:
            client.close()
        with self._cond:
            if self.sftp is not client:
                return
            generation = self.generation
        self._lost(generation, None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args: self.call(name, *args)

    def has_extension(self, name: str) -> bool:
        client = self.sftp
        return client is not None and client.has_extension(name)

    # --- files --------------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: Attrs | None = None, *,
             read_back: bool = False, follow: bool = False) -> RemoteFile:
        """Open `path`; with `read_back`, its attributes after opening come in the same
        round trip (RemoteFile.attrs_at_open; `follow`: through a final symlink)."""
        deadline = self._deadline()
        while True:
            client = self._client(deadline)
            generation = self.generation
            try:
                if read_back:
                    handle, attrs_now = client.open_and_lstat(path, pflags, attrs,
                                                              follow=follow)
                else:
                    handle, attrs_now = client.open(path, pflags, attrs), None
                return RemoteFile(path, pflags, handle, generation, attrs_at_open=attrs_now)
            except OSError as exc:
                if exc.errno not in LOST or pflags & SSH_FXF_EXCL:
                    raise
                self._mark_lost(client)
                self._check_deadline(deadline, "open")

    def _handle(self, rf: RemoteFile, deadline: float | None) -> tuple[SFTPClient, bytes]:
        """The live handle of `rf`, reopening it by path after a reconnect."""
        while True:
            if rf.lost:
                raise OSError(errno.EIO, "file was lost while the connection was down")
            client = self._client(deadline)
            if rf.generation == self.generation:
                return client, rf.handle
            flags = rf.pflags & ~(SSH_FXF_CREAT | SSH_FXF_TRUNC | SSH_FXF_EXCL)
            try:
                handle = client.open(rf.path, flags)
                size = client.fstat(handle).size or 0
            except OSError as exc:
                if exc.errno in LOST:
                    self._mark_lost(client)
                    self._check_deadline(deadline, "reopen")
                    continue
                rf.lost = True
                log.error("%r: cannot reopen after reconnect: %s", rf.path, exc)
                raise OSError(errno.EIO, "file gone after reconnect") from None
            if size < rf.size_floor:
                rf.lost = True
                log.error("%r: shorter than what was written before the reconnect (%d < %d): "
                          "replaced meanwhile", rf.path, size, rf.size_floor)
                raise OSError(errno.EIO, "file replaced while the connection was down")
            rf.handle, rf.generation = handle, self.generation
            log.info("reopened %r after reconnect", rf.path)

    def _file_call(self, name: str, rf: RemoteFile, *args: Any) -> Any:
        """A request on an open file; sent again on the reopened handle after a reconnect."""
        deadline = self._deadline()
        while True:
            client, handle = self._handle(rf, deadline)
            try:
                return getattr(client, name)(handle, *args)
            except OSError as exc:
                if exc.errno not in LOST:
                    raise
                self._mark_lost(client)
                if not self.reconnect or (deadline is not None
                                          and time.monotonic() >= deadline):
                    raise OSError(errno.EIO, f"connection lost during {name}") from None

    def read(self, rf: RemoteFile, offset: int, length: int) -> bytes:
        return self._file_call("read", rf, offset, length)

    def write(self, rf: RemoteFile, offset: int, data: Any) -> None:
        self._file_call("write", rf, offset, data)

    def _send_async(self, client: SFTPClient, name: str, *args: Any) -> Future:
        """Send a pipelined request; a connection found dead while sending gives a failed
        future (judged like one that died in flight), never an exception here."""
        try:
            return getattr(client, name)(*args)
        except OSError as exc:
            if exc.errno not in LOST:
                raise
            self._mark_lost(client)
            failed: Future = Future()
            failed.set_exception(exc)
            return failed

    def read_async(self, rf: RemoteFile, offset: int, length: int) -> Any:
        client, handle = self._handle(rf, self._deadline())
        return self._send_async(client, "read_async", handle, offset, length)

    def write_async(self, rf: RemoteFile, offset: int, data: Any) -> Any:
        client, handle = self._handle(rf, self._deadline())
        future = self._send_async(client, "write_async", handle, offset, data)
        end = offset + len(data)

        def acknowledged(fut: Any) -> None:
            if fut.exception() is None and end > rf.size_floor:
                rf.size_floor = end

        future.add_done_callback(acknowledged)
        return future

    def copy_data_async(self, src: RemoteFile, src_offset: int, length: int,
                        dst: RemoteFile, dst_offset: int) -> Any:
        """Server-side copy between two open files (copy-data); a piece lost with the
        connection fails with a LOST errno, and may be sent again: copying the same
        bytes to the same place twice is harmless."""
        deadline = self._deadline()
        while True:
            _, src_handle = self._handle(src, deadline)
            client, dst_handle = self._handle(dst, deadline)
            if src.generation == dst.generation == self.generation:
                break  # both handles belong to the live connection
        future = self._send_async(client, "copy_data_async", src_handle, src_offset, length,
                                  dst_handle, dst_offset)
        end = dst_offset + length

        def acknowledged(fut: Any) -> None:
            if fut.exception() is None and end > dst.size_floor:
                dst.size_floor = end

        future.add_done_callback(acknowledged)
        return future

    def fstat(self, rf: RemoteFile) -> Attrs:
        return self._file_call("fstat", rf)

    def fsetstat(self, rf: RemoteFile, attrs: Attrs) -> None:
        self._file_call("fsetstat", rf, attrs)
        if attrs.size is not None:
            rf.size_floor = min(rf.size_floor, attrs.size)

    def fsync(self, rf: RemoteFile) -> None:
        self._file_call("fsync", rf)

    def failure_cause(self, rf: RemoteFile) -> int | None:
        """EROFS/ENOSPC behind a bare FAILURE on `rf` (see SFTPClient.failure_cause)."""
        client = self.sftp
        if client is None or rf.generation != self.generation:
            return None
        return client.failure_cause(rf.path, rf.handle)

    def close_handle(self, rf: RemoteFile) -> None:
        if rf.closed:
            return
        rf.closed = True
        if rf.generation != self.generation or self._state != CONNECTED:
            return  # its connection is gone, and the handle with it
        client = self.sftp
        if client is None:
            return
        # Unwaited: close(2) took its errors from flush, and the server handles the CLOSE
        # before any later request on the channel.
        client.close_handle_unwaited(rf.handle)

    # --- paths --------------------------------------------------------------------------
    def remote_path(self, path: str) -> bytes:
        """The server path of a FUSE path ("/a/b" under the mounted directory)."""
        raw = path.encode("utf-8", "surrogateescape")
        if raw in (b"/", b""):
            return self.root
        if self.root == b"/":
            return raw
        return self.root + raw

    # --- shutting down ------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._state == CONNECTED and self.sftp is not None and not self.sftp.closed

    def state(self) -> tuple[str, str | None]:
        """(connected | reconnecting | failed | disconnected | closed, why) for status."""
        if self.closed:
            return "closed", None
        if self._refused is not None:
            return "failed", self._refused
        if self.alive:
            return "connected", None
        return ("reconnecting" if self.reconnect else "disconnected"), \
            self.stats.link.last_error

    @staticmethod
    def _close_quietly(client: SFTPClient) -> None:
        try:
            client.close()
        except OSError:
            pass

    def close(self) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
        if self.sftp is not None:
            self._close_quietly(self.sftp)
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
