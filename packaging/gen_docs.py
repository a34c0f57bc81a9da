#!/usr/bin/env python3
"""Write the man page, README.md's two option tables and the bash completion from the one
option table in pysshfs/options.py.

Usage: python packaging/gen_docs.py [--check]

With --check nothing is written; the exit status says whether all are up to date (a test
runs this, so the documentation cannot drift from what `pysshfs -h` says).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pysshfs import __version__, options  # noqa: E402

MANPAGE = HERE / "pysshfs.1"
COMPLETION = HERE / "pysshfs.bash-completion"
README = HERE.parent / "README.md"
TABLES = {  # README marker name -> generator
    "option table": options.markdown_table,
    "sshfs option table": options.sshfs_markdown_table,
}

GENERAL_FLAGS = [
    ("-o opt[=val][,opt...]", "mount options, below"),
    ("-p PORT", "remote port (same as -o port=PORT)"),
    ("-F FILE", "ssh configuration file (only this one is read)"),
    ("-C", "compression (same as -o Compression=yes)"),
    ("-f", "stay in the foreground"),
    ("-d, --debug", "foreground, and log every FUSE call and SFTP request"),
    ("-s", "single-threaded"),
    ("-h, --help", "print help"),
    ("-V, --version", "print versions"),
]


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-").replace("'", "\\(aq")


def _example(*lines: str) -> list[str]:
    """A man page example block: no filling, no hyphenation games."""
    return [".PP", ".nf", ".RS 4", *(_esc(line) for line in lines), ".RE", ".fi"]


def _section(title: str, *paragraphs: str) -> list[str]:
    out = [f".SH {title}"]
    for i, text in enumerate(paragraphs):
        out += ([".PP"] if i else []) + [_esc(text)]
    return out


def render() -> str:
    out = [
        f'.TH PYSSHFS 1 "" "pysshfs {__version__}" "User Commands"',
        ".SH NAME",
        "pysshfs \\- mount a directory of an SSH server with FUSE",
        ".SH SYNOPSIS",
        ".B pysshfs",
        "[\\fIuser\\fP@]\\fIhost\\fP:[\\fIdir\\fP] \\fImountpoint\\fP [\\fIoptions\\fP]",
        ".br",
        ".B mount \\-t fuse.pysshfs",
        "[\\fIuser\\fP@]\\fIhost\\fP:[\\fIdir\\fP] \\fImountpoint\\fP [\\-o \\fIoptions\\fP]",
        ".br",
        ".B fusermount3 \\-u",
        "\\fImountpoint\\fP",
        ".br",
        ".B pysshfs status",
        "[\\fImountpoint\\fP] [\\-\\-json]",
        ".br",
        ".B pysshfs refresh",
        "\\fImountpoint\\fP [\\fIpath\\fP...]",
        ".SH DESCRIPTION",
        "pysshfs mounts a directory of any SSH server, like sshfs: it speaks SFTP over one "
        "SSH connection, reads ~/.ssh/config like ssh, verifies host keys like ssh, caches "
        "attributes and listings, and reconnects after the network drops, with open files "
        "intact. It detaches once the mount works, so its exit status tells the truth.",
        ".PP",
        "A host of the form \\fIhost\\fP: mounts the login directory; a relative \\fIdir\\fP "
        "is relative to it; an IPv6 address goes in brackets. The old fstab form "
        "\\fBpysshfs#\\fP\\fIuser\\fP@\\fIhost\\fP:\\fIdir\\fP is accepted too.",
        ".SH GENERAL OPTIONS",
    ]
    for flag, text in GENERAL_FLAGS:
        out += [".TP", f"\\fB{_esc(flag)}\\fP", _esc(text)]
    for group, title in options.GROUP_TITLES.items():
        out.append(f".SH {_esc(title.upper())}")
        for opt in options.OPTIONS:
            if opt.group != group:
                continue
            default = f" (default: {options.default_text(opt)})" if options.default_text(opt) \
                else ""
            out += [".TP", f"\\fB\\-o {_esc(opt.name)}{_esc(options.value_form(opt))}\\fP",
                    _esc(opt.help + default)]
    out += _section(
        "MOUNT OPTIONS",
        "Applied to the mount: " + ", ".join(sorted(options.KERNEL_MOUNT_FLAGS))
        + " (an fstab 'user' mount is noexec, as mount(8) says). Accepted and ignored: "
        + ", ".join(sorted(options.ACCEPTED_MOUNT_OPTIONS)) + ", x-systemd.*, comment=*. "
        "A pysshfs mount is always nosuid,nodev: a file on the server never becomes a "
        "set-uid program or a device here.",
        "sshfs options pysshfs does not have: "
        + "; ".join(f"{o.name}: {'ignored' if o.accepted else 'refused'}"
                    for o in options.SSHFS_ONLY) + ".",
    )
    out += _section(
        "FSTAB",
        "mount(8) runs mount.fuse3, which runs pysshfs with the fstab options; mount(8) clears "
        "PATH, so pysshfs must be in a standard directory such as /usr/bin. _netdev orders "
        "the mount after the network; noauto,x-systemd.automount mounts it on first access.",
    )
    out += _example(
        "alice@host:/srv /mnt/srv fuse.pysshfs "
        "defaults,_netdev,IdentityFile=/home/alice/.ssh/id_ed25519,allow_other,"
        "default_permissions 0 0",
        "alice@host:/srv /mnt/srv fuse.pysshfs "
        "noauto,x-systemd.automount,_netdev,IdentityFile=/home/alice/.ssh/id_ed25519 0 0",
        "alice@host:/srv /home/bob/srv fuse.pysshfs "
        "noauto,user,IdentityFile=/home/bob/.ssh/id_ed25519 0 0",
    )
    out += _section(
        "NON-ROOT USERS",
        "Any user may mount on a directory they own. With 'user' or 'users' in "
        "fstab, a user mounts an fstab line with mount(8) and unmounts it with umount(8) or "
        "fusermount3 -u. allow_other and allow_root need the line user_allow_other in "
        "/etc/fuse.conf; pysshfs says so before mounting. Root mounting for a user gives "
        "uid=, gid= and that user's IdentityFile=.",
        "allow_other without default_permissions lets every local user read and change "
        "whatever the mounting user may on the server, whatever the files' modes say: "
        "pysshfs mounts so, as sshfs does, and warns once on stderr and in the log. Add "
        "default_permissions to have the kernel check each file's mode and owner first.",
    )
    out += _section(
        "UNTRUSTED SERVERS",
        "A listing past 1,048,576 entries or 128 MiB of names fails with EOVERFLOW and a log "
        "line naming the directory. Names no directory can hold (a/b, empty, a NUL inside, "
        "over 255 bytes) are left out with one warning per directory. Symlink targets over "
        "4095 bytes give ENAMETOOLONG. Control characters in anything the server sends are "
        "shown escaped (\\x1b) on the terminal and in the log. Host and user names given on "
        "the command line are checked as ssh checks them, so %h, %n and %r in ProxyCommand "
        "or Match exec never become shell code.",
    )
    out += _section(
        "ID MAPPING AND SYMLINKS",
        "idmap=user shows the remote user's files as yours; idmap=file maps with uidfile= and "
        "gidfile= (lines name:remote_id); nomap=error (the default, as in sshfs) makes an "
        "unmapped id EPERM, nomap=ignore shows it as it is.",
        "A symlink on the server whose target leads outside the mount (absolute, or climbing "
        "with ..) cannot be read (EPERM): a hostile server cannot lead local programs to "
        "local files. Absolute links into the mounted directory are shown relative. "
        "no_contain_symlinks shows every target as it is; follow_symlinks shows what links "
        "point to, as the server sees it.",
    )
    out += _section(
        "CACHES AND CONSISTENCY",
        "Attributes, directory listings, symlink targets and missing names are cached for "
        "cache_timeout (20 s), half of it in the kernel (entry_timeout, attr_timeout, "
        "negative_timeout) and half in pysshfs, so no answer is older than the timeout. "
        "Changes made through the mount show at once, a directory's times included. "
        "Opening a file checks its size and mtime against the server in the same round "
        "trip as the open (close-to-open, as NFS); when they changed, the kernel's cached "
        "attributes and pages of the file are dropped, also with kernel_cache. SFTP times "
        "are whole seconds: a rewrite of the same size within the same second is not seen.",
    )
    out += _section(
        "STATUS AND REFRESH",
        "pysshfs status shows each pysshfs mount of the calling user (or the one named): "
        "server and remote directory, connection state, round-trip time, reconnects, "
        "requests and bytes each way, cache hit ratios, open files and unacknowledged "
        "writes; --json prints the same as a JSON list for scripts.",
        "pysshfs refresh drops what the mount cached about each path and everything below "
        "it (the whole mount without a path), in pysshfs and in the kernel, so the next "
        "access asks the server; it exits 0 when done.",
        "Both talk to the mount over a unix socket only its user and root may use (mode "
        "0600, peer credentials checked), in $XDG_RUNTIME_DIR/pysshfs, /run/pysshfs for "
        "root, else /run/user/UID/pysshfs or /tmp/pysshfs-UID; it goes at unmount.",
    )
    out += _example("$ pysshfs refresh ~/srv ~/srv/build", "$ pysshfs status --json")
    out += [
        ".SH FILES",
        ".TP", "\\fB/etc/fuse.conf\\fP", "user_allow_other lets users use allow_other",
        ".TP", "\\fB~/.ssh/config\\fP", "ssh client configuration (the passwd home directory "
        "is used when $HOME belongs to someone else, as mount(8) leaves it)",
        ".TP", "\\fB/usr/share/doc/pysshfs/examples/\\fP", "systemd .mount and .automount "
        "examples",
        ".SH SEE ALSO",
        "\\fBsshfs\\fP(1), \\fBssh_config\\fP(5), \\fBfusermount3\\fP(1), \\fBmount.fuse3\\fP(8), "
        "\\fBfstab\\fP(5), \\fBsystemd.mount\\fP(5), \\fBsystemd.automount\\fP(5)",
    ]
    return "\n".join(out) + "\n"


COMPLETION_TEMPLATE = r"""# bash completion for pysshfs                      -*- shell-script -*-
# Generated by packaging/gen_docs.py from pysshfs/options.py: do not edit.

