"""What users do on a mount: parallel I/O, `cp -a`, editors' save pattern, git.

The result is always compared with the server side (sha256, `diff -r`, `git fsck`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.mount import Mount

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}: {r.stderr}{r.stdout}"
    return r


@pytest.mark.slow
def test_concurrent_readers_and_writers(mount: Mount) -> None:
    size = 4 * 1024 * 1024 + 123
    sources = {}
    for i in range(6):
        data = os.urandom(size)
        (mount.root / f"src{i}").write_bytes(data)
        sources[f"src{i}"] = hashlib.sha256(data).hexdigest()
    start = threading.Barrier(12)

    def writer(i: int) -> tuple[str, str]:
        data = os.urandom(size + i)
        start.wait(30)
        with open(mount.mnt / f"dst{i}", "wb") as f:
            for off in range(0, len(data), 100_000):
                f.write(data[off:off + 100_000])
        return f"dst{i}", hashlib.sha256(data).hexdigest()

    def reader(i: int) -> tuple[str, str]:
        start.wait(30)
        h = hashlib.sha256()
        with open(mount.mnt / f"src{i}", "rb") as f:
            while chunk := f.read(65536 + i):
                h.update(chunk)
        return f"src{i}", h.hexdigest()

    with ThreadPoolExecutor(12) as pool:
        writes = [pool.submit(writer, i) for i in range(6)]
        reads = [pool.submit(reader, i) for i in range(6)]
        written = dict(f.result(timeout=240) for f in writes)
        read = dict(f.result(timeout=240) for f in reads)
    assert read == sources
    for name, digest in written.items():
        assert sha_file(mount.root / name) == digest, name


def make_tree(top: Path) -> None:
    """Files of several sizes, nested dirs, a symlink, modes and old mtimes."""
    (top / "a" / "b" / "c").mkdir(parents=True)
    (top / "empty_dir").mkdir()
    (top / "small.txt").write_text("hello\n")
    (top / "empty").write_bytes(b"")
    (top / "a" / "mid.bin").write_bytes(os.urandom(300_000))
    (top / "a" / "b" / "c" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 1))
    (top / "a" / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(top / "a" / "script.sh", 0o755)
    os.chmod(top / "a" / "mid.bin", 0o600)
    os.symlink("a/b/c/big.bin", top / "link")
    for i in range(50):
        (top / "a" / "b" / f"n{i}").write_text(str(i) * i)
    for path in [*top.rglob("*"), top]:
        if not path.is_symlink():
            os.utime(path, (1_400_000_000, 1_500_000_000))


def same_metadata(a: Path, b: Path) -> None:
    for left in [a, *a.rglob("*")]:
        right = b / left.relative_to(a)
        sl, sr = os.lstat(left), os.lstat(right)
        assert stat.S_IFMT(sl.st_mode) == stat.S_IFMT(sr.st_mode), right
        if stat.S_ISLNK(sl.st_mode):
            assert os.readlink(left) == os.readlink(right), right
            continue
        assert stat.S_IMODE(sl.st_mode) == stat.S_IMODE(sr.st_mode), right
        assert int(sl.st_mtime) == int(sr.st_mtime), right


def test_cp_a_into_and_out_of_the_mount(mount: Mount, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    run(["cp", "-a", str(src), str(mount.mnt / "copy")])
    run(["diff", "-r", "--no-dereference", str(src), str(mount.root / "copy")])
    same_metadata(src, mount.root / "copy")
    back = tmp_path / "back"
    run(["cp", "-a", str(mount.mnt / "copy"), str(back)])
    run(["diff", "-r", "--no-dereference", str(src), str(back)])
    same_metadata(src, back)


def test_tar_extract_and_find(mount: Mount, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    archive = tmp_path / "t.tar"
    run(["tar", "-C", str(src), "-cf", str(archive), "."])
    (mount.mnt / "x").mkdir()
    run(["tar", "-C", str(mount.mnt / "x"), "-xf", str(archive)])
    run(["diff", "-r", "--no-dereference", str(src), str(mount.root / "x")])
    found = run(["find", str(mount.mnt / "x"), "-printf", "%P %s %y\n"]).stdout.splitlines()
    expected = run(["find", str(src), "-printf", "%P %s %y\n"]).stdout.splitlines()
    assert sorted(found) == sorted(expected)


def test_editor_save_pattern(mount: Mount) -> None:
    """vim/emacs/most tools: write a temp file, fsync, rename it over the original."""
    (mount.root / "notes.txt").write_text("version 1\n")
    old_ino = os.stat(mount.root / "notes.txt").st_ino
    assert (mount.mnt / "notes.txt").read_text() == "version 1\n"
    reader = open(mount.mnt / "notes.txt")  # someone still has the old version open
    try:
        tmp = mount.mnt / ".notes.txt.swp"
        with open(tmp, "w") as f:
            f.write("version 2\n" * 1000)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, mount.mnt / "notes.txt")
        assert reader.read() == "version 1\n"
    finally:
        reader.close()
    assert (mount.root / "notes.txt").read_text() == "version 2\n" * 1000
    assert os.stat(mount.root / "notes.txt").st_ino != old_ino
    assert stat.S_IMODE(os.stat(mount.root / "notes.txt").st_mode) == 0o640
    assert not os.path.exists(mount.root / ".notes.txt.swp")
    assert (mount.mnt / "notes.txt").read_text() == "version 2\n" * 1000
    # and a backup-then-write editor (rename away, write new)
    os.rename(mount.mnt / "notes.txt", mount.mnt / "notes.txt~")
    (mount.mnt / "notes.txt").write_text("version 3\n")
    assert (mount.root / "notes.txt").read_text() == "version 3\n"
    assert (mount.root / "notes.txt~").read_text() == "version 2\n" * 1000


def test_git_init_add_commit(mount: Mount) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is missing (bootstrap installs it: apt-get install git)", pytrace=False)
    env = {**os.environ, **GIT_ENV}
    repo = mount.mnt / "repo"
    run(["git", "init", "-q", str(repo)], env=env)
    (repo / "README").write_text("hello git\n")
    (repo / "src").mkdir()
    for i in range(30):
        (repo / "src" / f"m{i}.py").write_text(f"x = {i}\n" * (i + 1))
    run(["git", "-C", str(repo), "add", "-A"], env=env)
    run(["git", "-C", str(repo), "commit", "-q", "-m", "first"], env=env)
    (repo / "README").write_text("changed\n")
    assert run(["git", "-C", str(repo), "status", "--porcelain"], env=env).stdout == " M README\n"
    run(["git", "-C", str(repo), "commit", "-q", "-am", "second"], env=env)
    assert run(["git", "-C", str(repo), "status", "--porcelain"], env=env).stdout == ""
    # the repository on the server is complete and consistent
    server = mount.root / "repo"
    run(["git", "-C", str(server), "fsck", "--strict"], env=env)
    log = run(["git", "-C", str(server), "log", "--format=%s"], env=env).stdout.split()
    assert log == ["second", "first"]
    assert run(["git", "-C", str(server), "status", "--porcelain"], env=env).stdout == ""
    assert run(["git", "-C", str(server), "show", "HEAD:README"], env=env).stdout == "changed\n"
