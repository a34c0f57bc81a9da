"""The live remote: one SSH connection, its SFTP channel, and the mounted base directory.

Everything above talks to the server only through `Session`, typed as the `RemoteFS`
Protocol (pysshfs.remote). Each remote operation is a method that sends the `SFTPClient`
request so that a lost connection is survived: the session reconnects in the background
(capped exponential backoff, never prompting), callers wait up to `io_timeout` for it and
then get EIO. What happens to the request itself is its `Retry` policy, named in each
method: sent again as is (idempotent: stat, setstat, listdir, ...), sent again and judged
by the state it left (mkdir, rmdir, remove, rename, symlink, hardlink: the errno a second
attempt gets when the first had worked, EEXIST for mkdir, means done), or not sent again
(rename_noreplace, an exclusive create: EIO). Open files are `RemoteFile`s, reopened by
path after a reconnect; requests on them are sent again as is.

The connection is one state machine under `_cond`: CONNECTED, RECONNECTING (one
reconnect thread at most, which leaves only when it finds the state CONNECTED under
the lock, so a loss noticed during or right after a reconnect always leads to another),
FAILED (reconnect=no, or a changed host key: final). A connection that dies young (within
STABLE_AFTER seconds, having done next to no work: fewer than STABLE_REPLIES replies and
STABLE_TRAFFIC bytes) counts as a failed attempt: the backoff keeps growing, so a server
that breaks every session is not logged into more than a few times a minute, while a
link cut under load (real work done each time) is reconnected at once.

THREADS AND LOCKS. Session methods are called from libfuse worker threads (through fs.py),
from the prefetch workers, openahead's expiry thread (close_handle), fileio's refill thread
(read_async) and from the reconnect thread. `_cond` guards the connection state
(`_state`, `generation`, `sftp`, `_connected_at`, `_delay`, `_reconnector`, `_down_since`,
`_gave_up_at`, `_refused`); callers wait on it in `_client()` for at most io_timeout while
the state is RECONNECTING. It is never held across a request or a connect: `_client`
releases it around `_lost`, and a reconnect attempt runs unlocked. While RECONNECTING,
exactly one `pysshfs-reconnect` thread exists: it connects (TCP, handshake, auth, SFTP
INIT, a STAT of the root) with backoff, installs the client under `_cond`, wakes the
waiters, then runs the `on_reconnect` hooks (cache.clear) with no lock held. A
`RemoteFile`'s `handle`, `generation` and `lost` are rewritten without a lock by whichever
thread first uses it after a reconnect (`_handle`): two threads doing that at once each
send an OPEN, and one of the two handles stays open until the connection ends.
`size_floor` is raised by the `acknowledged` callbacks on the reply thread, also without
a lock; a lost race only lowers the floor the reopen check uses.

THE BULK CHANNELS. The server grants each session channel a window of 2 MiB (OpenSSH's
CHAN_SES_WINDOW_DEFAULT) and tops it up as its sftp-server reads: one channel uploads at
most 2 MiB per round trip (measured at RTT 20 ms: 64 MiB in 0.70-0.82 s through
bench/netem.py, whatever the client). Over SSH the session opens BULK_CHANNELS more SFTP
channels on the same connection, side by side in the background (`_open_bulk`, threads
`pysshfs-bulk*`; mounting does not wait for them), for the bulk of big writes: fileio
sends a large file's writes over all of them and the main one (`open_bulk`,
`write_lane_async`). Lane 0 is the main channel, lanes 1..N the bulk ones. Each bulk
channel is one more sftp-server process with its own handles, and they all run
independently of each other, so fileio keeps overlapping writes in order itself.
`_bulk` (a slot per lane: the client and its serial) is GUARDED_BY(_cond); a
`RemoteFile`'s `bulk_handles` maps a lane to the serial of the client its handle belongs
to and the handle. A bulk client dying alone (its channel closed) only empties its slot:
its writes fail with a LOST errno and fileio sends them again on the main channel; the
connection dying drops them all, and the reconnect opens new bulk channels.
"""

from __future__ import annotations

