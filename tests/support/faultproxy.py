"""A fault-injection TCP proxy on 127.0.0.1 between pysshfs and sshd.

It forwards bytes both ways and, on command, cuts every connection, blackholes traffic
(stalls without closing), adds delay, refuses new connections, or flaps: cuts each new
connection once its client has sent a given number of bytes (`cut_after`). One thread
per direction per connection; everything stops with `close()`.
"""

from __future__ import annotations

import logging
import random
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
        self.flaps = 0  # connections cut by cut_after
        self.client_bytes: list[int] = []  # per accepted connection: bytes the client sent
        self._flap_budget = 0
        self._flap_bytes = 0
        self._flap_jitter = 0
        self._rng = random.Random(1414)
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

    def cut_after(self, nbytes: int, connections: int, jitter: int = 0) -> None:
        """Cut each of the next `connections` new connections once its client has sent
        `nbytes` (plus a random 0..`jitter`) bytes through it: a flapping link."""
        with self._lock:
            self._flap_bytes, self._flap_jitter = nbytes, jitter
            self._flap_budget = connections

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
                index = len(self.client_bytes)
                self.client_bytes.append(0)
                limit = None
                if self._flap_budget > 0:
                    self._flap_budget -= 1
                    limit = self._flap_bytes + self._rng.randint(0, self._flap_jitter)
            self._spawn(self._pump, client, upstream, index, limit)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket, index: int | None = None,
              limit: int | None = None) -> None:
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
            if limit is not None and index is not None \
                    and self.client_bytes[index] + len(data) >= limit:
                data = data[:max(0, limit - self.client_bytes[index])]
                try:
                    dst.sendall(data)
                except OSError:
                    pass
                with self._lock:
                    self.flaps += 1
                    if (src, dst) in self._conns:
                        self._conns.remove((src, dst))
                for s in (src, dst):  # the link drops in the middle of what the client sent
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                return
            try:
                dst.sendall(data)
            except OSError:
                break
            if index is not None:
                self.client_bytes[index] += len(data)
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
