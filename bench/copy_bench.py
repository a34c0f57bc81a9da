"""`cp big big2` inside the mount, pysshfs (server-side copy-data) against sshfs (whose
bytes go down and back up), on loopback and through a proxy adding latency; the bytes
that crossed the proxy. `python bench/copy_bench.py [--size-mib 512] [--rtt-ms 20]`.

The proxy delays each chunk by half the RTT in each direction without limiting
throughput (chunks are queued with the time they are due, not slept on one by one), so
it models a long link rather than a slow one. Each run is a fresh mount; the copy is
checked byte for byte on the server side (sizes and SHA-256) before it counts.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mounts  # noqa: E402
from tests.support.sshd import start_sshd  # noqa: E402

log = logging.getLogger("copy_bench")


class LatencyProxy:
    """127.0.0.1 TCP proxy: every chunk arrives `one_way` seconds after it was read."""

    def __init__(self, target_port: int, one_way: float) -> None:
        self.target_port = target_port
        self.one_way = one_way
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):  # closed
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socks.append(s)
            self._pipe(client, upstream, up=True)
            self._pipe(upstream, client, up=False)

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        queue: deque[tuple[float, bytes]] = deque()
        cond = threading.Condition()

        def reader() -> None:
            while True:
                try:
                    data = src.recv(262144)
                except OSError:
                    data = b""
                with cond:
                    queue.append((time.monotonic() + self.one_way, data))
                    cond.notify()
                if not data:
                    return
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)

        def writer() -> None:
            while True:
                with cond:
                    while not queue:
                        cond.wait()
                    due, data = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def ssh_config_via(sshd: object, proxy_port: int, workdir: Path) -> Path:
    """An ssh_config (and known_hosts) reaching the sshd through the proxy's port."""
    known = workdir / "known_hosts_proxy"
    key = sshd.host_key.with_suffix(".pub").read_text().split()  # type: ignore[attr-defined]
    known.write_text(f"[127.0.0.1]:{proxy_port} {key[0]} {key[1]}\n")
    text = sshd.ssh_config.read_text()  # type: ignore[attr-defined]
    text = text.replace(f"Port {sshd.port}", f"Port {proxy_port}")  # type: ignore[attr-defined]
    text = text.replace(str(sshd.known_hosts), str(known))  # type: ignore[attr-defined]
    config = workdir / "ssh_config_proxy"
    config.write_text(text)
    return config


def one_copy(kind: str, config: Path, root: Path, workdir: Path, run: int,
             proxy: LatencyProxy | None, digest: str) -> tuple[float, int]:
    mnt = workdir / f"mnt-{kind}-{run}-{'proxy' if proxy else 'lo'}"
    m = mounts.mount(kind, config, f"testhost:{root}", mnt, timeout=60)
    try:
        os.stat(mnt / "big")
        if proxy:
            proxy.bytes_up = proxy.bytes_down = 0
        start = time.monotonic()
        subprocess.run(["cp", str(mnt / "big"), str(mnt / "big2")], check=True)
        elapsed = time.monotonic() - start
        crossed = (proxy.bytes_up + proxy.bytes_down) if proxy else 0
    finally:
        mounts.unmount(m)
    assert sha256(root / "big2") == digest, f"{kind}: the copy differs"
    (root / "big2").unlink()
    return elapsed, crossed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="copy-bench-"))
    with start_sshd(workdir / "sshd") as sshd:
        root = sshd.root / "copy"
        root.mkdir()
        with open(root / "big", "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        digest = sha256(root / "big")
        proxy = LatencyProxy(sshd.port, args.rtt_ms / 2000)
        try:
            via_proxy = ssh_config_via(sshd, proxy.port, workdir)
            for link, config, px in (("loopback", sshd.ssh_config, None),
                                     (f"RTT {args.rtt_ms:g} ms", via_proxy, proxy)):
                for kind in mounts.KINDS:
                    runs = [one_copy(kind, config, root, workdir, i, px, digest)
                            for i in range(args.rounds)]
                    times = [t for t, _ in runs]
                    crossed = [c for _, c in runs]
                    line = (f"{link:>12} {kind:>8}: cp {args.size_mib} MiB median "
                            f"{statistics.median(times):.2f} s (runs "
                            f"{', '.join(f'{t:.2f}' for t in times)})")
                    if px:
                        line += f", bytes through proxy median {statistics.median(crossed):,.0f}"
                    print(line, flush=True)
        finally:
            proxy.close()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
