"""Remote ↔ local user and group ids, as sshfs's idmap=none|user|file.

`user`: the remote user's ids appear as the mounting user's. `file`: `uidfile`/`gidfile`
hold `name:remote_id` lines (name = a local user/group); unmapped ids are shown as they
are (`nomap=ignore`) or as an error (`nomap=error`).
"""

from __future__ import annotations

import errno
import grp
import pwd
from dataclasses import dataclass, field

from pysshfs.errors import MountError


def load_map_file(path: str, kind: str) -> dict[int, int]:
    """Parse a uidfile/gidfile into {remote_id: local_id}."""
    lookup = pwd.getpwnam if kind == "uid" else grp.getgrnam
    result: dict[int, int] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as exc:
        raise MountError(exc.errno or errno.ENOENT, f"{kind}file '{path}'",
                         exc.strerror or "cannot be read", "give a readable file") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, remote = line.partition(":")
        if not sep or not remote.strip().isdigit():
            raise MountError(errno.EINVAL, f"{kind}file '{path}' line {number}",
                             f"expected name:{kind}, got '{line}'", "fix that line")
        try:
            entry = lookup(name.strip())
        except KeyError:
            raise MountError(errno.EINVAL, f"{kind}file '{path}' line {number}",
                             f"no local {'user' if kind == 'uid' else 'group'} '{name}'",
                             "fix that line") from None
        local = entry.pw_uid if kind == "uid" else entry.gr_gid  # type: ignore[union-attr]
        result[int(remote)] = local
    return result


@dataclass
class IdMapper:
    """Translate ids in both directions; identity where nothing is mapped."""

    uids: dict[int, int] = field(default_factory=dict)  # remote -> local
    gids: dict[int, int] = field(default_factory=dict)
    strict: bool = False  # nomap=error: an unmapped remote id is an error

    @classmethod
    def for_user(cls, remote_uid: int | None, remote_gid: int | None,
                 local_uid: int, local_gid: int) -> IdMapper:
        return cls({remote_uid: local_uid} if remote_uid is not None else {},
                   {remote_gid: local_gid} if remote_gid is not None else {})

    @classmethod
    def from_files(cls, uidfile: str | None, gidfile: str | None, strict: bool) -> IdMapper:
        return cls(load_map_file(uidfile, "uid") if uidfile else {},
                   load_map_file(gidfile, "gid") if gidfile else {}, strict)

    def _to_local(self, table: dict[int, int], remote: int) -> int:
        local = table.get(remote)
        if local is not None:
            return local
        if self.strict:
            raise OSError(errno.EPERM, f"no local id for remote id {remote}")
        return remote

    def uid_to_local(self, remote: int) -> int:
        return self._to_local(self.uids, remote)

    def gid_to_local(self, remote: int) -> int:
        return self._to_local(self.gids, remote)

    @staticmethod
    def _to_remote(table: dict[int, int], local: int) -> int:
        for remote, mapped in table.items():
            if mapped == local:
                return remote
        return local

    def uid_to_remote(self, local: int) -> int:
        return self._to_remote(self.uids, local)

    def gid_to_remote(self, local: int) -> int:
        return self._to_remote(self.gids, local)
