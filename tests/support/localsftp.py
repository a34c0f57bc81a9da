"""The real OpenSSH sftp-server as a local process: the server of the in-process test tier.

`LocalSftpServer.connect` is a `pysshfs.session.Connector`: every call (the first connect
and each reconnect) starts a fresh sftp-server with its stdin/stdout as the stream, so a
`Session` runs over it with no sshd and no network. Tests cut the "connection" by killing
the current process by pid (`kill`), or by having the reply to the next request lost
after the server acted on it (`lose_next_reply`: the case where only the state the server
was left in tells whether a non-idempotent request ran). `stop` ends every process this
started, by pid.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pysshfs.sftp import PipeStream
from tests.support.sshd import sftp_server_path

log = logging.getLogger(__name__)


class _ServerStream(PipeStream):
    """A PipeStream whose owner may have the next reply it reads lost with the server."""

    def __init__(self, proc: subprocess.Popen, owner: LocalSftpServer) -> None:
        super().__init__(proc)
        self._owner = owner

    def recv(self, n: int) -> bytes:
        data = super().recv(n)
        if data and self._owner._take_lose_armed():
            # The server answered, so it did what was asked; the answer never arrives.
            self._owner._kill(self.proc)
            try:
                self._out.close()
            except OSError:
                pass
            return b""
        return data


class LocalSftpServer:
    """sftp-server processes serving `root`, one per connect (see the module docstring)."""

    def __init__(self, root: Path, *extra_args: str, user: str | None = None) -> None:
        self.root = root
        self.argv: Sequence[str] = [sftp_server_path(), *extra_args]
        self.user = user  # run the server as this local user (root only)
        self.started: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._lose_armed = False

    def connect(self, timeout: float | None = None) -> PipeStream:
        """A stream to a fresh sftp-server (the Connector a Session is given)."""
        kwargs: dict[str, Any] = {"cwd": str(self.root), "stderr": subprocess.DEVNULL}
        if self.user is not None:
            kwargs["user"] = self.user
        proc = subprocess.Popen(list(self.argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, **kwargs)
        with self._lock:
            self.started.append(proc)
        log.debug("sftp-server pid %d started for %s", proc.pid, self.root)
        return _ServerStream(proc, self)

    @property
    def pid(self) -> int:
        """The pid of the newest server process."""
        with self._lock:
            return self.started[-1].pid

    @property
    def connects(self) -> int:
        """How many server processes were started (1 + the reconnects)."""
        with self._lock:
            return len(self.started)

    def kill(self) -> int:
        """SIGKILL the newest server by pid, as a link cut would end it; its pid."""
        with self._lock:
            proc = self.started[-1]
        self._kill(proc)
        return proc.pid

    def lose_next_reply(self) -> None:
        """The next reply the client reads is dropped and the server killed instead."""
        with self._lock:
            self._lose_armed = True

    def _take_lose_armed(self) -> bool:
        with self._lock:
            armed, self._lose_armed = self._lose_armed, False
            return armed

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def stop(self) -> list[int]:
        """Kill and reap every server still running; the pids that were."""
        with self._lock:
            procs = list(self.started)
        running = [p.pid for p in procs if p.poll() is None]
        for proc in procs:
            self._kill(proc)
            for pipe in (proc.stdin, proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
        return running
