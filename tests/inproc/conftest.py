"""The in-process tier: `SSHFS` and `Session` driven directly, no FUSE, no sshd, no root.

A `Session` runs over a real OpenSSH sftp-server started as a local process
(tests.support.localsftp) and serving a temporary directory; the caches run on a clock
the test advances itself. Tests call SSHFS's FUSE operations (the methods mfusepy calls)
and check what the served directory really holds with plain os calls.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pysshfs.cache import CacheConfig, MetadataCache
from pysshfs.fs import SSHFS
from pysshfs.mountspec import MountOptions
from pysshfs.session import Session
from pysshfs.ssh.request import ConnectRequest
from tests.support.localsftp import LocalSftpServer

CACHE_TIMEOUT = 20.0  # sshfs's default cache_timeout, in (fake) seconds
IO_TIMEOUT = 10.0  # seconds a call may wait for a reconnect before EIO


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class InProcMount:
    """One file system in process: its operations, what is under them, and the server."""

    fs: SSHFS
    session: Session
    cache: MetadataCache
    server: LocalSftpServer
    root: Path  # the served directory, as the server sees it
    clock: FakeClock
    reconnected: threading.Event = field(default_factory=threading.Event)

    def wait_reconnected(self, timeout: float = IO_TIMEOUT) -> None:
        """Until a reconnect has completed, its hooks (the cache clear) included."""
        assert self.reconnected.wait(timeout), "no reconnect within the time allowed"
        self.reconnected.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_fs(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., InProcMount]]:
    """`make_fs(root=None, user=None, **opts)`: an SSHFS over a fresh Session and cache,
    serving `root` (default: a new directory of the test's) as `user`, with the -o
    options `opts` (as the command line gives them to the daemon). Teardown unmounts
    (destroy), closes the session and kills every server process by pid."""
    made: list[InProcMount] = []

    def make(root: Path | None = None, user: str | None = None,
             **opts: Any) -> InProcMount:
        if root is None:
            root = tmp_path / f"served{len(made)}"
            root.mkdir()
        server = LocalSftpServer(root, user=user)
        opts.setdefault("cache_timeout", CACHE_TIMEOUT)
        options = MountOptions(**opts)
        session = Session(ConnectRequest(host="localhost"), str(root),
                          label=f"inproc:{root}", reconnect=options.reconnect,
                          io_timeout=IO_TIMEOUT, connector=server.connect)
        try:
            session.connect()
        except BaseException:
            server.stop()
            raise
        cache = MetadataCache(CacheConfig.from_options(options), clock=clock)
        fs = SSHFS(session, cache, options)
        mount = InProcMount(fs, session, cache, server, root, clock)
        session.on_reconnect.append(mount.reconnected.set)  # after the cache's own hook
        made.append(mount)
        return mount

    yield make
    with contextlib.ExitStack() as teardown:  # each step runs even if one before failed
        for mount in made:
            teardown.callback(mount.server.stop)
            teardown.callback(mount.session.close)
            teardown.callback(mount.fs.destroy, "/")


@pytest.fixture
def m(make_fs: Callable[..., InProcMount]) -> InProcMount:
    """The default file system: default options, the server running as ourselves."""
    return make_fs()


@pytest.fixture
def unprivileged_root() -> Iterator[tuple[Path, str | None]]:
    """(a served directory, the user to run the server as) where permissions are
    enforced: as root, a directory owned by `nobody` served as `nobody`."""
    if os.geteuid() != 0:
        top = Path(tempfile.mkdtemp(prefix="pysshfs-inproc-"))
        yield top, None
        shutil.rmtree(top, ignore_errors=True)
        return
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run the server as")
    top = Path(tempfile.mkdtemp(prefix="pysshfs-inproc-"))
    top.chmod(0o755)  # nobody must reach the served directory
    root = top / "served"
    root.mkdir()
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    yield root, "nobody"
    for path, dirs, _files in os.walk(top):  # a 000 directory left by a test
        for d in dirs:
            os.chmod(os.path.join(path, d), 0o755)
    shutil.rmtree(top, ignore_errors=True)
