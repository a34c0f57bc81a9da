"""How a symlink read from the server is shown through the mount.

A symlink's target is resolved by the *local* kernel. An absolute target or a `../..`
chain planted by a hostile server would therefore lead local programs to local files
outside the mount (say /etc/shadow or ~/.ssh). By default such links cannot be read
(EPERM, as sshfs 3.7.6's contain_symlinks) and absolute links into the mounted
directory are shown relative, so they keep working; `no_contain_symlinks` shows targets
as they are, `transform_symlinks` only rewrites the absolute ones that point inside the
mounted directory (as sshfs does).
"""

from __future__ import annotations

import errno
import logging
import posixpath

log = logging.getLogger(__name__)


class SymlinkPolicy:
    def __init__(self, remote_root: bytes, *, transform: bool, contain: bool) -> None:
        self.root = remote_root.rstrip(b"/") or b"/"
        self.transform = transform
        self.contain = contain
        self._warned: set[str] = set()

    def _inside_root(self, target: bytes) -> bytes | None:
        """The mount path ("/x/y") of an absolute server path, or None if outside the root."""
        norm = posixpath.normpath(target)
        if self.root == b"/":
            return norm
        if norm == self.root:
            return b"/"
        if norm.startswith(self.root + b"/"):
            return norm[len(self.root):]
        return None

    def present(self, link_path: str, target: bytes) -> bytes:
        """The target to give the kernel for the link at mount path `link_path`."""
        link_dir = posixpath.dirname(link_path.encode("utf-8", "surrogateescape")) or b"/"
        if target.startswith(b"/"):
            inside = self._inside_root(target)
            if inside is not None and (self.transform or self.contain):
                return posixpath.relpath(inside, link_dir)
            if self.contain:
                return self._refuse(link_path, target)
            return target
        if self.contain and not _stays_below(link_dir, target):
            return self._refuse(link_path, target)
        return target

    def _refuse(self, link_path: str, target: bytes) -> bytes:
        if link_path not in self._warned:
            self._warned.add(link_path)
            log.warning("symlink %s -> %r leads outside the mount: not followed "
                        "(-o no_contain_symlinks shows it as it is)", link_path, target)
        raise OSError(errno.EPERM, "symlink leads outside the mount")


def _stays_below(start: bytes, relative: bytes) -> bool:
    """Can `relative`, walked from mount directory `start`, only reach the mount?

    Leading ".." climb real directories (FUSE paths hold no symlinks), at most up to the
    mount root. A ".." after a name is refused: the name may be a symlink, and "link/.."
    is the parent of the link's *target*, which a lexical check cannot know.
    """
    depth = len([p for p in start.split(b"/") if p])
    parts = [p for p in relative.split(b"/") if p not in (b"", b".")]
    climbing = True
    for part in parts:
        if part == b"..":
            if not climbing:
                return False
            depth -= 1
            if depth < 0:
                return False
        else:
            climbing = False
    return True
