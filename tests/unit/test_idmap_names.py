"""idmap=names mapping logic with a stand-in for the server's answer (the protocol path
is tested against the real sftp-server in tests/integration/test_idmap_names.py)."""

from __future__ import annotations

import errno
import grp
import pwd
from collections.abc import Sequence

import pytest

from pysshfs.idmap import ByNameIdMapper
from pysshfs.sftp.codec import Attrs

ROOT_GROUP = grp.getgrgid(0).gr_name
DAEMON = pwd.getpwnam("daemon")  # present on every Debian system


class Server:
    """Names the server gives its ids; counts the requests."""

    def __init__(self, users: dict[int, str], groups: dict[int, str]) -> None:
        self.users, self.groups = users, groups
        self.asked: list[tuple[list[int], list[int]]] = []
        self.fail = False

    def __call__(self, uids: Sequence[int], gids: Sequence[int]) -> tuple[list[str], list[str]]:
        self.asked.append((list(uids), list(gids)))
        if self.fail:
            raise OSError(errno.EIO, "no")
        return [self.users.get(u, "") for u in uids], [self.groups.get(g, "") for g in gids]


@pytest.fixture
def server() -> Server:
    # server: root 0, daemon at 5000 (locally DAEMON.pw_uid), "ghost" unknown here
    return Server({0: "root", 5000: "daemon", 6000: "ghost-pysshfs-x"},
                  {0: ROOT_GROUP, 5000: "daemon"})


def test_remote_ids_become_local_ids_of_the_same_name(server: Server) -> None:
    ids = ByNameIdMapper(server, strict=False)
    assert ids.uid_to_local(5000) == DAEMON.pw_uid
    assert ids.gid_to_local(5000) == grp.getgrnam("daemon").gr_gid
    assert ids.uid_to_local(0) == 0
    assert ids.uid_to_local(6000) == 6000  # no such name here: as is (nomap=ignore)
    assert ids.uid_to_local(7000) == 7000  # no name on the server: as is
    asked = len(server.asked)
    for _ in range(3):  # all cached
        ids.uid_to_local(5000), ids.uid_to_local(6000), ids.uid_to_local(7000)
    assert len(server.asked) == asked


def test_a_listing_is_one_request(server: Server) -> None:
    ids = ByNameIdMapper(server, strict=True)
    listing = [Attrs(uid=u, gid=g) for u, g in [(0, 0), (5000, 5000), (6000, 0), (5000, 0)]]
    ids.prefetch(listing)
    assert server.asked == [([0, 5000, 6000], [0, 5000])]
    ids.prefetch(listing)
    assert len(server.asked) == 1
    assert ids.uid_to_local(5000) == DAEMON.pw_uid
    with pytest.raises(OSError) as info:
        ids.uid_to_local(6000)
    assert info.value.errno == errno.EPERM
    assert len(server.asked) == 1


def test_many_ids_go_in_batches(server: Server) -> None:
    ids = ByNameIdMapper(server, strict=False)
    ids.prefetch([Attrs(uid=10000 + i, gid=20000 + i) for i in range(5000)])
    assert [(len(u), len(g)) for u, g in server.asked] == [(2048, 2048), (2048, 2048),
                                                          (904, 904)]


def test_chown_goes_back_by_name(server: Server) -> None:
    ids = ByNameIdMapper(server, strict=True)
    ids.prefetch([Attrs(uid=5000, gid=5000)])
    assert ids.uid_to_remote(DAEMON.pw_uid) == 5000
    assert ids.gid_to_remote(grp.getgrnam("daemon").gr_gid) == 5000
    # root not seen yet: the server is asked whether its id 0 is root too
    assert ids.uid_to_remote(0) == 0
    assert server.asked[-1] == ([0], [])
    # "bin" (uid 2 here) is no one on this server: nomap=error
    with pytest.raises(OSError) as info:
        ids.uid_to_remote(pwd.getpwnam("bin").pw_uid)
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError):
        ids.uid_to_remote(4242)  # no local name at all


def test_chown_to_an_unmapped_id_passes_with_nomap_ignore(server: Server) -> None:
    ids = ByNameIdMapper(server, strict=False)
    assert ids.uid_to_remote(pwd.getpwnam("bin").pw_uid) == pwd.getpwnam("bin").pw_uid
    assert ids.uid_to_remote(4242) == 4242


def test_a_failing_server_is_asked_once(server: Server) -> None:
    server.fail = True
    ids = ByNameIdMapper(server, strict=False)
    assert ids.uid_to_local(5000) == 5000
    assert ids.uid_to_local(5000) == 5000
    assert len(server.asked) == 1


def test_names_no_local_user_can_have_are_unknown() -> None:
    server = Server({1: "dae\x00mon", 2: "x" * 10000, 3: "\udcff"}, {})
    ids = ByNameIdMapper(server, strict=True)
    for uid in (1, 2, 3):
        with pytest.raises(OSError) as info:
            ids.uid_to_local(uid)
        assert info.value.errno == errno.EPERM
