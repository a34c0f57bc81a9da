"""Run a mount: connect, mount, detach only once it works, log, unmount cleanly.

The command's exit status tells the truth: the parent process waits on a pipe until the
child (the future daemon) has connected, authenticated, checked the remote directory and
seen the kernel's FUSE INIT; then the parent exits 0. Any failure before that travels
through the pipe as the one line the parent prints, and the parent exits 1.

Signals: libfuse's own handlers (SIGINT, SIGTERM, SIGHUP) end the FUSE loop; libfuse then
unmounts and calls `destroy`, which sends every pending write before we exit 0.

But libfuse ends its loop only once every worker has returned, and a worker may be
waiting on a server that never answers. `ShutdownGuard` watches for the loop being told
to end; from then on the server gets SHUTDOWN_GRACE seconds to answer what is pending,
after which the session is closed (every waiting request fails at once, writes still
pending are logged as lost, by path) and the daemon exits within a few seconds.

THREADS of a running mount (the daemon process):
  * the main thread runs `_serve`: connects, then sits in `FUSE(...)`, libfuse's loop;
  * libfuse's worker threads (multithreaded loop) call the `SSHFS` methods (fs.py), one
    kernel request each, and block on the server's replies; `init` runs on one of them
    and starts the two below;
  * `mount-confirm`: stats the mountpoint once INIT is through, widens readahead,
    starts the control server and tells the waiting parent;
  * `pysshfs-shutdown-guard` (`ShutdownGuard`): polls libfuse's exit flag; once the
    loop is ending, closes the session after SHUTDOWN_GRACE;
  * `pysshfs-control` (accept loop) and one `pysshfs-control-req` per request
    (control.py): `pysshfs status` and `pysshfs refresh`;
  * below the session: `pysshfs-reconnect` (at most one, session.py), `pysshfs-bulkN`
    (opening bulk SFTP channel N, session.py), paramiko's transport thread, `ssh-window N`,
    `sftp-stream-end` (ssh/pushchannel.py),
    `ssh-keepalive` and its probes (ssh/connection.py), `proxy-stderr` (a ProxyCommand's
    stderr, ssh/proxy.py), the SFTP request watchdog `<name>-deadlines` (sftp/client.py);
  * helpers of the file system: `readahead_0` (fileio.py), `openahead_N`
    (openahead.py), `prefetch_N` (prefetch.py), `held-writes` (heldwrites.py).
Each module's docstring says which locks guard what. This module keeps no lock: the
`mounted` dict is written by the `init` and `mount-confirm` threads and read by the main
thread only after the FUSE loop has returned.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from pysshfs.cache import kernel_timeouts
from pysshfs.errors import MountError
from pysshfs.mountspec import MountSpec
from pysshfs.sanitize import SafeFormatter
from pysshfs.system import warn_allow_other

if TYPE_CHECKING:  # at run time imported in _serve, where they are first needed
    from pysshfs.fs import SSHFS
    from pysshfs.session import Session

log = logging.getLogger("pysshfs")

_OK = b"OK\n"
SHUTDOWN_GRACE = 5.0  # seconds pending requests get once the mount is ending
_EXIT_POLL = 0.25  # seconds between looks at libfuse's exit flag


def _configure_logging(spec: MountSpec) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(
        "%(asctime)s.%(msecs)03d %(name)s: %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if spec.debug:
        root.setLevel(logging.WARNING)
        log.setLevel(logging.DEBUG)
        logging.getLogger("fuse").setLevel(logging.DEBUG)
        logging.getLogger("paramiko").setLevel(logging.INFO)
    else:
        root.setLevel(logging.WARNING)
        log.setLevel(logging.INFO if spec.foreground else logging.WARNING)
    return handler


def _switch_to_syslog(old: logging.Handler) -> None:
    """After detaching there is no terminal: log to syslog (if there is one)."""
    root = logging.getLogger()
    root.removeHandler(old)
    if os.path.exists("/dev/log"):
        try:
            handler: logging.Handler = logging.handlers.SysLogHandler(
                address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.setFormatter(SafeFormatter(f"pysshfs[{os.getpid()}]: %(message)s"))
            root.addHandler(handler)
            log.setLevel(logging.INFO)
            return
        except OSError:
            pass
    root.addHandler(logging.NullHandler())


def _escape(value: str) -> str:
    """libfuse splits -o at commas; keep commas inside a value."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def fuse_options(spec: MountSpec) -> dict[str, Any]:
    """Keyword options for mfusepy.FUSE (each becomes part of libfuse's -o)."""
    o = spec.opts
    kw: dict[str, Any] = {
        "foreground": True,  # we detach ourselves, after the mount works
        "nothreads": spec.single_thread,
        "fsname": _escape(o.fsname or spec.source),
        "subtype": _escape(o.subtype or "pysshfs"),
    }
    flags = {"ro": o.ro, "allow_other": o.allow_other, "allow_root": o.allow_root,
             "default_permissions": o.default_permissions, "kernel_cache": o.kernel_cache,
             "auto_cache": o.auto_cache, "direct_io": o.direct_io}
    kw.update((flag, True) for flag, given in flags.items() if given)
    if _fuse_major() >= 3 and not spec.single_thread:
        # libfuse 3.14 passes an unset max_idle_threads (UINT_MAX) on and prints
        # "Ignoring invalid max threads value" on every mount (libfuse#1003): set it.
        kw["max_idle_threads"] = 10
    for flag in o.mount_flags:  # noexec (fstab's `user`), sync, noatime...
        kw[flag] = True
    kw.update(kernel_timeouts(o))
    if o.max_read is not None:
        kw["max_read"] = o.max_read
    return kw


