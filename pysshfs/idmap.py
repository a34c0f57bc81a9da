"""Remote ↔ local user and group ids, as sshfs's idmap=none|user|file, and idmap=names.

`user`: the remote user's ids appear as the mounting user's (the remote user is the owner
of the login directory, as sshfs finds it). `file`: `uidfile`/`gidfile` hold
`name:remote_id` lines (name = a local user/group); an unmapped id is an error (EPERM,
`nomap=error`, sshfs's default) or shown as it is (`nomap=ignore`). `names`: the server
names its ids (users-groups-by-id@openssh.com) and each becomes the local id of the same
name; ids without a name on either side follow `nomap` (see `ByNameIdMapper`).
"""

from __future__ import annotations

import errno
import grp
import logging
import pwd
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pysshfs.errors import MountError

log = logging.getLogger(__name__)


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

    def prefetch(self, attrs: Iterable[Any]) -> None:
        """Ids about to be shown (a listing's): nothing to do when the tables are local."""


# (remote uids, remote gids) -> (their user names, their group names), "" = no name
NameLookup = Callable[[Sequence[int], Sequence[int]], tuple[list[str], list[str]]]
_UNKNOWN = object()


class _Names:
    """One kind (users or groups): what the server called its ids, and what they are here."""

    MAX = 65536  # ids remembered; more (a hostile or huge server) starts again

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.remote_names: dict[int, str] = {}  # remote id -> server's name ("" = none)
        self.remote_ids: dict[str, int] = {}  # server's name -> remote id
        self.local_ids: dict[int, int | None] = {}  # remote id -> local id (None: no name)

    def local_id_of(self, name: str) -> int | None:
        try:
            return pwd.getpwnam(name).pw_uid if self.kind == "user" else grp.getgrnam(name).gr_gid
        except (KeyError, ValueError):  # no such name; or a NUL or undecodable byte in it
            return None

    def local_name_of(self, local: int) -> str | None:
        try:
            return pwd.getpwuid(local).pw_name if self.kind == "user" \
                else grp.getgrgid(local).gr_name
        except (KeyError, OverflowError):
            return None

    def learn(self, remote: int, name: str) -> None:
        if len(self.remote_names) >= self.MAX:
            self.remote_names.clear()
            self.remote_ids.clear()
            self.local_ids.clear()
        self.remote_names[remote] = name
        local = self.local_id_of(name) if name else None
        if name:
            self.remote_ids[name] = remote
        self.local_ids[remote] = local
        log.debug("idmap=names: remote %s %d is %r, here %s", self.kind, remote, name,
                  local if local is not None else "unknown")


class ByNameIdMapper(IdMapper):
    """idmap=names: a remote id is shown as the local id of the user (group) of the same
    name; chown goes back the same way (local id -> local name -> the server's id for it).

    Answers are cached for the mount's life; a listing's ids are asked for in one request
    (`prefetch`). The reverse way knows the server ids of names seen so far; for a name
    not yet seen it asks whether the server gives the same id that name (the common case
    of ids equal on both sides). A name unknown on either side follows `nomap`: error
    (EPERM) or ignore (the id passes unchanged). The lookup never runs under a lock.
    """

    BATCH = 2048  # ids per request (a few KiB each way)

    def __init__(self, lookup: NameLookup, strict: bool) -> None:
        super().__init__(strict_uids=strict, strict_gids=strict)
        self._lookup = lookup
        self._users = _Names("user")
        self._groups = _Names("group")
        self._lock = threading.Lock()

    def prefetch(self, attrs: Iterable[Any]) -> None:
        uids: set[int] = set()
        gids: set[int] = set()
        for a in attrs:
            if a.uid is not None and a.uid not in self._users.remote_names:
                uids.add(a.uid)
            if a.gid is not None and a.gid not in self._groups.remote_names:
                gids.add(a.gid)
        if uids or gids:
            self._ask(sorted(uids), sorted(gids))

    def _ask(self, uids: list[int], gids: list[int]) -> None:
        for start in range(0, max(len(uids), len(gids)), self.BATCH):
            some_uids, some_gids = uids[start:start + self.BATCH], gids[start:start + self.BATCH]
            try:
                user_names, group_names = self._lookup(some_uids, some_gids)
            except OSError as exc:
                # Taken as "no name" (nomap's rule) for the mount's life: a server that
                # fails this request would fail it again, on every stat. A lost
                # connection does not get here: the session retries the request.
                log.warning("idmap=names: the server did not name %d uid(s) and %d gid(s) "
                            "(shown as unmapped): %s", len(some_uids), len(some_gids), exc)
                user_names, group_names = [""] * len(some_uids), [""] * len(some_gids)
            with self._lock:
                for uid, name in zip(some_uids, user_names, strict=True):
                    self._users.learn(uid, name)
                for gid, name in zip(some_gids, group_names, strict=True):
                    self._groups.learn(gid, name)

    def _ask_one(self, names: _Names, remote: int) -> None:
        if names is self._users:
            self._ask([remote], [])
        else:
            self._ask([], [remote])

    def _local(self, names: _Names, remote: int, strict: bool) -> int:
        local = names.local_ids.get(remote, _UNKNOWN)
        if local is _UNKNOWN:
            self._ask_one(names, remote)
            local = names.local_ids.get(remote)
        if isinstance(local, int):
            return local
        if strict:
            raise OSError(errno.EPERM, f"remote {names.kind} id {remote} has no local "
                          "counterpart by name (nomap=error)")
        return remote

    def _remote(self, names: _Names, local: int, strict: bool) -> int:
        name = names.local_name_of(local)
        if name is not None:
            remote = names.remote_ids.get(name)
            if remote is None and local not in names.remote_names:
                # not seen yet: does the server give this name the same id?
                self._ask_one(names, local)
                remote = names.remote_ids.get(name)
            if remote is not None:
                return remote
        if strict:
            raise OSError(errno.EPERM, f"local {names.kind} id {local} has no remote "
                          "counterpart by name (nomap=error)")
        return local

    def uid_to_local(self, remote: int) -> int:
        return self._local(self._users, remote, self.strict_uids)

    def gid_to_local(self, remote: int) -> int:
        return self._local(self._groups, remote, self.strict_gids)

    def uid_to_remote(self, local: int) -> int:
        return self._remote(self._users, local, self.strict_uids)

    def gid_to_remote(self, local: int) -> int:
        return self._remote(self._groups, local, self.strict_gids)
