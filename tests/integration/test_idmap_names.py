"""idmap=names: owners shown by name (users-groups-by-id@openssh.com), chown translated back.

The test server runs on this machine, so both sides would read the same /etc/passwd. To
have names that exist on one side only, and a name with different ids on each side, the
server's sftp-server runs in its own mount namespace (`unshare -m`) with other
/etc/passwd and /etc/group files bound over the real ones (`-o sftp_server=SCRIPT`): the
server then names its ids from those files, pysshfs from the real ones.

Server side: alice has uid/gid SERVER_ALICE (not her local ids), "srvonly" exists only
there, bob (a local user) does not exist there. Checks compare what the mount shows with
the ids the server's files really have.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from tests.support import badsftp
from tests.support.mount import Mount, Mounter
from tests.support.sshd import sftp_server_path
from tests.support.system import LocalUser

SERVER_ALICE = 4300  # alice's uid and gid on the server (locally another)
SERVER_ONLY = 4243  # "srvonly": a user and group only the server has
NOBODY_KNOWS = 4242  # an id with no name on either side


def owners(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def lookups(m: Mount) -> int:
    return len(re.findall(r"\] users-groups-by-id@openssh\.com ", m.stderr_text()))


@pytest.fixture
def server_view(tmp_path: Path, local_accounts: list[LocalUser]) -> str:
    """An sftp-server that sees the server's own passwd and group files."""
    alice, bob = local_accounts
    mine = {alice.name, bob.name}
    passwd = [line for line in Path("/etc/passwd").read_text().splitlines()
              if line.split(":")[0] not in mine]
    group = [line for line in Path("/etc/group").read_text().splitlines()
             if line.split(":")[0] not in mine]
    passwd += [f"{alice.name}:x:{SERVER_ALICE}:{SERVER_ALICE}::/nonexistent:/bin/false",
               f"srvonly:x:{SERVER_ONLY}:{SERVER_ONLY}::/nonexistent:/bin/false"]
    group += [f"{alice.name}:x:{SERVER_ALICE}:", f"srvonly:x:{SERVER_ONLY}:"]
    (tmp_path / "passwd").write_text("\n".join(passwd) + "\n")
    (tmp_path / "group").write_text("\n".join(group) + "\n")
    script = tmp_path / "sftp-server-elsewhere"
    script.write_text(
        "#!/bin/sh\n"
        "exec unshare -m sh -c '"
        f"mount --bind {tmp_path}/passwd /etc/passwd && "
        f"mount --bind {tmp_path}/group /etc/group && "
        f"exec {sftp_server_path()}'\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def served(mounter: Mounter, local_accounts: list[LocalUser]) -> Path:
    bob = local_accounts[1]
    root = mounter.new_root()
    os.chown(root, 0, 0)
    for name, ids in {"of-root": (0, 0), "of-alice": (SERVER_ALICE, SERVER_ALICE),
                      "of-srvonly": (SERVER_ONLY, SERVER_ONLY),
                      "of-bob": (bob.uid, bob.gid),
                      "of-nobody": (NOBODY_KNOWS, NOBODY_KNOWS)}.items():
        (root / name).write_text(name)
        os.chown(root / name, *ids)
    return root


def test_owners_by_name_nomap_ignore(mounter: Mounter, served: Path, server_view: str,
                                     local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    m = mounter(["-d", "-o", f"idmap=names,nomap=ignore,sftp_server={server_view}"],
                foreground=True, root=served)
    os.stat(m.mnt)
    before = lookups(m)
    names = sorted(os.listdir(m.mnt))
    assert lookups(m) == before + 1  # every new id of the listing in one request
    shown = {name: owners(m.mnt / name) for name in names}
    assert lookups(m) == before + 1  # stats answered from what is known
    assert shown == {
        "of-root": (0, 0),
        "of-alice": (alice.uid, alice.gid),  # same name, other ids: the local ones
        "of-srvonly": (SERVER_ONLY, SERVER_ONLY),  # no such name here: as is
        "of-bob": (bob.uid, bob.gid),  # no name on the server for this id: as is
        "of-nobody": (NOBODY_KNOWS, NOBODY_KNOWS),
    }
    # chown goes back by name: local alice is the server's alice
    (m.mnt / "new").write_text("x")
    os.chown(m.mnt / "new", alice.uid, alice.gid)
    assert owners(served / "new") == (SERVER_ALICE, SERVER_ALICE)
    assert owners(m.mnt / "new") == (alice.uid, alice.gid)
    os.chown(m.mnt / "new", 1, 1)  # daemon, never seen yet: the server names id 1 so too
    assert owners(served / "new") == (1, 1)
    os.chown(m.mnt / "new", bob.uid, -1)  # bob has no server id: passes as is (ignore)
    assert owners(served / "new") == (bob.uid, 1)
    assert owners(served / "of-alice") == (SERVER_ALICE, SERVER_ALICE)  # only shown
    m.unmount()


def test_owners_by_name_nomap_error(mounter: Mounter, served: Path, server_view: str,
                                    local_accounts: list[LocalUser]) -> None:
    alice, bob = local_accounts
    m = mounter(["-o", f"idmap=names,sftp_server={server_view}"], root=served)
    assert sorted(os.listdir(m.mnt)) == ["of-alice", "of-bob", "of-nobody", "of-root",
                                         "of-srvonly"]
    assert owners(m.mnt / "of-alice") == (alice.uid, alice.gid)
    assert owners(m.mnt / "of-root") == (0, 0)
    for name in ("of-srvonly", "of-bob", "of-nobody"):
        with pytest.raises(OSError) as info:
            os.lstat(m.mnt / name)
        assert info.value.errno == errno.EPERM, name
    with pytest.raises(OSError) as info:
        os.chown(m.mnt / "of-root", bob.uid, -1)  # bob has no server counterpart
    assert info.value.errno == errno.EPERM
    assert owners(served / "of-root") == (0, 0)
    os.chown(m.mnt / "of-root", alice.uid, -1)
    assert owners(served / "of-root") == (SERVER_ALICE, 0)


def test_without_the_extension_ids_are_shown_as_they_are(
        mounter: Mounter, served: Path, local_accounts: list[LocalUser]) -> None:
    hide = badsftp.command("no-extension", "users-groups-by-id@openssh.com")
    m = mounter(["-d", "-o", f"idmap=names,sftp_server={hide}"], foreground=True,
                root=served)
    assert owners(m.mnt / "of-alice") == (SERVER_ALICE, SERVER_ALICE)
    assert owners(m.mnt / "of-nobody") == (NOBODY_KNOWS, NOBODY_KNOWS)
    os.chown(m.mnt / "of-root", 77, 78)
    assert owners(served / "of-root") == (77, 78)
    m.unmount()
    assert "idmap=names: the server does not name its ids" in m.stderr_text()
    assert lookups(m) == 0
