"""Command-line and option parsing: pure logic, no server."""

from __future__ import annotations

import errno

import pytest

from pysshfs import options
from pysshfs.cli import HelpRequested, VersionRequested, parse_args, parse_source
from pysshfs.errors import MountError
from pysshfs.mountspec import MountOptions


@pytest.mark.parametrize(
    "text, expected",
    [
        ("host:", (None, "host", "")),
        ("host:/srv/data", (None, "host", "/srv/data")),
        ("alice@host:rel/dir", ("alice", "host", "rel/dir")),
        ("alice@[::1]:/x", ("alice", "::1", "/x")),
        ("[fe80::1%eth0]:", (None, "fe80::1%eth0", "")),
        ("a332139d39b89a241400013700e665a3/fairydirtenvd@localhost:/",
         ("a332139d39b89a241400013700e665a3/fairydirtenvd", "localhost", "/")),
        ("me@corp.com@host:/d:with:colons", ("me@corp.com", "host", "/d:with:colons")),
        ("pysshfs#alice@host:/srv", ("alice", "host", "/srv")),
    ],
)
def test_parse_source(text: str, expected: tuple) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize("text", ["alice@host", "host", "@host:/x", ":/x", "[::1"])
def test_parse_source_rejects(text: str) -> None:
    with pytest.raises(MountError) as info:
        parse_source(text)
    assert info.value.errno == errno.EINVAL


def test_user_at_host_without_colon_hints_at_fix() -> None:
    with pytest.raises(MountError) as info:
        parse_source("alice@host")
    assert "alice@host:" in str(info.value)


def test_options_anywhere_and_repeated() -> None:
    spec = parse_args(["-o", "ro", "h:/d", "-p", "2222", "/mnt", "-oIdentityFile=/k1",
                       "-o", "IdentityFile=/k2,uid=1000,reconnect=no", "-f"])
    assert spec.host == "h" and spec.remote_path == "/d" and spec.mountpoint == "/mnt"
    assert spec.opts.ro is True
    assert spec.opts.uid == 1000
    assert spec.opts.reconnect is False
    assert spec.ssh.port == 2222
    assert spec.ssh.options["IdentityFile"] == ["/k1", "/k2"]
    assert spec.foreground


def test_port_option_and_ssh_keywords_case_insensitive() -> None:
    spec = parse_args(["h:", "/m", "-o", "port=2200,stricthostkeychecking=no,User=bob"])
    assert spec.ssh.port == 2200
    assert spec.ssh.options["StrictHostKeyChecking"] == "no"
    assert spec.ssh.options["User"] == "bob"
    assert spec.ssh.user is None  # -o User is applied by the ssh layer, over the config


def test_first_value_wins_for_ssh_options() -> None:
    spec = parse_args(["h:", "/m", "-o", "ConnectTimeout=5", "-o", "ConnectTimeout=9"])
    assert spec.ssh.options["ConnectTimeout"] == "5"


def test_debug_implies_foreground() -> None:
    for flag in (["-d"], ["--debug"], ["-o", "sshfs_debug"]):
        spec = parse_args(["h:", "/m", *flag])
        assert spec.debug and spec.foreground


def test_compression_and_single_thread() -> None:
    spec = parse_args(["-C", "-s", "h:", "/m"])
    assert spec.ssh.options["Compression"] == "yes"
    assert spec.single_thread


@pytest.mark.parametrize(
    "generic",
    ["rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto", "user",
     "users", "_netdev", "nofail", "defaults", "relatime", "x-systemd.automount",
     "x-systemd.mount-timeout=30", "comment=hello"],
)
def test_generic_mount_options_accepted(generic: str) -> None:
    parse_args(["h:", "/m", "-o", generic])


