"""The SSH connection: ssh_config resolution, host key verification, authentication.

Everything above this package sees only `connect(ConnectRequest) -> SSHConnection`.
"""

from __future__ import annotations

from pysshfs.ssh.request import ConnectRequest

__all__ = ["ConnectRequest", "SSHConnection", "connect"]


def __getattr__(name: str):  # lazy: importing the request type must not import paramiko
    if name in ("SSHConnection", "connect"):
        from pysshfs.ssh import connection

        return getattr(connection, name)
    raise AttributeError(name)