import errno
import logging
import stat
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from pysshfs.errors import MountError
from pysshfs.lograte import RateLimitedLog
from pysshfs.remote import PendingOpen, RemoteFile
from pysshfs.sftp.client import SFTPClient, Stream
from pysshfs.sftp.codec import (
    SSH_FXF_APPEND,
    SSH_FXF_CREAT,
    SSH_FXF_EXCL,
    SSH_FXF_TRUNC,
    SSH_FXF_WRITE,
    Attrs,
)
from pysshfs.sftp.errors import LOST
from pysshfs.sftp.refine import failure_cause
from pysshfs.sftp.reply import Reply
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

# Seconds one reconnect attempt may take (TCP, handshake, auth, first reply) unless
# ConnectTimeout says otherwise: a stalled attempt must not delay the next one for long.
RECONNECT_TIMEOUT = 15.0

# Bulk channels opened beside the main one over SSH (THE BULK CHANNELS). Measured at
# RTT 20 ms, 64 MiB dd conv=fsync through bench/netem.py: see fileio's TWO CHANNELS.
BULK_CHANNELS = 2
# Bulk lane k's first request id is k * BULK_FIRST_ID (k = 1..3): its requests stand
# apart in -d logs (and in the request-budget tests that read them) from the main
# channel's and from the other bulk lanes'.
BULK_FIRST_ID = 1 << 30
MAX_BULK_CHANNELS = 3

_T = TypeVar("_T")
# One attempt of a request on the live client; its argument is the timeout (seconds) it
# may wait for the reply: None on a first attempt, what is left of io_timeout on a resend.
Send = Callable[[SFTPClient, float | None], _T]
# The same on an open file: the client, the file's handle on it, the timeout.
FileSend = Callable[[SFTPClient, bytes, float | None], _T]

# Opens a fresh byte stream to an SFTP server, within `timeout` seconds (None: no limit of
# its own), for the session to run SFTP over instead of an SSH connection: how the
# in-process tests put a local sftp-server process behind a Session. Called again on
# every reconnect.
Connector = Callable[[float | None], Stream]


class _BulkStream(PushStream):
    """A bulk channel's stream: its client wakes its callers at once. The socket has one
    before-wait hook, and it belongs to the main channel's client (taking it over left
    that client's resolved callers asleep)."""

    def before_wait(self, hook: Callable[[], None]) -> bool:
        return False


class _BulkOpening:
    """The bulk channels of one connection being opened, each by its own thread."""

    def __init__(self, lanes: int) -> None:
        self._lock = threading.Lock()
        self._channels_left = lanes  # lanes whose channel open has not ended yet
        self._lanes_left = lanes  # lanes not installed (or given up) yet
        self._installed = 0

    def channel_done(self) -> bool:
        """One lane's channel is open (or failed); True for the last: then no more
        sessions on the connection."""
        with self._lock:
            self._channels_left -= 1
            return self._channels_left == 0

    def lane_done(self, installed: bool) -> int:
        """One lane is installed (or given up); for the last, how many were installed."""
        with self._lock:
            self._lanes_left -= 1
            self._installed += installed
            return self._installed if self._lanes_left == 0 else 0


@dataclass(frozen=True)
class Retry:
    """What is done with a request the connection was lost under."""

    resend: bool  # send it again once reconnected (within io_timeout), or fail with EIO
    # Not idempotent: a second attempt may fail *because* the first one worked. The errno
    # it then gives means "done" (the method returns None).
    done_if: int | None = None
    # The resend waits at most what is left of io_timeout. Off where requests queued ahead
    # of it (bulk writes on a slow link) may take longer: the client's own deadline watch
    # then tells a dead connection from a busy one.
    resend_timeout: bool = True


AS_IS = Retry(resend=True)  # the result does not depend on whether it already ran once
AS_IS_UNTIMED = Retry(resend=True, resend_timeout=False)  # open, requests on open files
NOT_RETRIED = Retry(resend=False)  # neither safe to repeat nor to be judged afterwards
DONE_IF_EXISTS = Retry(resend=True, done_if=errno.EEXIST)  # it makes a name
DONE_IF_GONE = Retry(resend=True, done_if=errno.ENOENT)  # it takes a name away


class _DoneBefore(Exception):
    """A resent request failed the way it fails when its first attempt had worked."""


def _raises_floor(future: Future, rf: RemoteFile, end: int) -> Future:
    """`future`, which once acknowledged raises `rf.size_floor` to `end`: the server holds
    the file up to there (a reopened file shorter than that was replaced)."""
    def acknowledged(fut: Future) -> None:
        if fut.exception() is None and end > rf.size_floor:
            rf.size_floor = end

    future.add_done_callback(acknowledged)
    return future


