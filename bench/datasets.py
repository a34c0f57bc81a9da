"""The data the workloads run on, built once per run in the served directory (server side).

- `big.bin`: random bytes (incompressible), for sequential and random reads.
- `tree/`: a copy of this Python's standard library (site-packages excluded): a real tree of
  small files, with `__pycache__` directories, for find / ls -lR.
- `tree.tar`: that tree as a tar, extracted onto the mount (read from the local disk).
- `repo/`: that tree committed to a git repository, for git status.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# The static libpython (45 MB) is the only big file in the stdlib; the tree is about small files.
MAX_TREE_FILE = 4 * MiB


@dataclass
class DataSet:
    """Where everything lives on the server side (a local path on this machine)."""

    base: Path  # the directory that gets mounted
    big_size: int
    tree_files: int = 0
    tree_bytes: int = 0
    small_files: int = 0
    cp_files: int = 0
    bigdir_entries: int = 0
    probe_dirs: int = 0

    @property
    def big(self) -> Path:
        return self.base / "big.bin"

    @property
    def tree(self) -> Path:
        return self.base / "tree"

    @property
    def tar(self) -> Path:
        return self.base / "tree.tar"

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def small(self) -> Path:
        """A few hundred small files (tar x / cp -r workloads at high RTT)."""
        return self.base / "small"

    @property
    def small_tar(self) -> Path:
        return self.base / "small.tar"

    @property
    def cpsrc(self) -> Path:
        return self.base / "cpsrc"

    @property
    def bigdir(self) -> Path:
        """One directory of many empty files (ls -l of a huge directory)."""
        return self.base / "bigdir"

    @property
    def probes(self) -> Path:
        """probes/dNNN/f: one file per directory, for stat latency probes."""
        return self.base / "probes"

    @property
    def index_copy(self) -> Path:
        """repo/.git/index as committed on the server: restored before each cold run."""
        return self.base / "repo-index.pristine"

    @property
    def scratch(self) -> Path:
        """Where write workloads put their output; emptied between rounds."""
        return self.base / "scratch"


def git_env() -> dict[str, str]:
    """git without the user's config, with an identity, trusting repos of any owner."""
    env = dict(os.environ)
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*",
        "LC_ALL": "C",
    })
    return env


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def copy_tree(src: Path, dst: Path, max_files: int | None) -> tuple[int, int]:
    """Copy regular files and symlinks of `src` in sorted walk order; (files, bytes)."""
    files = nbytes = 0
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = sorted(d for d in dirnames if not (rel == Path(".") and
                                                         d == "site-packages"))
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if max_files is not None and files >= max_files:
                return files, nbytes
            s = Path(dirpath) / name
            if s.is_symlink():
                os.symlink(os.readlink(s), dst / rel / name)
            elif s.is_file() and s.stat().st_size <= MAX_TREE_FILE:
                shutil.copy2(s, dst / rel / name)
                nbytes += s.stat().st_size
            else:
                continue
            files += 1
    return files, nbytes


def write_random(path: Path, size: int) -> None:
    chunk = 4 * MiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def build(base: Path, big_size: int, tree_max_files: int | None, *, small_files: int = 300,
          cp_files: int = 200, bigdir_entries: int = 30000, probe_dirs: int = 200) -> DataSet:
    """Create every data set under `base`; the slow part of a run, done once."""
    ds = DataSet(base=base, big_size=big_size)
    base.mkdir(parents=True, exist_ok=True)
    ds.scratch.mkdir(exist_ok=True)
    log.info("data: %d MiB of random bytes", big_size // MiB)
    write_random(ds.big, big_size)
    log.info("data: copying the standard library from %s", stdlib_dir())
    ds.tree_files, ds.tree_bytes = copy_tree(stdlib_dir(), ds.tree, tree_max_files)
    log.info("data: tree of %d files, %.1f MiB", ds.tree_files, ds.tree_bytes / MiB)
    subprocess.run(["tar", "-cf", str(ds.tar), "-C", str(base), "tree"], check=True,
                   timeout=600)
    shutil.copytree(ds.tree, ds.repo, symlinks=True)
    env = git_env()
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "benchmark tree"]):
        subprocess.run(["git", "-C", str(ds.repo), *args], check=True, env=env, timeout=600,
                       stdin=subprocess.DEVNULL)
    log.info("data: git repo of the tree committed")
    shutil.copy2(ds.repo / ".git" / "index", ds.index_copy)
    ds.small_files, _ = copy_tree(stdlib_dir(), ds.small, small_files)
    subprocess.run(["tar", "-cf", str(ds.small_tar), "-C", str(base), "small"], check=True,
                   timeout=600)
    ds.cp_files, _ = copy_tree(stdlib_dir(), ds.cpsrc, cp_files)
    ds.bigdir.mkdir()
    for i in range(bigdir_entries):
        (ds.bigdir / f"entry-{i:06d}").touch()
    ds.bigdir_entries = bigdir_entries
    for i in range(probe_dirs):
        (ds.probes / f"d{i:04d}").mkdir(parents=True)
        (ds.probes / f"d{i:04d}" / "f").write_bytes(b"x")
    ds.probe_dirs = probe_dirs
    log.info("data: %d small files, %d to copy, a %d-entry directory, %d probe dirs",
             ds.small_files, ds.cp_files, bigdir_entries, probe_dirs)
    os.sync()
    return ds
