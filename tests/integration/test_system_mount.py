"""pysshfs as the system runs it: mount -t fuse.pysshfs, fstab lines (mount -T), the legacy
`pysshfs#` source, the units systemd makes from fstab, each way of unmounting, and root
mounting for a user. mount(8) runs mount.fuse3, which runs the `pysshfs` it finds on the
standard PATH: the `on_mount_path` fixture puts a copy of this checkout there."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.mount import Mounter, is_mounted, mount_entry, pid_alive, wait_for
from tests.support.sshd import Sshd
from tests.support.system import LocalUser, direct_opts, tracked, user_opts

UNMOUNTS = ["umount", "umount -l", "fusermount -u", "fusermount3 -u"]


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def mount_options(mnt: Path) -> tuple[set[str], set[str]]:
    """(per-mount flags, file system options) of `mnt` from /proc/self/mountinfo."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if left.split()[4] == str(mnt):
            flags, super_opts = left.split()[5], right.split()[2]
    return set(flags.split(",")), set(super_opts.split(","))


def mounted_by_mount8(mounter: Mounter, root: Path, mnt: Path, args: list[str]) -> list[int]:
    """Run mount(8) with `args`; check it mounted `mnt` with pysshfs; the daemon's pids."""
    m = tracked(mounter, root, mnt, args)
    r = run(["mount", *args])
    assert r.returncode == 0, f"mount {' '.join(args)}: exit {r.returncode}: {r.stderr}"
    assert r.stderr == "", r.stderr
    entry = mount_entry(mnt)
    assert entry is not None, f"mount exited 0 but {mnt} is not mounted"
    assert entry[1] == "fuse.pysshfs"
    m.pids = m.find_pids()
    assert len(m.pids) == 1, f"expected one pysshfs daemon, found {m.pids}"
    return m.pids


def roundtrip(mnt: Path, root: Path) -> None:
    (root / "from-server").write_text("server")
    assert (mnt / "from-server").read_text() == "server"
    data = os.urandom(300_000)
    (mnt / "from-client").write_bytes(data)
    assert (root / "from-client").read_bytes() == data


@pytest.fixture
def opts(sshd: Sshd) -> str:
    return direct_opts(sshd, sshd.client_key, sshd.known_hosts)


@pytest.mark.parametrize("how", UNMOUNTS)
def test_mount_t_and_every_way_of_unmounting(mounter: Mounter, opts: str, on_mount_path: Path,
                                             how: str) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    source = f"127.0.0.1:{root}"
    pids = mounted_by_mount8(mounter, root, mnt, ["-t", "fuse.pysshfs", source, str(mnt),
                                                  "-o", opts])
    assert mount_entry(mnt)[2] == source  # type: ignore[index]
    roundtrip(mnt, root)
    data = os.urandom(2 * 1024 * 1024)
    with open(mnt / "last", "wb") as f:
        f.write(data)
    r = run([*how.split(), str(mnt)])
    assert r.returncode == 0, f"{how}: {r.stderr}"
    assert wait_for(lambda: not is_mounted(mnt), 15), f"still mounted after {how}"
    assert wait_for(lambda: not pid_alive(pids[0]), 15), f"pysshfs {pids} left after {how}"
    assert (root / "last").read_bytes() == data


def test_fstab_line_mounted_with_mount_T(mounter: Mounter, opts: str, on_mount_path: Path,
                                         tmp_path: Path) -> None:
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# a temporary fstab\n"
        f"127.0.0.1:{root} {mnt} fuse.pysshfs _netdev,{opts},allow_other,"
        "default_permissions,noauto,"
        "x-systemd.automount,x-systemd.idle-timeout=10min,comment=pysshfs-test 0 0\n")
    mounted_by_mount8(mounter, root, mnt, ["-T", str(fstab), str(mnt)])
    assert "allow_other" in mount_options(mnt)[1]
    roundtrip(mnt, root)
    r = run(["umount", str(mnt)])
    assert r.returncode == 0, r.stderr
    assert mounter.cleanup() == []


def test_legacy_hash_source_through_mount_fuse(mounter: Mounter, opts: str,
                                               on_mount_path: Path) -> None:
    """fstab's old `fuse` type: mount.fuse3 runs the program named before '#'."""
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    mounted_by_mount8(mounter, root, mnt, ["-t", "fuse", f"pysshfs#127.0.0.1:{root}",
                                           str(mnt), "-o", opts])
    roundtrip(mnt, root)


def test_legacy_hash_source_given_to_pysshfs(mounter: Mounter) -> None:
    root = mounter.new_root()
    m = mounter(source=f"pysshfs#testhost:{root}", root=root)
    roundtrip(m.mnt, m.root)


