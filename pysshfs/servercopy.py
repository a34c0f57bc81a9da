"""Server-side copy (FUSE copy_file_range over OpenSSH's copy-data): the bytes of `cp`
inside the mount never cross the network.

A large range goes as pieces, a few in flight: sftp-server handles one request at a time,
so a piece is the longest that other requests on the connection wait behind it, and the
next piece is already queued when one ends (no round trip between pieces). The count
returned is the prefix every piece of which the server acknowledged: never more than what
was copied, so an interrupted copy is a short count or an error, never a silent hole.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from concurrent.futures import Future
from typing import Any, Protocol

from pysshfs.sftp.errors import LOST

log = logging.getLogger(__name__)

PIECE = 16 * 1024 * 1024  # bytes per copy-data request
IN_FLIGHT = 2  # pieces queued on the server at once
RETRIES = 3  # sends of a piece lost with the connection (copying it again is harmless)
# Most bytes one call may report: the FUSE reply carries the count in 32 bits (kernels
# before 6.17 do not clamp the length they ask for: 4 GiB copied would read as 0, EOF).
MAX_PER_CALL = 0xFFFFF000


class Remote(Protocol):
    def copy_data_async(self, src: Any, src_offset: int, length: int, dst: Any,
                        dst_offset: int) -> Future: ...


def copy_range(remote: Remote, src: Any, src_offset: int, length: int, dst: Any,
               dst_offset: int, piece: int = PIECE, in_flight: int = IN_FLIGHT) -> int:
    """Copy `length` bytes (the caller has bounded it by the source's size); the number
    of bytes copied from the start, or the first error when not even one piece was."""
    pieces = deque((rel, min(piece, length - rel)) for rel in range(0, length, piece))
    sent: deque[tuple[int, int, Future]] = deque()

    def send(rel: int, n: int) -> Future:
        return remote.copy_data_async(src, src_offset + rel, n, dst, dst_offset + rel)

    done = 0
    error: OSError | None = None
    while pieces or sent:
        while pieces and len(sent) < in_flight and error is None:
            rel, n = pieces.popleft()
            try:
                sent.append((rel, n, send(rel, n)))
            except OSError as exc:
                error = exc
        if not sent:
            break
        rel, n, fut = sent.popleft()
        failure = _outcome(fut)
        tries = 1
        while failure is not None and failure.errno in LOST and error is None \
                and tries < RETRIES:
            log.info("copy-data piece at %d lost with the connection; sending it again", rel)
            tries += 1
            try:
                failure = _outcome(send(rel, n))
            except OSError as again:
                failure = again
        if failure is not None and error is None:
            error = failure
        if error is None:
            done = rel + n
        # after an error: still wait for what is in flight, but send nothing more
    if error is not None:
        if done == 0:
            raise error
        log.warning("server-side copy stopped after %d of %d bytes: %s", done, length, error)
    return done


def _outcome(fut: Future) -> OSError | None:
    exc = fut.exception()
    if exc is None or isinstance(exc, OSError):
        return exc
    return OSError(errno.EIO, str(exc))
