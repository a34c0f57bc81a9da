"""The Debian package: built with packaging/build-deb.sh (dpkg-buildpackage -us -uc -b),
installed with apt-get, used as the system uses it — /usr/bin/pysshfs, mount -t
fuse.pysshfs, an fstab `user` line mounted by a user — then purged again."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pysshfs import __version__
from tests.support.mount import REPO, Mounter, is_mounted, mount_entry, pid_alive, wait_for
from tests.support.sshd import Sshd
from tests.support.system import (
    LocalUser,
    direct_opts,
    file_restored,
    fuse_device_for_users,
    pysshfs_on_default_path,
    tracked,
    user_opts,
)

pytestmark = pytest.mark.slow
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3")
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def run(args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=ENV, **kw)


def installed() -> bool:
    r = run(["dpkg-query", "-W", "-f", "${Status}", "pysshfs"])
    return r.returncode == 0 and "installed" in r.stdout.split()


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root: installs a package")
    missing = [tool for tool in BUILD_TOOLS if shutil.which(tool) is None]
    assert not missing, f"{missing} missing: run bash packaging/bootstrap.sh"
    out = tmp_path_factory.mktemp("deb")
    r = run(["bash", str(REPO / "packaging" / "build-deb.sh"), str(out)], timeout=600)
    assert r.returncode == 0, f"build-deb.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    debs = list(out.glob("pysshfs_*_all.deb"))
    assert [d.name for d in debs] == [f"pysshfs_{__version__}_all.deb"]
    return debs[0]


@pytest.fixture
def package(deb: Path, mounter: Mounter, system_changes: None) -> Iterator[Path]:
    """The package installed for one test; every mount gone and the package purged after."""
    assert not installed(), "a pysshfs package is already installed: dpkg --purge pysshfs"
    assert pysshfs_on_default_path() == [], \
        f"another pysshfs would shadow the package's: {pysshfs_on_default_path()}"
    r = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)])
    try:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        yield Path("/usr/bin/pysshfs")
    finally:
        problems = mounter.cleanup()
        mounter.mounts.clear()
        purge = run(["apt-get", "purge", "-y", "-q", "pysshfs"])
        assert purge.returncode == 0, purge.stderr
        assert not installed()
        assert not os.path.lexists("/usr/bin/pysshfs")
        assert not os.path.exists("/usr/lib/pysshfs"), os.listdir("/usr/lib/pysshfs")
        assert not problems, problems


def test_package_contents(deb: Path) -> None:
    info = run(["dpkg-deb", "-f", str(deb), "Depends", "Architecture"]).stdout
    for dep in ("fuse3", "python3-cachetools", "python3-cryptography", "python3-nacl"):
        assert dep in info, info
    assert "Architecture: all" in info
    files = run(["dpkg-deb", "-c", str(deb)]).stdout
    for path in ("./usr/bin/pysshfs", "./usr/share/man/man1/pysshfs.1.gz",
                 "./usr/share/bash-completion/completions/pysshfs",
                 "./usr/share/doc/pysshfs/examples/mnt-data.mount",
                 "./usr/share/doc/pysshfs/examples/mnt-data.automount",
                 "./usr/lib/pysshfs/pysshfs/cli.py", "./usr/lib/pysshfs/paramiko/__init__.py",
                 "./usr/lib/pysshfs/mfusepy.py"):
        assert f" {path}\n" in files, path
    assert "__pycache__" not in files  # compiled at install time by py3compile


def test_installed_package_mounts(package: Path, mounter: Mounter, sshd: Sshd) -> None:
    r = run([str(package), "-V"])
    assert r.returncode == 0 and f"pysshfs version {__version__}" in r.stdout, r.stderr
    assert "paramiko version" in r.stdout and "libfuse 3" in r.stdout
    assert pysshfs_on_default_path()[0].resolve() == package.resolve()
    completion = run(["bash", "-c", "source /usr/share/bash-completion/completions/pysshfs "
                      "&& complete -p pysshfs"])
    assert "-F _pysshfs pysshfs" in completion.stdout, completion.stderr
    opts = direct_opts(sshd, sshd.client_key, sshd.known_hosts)

    # the command itself
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    m = tracked(mounter, root, mnt, [f"127.0.0.1:{root}", str(mnt)])
    r = run([str(package), f"127.0.0.1:{root}", str(mnt), "-o", opts], timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    m.pids = m.find_pids()
    (mnt / "via-command").write_text("installed")
    assert (root / "via-command").read_text() == "installed"
    assert run(["fusermount3", "-u", str(mnt)]).returncode == 0

    # mount(8) -> mount.fuse3 -> /usr/bin/pysshfs
    root, mnt = mounter.new_root(), mounter.new_mountpoint()
    m = tracked(mounter, root, mnt, [f"127.0.0.1:{root}", str(mnt)])
    r = run(["mount", "-t", "fuse.pysshfs", f"127.0.0.1:{root}", str(mnt), "-o", opts],
            timeout=60)
    assert r.returncode == 0, r.stderr
    assert mount_entry(mnt)[1] == "fuse.pysshfs"  # type: ignore[index]
    m.pids = m.find_pids()
    assert len(m.pids) == 1
    with open(f"/proc/{m.pids[0]}/cmdline", "rb") as f:
        assert b"/usr/bin/pysshfs" in f.read().split(b"\0")
    (root / "from-server").write_text("server")
    assert (mnt / "from-server").read_text() == "server"
    assert run(["umount", str(mnt)]).returncode == 0
    assert wait_for(lambda: not is_mounted(mnt), 15)
    assert wait_for(lambda: not pid_alive(m.pids[0]), 15)


def test_user_mounts_an_fstab_line_with_the_package(package: Path, mounter: Mounter,
                                                    sshd: Sshd,
                                                    local_accounts: list[LocalUser]) -> None:
    alice, _ = local_accounts
    root = mounter.new_root()
    mnt = alice.mountpoint()
    m = tracked(mounter, root, mnt, [f"127.0.0.1:{root}", str(mnt)])
    line = f"127.0.0.1:{root} {mnt} fuse.pysshfs noauto,users,{user_opts(alice, sshd)} 0 0\n"
    with fuse_device_for_users(), file_restored("/etc/fstab") as fstab:
        fstab.write_text(fstab.read_text() + line)
        r = alice.run(["mount", str(mnt)])
        assert r.returncode == 0, r.stderr
        m.pids = m.find_pids()
        r = alice.python("import sys; open(sys.argv[1], 'w').write('alice')", str(mnt / "a"))
        assert r.returncode == 0, r.stderr
        assert (root / "a").read_text() == "alice"
        r = alice.run(["umount", str(mnt)])
        assert r.returncode == 0, r.stderr
    assert wait_for(lambda: not is_mounted(mnt), 15)
    assert wait_for(lambda: not any(pid_alive(p) for p in m.pids), 15)