_pysshfs_o_names='@NAMES@'

# The values option $1 takes: words, or @FILE for a local file.
_pysshfs_o_values()
{
    case $1 in
@VALUES@
    esac
}

# Reply with whole tokens: bash replaces only its own current word, which starts after
# the last '=' or ':' (COMP_WORDBREAKS), so the part of `cur` before it is dropped.
_pysshfs_reply()
{
    local cur=$1 word=$2 c
    shift 2
    local strip=$(( ${#cur} - ${#word} ))
    ((strip < 0)) && strip=0
    COMPREPLY=()
    for c in "$@"; do
        COMPREPLY+=("${c:strip}")
    done
}

_pysshfs()
{
    local line=${COMP_LINE:0:COMP_POINT}
    local cur=${line##*[[:space:]]}
    local word=${COMP_WORDS[COMP_CWORD]}
    [[ $cur == *"$word" ]] || word=$cur
    local before=${line%"$cur"}
    before=${before%"${before##*[![:space:]]}"}
    local prev=${before##*[[:space:]]}
    local -a cands=()

    local list='' lead=''
    if [[ $prev == -o ]]; then
        list=$cur
    elif [[ $cur == -o* ]]; then
        list=${cur#-o}
        lead=-o
    fi
    if [[ $prev == -o || $cur == -o* ]]; then
        local item=${list##*,}
        lead+=${list%"$item"}
        if [[ $item == *=* ]]; then
            local name=${item%%=*} value=${item#*=}
            local values
            values=$(_pysshfs_o_values "$name")
            if [[ $values == @FILE ]]; then
                mapfile -t cands < <(compgen -f -- "$value")
            else
                mapfile -t cands < <(compgen -W "$values" -- "$value")
            fi
            cands=("${cands[@]/#/$lead$name=}")
        else
            mapfile -t cands < <(compgen -W "$_pysshfs_o_names" -- "$item")
            cands=("${cands[@]/#/$lead}")
        fi
        compopt -o nospace 2>/dev/null
        _pysshfs_reply "$cur" "$word" "${cands[@]}"
        return
    fi
    # pysshfs status [MOUNTPOINT] [--json], pysshfs refresh MOUNTPOINT [PATH...]
    local -a sub
    read -r -a sub <<< "$before"
    if [[ ${sub[1]} == status || ${sub[1]} == refresh ]]; then
        if [[ ${sub[1]} == status && $cur == -* ]]; then
            mapfile -t cands < <(compgen -W '--json --help' -- "$cur")
        else
            mapfile -t cands < <(compgen -f -- "$cur")
            compopt -o filenames 2>/dev/null
        fi
        _pysshfs_reply "$cur" "$word" "${cands[@]}"
        return
    fi
    case $prev in
        -p) return ;;
        -F) mapfile -t cands < <(compgen -f -- "$cur")
            _pysshfs_reply "$cur" "$word" "${cands[@]}"
            return ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t cands < <(compgen -W '@FLAGS@' -- "$cur")
        _pysshfs_reply "$cur" "$word" "${cands[@]}"
        return
    fi
    # positionals: [user@]host:[dir] first, then the mountpoint
    local -a words
    read -r -a words <<< "$before"
    local i positionals=0
    for ((i = 1; i < ${#words[@]}; i++)); do
        case ${words[i]} in
            -o|-p|-F) ((i++)) ;;
            -*) ;;
            *) ((positionals++)) ;;
        esac
    done
    if ((positionals == 0)) && [[ $cur != *:* ]]; then
        local user='' host=$cur
        if [[ $cur == *@* ]]; then
            user=${cur%@*}@
            host=${cur##*@}
        fi
        if declare -F _known_hosts_real >/dev/null; then
            COMPREPLY=()
            _known_hosts_real -- "$host"
            cands=("${COMPREPLY[@]}")
        else
            mapfile -t cands < <(compgen -A hostname -- "$host")
        fi
        cands=("${cands[@]/#/$user}")
        cands=("${cands[@]/%/:}")
        [[ -n $user ]] ||
            mapfile -t -O "${#cands[@]}" cands < <(compgen -W 'status refresh' -- "$cur")
        compopt -o nospace 2>/dev/null
        _pysshfs_reply "$cur" "$word" "${cands[@]}"
    elif ((positionals == 1)); then
        mapfile -t cands < <(compgen -d -- "$cur")
        compopt -o filenames 2>/dev/null
        _pysshfs_reply "$cur" "$word" "${cands[@]}"
    fi
} &&
    complete -F _pysshfs pysshfs
"""


def render_completion() -> str:
    names = []
    values = []
    for opt in options.OPTIONS:
        names.append(opt.name + ("" if opt.kind == "flag" else "="))
        if opt.path:
            words = "@FILE"
        elif opt.kind in ("bool", "flag"):
            words = "yes no"
        elif opt.kind == "choice":
            words = " ".join(opt.choices)
        else:
            continue
        values.append(f"        {opt.name}) echo '{words}' ;;")
    names += sorted(options.KERNEL_MOUNT_FLAGS)
    flags = [f.split()[0].rstrip(",") for f, _ in GENERAL_FLAGS] + ["--debug", "--help",
                                                                      "--version"]
    return (COMPLETION_TEMPLATE.replace("@NAMES@", " ".join(names))
            .replace("@VALUES@", "\n".join(values))
            .replace("@FLAGS@", " ".join(flags)))


def readme_with_tables(readme: str) -> str:
    """README.md with the text between each pair of markers replaced by its table."""
    for name, table in TABLES.items():
        begin = f"<!-- {name}: generated by packaging/gen_docs.py -->"
        end = f"<!-- end of {name} -->"
        head, sep, rest = readme.partition(begin)
        _, sep2, tail = rest.partition(end)
        if not sep or not sep2:
            raise SystemExit(f"README.md lacks the markers {begin} ... {end}")
        readme = f"{head}{begin}\n{table()}\n{end}{tail}"
    return readme


def main() -> int:
    wanted = {MANPAGE: render(), COMPLETION: render_completion(),
              README: readme_with_tables(README.read_text())}
    if "--check" in sys.argv:
        stale = [p.name for p, text in wanted.items()
                 if not p.exists() or p.read_text() != text]
        if stale:
            sys.stderr.write(f"{', '.join(stale)} out of date: "
                             "run python packaging/gen_docs.py\n")
            return 1
        return 0
    for path, text in wanted.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
