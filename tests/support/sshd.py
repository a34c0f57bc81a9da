"""A throwaway OpenSSH sshd on 127.0.0.1 for tests, benchmarks and the demo.

Real Debian openssh-server, its own host and user keys in a temporary directory, a free
port, stopped by pid. Extra sshd_config lines let each test shape the server it needs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
)


def sftp_server_path() -> str:
    """Where this system's OpenSSH sftp-server binary lives."""
    for candidate in SFTP_SERVER_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("no sftp-server found (apt-get install openssh-server)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    """Make an OpenSSH key pair at `path` (and `path`.pub)."""
    args = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", str(path)]
    if kind == "rsa":
        args += ["-b", "3072"]
    if comment:
        args += ["-C", comment]
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    return path


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Poll until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


@dataclass
class Sshd:
    """One sshd process and everything a client needs to reach it.

    `workdir` holds host keys, the client key `client_key`, `known_hosts` (already holding
    this server's key as `[127.0.0.1]:port`), an `ssh_config` with a `Host testhost` entry
    and the served directory `root`.
    """

    workdir: Path
    extra_config: list[str] = field(default_factory=list)
    port: int = 0
    log_level: str = "VERBOSE"
    proc: subprocess.Popen | None = None
    host_key_type: str = "ed25519"

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def client_key(self) -> Path:
        return self.workdir / "id_client"

    @property
    def host_key(self) -> Path:
        return self.workdir / f"ssh_host_{self.host_key_type}_key"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    @property
    def user(self) -> str:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name

    def prepare(self) -> None:
        """Create keys, config and the served directory (idempotent)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, self.host_key_type)
        if not self.client_key.exists():
            keygen(self.client_key, "ed25519", comment="pysshfs-test")
            shutil.copy(self.client_key.with_suffix(".pub"), self.authorized_keys)
            os.chmod(self.authorized_keys, 0o600)
        if not self.port:
            self.port = free_port()
        self.write_known_hosts()
        self.write_client_config()

    def write_known_hosts(self) -> None:
        pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {pub[0]} {pub[1]}\n")

    def write_client_config(self) -> None:
        self.ssh_config.write_text(
            "Host testhost\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {self.user}\n"
            f"  IdentityFile {self.client_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
        )

    def sshd_config_text(self) -> str:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"LogLevel {self.log_level}",
            f"Subsystem sftp {sftp_server_path()}",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
        ]
        # Lines given by a test come first: sshd takes the first value of a keyword.
        return "\n".join([*self.extra_config, *lines]) + "\n"

    def start(self) -> Sshd:
        self.prepare()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        config = self.workdir / "sshd_config"
        config.write_text(self.sshd_config_text())
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log_file.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        """Stop the listener (by pid) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client_args(self) -> list[str]:
        """pysshfs/ssh options that reach this server without touching ~/.ssh."""
        return ["-F", str(self.ssh_config)]

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sshd(workdir: Path | None = None, extra_config: list[str] | None = None) -> Sshd:
    """Start an sshd in `workdir` (a new temporary directory when None)."""
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="pysshfs-sshd-"))
    return Sshd(workdir=workdir, extra_config=list(extra_config or [])).start()
