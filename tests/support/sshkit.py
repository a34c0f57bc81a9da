"""Helpers for the SSH-layer tests: an ssh-agent, throwaway users, certificates, configs.

Everything started here is stopped by pid; users created here are removed again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.sshd import Sshd, keygen

REPO = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll `predicate` until it is true or `timeout` passes; its last truth value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


@contextlib.contextmanager
def ssh_agent(workdir: Path, *keys: Path) -> Iterator[str]:
    """A real ssh-agent on its own socket holding `keys`; yields the socket path."""
    sock = workdir / f"agent-{secrets.token_hex(4)}.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for(sock.exists, 10):
            raise RuntimeError("ssh-agent did not start")
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for key in keys:
            subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True,
                           stdin=subprocess.DEVNULL, capture_output=True)
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def throwaway_user(password: str) -> Iterator[str]:
    """A local user with a home and `password` (we run as root); removed afterwards."""
    name = f"pst{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True,
                       capture_output=True)
        yield name
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)


def sign_cert(ca: Path, pub: Path, *, identity: str, principals: list[str],
              host: bool = False, validity: str | None = None) -> Path:
    """ssh-keygen -s: certify `pub` with `ca`; returns the -cert.pub path."""
    args = ["ssh-keygen", "-q", "-s", str(ca), "-I", identity, "-n", ",".join(principals)]
    if host:
        args.append("-h")
    if validity:
        args += ["-V", validity]
    subprocess.run([*args, str(pub)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    return pub.with_name(pub.name[: -len(".pub")] + "-cert.pub")


def new_key(workdir: Path, name: str, kind: str = "ed25519", passphrase: str = "") -> Path:
    path = workdir / name
    if not path.exists():
        keygen(path, kind, passphrase=passphrase, comment=name)
    return path


def authorize(sshd: Sshd, key: Path) -> None:
    """Add key.pub to the server's authorized_keys."""
    with open(sshd.authorized_keys, "a") as f:
        f.write(key.with_name(key.name + ".pub").read_text())


def client_config(sshd: Sshd, name: str = "cfg", *, host: str = "testhost",
                  lines: list[str] | None = None, identity: Path | None = None,
                  known_hosts: Path | None = None, strict: str = "yes") -> Path:
    """A -F file: `lines` first (first value wins), then how to reach this sshd."""
    path = sshd.workdir / name
    body = [f"Host {host}", *[f"  {line}" for line in (lines or [])],
            "  HostName 127.0.0.1", f"  Port {sshd.port}", f"  User {sshd.user}",
            f"  IdentityFile {identity or sshd.client_key}", "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts or sshd.known_hosts}",
            f"  StrictHostKeyChecking {strict}", "  BatchMode yes"]
    path.write_text("\n".join(body) + "\n")
    return path


def run_connect(args: dict, *, stdin: bytes | None = None, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """connect() in a child Python (stdin/tty/env of its own); prints OK or the error line."""
    code = (
        "import json,sys,logging\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
        " format='%(name)s: %(message)s')\n"
        "from pysshfs.ssh import ConnectRequest, connect\n"
        "from pysshfs.errors import MountError\n"
        f"req = ConnectRequest(**json.loads({json_literal(args)}))\n"
        "try:\n"
        "    c = connect(req)\n"
        "    c.open_sftp_channel().close()\n"
        "    print('OK', c.resolved.user)\n"
        "    c.close()\n"
        "except MountError as e:\n"
        "    print('ERR', e.errno, e)\n"
    )
    return subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                          timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)


def json_literal(obj: object) -> str:
    import json

    return repr(json.dumps(obj))


def run_connect_on_pty(args: dict, answers: list[tuple[bytes, bytes]], *,
                       env: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    """connect() in a child whose controlling terminal is a pty; answer prompts as they come.

    `answers` are (expected prompt text, reply) pairs; returns (exit status, all output)."""
    import pty
    import select

    code = (
        "import json\n"
        "from pysshfs.ssh import ConnectRequest, connect\n"
        "from pysshfs.errors import MountError\n"
        f"req = ConnectRequest(**json.loads({json_literal(args)}))\n"
        "try:\n"
        "    c = connect(req); c.open_sftp_channel().close(); print('RESULT OK'); c.close()\n"
        "except MountError as e:\n"
        "    print('RESULT ERR', e)\n"
    )
    child_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    pid, fd = pty.fork()
    if pid == 0:  # child: its controlling tty is the pty
        try:
            os.execve(sys.executable, [sys.executable, "-c", code], child_env)
        finally:
            os._exit(127)
    output = b""
    pending = list(answers)
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break  # EIO: the child closed the terminal
            if not chunk:
                break
            output += chunk
            while pending and output.find(pending[0][0], seen) >= 0:
                expected, reply = pending.pop(0)
                seen = output.find(expected, seen) + len(expected)
                os.write(fd, reply + b"\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")
