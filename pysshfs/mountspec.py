"""What a mount is asked to be: `MountOptions` (the typed `-o` values) and `MountSpec`.

Both are plain data, built once by `pysshfs.cli` from argv and read by everyone else by
attribute (`spec.opts.cache_timeout`), so a misspelt option name is a type error, not a
silent default. The option table in `pysshfs.options` stays the one place for names,
defaults and help: every field's default below is taken from the table row whose `dest` it
is (a unit test checks the fields and the table agree). The ssh_config keywords given with
`-o` (group "ssh") are free-form by nature and travel in `MountSpec.ssh.options`.

This module sits below both `cli` and `daemon`, so neither needs the other's import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pysshfs import options
from pysshfs.ssh.request import ConnectRequest

_DEFAULTS = options.defaults()


def _default(key: str) -> Any:
    """The option table's default for the destination `key` (KeyError if it has none)."""
    return _DEFAULTS[key]


@dataclass(frozen=True)
class MountOptions:
    """The `-o` options other than ssh_config keywords, typed; field = the row's `key`.

    Fields whose default is None mean "not given": the reader derives a value (e.g.
    cache_stat_timeout falls back to cache_timeout, fsname to the source).
    """

    # --- general
    reconnect: bool = _default("reconnect")
    io_timeout: float = _default("io_timeout")  # 0 = wait forever
    sftp_server: str | None = _default("sftp_server")
    follow_symlinks: bool = _default("follow_symlinks")
    transform_symlinks: bool = _default("transform_symlinks")
    no_contain_symlinks: bool = _default("no_contain_symlinks")  # also set by contain_symlinks
    idmap: Literal["none", "user", "file", "names"] = _default("idmap")
    uidfile: str | None = _default("uidfile")
    gidfile: str | None = _default("gidfile")
    nomap: Literal["ignore", "error"] = _default("nomap")
    uid: int | None = _default("uid")
    gid: int | None = _default("gid")
    umask: int | None = _default("umask")
    password_stdin: bool = _default("password_stdin")
    debug: bool = _default("debug")  # -d, --debug or -o sshfs_debug
    max_conns: int = _default("max_conns")  # sshfs compatibility, no effect
    workaround: str | None = _default("workaround")  # sshfs compatibility, no effect
    # --- cache
    dir_cache: bool = _default("dir_cache")
    cache: bool = _default("cache")
    readdir_ahead: bool = _default("readdir_ahead")
    open_ahead: bool = _default("open_ahead")
    cache_timeout: float = _default("cache_timeout")  # also set by dcache_timeout
    cache_stat_timeout: float | None = _default("cache_stat_timeout")
    cache_dir_timeout: float | None = _default("cache_dir_timeout")
    cache_link_timeout: float | None = _default("cache_link_timeout")
    cache_max_size: int = _default("cache_max_size")
    # --- fuse
    ro: bool = _default("ro")
    allow_other: bool = _default("allow_other")
    allow_root: bool = _default("allow_root")
    default_permissions: bool = _default("default_permissions")
    max_read: int | None = _default("max_read")
    fsname: str | None = _default("fsname")
    subtype: str | None = _default("subtype")
    entry_timeout: float | None = _default("entry_timeout")
    attr_timeout: float | None = _default("attr_timeout")
    negative_timeout: float | None = _default("negative_timeout")
    kernel_cache: bool = _default("kernel_cache")
    auto_cache: bool = _default("auto_cache")
    direct_io: bool = _default("direct_io")
    # mount(8) flags given (options.KERNEL_MOUNT_FLAGS: noexec, sync, noatime...), in the
    # order given, each pair's last word kept: handed to libfuse as they are.
    mount_flags: tuple[str, ...] = ()


@dataclass
class MountSpec:
    """Everything a mount needs, parsed and typed, nothing connected yet."""

    host: str
    remote_path: str  # "" = the login directory
    mountpoint: str
    source: str  # as typed, for fsname and messages
    user: str | None = None
    foreground: bool = False
    debug: bool = False
    single_thread: bool = False
    opts: MountOptions = field(default_factory=MountOptions)
    ssh: ConnectRequest = field(default_factory=lambda: ConnectRequest(host=""))