def test_mount8_options_reach_the_mount(mounter: Mounter, opts: str,
                                        on_mount_path: Path) -> None:
    """ro and noexec from mount(8); the dev,suid that mount.fuse3 adds for root do not
    make a remote file a set-uid program: the mount stays nosuid,nodev."""
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    (root / "script").write_text("#!/bin/sh\necho ran\n")
    os.chmod(root / "script", 0o755)
    mounted_by_mount8(mounter, root, mnt, ["-t", "fuse.pysshfs", f"127.0.0.1:{root}",
                                           str(mnt), "-o", f"ro,noexec,{opts}"])
    flags, _ = mount_options(mnt)
    assert {"ro", "noexec", "nosuid", "nodev"} <= flags, flags
    with pytest.raises(OSError) as info:
        (mnt / "new").write_text("x")
    assert info.value.errno == errno.EROFS
    with pytest.raises(PermissionError):
        subprocess.run([str(mnt / "script")], capture_output=True, check=False)
    assert sorted(os.listdir(root)) == ["script"]


def test_systemd_units_from_fstab_and_the_mount_they_run(mounter: Mounter, opts: str,
                                                         on_mount_path: Path,
                                                         tmp_path: Path) -> None:
    """systemd-fstab-generator turns the fstab line into an .automount (noauto,
    x-systemd.automount) and a remote .mount (_netdev); the .mount runs mount(8)."""
    generator = next((p for p in (Path("/lib/systemd/system-generators/systemd-fstab-generator"),
                                  Path("/usr/lib/systemd/system-generators/"
                                       "systemd-fstab-generator")) if p.exists()), None)
    if generator is None:
        pytest.skip("systemd-fstab-generator is not installed (apt-get install systemd)")
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"127.0.0.1:{root} {mnt} fuse.pysshfs "
                     f"noauto,x-systemd.automount,_netdev,{opts} 0 0\n")
    out = tmp_path / "units"
    dirs = [out / "normal", out / "early", out / "late"]
    for d in dirs:
        d.mkdir(parents=True)
    r = subprocess.run([str(generator), *map(str, dirs)], capture_output=True, text=True,
                       env={**os.environ, "SYSTEMD_FSTAB": str(fstab),
                            "SYSTEMD_LOG_LEVEL": "err"}, timeout=30)
    assert r.returncode == 0, r.stderr
    name = run(["systemd-escape", "--path", str(mnt)]).stdout.strip()
    assert (dirs[0] / "remote-fs.target.requires" / f"{name}.automount").exists(), \
        sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    unit = dict(line.split("=", 1) for line in
                (dirs[0] / f"{name}.mount").read_text().splitlines() if "=" in line)
    assert unit["Type"] == "fuse.pysshfs" and unit["Where"] == str(mnt)
    assert "remote-fs.target" in unit["Before"]
    mounted_by_mount8(mounter, root, mnt, [unit["What"], unit["Where"], "-t", unit["Type"],
                                           "-o", unit["Options"]])
    roundtrip(mnt, root)


def test_root_mounts_for_a_user(mounter: Mounter, sshd: Sshd, on_mount_path: Path,
                                local_accounts: list[LocalUser]) -> None:
    """fstab/root mount for alice: her key, her uid/gid, allow_other so she gets in,
    default_permissions so the kernel checks modes: bob may read, not write."""
    alice, bob = local_accounts
    root = mounter.new_root()
    (root / "shared").write_text("for everyone")
    os.chmod(root / "shared", 0o644)
    mnt = alice.mountpoint()
    options = f"{user_opts(alice, sshd)},uid={alice.uid},gid={alice.gid}," \
              "allow_other,default_permissions"
    mounted_by_mount8(mounter, root, mnt, ["-t", "fuse.pysshfs", f"127.0.0.1:{root}",
                                           str(mnt), "-o", options])
    st = os.stat(mnt / "shared")
    assert (st.st_uid, st.st_gid) == (alice.uid, alice.gid)
    write = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    r = alice.python(write, str(mnt / "by-alice"), "alice wrote this")
    assert r.returncode == 0, r.stderr
    assert (root / "by-alice").read_text() == "alice wrote this"
    r = bob.python("import sys; print(open(sys.argv[1]).read())", str(mnt / "shared"))
    assert r.returncode == 0 and r.stdout.strip() == "for everyone", r.stderr
    r = bob.python(write, str(mnt / "by-bob"), "bob")
    assert r.returncode != 0 and "PermissionError" in r.stderr, (r.stdout, r.stderr)
    assert not (root / "by-bob").exists()