def _fuse_major() -> int:
    from pysshfs.fuselib import FUSE_MAJOR

    return FUSE_MAJOR


READAHEAD_KB = 1024


def _widen_readahead(dev: int) -> None:
    """Let the kernel read ahead 1 MiB at a time on this mount instead of 128 KiB.

    FUSE caps a mount's readahead at the 128 KiB default whatever INIT says; reads then
    arrive as 128 KiB requests, and the per-request cost in Python, not the network,
    limits a sequential read (measured: ~210 MB/s at 128 KiB, ~320 MB/s at 1 MiB, as fast
    as sshfs). The knob is the mount's own entry in /sys/class/bdi, writable by root only:
    for anyone else this is a no-op.
    """
    knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(knob, "w") as f:
            f.write(str(READAHEAD_KB))
    except OSError as exc:
        log.debug("readahead stays at the kernel's default (%s: %s)", knob, exc.strerror)


class ShutdownGuard(threading.Thread):
    """Bounds how long the end of the FUSE loop may wait on the server (see above)."""

    def __init__(self, session: Session, fuse: int, grace: float = SHUTDOWN_GRACE) -> None:
        super().__init__(name="pysshfs-shutdown-guard", daemon=True)
        self.session = session
        self.fuse = fuse
        self.grace = grace
        self.finished = threading.Event()  # set once the FUSE loop has returned

    def run(self) -> None:
        from pysshfs.fuselib import loop_exited

        while not loop_exited(self.fuse):
            if self.finished.wait(_EXIT_POLL):
                return
        log.debug("the FUSE loop is ending; pending requests get %gs", self.grace)
        if self.finished.wait(self.grace):
            return
        pending = self._pending_requests()
        log.warning("unmounting: %d request(s) still unanswered after %gs; giving up on "
                    "the server", pending, self.grace)
        self.session.close()  # every waiting worker fails now; the loop can end
        if self.finished.wait(2 * self.grace):
            return
        log.error("unmounting: the FUSE loop did not end; exiting anyway")
        _exit(1)

    def _pending_requests(self) -> int:
        client = getattr(self.session, "sftp", None)
        return client.pending_count if client is not None and not client.closed else 0


