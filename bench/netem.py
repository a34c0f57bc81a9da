"""A user-space network emulator: a TCP proxy on 127.0.0.1 that delays and rate-caps.

Linux netem is not available on these kernels, so the benchmark puts this proxy between
the clients (sshfs's ssh, pysshfs) and sshd. Each direction of each connection gets a
one-way delay of rtt/2 and, optionally, a serialisation rate like a link of `mbit` Mbit/s
with a deep buffer (bytes wait in the proxy's queue, as in a router, instead of pushing
back on the sender): a bulk transfer then builds the queue that small requests must wait
behind, which is what the "stat while a big file streams" workload measures.

Two threads per direction: a reader that timestamps what arrives and queues it, and a
writer that sends each piece at its delivery time. Everything stops with `close()`.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque

log = logging.getLogger(__name__)

# Bytes a direction may queue before the reader stops reading (then TCP pushes back).
MAX_QUEUED = 64 * 1024 * 1024
RECV_SIZE = 65536


class _Direction:
    """src -> dst with delay and rate: a queue of (deliver_at, bytes)."""

    def __init__(self, proxy: DelayProxy, src: socket.socket, dst: socket.socket) -> None:
        self.proxy = proxy
        self.src, self.dst = src, dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.link_free = 0.0  # when the emulated link finishes sending what is queued
        self.eof = False

    def read_loop(self) -> None:
        while not self.proxy.stopping.is_set():
            with self.cond:
                while self.queued > MAX_QUEUED and not self.proxy.stopping.is_set():
                    self.cond.wait(0.2)
            try:
                ready, _, _ = select.select([self.src], [], [], 0.2)
                if not ready:
                    continue
                data = self.src.recv(RECV_SIZE)
            except (OSError, ValueError):
                data = b""
            now = time.monotonic()
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                rate = self.proxy.rate_bytes
                if rate:
                    start = max(now, self.link_free)
                    self.link_free = start + len(data) / rate
                    deliver = self.link_free + self.proxy.one_way
                else:
                    deliver = now + self.proxy.one_way
                self.queue.append((deliver, data))
                self.queued += len(data)
                self.cond.notify_all()

    def write_loop(self) -> None:
        while not self.proxy.stopping.is_set():
            with self.cond:
                while not self.queue and not self.eof and not self.proxy.stopping.is_set():
                    self.cond.wait(0.2)
                if not self.queue:
                    if self.eof or self.proxy.stopping.is_set():
                        break
                    continue
                deliver, data = self.queue[0]
            wait = deliver - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cond:
                self.queue.popleft()
                self.queued -= len(data)
                self.cond.notify_all()
            try:
                self.dst.sendall(data)
            except OSError:
                break
        for s in (self.dst, self.src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class DelayProxy:
    """Listen on 127.0.0.1 (free port) and forward to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int, rtt_ms: float, mbit: float | None = None) -> None:
        self.target_port = target_port
        self.one_way = rtt_ms / 2000.0
        self.rate_bytes: float | None = None
        self.set_rate(mbit)
        self.stopping = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    def set_rate(self, mbit: float | None) -> None:
        """Cap each direction at `mbit` Mbit/s (None: unlimited) for data arriving from now."""
        self.rate_bytes = mbit * 1_000_000 / 8 if mbit else None

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=target, args=args, daemon=True, name="netem")
        t.start()
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                d = _Direction(self, src, dst)
                self._spawn(d.read_loop)
                self._spawn(d.write_loop)

    def close(self) -> None:
        self.stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks, self._socks = self._socks, []
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in threads:
            t.join(timeout=5)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def proxied_ssh_config(original: str, port: int) -> str:
    """`original` ssh_config text with every `Port N` line pointing at the proxy."""
    lines = []
    for line in original.splitlines():
        if line.strip().lower().startswith("port "):
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}Port {port}"
        lines.append(line)
    return "\n".join(lines) + "\n"
