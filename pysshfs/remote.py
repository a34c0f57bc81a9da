"""The remote as the layers above the session see it: `RemoteFS` and `RemoteFile`.

`pysshfs.session.Session` is the one implementation; `fs`, `openahead` and friends are
typed against this Protocol, so what they may ask of the server is written down in one
place (and a test can hand them something else that has these methods). Paths are server
paths (bytes, from `remote_path`); errors are `OSError(errno)`, already refined to the
errno a local file system would give (pysshfs.sftp.refine) and, when the connection was
lost, either survived (the request was sent again) or EIO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pysshfs.sftp.codec import Attrs
from pysshfs.stats import SessionStats


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
    # Handles on the session's bulk channels (Session.open_bulk): bulk lane -> (serial of
    # the bulk client the handle belongs to, the handle).
    bulk_handles: dict[int, tuple[int, bytes]] = field(default_factory=dict)


@dataclass
class PendingOpen:
    """A file being opened ahead of need: the replies to its OPEN (the handle) and to the
    LSTAT sent right behind it (its attributes then: the close-to-open check), or, when
    a young listing already held them, those attributes (no LSTAT: `listed`)."""

    path: bytes
    pflags: int
    generation: int  # the connection it was sent on
    handle: Future  # Future[bytes]
    attrs: Future  # Future[Attrs]
    listed: bool = False  # attrs are the listing's, not read with the OPEN
    # the RemoteFile once made: the one its first READ went on is the one open() takes
    made: RemoteFile | None = field(default=None, init=False, repr=False, compare=False)

    def done(self) -> bool:
        """The replies it waits for have all come."""
        return self.handle.done() and self.attrs.done()

    def file(self, timeout: float | None = None) -> RemoteFile:
        """The open file, once its handle came (raises what the OPEN got); made once
        (two threads at once may each make one: same handle)."""
        made = self.made
        if made is not None:
            return made
        handle = self.handle.result(timeout)
        attrs = self.attrs.result(timeout) if self.attrs.exception(timeout) is None \
            else None
        self.made = RemoteFile(self.path, self.pflags, handle, self.generation,
                               attrs_at_open=attrs)
        return self.made


class RemoteFS(Protocol):
    """Every remote operation the file system uses (see Session for what each does when
    the connection drops under it)."""

    root: bytes  # the mounted directory on the server
    max_read: int  # largest READ / WRITE the server takes
    max_write: int
    io_timeout: float  # seconds a request may wait for the connection (0: for ever)
    on_reconnect: list[Callable[[], Any]]  # called after each reconnect
    stats: SessionStats

    # --- paths and the server ---
    def remote_path(self, path: str) -> bytes: ...
    def has_extension(self, name: str) -> bool: ...
    def state(self) -> tuple[str, str | None]: ...
    def realpath(self, path: bytes) -> bytes: ...
    def statvfs(self, path: bytes) -> dict[str, int]: ...
    def users_groups_by_id(self, uids: Sequence[int],
                           gids: Sequence[int]) -> tuple[list[str], list[str]]: ...

    # --- attributes ---
    def stat(self, path: bytes) -> Attrs: ...
    def lstat(self, path: bytes) -> Attrs: ...
    def setstat(self, path: bytes, attrs: Attrs) -> None: ...
    def setstat_and_lstat(self, path: bytes, attrs: Attrs,
                          follow: bool = False) -> Attrs | None: ...
    def readlink(self, path: bytes) -> bytes: ...

    # --- directories and names ---
    def listdir_attr(self, path: bytes,
                     limit: int | None = None) -> list[tuple[bytes, Attrs]] | None: ...
    def mkdir_and_lstat(self, path: bytes, attrs: Attrs | None = None) -> Attrs | None: ...
    def rmdir(self, path: bytes) -> None: ...
    def remove(self, path: bytes) -> None: ...
    def rename(self, old: bytes, new: bytes) -> None: ...
    def rename_noreplace(self, old: bytes, new: bytes) -> None: ...
    def symlink(self, target: bytes, linkpath: bytes) -> None: ...
    def hardlink(self, old: bytes, new: bytes) -> None: ...

    # --- open files ---
    def open(self, path: bytes, pflags: int, attrs: Attrs | None = None, *,
             read_back: bool = False, follow: bool = False) -> RemoteFile: ...
    def open_ahead(self, paths: Sequence[bytes], pflags: int,
                   known: Sequence[Attrs | None] | None = None) -> list[PendingOpen]: ...
    def batched(self) -> AbstractContextManager[None]: ...
    def read(self, rf: RemoteFile, offset: int, length: int) -> bytes: ...
    def write(self, rf: RemoteFile, offset: int, data: Any) -> None: ...
    def read_async(self, rf: RemoteFile, offset: int, length: int) -> Future: ...
    def write_async(self, rf: RemoteFile, offset: int, data: Any) -> Future: ...
    def open_bulk(self, rf: RemoteFile) -> tuple[int, ...] | None: ...
    def write_lane_async(self, rf: RemoteFile, offset: int, data: Any,
                         lanes: Sequence[int], either: bool = True) -> tuple[Future, int]: ...
    def copy_data_async(self, src: RemoteFile, src_offset: int, length: int,
                        dst: RemoteFile, dst_offset: int) -> Future: ...
    def fstat(self, rf: RemoteFile) -> Attrs: ...
    def fsetstat(self, rf: RemoteFile, attrs: Attrs) -> None: ...
    def fsetstat_async(self, rf: RemoteFile, attrs: Attrs) -> Future: ...
    def fsync(self, rf: RemoteFile) -> None: ...
    def fsync_lanes_async(self, rf: RemoteFile, lanes: Sequence[int]) -> list[Future]: ...
    def failure_cause(self, rf: RemoteFile) -> int | None: ...
    def close_handle(self, rf: RemoteFile) -> None: ...
