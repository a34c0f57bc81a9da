"""What the command line asks of the SSH layer: the target and ssh_config-style overrides."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConnectRequest:
    """Where to connect and how, before ssh_config is applied.

    `options` maps canonical ssh_config keywords (e.g. "IdentityFile", "StrictHostKeyChecking",
    "Port", "User") given on the command line with ``-o Key=Value``; they override the config
    files, as ``ssh -o`` does. A keyword that may repeat (IdentityFile, UserKnownHostsFile,
    CertificateFile) maps to a list of values.
    """

    host: str  # as typed: an alias from ssh_config, a name, or an IP (IPv6 without brackets)
    user: str | None = None  # from user@host
    port: int | None = None  # from -p
    config_file: str | None = None  # -F: only this file is read ("none" reads none)
    options: dict[str, str | list[str]] = field(default_factory=dict)
    password_stdin: bool = False  # -o password_stdin: read the password from stdin once
    interactive: bool = True  # may prompt on the terminal (False when reconnecting)
    debug: bool = False
