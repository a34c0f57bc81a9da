"""The live remote: one SSH connection, its SFTP channel, and the mounted base directory.

Everything above talks to the server only through `Session`. Its SFTP methods are the
`SFTPClient` ones, wrapped so that a lost connection is survived: the session reconnects
in the background (capped exponential backoff, never prompting), callers wait up to
`io_timeout` for it and then get EIO, idempotent requests are sent again, and the few
that are not (mkdir, rmdir, remove, rename, symlink, hardlink) are judged by the state
they left behind. Open files are `RemoteFile`s, reopened by path after a reconnect.
"""

from __future__ import annotations

import errno
import logging
import stat
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pysshfs.errors import MountError
from pysshfs.sftp.client import SFTPClient
from pysshfs.sftp.codec import SSH_FXF_CREAT, SSH_FXF_EXCL, SSH_FXF_TRUNC, Attrs
from pysshfs.ssh.pushchannel import PushStream
from pysshfs.ssh.request import ConnectRequest

log = logging.getLogger(__name__)

LOST = (errno.ECONNABORTED, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE)
# Seconds one reconnect attempt may take (TCP, handshake, auth, first reply) unless
# ConnectTimeout says otherwise: a stalled attempt must not delay the next one for long.
RECONNECT_TIMEOUT = 15.0
# Requests whose result does not depend on whether they already ran once.
IDEMPOTENT = frozenset({
    "stat", "lstat", "setstat", "lsetstat", "setstat_and_lstat", "realpath", "readlink",
    "listdir_attr", "statvfs", "expand_path", "has_extension",
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
                 reconnect: bool = True, io_timeout: float = 60.0) -> None:
        self.request = request
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
        self._reconnecting = False
        self._connected = False
        self._refused: str | None = None  # why reconnecting was given up for good
        self.closed = False
        self.on_reconnect: list[Any] = []  # callbacks after a successful reconnect

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
        from pysshfs.ssh import connect

        conn = connect(request, timeout=timeout)
        try:
            channel = conn.open_sftp_channel(self.sftp_server)
            client = SFTPClient(PushStream(channel), name=conn.description)
            client.start()
        except OSError as exc:
            conn.close()
            if isinstance(exc, MountError):
                raise
            raise MountError(exc.errno or errno.EIO, f"{conn.description}",
                             f"could not start SFTP: {exc.strerror or exc}",
                             "check that the server has an sftp subsystem "
                             "(or give -o sftp_server=PATH)") from None
        old, self._conn = self._conn, conn
        if old is not None:
            try:
                old.close()
            except OSError:
                pass
        log.info("connected to %s: SFTP version %d, extensions: %s", conn.description,
                 client.version, ", ".join(sorted(client.extensions)) or "none")
        return client

    def _install(self, client: SFTPClient) -> None:
        with self._cond:
            self.generation += 1
            generation = self.generation
            self.sftp = client
            self._connected = True
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
        with self._cond:
            if self.closed or generation != self.generation or not self._connected:
                return
            self._connected = False
            log.warning("connection to %s lost%s", self.label, f": {exc}" if exc else "")
            if not self.reconnect or self._reconnecting:
                self._cond.notify_all()
                return
            self._reconnecting = True
        threading.Thread(target=self._reconnect_loop, name="pysshfs-reconnect",
                         daemon=True).start()

    def _reconnect_loop(self) -> None:
        delay = 0.5
        attempt = 0
        try:
            while not self.closed:
                attempt += 1
                log.warning("reconnecting to %s (attempt %d)", self.label, attempt)
                try:
                    request = self._conn.reconnect_request() if self._conn is not None \
                        else self.request
                    client = self._open_client(request, timeout=RECONNECT_TIMEOUT)
                    client.stat(self.root, timeout=RECONNECT_TIMEOUT)
                    self._install(client)
                    log.warning("reconnected to %s after %d attempt(s)", self.label, attempt)
                    for callback in list(self.on_reconnect):
                        try:
                            callback()
                        except Exception:  # noqa: BLE001 - a cache hook must not stop us
                            log.exception("reconnect hook failed")
                    return
                except MountError as exc:
                    if exc.errno == errno.EPERM:
                        # The host key no longer matches: this may not be our server.
                        # Never retry into it; every request fails until unmounted.
                        self._refused = str(exc)
                        log.error("refusing to reconnect to %s: %s; the mount stays "
                                  "unusable until it is unmounted", self.label, exc)
                        return
                    log.warning("reconnect to %s failed: %s", self.label, exc)
                except OSError as exc:
                    log.warning("reconnect to %s failed: %s", self.label, exc)
                with self._cond:
                    self._cond.wait(timeout=delay)
                delay = min(delay * 2, 10.0)
        finally:
            with self._cond:
                self._reconnecting = False
                self._cond.notify_all()

    def _client(self, deadline: float | None) -> SFTPClient:
        """The live client, waiting for a reconnect until `deadline` (monotonic)."""
        with self._cond:
            while True:
                if self.closed:
                    raise OSError(errno.ENOTCONN, "the mount is shutting down")
                if self._refused is not None:
                    raise OSError(errno.EIO, f"not reconnected: {self._refused}")
                if self._connected and self.sftp is not None and not self.sftp.closed:
                    return self.sftp
                if not self.reconnect:
                    raise OSError(errno.EIO, f"connection to {self.label} lost "
                                  "(mounted with reconnect=no)")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise OSError(errno.EIO, f"connection to {self.label} lost; "
                                  f"no reconnect within {self.io_timeout:g}s")
                self._cond.wait(timeout=remaining if remaining is not None else 1.0)

    def _deadline(self) -> float | None:
        return None if self.io_timeout <= 0 else time.monotonic() + self.io_timeout

    # --- calls --------------------------------------------------------------------------
    def call(self, name: str, *args: Any) -> Any:
        """Run one SFTPClient method, surviving a reconnect as described above."""
        deadline = self._deadline()
        retried = False
        while True:
            client = self._client(deadline)
            try:
                return getattr(client, name)(*args)
            except OSError as exc:
                if exc.errno in LOST:
                    self._mark_lost(client)
                    if self.reconnect and (name in IDEMPOTENT or name in DONE_IF):
                        retried = True
                        continue
                    raise OSError(errno.EIO, f"connection lost during {name}") from None
                if retried and DONE_IF.get(name) == exc.errno:
                    log.info("%s: had succeeded before the connection dropped", name)
                    return None
                raise

    def _mark_lost(self, client: SFTPClient) -> None:
        """A request saw the stream die; make sure the reconnect machinery knows."""
        if not client.closed:
            client.close()
        with self._cond:
            generation = self.generation
        if self.sftp is client:
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
             read_back: bool = False) -> RemoteFile:
        """Open `path`; with `read_back`, its attributes after opening come in the same
        round trip (RemoteFile.attrs_at_open)."""
        deadline = self._deadline()
        while True:
            client = self._client(deadline)
            generation = self.generation
            try:
                if read_back:
                    handle, attrs_now = client.open_and_lstat(path, pflags, attrs)
                else:
                    handle, attrs_now = client.open(path, pflags, attrs), None
                return RemoteFile(path, pflags, handle, generation, attrs_at_open=attrs_now)
            except OSError as exc:
                if exc.errno not in LOST or pflags & SSH_FXF_EXCL:
                    raise
                self._mark_lost(client)

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
                if not self.reconnect:
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
        if rf.generation != self.generation or not self._connected:
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
        return self._connected and self.sftp is not None and not self.sftp.closed

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
