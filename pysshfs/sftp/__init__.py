"""SFTP v3 + OpenSSH extensions: packet codec, request ids, one reader thread, errno map."""

from __future__ import annotations

from pysshfs.sftp.client import PipeStream, SFTPClient
from pysshfs.sftp.codec import Attrs, ProtocolError
from pysshfs.sftp.errors import SFTPError, status_error

__all__ = ["Attrs", "PipeStream", "ProtocolError", "SFTPClient", "SFTPError", "status_error"]
