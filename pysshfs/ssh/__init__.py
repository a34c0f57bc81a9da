"""The SSH connection: ssh_config resolution, host key verification, authentication.

Everything above this package sees only `connect(ConnectRequest) -> SSHConnection`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pysshfs.ssh.request import ConnectRequest

if TYPE_CHECKING:  # for the type checker only: at run time they come lazily, below
    from pysshfs.ssh.connection import SSHConnection, connect

__all__ = ["ConnectRequest", "SSHConnection", "connect"]


def __getattr__(name: str) -> Any:  # lazy: importing the request type must not import paramiko
    if name in ("SSHConnection", "connect"):
        from pysshfs.ssh import connection

        return getattr(connection, name)
    raise AttributeError(name)