def _serve(spec: MountSpec, on_mounted: Any) -> int:
    """Connect and run the FUSE loop until unmounted; MountError before the mount works."""
    from pysshfs.cache import CacheConfig, MetadataCache
    from pysshfs.fs import SSHFS
    from pysshfs.fuselib import FUSE
    from pysshfs.session import Session

    session = Session(spec.ssh, spec.remote_path, sftp_server=spec.opts.sftp_server,
                      label=spec.source, reconnect=spec.opts.reconnect,
                      io_timeout=spec.opts.io_timeout)
    session.connect()
    mounted: dict[str, Any] = {"yes": False, "guard": None}
    before = os.stat(spec.mountpoint)

    def confirm() -> None:
        # init() runs before libfuse has accepted the INIT exchange; a stat of the root
        # is only answered once it has, so success is reported only then.
        try:
            now = os.stat(spec.mountpoint)
        except OSError as exc:
            log.debug("mount not usable: %s", exc)
            return
        if now.st_dev == before.st_dev:  # libfuse gave up and unmounted again
            return
        mounted["yes"] = True
        _widen_readahead(now.st_dev)
        control.start()
        log.info("mounted %s on %s", spec.source, spec.mountpoint)
        warn_allow_other(spec.opts, spec.source)
        on_mounted()

    def mounted_now() -> None:
        from pysshfs.fuselib import current_fuse

        fuse = current_fuse()  # we are in libfuse's init callback: its context is ours
        if fuse is not None and mounted["guard"] is None:
            guard = ShutdownGuard(session, fuse)
            mounted["guard"] = guard
            guard.start()
        threading.Thread(target=confirm, name="mount-confirm", daemon=True).start()

    ops = SSHFS(session, MetadataCache(CacheConfig.from_options(spec.opts)), spec.opts,
                on_mounted=mounted_now)
    control = _control_server(spec, session, ops)
    try:
        FUSE(ops, spec.mountpoint, **fuse_options(spec))
    except RuntimeError as exc:
        if not mounted["yes"]:
            raise MountError(errno.EIO, f"mounting on '{spec.mountpoint}'",
                             f"libfuse failed ({exc})",
                             "check the mountpoint and /etc/fuse.conf") from None
        # libfuse reports the signal that ended the loop (SIGTERM, SIGINT) as an error too.
        log.debug("FUSE loop ended with status %s", exc)
    finally:
        control.close()
        if mounted["guard"] is not None:
            mounted["guard"].finished.set()
        session.close()
    log.info("unmounted %s", spec.mountpoint)
    return 0


def _control_server(spec: MountSpec, session: Session, ops: SSHFS) -> Any:
    """`pysshfs status` and `pysshfs refresh` for this mount (see pysshfs.control)."""
    from pysshfs.control import ControlServer, check_paths

    started = time.time()

    def status(_request: dict[str, Any]) -> dict[str, Any]:
        conn = getattr(session, "_conn", None)
        return {"mount": {
            "mountpoint": spec.mountpoint,
            "source": spec.source,
            "server": getattr(conn, "description", None) or spec.host,
            "pid": os.getpid(),
            "mounted_at": started,
            **ops.status(),
        }}

    def refresh(request: dict[str, Any]) -> dict[str, Any]:
        return {"dropped": ops.refresh(check_paths(request.get("paths")), spec.mountpoint)}

    return ControlServer(spec.mountpoint, {"status": status, "refresh": refresh})


def _wait_for_child(read_fd: int, pid: int) -> int:
    """Parent side: relay the child's verdict."""
    chunks = []
    while True:
        try:
            data = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
        if b"\n" in data:
            break
    os.close(read_fd)
    message = b"".join(chunks)
    if message == _OK:
        return 0
    if message:
        sys.stderr.write(message.decode("utf-8", "replace").rstrip("\n") + "\n")
    else:
        _, status = os.waitpid(pid, 0)
        sys.stderr.write(f"pysshfs: the mount process died before mounting (status {status})\n")
        return 1
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return 1


def _detach(handler: logging.Handler) -> None:
    """Child side, once mounted: no terminal, no cwd, a session of our own."""
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        os.setsid()
    except OSError:
        pass
    _switch_to_syslog(handler)


def run(spec: MountSpec) -> int:
    """Mount `spec`; returns the exit status (in the daemon: after unmount)."""
    handler = _configure_logging(spec)
    if spec.foreground:
        _exit(_serve(spec, on_mounted=lambda: None))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        return _wait_for_child(read_fd, pid)
    os.close(read_fd)

    def on_mounted() -> None:
        try:
            os.write(write_fd, _OK)
            os.close(write_fd)
        except OSError:
            pass
        _detach(handler)
        warn_allow_other(spec.opts, spec.source)  # the log is syslog now

    try:
        code = _serve(spec, on_mounted)
    except MountError as exc:
        _report(write_fd, f"pysshfs: {exc}")
        _exit(1)
    except BaseException as exc:  # noqa: BLE001 - the parent must hear of any death
        if spec.debug:
            log.exception("unexpected failure")
        _report(write_fd, f"pysshfs: unexpected failure: {exc!r} (run with -d for details)")
        _exit(1)
    _exit(code)
    return code  # not reached


def _report(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode("utf-8", "replace") + b"\n")
        os.close(fd)
    except OSError:
        pass


def _exit(code: int) -> None:
    """Leave without waiting on library threads (paramiko, the SFTP reader) to wind down."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    logging.shutdown()
    os._exit(code)
