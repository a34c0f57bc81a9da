"""Remote ↔ local user and group ids, as sshfs's idmap=none|user|file.

`user`: the remote user's ids appear as the mounting user's (the remote user is the owner
of the login directory, as sshfs finds it). `file`: `uidfile`/`gidfile` hold
`name:remote_id` lines (name = a local user/group); an unmapped id is an error (EPERM,
`nomap=error`, sshfs's default) or shown as it is (`nomap=ignore`).
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
    """Translate ids in both directions; identity where nothing is mapped.

    `strict` (nomap=error) applies, as in sshfs, only to a table that was given: with a
    uidfile alone, group ids pass unchanged. An unmapped id is then EPERM both ways (a stat
    of such a file, a chown to such a local id).
    """

    uids: dict[int, int] = field(default_factory=dict)  # remote -> local
    gids: dict[int, int] = field(default_factory=dict)
    strict_uids: bool = False
    strict_gids: bool = False

    @classmethod
    def for_user(cls, remote_uid: int | None, remote_gid: int | None,
                 local_uid: int, local_gid: int) -> IdMapper:
        return cls({remote_uid: local_uid} if remote_uid is not None else {},
                   {remote_gid: local_gid} if remote_gid is not None else {})

    @classmethod
    def from_files(cls, uidfile: str | None, gidfile: str | None, strict: bool) -> IdMapper:
        if not uidfile and not gidfile:
            raise MountError(errno.EINVAL, "option 'idmap=file'", "needs a uidfile or a gidfile",
                             "add -o uidfile=FILE and/or -o gidfile=FILE")
        return cls(load_map_file(uidfile, "uid") if uidfile else {},
                   load_map_file(gidfile, "gid") if gidfile else {},
                   strict_uids=strict and bool(uidfile), strict_gids=strict and bool(gidfile))

    @staticmethod
    def _to_local(table: dict[int, int], remote: int, strict: bool) -> int:
        local = table.get(remote)
        if local is not None:
            return local
        if strict:
            raise OSError(errno.EPERM, f"no local id for remote id {remote} (nomap=error)")
        return remote

    def uid_to_local(self, remote: int) -> int:
        return self._to_local(self.uids, remote, self.strict_uids)

    def gid_to_local(self, remote: int) -> int:
        return self._to_local(self.gids, remote, self.strict_gids)

    @staticmethod
    def _to_remote(table: dict[int, int], local: int, strict: bool) -> int:
        for remote, mapped in table.items():
            if mapped == local:
                return remote
        if strict:
            raise OSError(errno.EPERM, f"no remote id for local id {local} (nomap=error)")
        return local

    def uid_to_remote(self, local: int) -> int:
        return self._to_remote(self.uids, local, self.strict_uids)

    def gid_to_remote(self, local: int) -> int:
        return self._to_remote(self.gids, local, self.strict_gids)