class _Together:
    """Session._together's block (a class, not a generator: see SFTPClient's _Batch)."""

    __slots__ = ("_session", "_client", "_batch")

    def __init__(self, session: Session, client: SFTPClient) -> None:
        self._session = session
        self._client = client
        self._batch = client.batched()

    def __enter__(self) -> None:
        self._batch.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        try:
            self._batch.__exit__(kind, exc, tb)
        except OSError as sent:
            exc = sent
            if sent.errno not in LOST or not self._client.closed:
                raise
        else:
            if not isinstance(exc, OSError) or exc.errno not in LOST \
                    or not self._client.closed:
                return False  # (whatever the block raised goes on)
        self._session._mark_lost(self._client)
        return True


class Session:
    """Owns the connection; knows where the mount's root is on the server."""

    def __init__(self, request: ConnectRequest, remote_dir: str, *,
                 sftp_server: str | None = None, label: str = "",
                 reconnect: bool = True, io_timeout: float = 60.0,
                 connector: Connector | None = None,
                 bulk_channels: int | None = None) -> None:
        self.request = request
        self.connector = connector
        # More SFTP channels for big writes (see THE BULK CHANNELS): BULK_CHANNELS over
        # SSH unless told otherwise; through a connector, more streams from it when asked.
        wanted = (BULK_CHANNELS if connector is None else 0) if bulk_channels is None \
            else bulk_channels
        self.bulk_channels = max(0, min(MAX_BULK_CHANNELS, wanted))
        # GUARDED_BY(_cond): per bulk lane (1..N at index 0..N-1), its client and serial
        self._bulk: list[tuple[SFTPClient, int] | None] = [None] * self.bulk_channels
        self._bulk_serial = 0  # the last serial given to a bulk client
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
        self.on_reconnect: list[Callable[[], Any]] = []  # callbacks after a successful reconnect
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
        main_started: Future = Future()  # whether the main client started (bool)
        try:
            stream: Stream = connector(timeout) if connector is not None \
                else PushStream(conn.open_sftp_channel(self.sftp_server,
                                                       last=not self.bulk_channels))
            if self.bulk_channels:  # opened while the main one starts SFTP
                self._open_bulk(conn, where, timeout, main_started)
            client = SFTPClient(stream, name=where, traffic=self.stats.traffic,
                                request_timeout=self.io_timeout)
            client.start()
        except OSError as exc:
            main_started.set_result(False)
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
        except BaseException:
            main_started.set_result(False)
            raise
        if conn is not None:
            old, self._conn = self._conn, conn
            if old is not None:
                try:
                    old.close()
                except OSError:
                    pass
        main_started.set_result(True)
        log.info("connected to %s: SFTP version %d, extensions: %s", where,
                 client.version, ", ".join(sorted(client.extensions)) or "none")
        return client

    def _open_bulk(self, conn: Any, where: str, timeout: float | None,
                   main_started: Future) -> None:
        """Open the bulk channels beside the main one (THE BULK CHANNELS), each in its
        own thread and while the main one starts SFTP (each costs a few round trips:
        channel, subsystem, SFTP INIT; a copy started right after mounting would
        otherwise run its first megabytes on one channel). Once every channel is open
        (or failed): no more sessions. Each client is installed as soon as it and the
        main one have started, unless the connection was replaced meanwhile."""
        opening = _BulkOpening(self.bulk_channels)
        for lane in range(1, self.bulk_channels + 1):
            threading.Thread(target=self._open_bulk_lane,
                             args=(conn, where, lane, timeout, main_started, opening),
                             name=f"pysshfs-bulk{lane}", daemon=True).start()

    def _open_bulk_lane(self, conn: Any, where: str, lane: int, timeout: float | None,
                        main_started: Future, opening: _BulkOpening) -> None:
        client: SFTPClient | None = None
        try:
            try:
                stream: Stream = self.connector(timeout) if self.connector is not None \
                    else _BulkStream(conn.open_sftp_channel(self.sftp_server, last=False))
            finally:
                if opening.channel_done() and conn is not None:
                    conn.no_more_sessions()
            client = SFTPClient(stream, name=f"{where} bulk {lane}",
                                traffic=self.stats.traffic,
                                request_timeout=self.io_timeout,
                                first_id=lane * BULK_FIRST_ID,
                                overdue_level=logging.INFO)  # (its writes go elsewhere)
            client.start()
        except Exception as exc:  # noqa: BLE001 - whatever it was, writes use fewer lanes
            if not self.closed:
                log.info("%s: no bulk channel %d (%s): big writes use the others", where,
                         lane, exc)
            if client is not None:
                self._close_quietly(client)
            client = None
        installed = False
        if client is not None:
            if main_started.result():  # (set on every way out of _open_client)
                installed = self._install_bulk(conn, lane, client)
            else:
                self._close_quietly(client)
        count = opening.lane_done(installed)
        if count:
            log.info("%s: bulk channels open: %d of %d", where, count, self.bulk_channels)

    def _install_bulk(self, conn: Any, lane: int, client: SFTPClient) -> bool:
        """Put `client` in lane `lane`'s slot, unless its connection is no longer ours."""
        with self._cond:
            current = not self.closed and (self._conn is conn if conn is not None
                                           else self._state != FAILED)
            if current:
                old = self._bulk[lane - 1]
                self._bulk_serial += 1
                self._bulk[lane - 1] = (client, self._bulk_serial)
        if not current:
            self._close_quietly(client)
            return False
        if old is not None:
            self._close_quietly(old[0])
        client.on_closed = lambda exc: self._bulk_lost(lane, client)
        if client.closed:
            self._bulk_lost(lane, client)
        return True

    def _bulk_lost(self, lane: int, client: SFTPClient) -> None:
        with self._cond:
            slot = self._bulk[lane - 1]
            if slot is not None and slot[0] is client:
                self._bulk[lane - 1] = None

    def _bulk_lanes(self) -> list[tuple[int, SFTPClient, int]]:
        """(lane, client, serial) of the bulk channels open now (lock held)."""
        return [(lane, slot[0], slot[1]) for lane, slot in enumerate(self._bulk, 1)
                if slot is not None and not slot[0].closed]

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
            self.stats.traffic.new_path()  # the next connection may take another route
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
        client = self.sftp  # connected (every request asks): no lock for the answer, which
        # may change right after it was given either way
        if client is not None and self._state == CONNECTED and not client.closed \
                and not self.closed and self._refused is None:
            return client
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

    # --- the retry policy ---------------------------------------------------------------
    def _retried(self, what: str, retry: Retry, send: Send[_T]) -> _T:
        """One request by path, surviving a reconnect as `retry` says. A resend waits at
        most what is left of io_timeout (every SFTPClient method sent here takes a
        `timeout=`), unless `retry.resend_timeout` is off. With `retry.done_if`, call it
        through `_judged`."""
        deadline = self._deadline()
        resent = False
        while True:
            client = self._client(deadline)
            try:
                timeout = None
                if resent and retry.resend_timeout and deadline is not None:
                    # a second try gets what is left of io_timeout, not a fresh one
                    timeout = max(0.1, deadline - time.monotonic())
                return send(client, timeout)
            except OSError as exc:
                self._judge(exc, client, what, retry, resent, deadline)
                resent = True

    def _judged(self, what: str, retry: Retry, send: Send[_T]) -> _T | None:
        """`_retried` for a request judged by the state it left: None when a resend
        found that the first attempt had worked."""
        try:
            return self._retried(what, retry, send)
        except _DoneBefore:
            log.info("%s: had succeeded before the connection dropped", what)
            return None

    def _file_retried(self, what: str, rf: RemoteFile, send: FileSend[_T]) -> _T:
        """A request on an open file: sent again as is, on the handle reopened after a
        reconnect. No timeout of its own: writes queued ahead of it on a slow link are
        progress (the client's deadline watch tells a dead connection)."""
        deadline = self._deadline()
        resent = False
        while True:
            client, handle = self._handle(rf, deadline)
            try:
                return send(client, handle, None)
            except OSError as exc:
                self._judge(exc, client, what, AS_IS_UNTIMED, resent, deadline)
                resent = True

    def _judge(self, exc: OSError, client: SFTPClient, what: str, retry: Retry,
               resent: bool, deadline: float | None) -> None:
        """After an attempt failed with `exc`: return to send it again; otherwise raise
        (EIO for a lost connection or a resend without a reply in time, _DoneBefore for
        a judged request that had worked, `exc` itself for an answer from the server)."""
        if exc.errno in LOST:
            self._mark_lost(client)
            if self.reconnect and retry.resend \
                    and (deadline is None or time.monotonic() < deadline):
                return
            raise OSError(errno.EIO, f"connection lost during {what}") from None
        if exc.errno == errno.ETIMEDOUT and resent:
            raise OSError(errno.EIO, f"{what}: no reply within io_timeout "
                          f"({self.io_timeout:g}s)") from None
        if resent and retry.done_if == exc.errno:
            raise _DoneBefore(what) from None
        raise exc

    def _mark_lost(self, client: SFTPClient) -> None:
        """A request saw the stream die; make sure the reconnect machinery knows."""
        if not client.closed:
            client.close()
        with self._cond:
            if self.sftp is not client:
                return
            generation = self.generation
        self._lost(generation, None)

    # --- the server -----------------------------------------------------------------------
    def has_extension(self, name: str) -> bool:
        client = self.sftp
        return client is not None and client.has_extension(name)

    def realpath(self, path: bytes) -> bytes:
        return self._retried("realpath", AS_IS, lambda c, t: c.realpath(path, timeout=t))

    def statvfs(self, path: bytes) -> dict[str, int]:
        return self._retried("statvfs", AS_IS, lambda c, t: c.statvfs(path, timeout=t))

    def users_groups_by_id(self, uids: Sequence[int],
                           gids: Sequence[int]) -> tuple[list[str], list[str]]:
        return self._retried("users_groups_by_id", AS_IS,
                             lambda c, t: c.users_groups_by_id(uids, gids, timeout=t))

    # --- attributes -----------------------------------------------------------------------
    def stat(self, path: bytes) -> Attrs:
        return self._retried("stat", AS_IS, lambda c, t: c.stat(path, timeout=t))

    def lstat(self, path: bytes) -> Attrs:
        return self._retried("lstat", AS_IS, lambda c, t: c.lstat(path, timeout=t))

    def setstat(self, path: bytes, attrs: Attrs) -> None:
        self._retried("setstat", AS_IS, lambda c, t: c.setstat(path, attrs, timeout=t))

    def setstat_and_lstat(self, path: bytes, attrs: Attrs,
                          follow: bool = False) -> Attrs | None:
        return self._retried("setstat_and_lstat", AS_IS,
                             lambda c, t: c.setstat_and_lstat(path, attrs, follow, timeout=t))

    def readlink(self, path: bytes) -> bytes:
        return self._retried("readlink", AS_IS, lambda c, t: c.readlink(path, timeout=t))

    # --- directories and names --------------------------------------------------------------
    def listdir_attr(self, path: bytes,
                     limit: int | None = None) -> list[tuple[bytes, Attrs]] | None:
        return self._retried("listdir_attr", AS_IS,
                             lambda c, t: c.listdir_attr(path, limit, timeout=t))

    def mkdir_and_lstat(self, path: bytes, attrs: Attrs | None = None) -> Attrs | None:
        return self._judged("mkdir_and_lstat", DONE_IF_EXISTS,
                            lambda c, t: c.mkdir_and_lstat(path, attrs, timeout=t))

    def rmdir(self, path: bytes) -> None:
        self._judged("rmdir", DONE_IF_GONE, lambda c, t: c.rmdir(path, timeout=t))

    def remove(self, path: bytes) -> None:
        self._judged("remove", DONE_IF_GONE, lambda c, t: c.remove(path, timeout=t))

    def rename(self, old: bytes, new: bytes) -> None:
        self._judged("rename", DONE_IF_GONE, lambda c, t: c.rename(old, new, timeout=t))

    def rename_noreplace(self, old: bytes, new: bytes) -> None:
        # two requests (hardlink, remove): a resend could find either half done
        self._retried("rename_noreplace", NOT_RETRIED,
                      lambda c, t: c.rename_noreplace(old, new, timeout=t))

    def symlink(self, target: bytes, linkpath: bytes) -> None:
        self._judged("symlink", DONE_IF_EXISTS,
                     lambda c, t: c.symlink(target, linkpath, timeout=t))

    def hardlink(self, old: bytes, new: bytes) -> None:
        self._judged("hardlink", DONE_IF_EXISTS, lambda c, t: c.hardlink(old, new, timeout=t))

    # --- files --------------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: Attrs | None = None, *,
             read_back: bool = False, follow: bool = False) -> RemoteFile:
        """Open `path`; with `read_back`, its attributes after opening come in the same
        round trip (RemoteFile.attrs_at_open; `follow`: through a final symlink). An
        exclusive create is not sent again: a resend could fail on the file it made."""
        def send(client: SFTPClient, timeout: float | None) -> RemoteFile:
            generation = self.generation
            if read_back:
                handle, attrs_now = client.open_and_lstat(path, pflags, attrs, follow=follow,
                                                          timeout=timeout)
            else:
                handle, attrs_now = client.open(path, pflags, attrs, timeout=timeout), None
            return RemoteFile(path, pflags, handle, generation, attrs_at_open=attrs_now)

        return self._retried("open", NOT_RETRIED if pflags & SSH_FXF_EXCL else AS_IS_UNTIMED,
                             send)

    def open_ahead(self, paths: Sequence[bytes], pflags: int,
                   known: Sequence[Attrs | None] | None = None) -> list[PendingOpen]:
        """OPEN + LSTAT of each of `paths` (the OPEN alone where `known` holds its
        attributes already), all in one write, not waited for and never sent again: files
        opened ahead of need (pysshfs.openahead), where one lost or failed only means
        opening it the usual way. Nothing while not connected."""
        with self._cond:
            client, generation = self.sftp, self.generation
            if self._state != CONNECTED or client is None or client.closed:
                return []
        sent = []
        with self._together(client):  # lost as it goes out: the futures fail
            for i, path in enumerate(paths):
                attrs = None if known is None else known[i]
                if attrs is None:
                    sent.append(PendingOpen(path, pflags, generation,
                                            *client.open_and_lstat_async(path, pflags)))
                    continue
                listed = Reply()  # (no Condition to make)
                listed.set_result(attrs)
                sent.append(PendingOpen(path, pflags, generation,
                                        client.open_async(path, pflags), listed, True))
            return sent
        return []  # lost before: nothing sent

    def batched(self) -> AbstractContextManager[Any]:
        """Requests this thread sends inside on the live connection go out in one write at
        the end (SFTPClient.batched): never wait for a reply inside. See _together."""
        client = self.sftp
        if client is None:
            return nullcontext()
        return self._together(client)

    def _together(self, client: SFTPClient) -> _Together:
        """client.batched(), where a connection that dies as the write goes out fails the
        requests' futures, as if it had died with them in flight, and raises nothing:
        what is sent in a batch is only ever waited for through its futures, and the
        open() or close(2) that happened to send it (open-ahead) must not fail with the
        connection's error."""
        return _Together(self, client)

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

    def read(self, rf: RemoteFile, offset: int, length: int) -> bytes:
        return self._file_retried("read", rf, lambda c, h, t: c.read(h, offset, length,
                                                                     timeout=t))

    def write(self, rf: RemoteFile, offset: int, data: Any) -> None:
        self._file_retried("write", rf, lambda c, h, t: c.write(h, offset, data, timeout=t))

    def _send_async(self, client: SFTPClient, send: Callable[[], Future]) -> Future:
        """Send a pipelined request; a connection found dead while sending gives a failed
        future (judged like one that died in flight), never an exception here."""
        try:
            return send()
        except OSError as exc:
            if exc.errno not in LOST:
                raise
            self._mark_lost(client)
            failed: Future = Future()
            failed.set_exception(exc)
            return failed

    def read_async(self, rf: RemoteFile, offset: int, length: int) -> Future:
        client, handle = self._handle(rf, self._deadline())
        return self._send_async(client, lambda: client.read_async(handle, offset, length))

    def write_async(self, rf: RemoteFile, offset: int, data: Any) -> Future:
        client, handle = self._handle(rf, self._deadline())
        future = self._send_async(client, lambda: client.write_async(handle, offset, data))
        return _raises_floor(future, rf, offset + len(data))

    def open_bulk(self, rf: RemoteFile) -> tuple[int, ...] | None:
        """Give `rf` a handle on each bulk channel open now (THE BULK CHANNELS), opened by
        its path like a reopen after a reconnect, and checked the same way: a file
        shorter than what the server acknowledged through `rf` is another one. The OPENs
        (each with a STAT) go out on all the channels before any reply is waited for: one
        round trip. Returns the bulk lanes `rf` has a handle on; () for none, for good
        (append-only, not reopened): the one channel it is; None: no bulk channel now
        (not open yet, or lost): ask again later."""
        flags = rf.pflags & ~(SSH_FXF_CREAT | SSH_FXF_TRUNC | SSH_FXF_EXCL)
        if flags & SSH_FXF_APPEND or not flags & SSH_FXF_WRITE:
            return ()  # appends land at the end, whichever channel: never split them
        with self._cond:
            lanes = [entry for entry in self._bulk_lanes()
                     if entry[0] not in rf.bulk_handles]
            live = self._state == CONNECTED and rf.generation == self.generation
        if rf.lost or rf.closed:
            return ()
        if not lanes or not live:
            return tuple(rf.bulk_handles) if rf.bulk_handles else None
        floor = rf.size_floor  # acknowledged before the STATs were sent: they must see it
        sent: list[tuple[int, SFTPClient, int, Future, Future]] = []
        for lane, client, serial in lanes:
            try:
                opening, after = client.open_and_lstat_async(rf.path, flags, follow=True)
            except OSError as exc:
                log.debug("%r: not opened on bulk channel %d: %s", rf.path, lane, exc)
                continue
            sent.append((lane, client, serial, opening, after))
        opened: list[tuple[int, SFTPClient, int, bytes]] = []
        another = False  # a STAT saw another file than the one written so far
        for lane, client, serial, opening, after in sent:
            try:
                handle = opening.result()
            except Exception as exc:  # noqa: BLE001 - that lane is not used
                log.debug("%r: not opened on bulk channel %d: %s", rf.path, lane, exc)
                continue
            try:
                size = after.result().size
            except Exception:  # noqa: BLE001 - unchecked: not used
                size = None
            if size is None or size < floor:
                log.info("%r: not the file written so far (size %s < %d): writes stay on "
                         "the one channel", rf.path, size, floor)
                another = True
            opened.append((lane, client, serial, handle))
        for lane, client, serial, handle in opened:
            if another:
                self._close_bulk_handle(client, handle)
            else:
                rf.bulk_handles[lane] = (serial, handle)
        if another:
            return ()
        return tuple(rf.bulk_handles)

    @staticmethod
    def _close_bulk_handle(client: SFTPClient, handle: bytes) -> None:
        try:
            client.close_handle_unwaited(handle)
        except OSError:
            pass  # its channel is gone, and the handle with it

    def write_lane_async(self, rf: RemoteFile, offset: int, data: Any,
                         lanes: Sequence[int], either: bool = True) -> tuple[Future, int]:
        """A write sent on the first of `lanes` (0: the main channel, k: bulk channel k)
        that `rf` has a live handle on; with `either`, on the first of them whose SSH
        window takes it now instead, if the first does not (sending then does not wait
        for the server). On the main channel if none of `lanes` is live. Returns the
        future and the lane it went on. A bulk write lost with its channel fails with a
        LOST errno, like one on the main channel: fileio sends it again, on the main
        channel."""
        usable: list[tuple[int, SFTPClient | None, bytes | None]] = []
        main: SFTPClient | None = None
        if rf.bulk_handles:
            with self._cond:
                main = self.sftp
                for lane in lanes:
                    live = self._bulk_handle(rf, lane) if lane else (None, None)
                    if live is not None:
                        usable.append((lane, *live))
        pick = usable[0] if usable else (0, None, None)
        if either and len(usable) > 1 and main is not None:
            n = len(data)
            for entry in usable:
                room = (entry[1] or main).send_room()
                if room is None:
                    break  # not SSH: no window to go by
                if room >= n:
                    pick = entry
                    break
        lane, client, handle = pick
        if client is None or handle is None:
            return self.write_async(rf, offset, data), 0
        future = self._send_bulk(client, lambda: client.write_async(handle, offset, data))
        return _raises_floor(future, rf, offset + len(data)), lane

    def _bulk_handle(self, rf: RemoteFile, lane: int) -> tuple[SFTPClient, bytes] | None:
        """The client of bulk lane `lane` and `rf`'s handle on it, if both are live now
        (lock held)."""
        mine = rf.bulk_handles.get(lane)
        slot = self._bulk[lane - 1] if 0 < lane <= len(self._bulk) else None
        if mine is None or slot is None or slot[1] != mine[0] or slot[0].closed:
            return None
        return slot[0], mine[1]

    @staticmethod
    def _send_bulk(client: SFTPClient, send: Callable[[], Future]) -> Future:
        """A request sent on a bulk channel; one found dead while sending gives a future
        failed with the LOST errno (the bulk client alone is dropped)."""
        try:
            return send()
        except OSError as exc:
            if exc.errno not in LOST:
                raise
            client.close()
            failed: Future = Future()
            failed.set_exception(exc)
            return failed

    def copy_data_async(self, src: RemoteFile, src_offset: int, length: int,
                        dst: RemoteFile, dst_offset: int) -> Future:
        """Server-side copy between two open files (copy-data); a piece lost with the
        connection fails with a LOST errno, and may be sent again: copying the same
        bytes to the same place twice is harmless."""
        deadline = self._deadline()
        while True:
            _, src_handle = self._handle(src, deadline)
            client, dst_handle = self._handle(dst, deadline)
            if src.generation == dst.generation == self.generation:
                break  # both handles belong to the live connection
        future = self._send_async(client, lambda: client.copy_data_async(
            src_handle, src_offset, length, dst_handle, dst_offset))
        return _raises_floor(future, dst, dst_offset + length)

    def fstat(self, rf: RemoteFile) -> Attrs:
        return self._file_retried("fstat", rf, lambda c, h, t: c.fstat(h, timeout=t))

    def fsetstat(self, rf: RemoteFile, attrs: Attrs) -> None:
        self._file_retried("fsetstat", rf, lambda c, h, t: c.fsetstat(h, attrs, timeout=t))
        if attrs.size is not None:
            rf.size_floor = min(rf.size_floor, attrs.size)

    def fsetstat_async(self, rf: RemoteFile, attrs: Attrs) -> Future:
        """FSETSTAT not waited for (SSHFS.utimens of a file made through the mount); one
        lost with the connection fails with a LOST errno: send it again with fsetstat()."""
        client, handle = self._handle(rf, self._deadline())
        return self._send_async(client, lambda: client.fsetstat_async(handle, attrs))

    def fsync(self, rf: RemoteFile) -> None:
        self._file_retried("fsync", rf, lambda c, h, t: c.fsync(h, timeout=t))

    def round_trip_min(self) -> float | None:
        """The quickest recent reply to a small request (seconds; None before any, and
        after the connection is lost): the link's round trip, on the route it takes now
        (stats.Traffic.replied; fileio: the caps, whether the bulk channels pay)."""
        return self.stats.traffic.rtt_min

    def fsync_lanes_async(self, rf: RemoteFile, lanes: Sequence[int]) -> list[Future]:
        """FSYNC on `rf`'s handle on each of `lanes` (0: the main channel), not waited for:
        each runs after the writes sent before it on its channel, and syncs the file
        whichever handle wrote it, so once all have succeeded the writes sent before
        them are on disk. Never sent again: one lost (or on a lane no longer live) fails,
        and the caller then syncs with fsync() once its writes are settled."""
        futures = []
        for lane in lanes:
            if lane == 0:
                client, handle = self._handle(rf, self._deadline())
                futures.append(self._send_async(client, partial(client.fsync_async, handle)))
                continue
            with self._cond:
                live = self._bulk_handle(rf, lane)
            if live is None:
                gone: Future = Future()
                gone.set_exception(OSError(errno.ECONNRESET, f"bulk channel {lane} lost"))
                futures.append(gone)
                continue
            bulk, bulk_handle = live
            futures.append(self._send_bulk(bulk, partial(bulk.fsync_async, bulk_handle)))
        return futures

    def failure_cause(self, rf: RemoteFile) -> int | None:
        """EROFS/ENOSPC behind a bare FAILURE on `rf` (see refine.failure_cause)."""
        client = self.sftp
        if client is None or rf.generation != self.generation:
            return None
        return failure_cause(client, rf.path, rf.handle)

    def close_handle(self, rf: RemoteFile) -> None:
        if rf.closed:
            return
        rf.closed = True
        if rf.bulk_handles:
            with self._cond:
                live = [self._bulk_handle(rf, lane) for lane in rf.bulk_handles]
            for entry in live:
                if entry is not None:  # (its writes were waited for)
                    self._close_bulk_handle(*entry)
            rf.bulk_handles = {}
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
        for slot in self._bulk:
            if slot is not None:
                self._close_quietly(slot[0])
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
