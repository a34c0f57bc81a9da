"""A ProxyCommand for tests: `python tcprelay.py HOST PORT` pipes stdin/stdout to HOST:PORT.

Like `nc HOST PORT`, without depending on which netcat is installed.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port))
    if len(sys.argv) > 3:  # a marker file proves the command ran
        with open(sys.argv[3], "a") as f:
            f.write(f"{host}:{port}\n")

    def upstream() -> None:
        while True:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        os.write(1, data)


if __name__ == "__main__":
    main()
