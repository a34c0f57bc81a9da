"""How much of what the server says we are willing to hold, and which names we accept.

The server decides how long a listing is, what names it holds and how long a symlink
target is. A broken or hostile one could send a READDIR stream that never ends, a name no
directory can hold ("a/b", "", "..") that makes the kernel refuse the whole listing, or
targets of megabytes. Here each listing is checked as it arrives: impossible names are
dropped (with one warning per directory, now and then), and a listing past the limits
fails with EOVERFLOW instead of eating the memory of the machine.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterable

from cachetools import TTLCache

from pysshfs.sanitize import sanitize
from pysshfs.sftp.codec import Attrs

log = logging.getLogger(__name__)

NAME_MAX = 255  # bytes in one file name (Linux, and what statvfs@openssh.com reports)
PATH_MAX = 4096  # bytes in a path with its NUL: a symlink target has at most 4095
# A listing may hold this many entries: a real directory of 1,000,000 files lists, with
# room to spare. An entry costs ~110 bytes of memory while the listing arrives (names
# alone) to ~380 (all attributes; tracemalloc, CPython 3.11), so a server that never says
# EOF costs a bounded amount before the listing fails: measured, the whole daemon peaked
# at 168 MB (names alone, badsftp endless-readdir) and 447 MB (every attribute set).
MAX_LISTING_ENTRIES = 1 << 20
# ... and this many bytes of names: an average of 128 bytes at 1,000,000 entries (real
# names are 10-60), so a stream of 255-byte names stops at ~500,000 entries.
MAX_LISTING_NAME_BYTES = 128 << 20
# EOVERFLOW ("Value too large for defined data type"), not EIO: the listing is too big
# to represent, which is what the user must hear ("ls: reading directory 'x': Value too
# large ..."); EIO would say the server or the link broke, E2BIG speaks of arguments.
LISTING_TOO_BIG = errno.EOVERFLOW

_WARN_EVERY = 600.0  # seconds between two warnings about the same directory
_warned: TTLCache[tuple[str, str, bytes], bool] = TTLCache(maxsize=4096, ttl=_WARN_EVERY)
_warned_lock = threading.Lock()


def bad_name_reason(name: bytes) -> str | None:
    """Why `name` cannot be an entry of a POSIX directory; None when it can.

    "." and ".." are not asked about: every server sends them, and they are skipped
    silently."""
    if not name:
        return "empty"
    if b"/" in name:
        return "contains '/'"
    if b"\0" in name:
        return "contains NUL"
    if len(name) > NAME_MAX:
        return f"longer than {NAME_MAX} bytes"
    return None


def warn_once(who: str, directory: bytes, message: str, *args: object) -> None:
    """log.warning about `directory`, at most once every _WARN_EVERY seconds per directory
    (a listing read every second must not write a line every second)."""
    key = (message, who, directory)
    with _warned_lock:
        if key in _warned:
            return
        _warned[key] = True
    log.warning(message, *args)


def check_link_target(target: bytes, path: str) -> bytes:
    """`target` if the kernel can take it, else ENAMETOOLONG: readlink(2) answers at most
    PATH_MAX - 1 bytes, and FUSE refuses a longer answer outright ("writing device:
    Invalid argument"), so holding or caching one would be memory spent for nothing.
    A NUL byte cannot be in a target: the kernel would see only what comes before it,
    another target than the one the symlink policy judged (EIO)."""
    if len(target) >= PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, f"symlink target of {len(target)} bytes "
                      f"(at most {PATH_MAX - 1})", path)
    if b"\0" in target:
        raise OSError(errno.EIO, "symlink target with a NUL byte", path)
    return target


class ListingGuard:
    """Checks one directory listing batch by batch (see the module docstring)."""

    __slots__ = ("who", "path", "entries", "name_bytes", "skipped", "examples")

    def __init__(self, path: bytes, who: str = "sftp") -> None:
        self.who = who
        self.path = path
        self.entries = 0  # every name the server sent but "." and "..", kept or not
        self.name_bytes = 0
        self.skipped = 0
        self.examples: list[tuple[bytes, str]] = []  # the first few names skipped

    def accept(self, batch: Iterable[tuple[bytes, bytes, Attrs]]) -> list[tuple[bytes, Attrs]]:
        """The entries of one READDIR reply worth keeping: (name, attrs)."""
        kept: list[tuple[bytes, Attrs]] = []
        keep = kept.append
        entries = name_bytes = 0
        for name, _longname, attrs in batch:
            size = len(name)
            # bad_name_reason's test, inline (this runs once per entry of every listing)
            if 0 < size <= NAME_MAX and b"/" not in name and b"\0" not in name:
                if name == b"." or name == b"..":
                    continue
                entries += 1
                name_bytes += size
                keep((name, attrs))
                continue
            entries += 1
            name_bytes += size
            reason = bad_name_reason(name) or "not a name"
            self.skipped += 1
            if len(self.examples) < 5:
                self.examples.append((name[:64], reason))
        self.entries += entries
        self.name_bytes += name_bytes
        if self.entries > MAX_LISTING_ENTRIES or self.name_bytes > MAX_LISTING_NAME_BYTES:
            self._too_big()
        return kept

    def _too_big(self) -> None:
        shown = sanitize(self.path)
        warn_once(self.who, self.path,
                  "%s: listing of %s stopped: the server sent more than %d entries or %d "
                  "MiB of names (a directory that large, or a server that never ends it)",
                  self.who, shown, MAX_LISTING_ENTRIES, MAX_LISTING_NAME_BYTES >> 20)
        raise OSError(LISTING_TOO_BIG, f"listing stopped after {self.entries} entries: "
                      "more than pysshfs holds for one directory", shown)

    def done(self) -> None:
        """The listing is complete: say which names were left out, if any."""
        if not self.skipped:
            return
        shown = ", ".join(f"'{sanitize(name)}' ({reason})" for name, reason in self.examples)
        more = self.skipped - len(self.examples)
        warn_once(self.who, self.path,
                  "%s: %s: skipped %d name(s) no directory can hold: %s%s", self.who,
                  sanitize(self.path), self.skipped, shown,
                  f" and {more} more" if more > 0 else "")
