"""The control socket: how `pysshfs status` and `pysshfs refresh` talk to a running mount.

One AF_UNIX stream socket per mount, mode 0600 in a 0700 directory of the mounting user
($XDG_RUNTIME_DIR/pysshfs, /run/pysshfs for root, else /run/user/UID/pysshfs or
/tmp/pysshfs-UID), named after the mountpoint so `refresh MOUNTPOINT` finds it at once and
`status` finds them all; never a TCP port. Peer credentials (SO_PEERCRED) are checked too:
only the mounting user and root are answered.

The protocol is one JSON object per line each way, one request per connection:
{"op": "status"} or {"op": "refresh", "paths": ["/a", ...]} -> {"ok": true, ...} or
{"ok": false, "error": "..."}. A bad request gets an error; nothing a client sends can
stop the daemon.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024  # bytes: a refresh of many paths fits, a flood does not
CLIENT_TIMEOUT = 5.0  # seconds a client may take to send its request
MAX_CLIENTS = 8  # connections served at once; more get "busy"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, less its terminating NUL

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """A control request could not be made or was refused."""


# --- where the sockets live -----------------------------------------------------------
def runtime_dirs(uid: int | None = None, env: dict[str, str] | None = None) -> list[Path]:
    """Where this user's control sockets may be, the one a new mount uses first."""
    uid = os.geteuid() if uid is None else uid
    env = dict(os.environ) if env is None else env
    found: list[Path] = []
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        found.append(Path(xdg) / "pysshfs")
    if uid == 0:
        found.append(Path("/run/pysshfs"))
    else:
        found.append(Path(f"/run/user/{uid}/pysshfs"))
        found.append(Path(f"/tmp/pysshfs-{uid}"))
    out: list[Path] = []
    for d in found:
        if d not in out:
            out.append(d)
    return out


def _usable_base(d: Path, uid: int) -> bool:
    """`d`'s parent is where we may make our directory: /run/user/UID only if it is ours."""
    parent = d.parent
    if str(parent).startswith("/run/user/"):
        try:
            return parent.stat().st_uid == uid
        except OSError:
            return False
    return parent.is_dir()


def _private_dir(d: Path, uid: int) -> Path:
    """`d`, created 0700 if need be, and checked: a directory of ours nobody else can
    enter (a /tmp fallback someone else made first is refused, not used)."""
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise OSError(errno.EPERM, f"{d} is not a directory of uid {uid}")
    if st.st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def normalize_mountpoint(path: str) -> str:
    """The absolute mountpoint, symlinks resolved in its parent only: resolving the
    mountpoint itself would stat the mount, which may be the one that hangs."""
    full = os.path.abspath(os.path.expanduser(path))
    if full == "/":
        return full
    head, tail = os.path.split(full)
    return os.path.join(os.path.realpath(head), tail)


def socket_name(mountpoint: str) -> str:
    digest = hashlib.sha256(normalize_mountpoint(mountpoint).encode("utf-8",
                                                                    "surrogateescape"))
    return f"mount-{digest.hexdigest()[:20]}.sock"


def sockets(uid: int | None = None) -> list[Path]:
    """Every control socket of this user (live or stale), in a stable order."""
    out: list[Path] = []
    for d in runtime_dirs(uid):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        out.extend(d / n for n in names if n.startswith("mount-") and n.endswith(".sock"))
    return out


def socket_for(mountpoint: str, uid: int | None = None) -> Path | None:
    name = socket_name(mountpoint)
    for d in runtime_dirs(uid):
        if os.path.exists(d / name):
            return d / name
    return None


# --- the client side ------------------------------------------------------------------
def query(path: Path | str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request, return the reply. OSError when nobody listens (ECONNREFUSED:
    a stale socket), ControlError when the daemon answers with an error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = _read_line(s, 16 * 1024 * 1024)
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"unreadable reply from {path}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"unreadable reply from {path}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "request failed"))
    return reply


