"""Symlink containment and transformation: what the kernel is told a link points at."""

from __future__ import annotations

import errno

import pytest

from pysshfs.symlinks import SymlinkPolicy

ROOT = b"/srv/data"


def contained(transform: bool = False) -> SymlinkPolicy:
    return SymlinkPolicy(ROOT, transform=transform, contain=True)


@pytest.mark.parametrize(
    "link, target, shown",
    [
        ("/a", b"b", b"b"),
        ("/d/a", b"../b", b"../b"),
        ("/d/e/a", b"../../b/c", b"../../b/c"),
        ("/d/a", b"./x/./y", b"./x/./y"),
        ("/a", b"/srv/data/x/y", b"x/y"),  # absolute into the mounted dir: made relative
        ("/d/e/a", b"/srv/data/x", b"../../x"),
        ("/d/a", b"/srv/data", b".."),
    ],
)
def test_contained_links_shown(link: str, target: bytes, shown: bytes) -> None:
    assert contained().present(link, target) == shown


@pytest.mark.parametrize(
    "link, target",
    [
        ("/a", b"/etc/passwd"),
        ("/a", b"/srv/database"),  # shares a prefix with the root, is outside it
        ("/a", b".."),
        ("/d/a", b"../../x"),
        ("/d/a", b"../../../../../../etc/shadow"),
        ("/d/a", b"sub/../../x"),  # ".." after a name: sub may be a link
        ("/a", b"x/.."),
    ],
)
def test_escaping_links_refused(link: str, target: bytes) -> None:
    with pytest.raises(OSError) as info:
        contained().present(link, target)
    assert info.value.errno == errno.EPERM


def test_no_contain_shows_everything_as_is() -> None:
    policy = SymlinkPolicy(ROOT, transform=False, contain=False)
    assert policy.present("/a", b"/etc/passwd") == b"/etc/passwd"
    assert policy.present("/a", b"../../x") == b"../../x"
    assert policy.present("/a", b"/srv/data/x") == b"/srv/data/x"


def test_transform_without_containment() -> None:
    policy = SymlinkPolicy(ROOT, transform=True, contain=False)
    assert policy.present("/d/a", b"/srv/data/x") == b"../x"
    assert policy.present("/d/a", b"/etc/passwd") == b"/etc/passwd"


def test_root_mount() -> None:
    policy = SymlinkPolicy(b"/", transform=False, contain=True)
    assert policy.present("/usr/bin/py", b"/usr/bin/python3") == b"python3"
    assert policy.present("/a", b"/") == b"."
