"""The sshfs-compatible command line: where options go, `-o` options that shape the mount,
the generic mount(8) options fstab passes along, host and path forms."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from tests.support.mount import Mounter, mount_entry
from tests.support.sshd import Sshd, start_sshd


def roundtrip(mnt: Path, root: Path, name: str = "rt.bin", size: int = 1024 * 1024) -> None:
    """Write through the mount, check the server; write on the server, read through it."""
    data = os.urandom(size)
    (mnt / name).write_bytes(data)
    assert (root / name).read_bytes() == data
    (root / f"{name}.srv").write_bytes(data[::-1])
    assert (mnt / f"{name}.srv").read_bytes() == data[::-1]


def direct_args(sshd: Sshd) -> list[str]:
    """Reach the test server with -o options only, no ssh_config file."""
    return ["-F", os.devnull, "-o", f"IdentityFile={sshd.client_key}",
            "-o", f"UserKnownHostsFile={sshd.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", f"User={sshd.user}",
            "-o", "BatchMode=yes"]


def test_generic_mount_options_are_accepted(mounter: Mounter) -> None:
    m = mounter(["-o", "rw,nodev,nosuid,_netdev,noauto,x-systemd.automount,comment=foo",
                 "-o", "defaults,relatime,noexec,nofail,users,x-systemd.requires=network.target"])
    roundtrip(m.mnt, m.root)


def test_options_before_between_and_after_positionals(mounter: Mounter) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    args = ["-o", "nodev", *mounter.sshd.client_args(), f"testhost:{root}", "-o", "nosuid",
            str(mnt), "-o", "rw"]
    m = mounter(args=args, root=root, mnt=mnt)
    roundtrip(m.mnt, m.root)


def test_dash_p_and_o_options_without_config_file(mounter: Mounter, sshd: Sshd) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    args = [f"127.0.0.1:{root}", str(mnt), "-p", str(sshd.port), *direct_args(sshd),
            "-o", "ConnectTimeout=10,ServerAliveInterval=15,ServerAliveCountMax=3",
            "-o", "Compression=yes,reconnect"]
    m = mounter(args=args, root=root, mnt=mnt)
    roundtrip(m.mnt, m.root)


def test_o_port(mounter: Mounter, sshd: Sshd) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    args = [f"{sshd.user}@127.0.0.1:{root}", str(mnt), "-o", f"port={sshd.port}",
            *direct_args(sshd)]
    m = mounter(args=args, root=root, mnt=mnt)
    roundtrip(m.mnt, m.root)


def test_ipv6_literal_host(mounter: Mounter, tmp_path: Path) -> None:
    if not os.path.exists("/proc/net/if_inet6") or \
            "00000000000000000000000000000001" not in Path("/proc/net/if_inet6").read_text():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    server = start_sshd(tmp_path / "sshd6", extra_config=["ListenAddress ::1"])
    try:
        pub = server.host_key.with_suffix(".pub").read_text().split()
        server.known_hosts.write_text(f"[::1]:{server.port} {pub[0]} {pub[1]}\n")
        root = server.root / "six"
        root.mkdir()
        mnt = mounter.new_mountpoint()
        args = [f"[::1]:{root}", str(mnt), "-p", str(server.port), *direct_args(server)]
        m = mounter(args=args, root=root, mnt=mnt)
        roundtrip(m.mnt, m.root)
        assert "[::1]" in mount_entry(m.mnt)[2]  # type: ignore[index]
        m.unmount()
    finally:
        for problem in mounter.cleanup():
            pytest.fail(problem, pytrace=False)
        mounter.mounts.clear()
        server.stop()


def test_host_colon_alone_is_the_login_directory(mounter: Mounter, sshd: Sshd) -> None:
    home = pwd.getpwnam(sshd.user).pw_dir
    mnt = mounter.new_mountpoint()
    m = mounter(args=["testhost:", str(mnt), *sshd.client_args()], root=Path(home), mnt=mnt)
    local, remote = set(os.listdir(m.mnt)), set(os.listdir(home))
    assert local & remote or not remote
    assert len(local ^ remote) <= 2, (local ^ remote)  # others may work in that home meanwhile
    files = sorted(n for n in local & remote if os.path.isfile(os.path.join(home, n))
                   and not os.path.islink(os.path.join(home, n))
                   and os.path.getsize(os.path.join(home, n)) < 1_000_000)
    for name in files[:3]:
        assert (m.mnt / name).read_bytes() == Path(home, name).read_bytes(), name


def test_relative_dir_is_relative_to_the_login_directory(mounter: Mounter, sshd: Sshd) -> None:
    home = pwd.getpwnam(sshd.user).pw_dir
    root = mounter.new_root()
    (root / "marker").write_text("relative")
    rel = os.path.relpath(root, home)
    assert not rel.startswith("/")
    mnt = mounter.new_mountpoint()
    m = mounter(args=[f"testhost:{rel}", str(mnt), *sshd.client_args()], root=root, mnt=mnt)
    assert (m.mnt / "marker").read_text() == "relative"
    roundtrip(m.mnt, m.root)


def test_uid_gid_umask(mounter: Mounter) -> None:
    root = mounter.new_root()
    (root / "f").write_text("x")
    os.chmod(root / "f", 0o666)
    (root / "d").mkdir()
    os.chmod(root / "d", 0o777)
    m = mounter(["-o", "uid=1234,gid=4321,umask=027"], root=root)
    st = os.stat(m.mnt / "f")
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert stat.S_IMODE(os.stat(m.mnt / "d").st_mode) == 0o750
    # only what is shown changes, not the server
    assert stat.S_IMODE(os.stat(root / "f").st_mode) == 0o666
    assert os.stat(root / "f").st_uid == os.geteuid()


def test_follow_symlinks(mounter: Mounter) -> None:
    root = mounter.new_root()
    (root / "realdir").mkdir()
    (root / "realdir" / "inside").write_text("in")
    os.symlink("realdir", root / "dirlink")
    os.symlink("nowhere", root / "dangling")
    plain = mounter(root=root)
    assert os.path.islink(plain.mnt / "dirlink")
    followed = mounter(["-o", "follow_symlinks"], root=root)
    st = os.lstat(followed.mnt / "dirlink")
    assert stat.S_ISDIR(st.st_mode)
    assert os.listdir(followed.mnt / "dirlink") == ["inside"]
    assert os.path.lexists(followed.mnt / "dangling")  # still listed, as the link itself


def test_fsname_and_subtype(mounter: Mounter) -> None:
    default = mounter()
    entry = mount_entry(default.mnt)
    assert entry is not None
    assert entry[1] == "fuse.pysshfs"
    assert entry[2] == default.argv[0]  # the source as typed
    named = mounter(["-o", "fsname=myremote,subtype=mytype"])
    assert mount_entry(named.mnt)[1:] == ("fuse.mytype", "myremote")  # type: ignore[index]


def test_compression_and_single_thread(mounter: Mounter) -> None:
    m = mounter(["-C", "-s"])
    roundtrip(m.mnt, m.root, size=3 * 1024 * 1024 + 5)


def test_max_read(mounter: Mounter) -> None:
    m = mounter(["-o", "max_read=65536"])
    roundtrip(m.mnt, m.root, size=3 * 1024 * 1024 + 5)
    assert "max_read=65536" in Path("/proc/self/mounts").read_text().split(str(m.mnt), 1)[1] \
        .splitlines()[0]


def test_sftp_server_path(mounter: Mounter) -> None:
    from tests.support.sshd import sftp_server_path

    m = mounter(["-o", f"sftp_server={sftp_server_path()}"])
    roundtrip(m.mnt, m.root)
    os.mkdir(m.mnt / "d")
    os.rename(m.mnt / "d", m.mnt / "e")
    assert os.path.isdir(m.root / "e")


def test_allow_other_default_permissions_idmap(mounter: Mounter) -> None:
    m = mounter(["-o", "allow_other,default_permissions,idmap=user"])
    roundtrip(m.mnt, m.root)
    assert os.stat(m.mnt / "rt.bin").st_uid == os.geteuid()
    assert "allow_other" in Path("/proc/self/mounts").read_text().split(str(m.mnt), 1)[1] \
        .splitlines()[0]


def test_debug_tells_the_connection_story(mounter: Mounter) -> None:
    """-d shows what `ssh -v` would: config applied, address, algorithms, the host key and
    how it was verified, each key offered and the server's answer, the SFTP extensions."""
    m = mounter(["-d"], foreground=True)
    (m.mnt / "f").write_bytes(b"x")
    m.unmount()
    log = m.stderr_text()
    for expected in (f"reading configuration data {m.sshd.ssh_config}",
                     "applying options for testhost",
                     "Connecting to 127.0.0.1", "kex: algorithm:", "kex: Cipher:",
                     "Server host key: ssh-ed25519 SHA256:", "matching host key found in",
                     "Authentications that can continue: publickey",
                     "Offering public key:", 'Authenticated to 127.0.0.1 using "publickey"',
                     "Sent no-more-sessions@openssh.com", "SFTP version 3, extensions",
                     "posix-rename@openssh.com", "create('/f'", "OPEN "):
        assert expected in log, f"-d output lacks {expected!r}"
    assert (m.root / "f").read_bytes() == b"x"