def _read_line(s: socket.socket, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > limit:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def _discard_rest(conn: socket.socket, limit: int = 1024 * 1024) -> None:
    """After the reply: read what the client still sends (a bounded amount, briefly), as
    closing with unread data resets the connection and the client would lose the reply."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while limit > 0:
            chunk = conn.recv(65536)
            if not chunk:
                return
            limit -= len(chunk)
    except OSError:
        pass


def is_stale(path: Path | str) -> bool:
    """Nobody listens on `path` any more (its daemon died without removing it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return True
        except OSError:
            return False
    return False


# --- the daemon side ------------------------------------------------------------------
def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED: pid, uid, gid)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def check_paths(value: Any) -> list[str]:
    """The `paths` of a refresh request: FUSE paths ("/a/b"), normalized; ValueError
    for anything else."""
    if value is None:
        return ["/"]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError("paths must be a list of strings")
    out = []
    for p in value:
        if not p.startswith("/") or "\0" in p:
            raise ValueError(f"not a path inside the mount: {p!r}")
        out.append(posixpath.normpath(p).replace("//", "/"))
    return out or ["/"]


class ControlServer:
    """Serves `handlers` ({"status": fn, "refresh": fn}) on the mount's control socket."""

    def __init__(self, mountpoint: str, handlers: dict[str, Handler], *,
                 uid: int | None = None) -> None:
        self.mountpoint = normalize_mountpoint(mountpoint)
        self.handlers = handlers
        self.uid = os.geteuid() if uid is None else uid
        self.path: Path | None = None
        self._sock: socket.socket | None = None
        self._ino: int | None = None
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def start(self) -> bool:
        """Listen; False (logged) when no private directory or short enough path exists:
        the mount works without status and refresh then."""
        if self._closed.is_set():  # unmounted before it was confirmed mounted
            return False
        name = socket_name(self.mountpoint)
        for d in runtime_dirs(self.uid):
            path = d / name
            if len(os.fsencode(path)) > _SUN_PATH_MAX or not _usable_base(d, self.uid):
                continue
            try:
                _private_dir(d, self.uid)
                self._listen(path)
            except OSError as exc:
                log.warning("control socket %s: %s", path, exc)
                continue
            self.path = path
            if self._closed.is_set():  # close() ran meanwhile and missed the new socket
                self._closed.clear()
                self.close()
                return False
            threading.Thread(target=self._accept_loop, name="pysshfs-control",
                             daemon=True).start()
            log.debug("control socket %s", path)
            return True
        log.warning("no control socket for %s: pysshfs status/refresh will not see it",
                    self.mountpoint)
        return False

    def _listen(self, path: Path) -> None:
        if os.path.lexists(path):
            if not is_stale(path):
                log.warning("control socket %s was held by another live process; "
                            "taking it over", path)
            os.unlink(path)  # a crashed daemon's leftover (or a takeover, above)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)  # (the 0700 directory covers the moment before)
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        self._ino = os.lstat(path).st_ino
        self._sock = sock

    def close(self) -> None:
        """Stop serving and remove the socket (if it is still ours)."""
        if self._closed.is_set():
            return
        self._closed.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
            except OSError:
                pass
            sock.close()
        if self.path is not None:
            try:
                if os.lstat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            if not self._slots.acquire(blocking=False):
                self._reply(conn, {"ok": False, "error": "busy: too many requests at once"})
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn,), name="pysshfs-control-req",
                             daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._reply(conn, self._answer(conn))
                _discard_rest(conn)
        except Exception:  # noqa: BLE001 - a client's trouble never reaches the mount
            log.debug("control request failed", exc_info=True)
        finally:
            self._slots.release()

    def _answer(self, conn: socket.socket) -> dict[str, Any]:
        uid = peer_uid(conn)
        if uid not in (self.uid, 0):
            log.warning("control socket: refused a request from uid %d", uid)
            return {"ok": False, "error": "permission denied: not the mounting user"}
        conn.settimeout(CLIENT_TIMEOUT)
        try:
            data = _read_line(conn, MAX_REQUEST)
        except OSError as exc:
            return {"ok": False, "error": f"reading the request: {exc}"}
        if len(data) > MAX_REQUEST:
            return {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        try:
            request = json.loads(data)
        except ValueError:
            return {"ok": False, "error": "not a JSON request"}
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return {"ok": False, "error": 'a request is an object with an "op"'}
        handler = self.handlers.get(request["op"])
        if handler is None:
            return {"ok": False, "error": f"unknown op {request['op']!r} "
                    f"(known: {', '.join(sorted(self.handlers))})"}
        try:
            return {"ok": True, **handler(request)}
        except (ValueError, OSError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report, log, keep serving
            log.exception("control op %s failed", request["op"])
            return {"ok": False, "error": f"internal error: {exc!r}"}

    @staticmethod
    def _reply(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
