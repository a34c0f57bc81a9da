"""A fault-injection TCP proxy on 127.0.0.1 between pysshfs and sshd.

It forwards bytes both ways and, on command, cuts every connection, blackholes traffic
(stalls without closing), adds delay, or refuses new connections. One thread per
direction per connection; everything stops with `close()`.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

log = logging.getLogger(__name__)


class FaultProxy:
    """Listen on 127.0.0.1:`port` and forward to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._blackhole = threading.Event()
        self._refuse_until = 0.0
        self.delay = 0.0
        self.accepted = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    # --- controls -----------------------------------------------------------------------
    def cut(self) -> int:
        """Close every open connection at once (like a dropped link); returns how many."""
        with self._lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return len(conns)

    def blackhole(self, on: bool = True) -> None:
        """Stop forwarding in both directions without closing anything."""
        if on:
            self._blackhole.set()
        else:
            self._blackhole.clear()

    def refuse(self, seconds: float) -> None:
        """Close new connections immediately for `seconds`."""
        self._refuse_until = time.monotonic() + seconds

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def close(self) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.cut()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append((client, upstream))
                self.accepted += 1
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stopping.is_set():
            if self._blackhole.is_set():
                time.sleep(0.05)  # stalled link: nothing moves, nothing closes
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                if self._blackhole.is_set():
                    continue
                data = src.recv(262144)
            except (OSError, ValueError):
                break
            if not data:
                break
            if self.delay:
                time.sleep(self.delay)
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