def test_unknown_option_names_it() -> None:
    with pytest.raises(MountError) as info:
        parse_args(["h:", "/m", "-o", "frobnicate=3"])
    assert "frobnicate" in str(info.value)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["h:", "/m", "-o", "uid=abc"], "whole number"),
        (["h:", "/m", "-o", "idmap=weird"], "one of"),
        (["h:", "/m", "-o", "reconnect=maybe"], "yes or no"),
        (["h:", "/m", "-o", "umask=9"], "octal"),
        (["h:", "/m", "-o", "IdentityFile"], "needs a value"),
        (["h:", "/m", "-p"], "needs a value"),
        (["h:", "/m", "-p", "x"], "not a number"),
        (["h:"], "missing the mountpoint"),
        ([], "missing"),
        (["h:", "/m", "extra"], "too many"),
        (["h:", "/m", "--bogus"], "--bogus"),
    ],
)
def test_bad_values_are_one_clear_error(args: list[str], fragment: str) -> None:
    with pytest.raises(MountError) as info:
        parse_args(args)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_escaped_comma_stays_in_value() -> None:
    spec = parse_args(["h:", "/m", "-o", r"Ciphers=aes128-ctr\,aes256-ctr,ro"])
    assert spec.ssh.options["Ciphers"] == "aes128-ctr,aes256-ctr"
    assert spec.opts.ro


def test_help_and_version() -> None:
    with pytest.raises(HelpRequested):
        parse_args(["h:", "-h"])
    with pytest.raises(VersionRequested):
        parse_args(["-V"])


def test_help_lists_every_option() -> None:
    text = options.help_text()
    for opt in options.OPTIONS:
        assert f"-o {opt.name}" in text


def test_cache_aliases_share_destination() -> None:
    spec = parse_args(["h:", "/m", "-o", "dcache_timeout=5,dcache_max_size=77"])
    assert spec.opts.cache_timeout == 5.0
    assert spec.opts.cache_max_size == 77
    assert MountOptions().cache_timeout == 20.0


def test_mount8_flags_are_kept_for_libfuse_last_word_wins() -> None:
    spec = parse_args(["h:", "/m", "-o", "rw,noexec,nosuid,nodev,user,exec,noexec,noatime,sync"])
    assert spec.opts.mount_flags == ("noexec", "noatime", "sync")
    assert parse_args(["h:", "/m"]).opts.mount_flags == ()


def test_suid_and_dev_are_accepted_but_never_applied() -> None:
    spec = parse_args(["h:", "/m", "-o", "rw,dev,suid"])  # what mount.fuse3 adds for root
    assert spec.opts.mount_flags == ()


def test_contain_symlinks_undoes_no_contain_symlinks() -> None:
    assert parse_args(["h:", "/m"]).opts.no_contain_symlinks is False
    spec = parse_args(["h:", "/m", "-o", "no_contain_symlinks"])
    assert spec.opts.no_contain_symlinks is True
    spec = parse_args(["h:", "/m", "-o", "no_contain_symlinks,contain_symlinks"])
    assert spec.opts.no_contain_symlinks is False


def test_nomap_defaults_to_error_as_in_sshfs() -> None:
    assert parse_args(["h:", "/m", "-o", "idmap=file"]).opts.nomap == "error"


@pytest.mark.parametrize("name", [o.name for o in options.SSHFS_ONLY if o.accepted])
def test_harmless_sshfs_options_are_accepted(name: str) -> None:
    parse_args(["h:", "/m", "-o", f"{name}=1" if "interval" in name else name])


@pytest.mark.parametrize("only", [o for o in options.SSHFS_ONLY if not o.accepted],
                         ids=lambda o: o.name)
def test_sshfs_options_pysshfs_lacks_say_what_to_use(only: options.SshfsOnly) -> None:
    with pytest.raises(MountError) as info:
        parse_args(["h:", "/m", "-o", f"{only.name}=x"])
    assert info.value.errno == errno.EINVAL
    assert str(info.value) == (f"option '{only.name}': an sshfs option pysshfs does not have "
                               f"({only.note})")
