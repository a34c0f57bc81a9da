"""packaging/: the Debian metadata agrees with the code, the systemd examples are valid
units whose options pysshfs accepts, the bash completion completes, and the sshfs option
table covers every option the installed sshfs has."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from pysshfs import __version__, options
from pysshfs.cli import parse_args

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
SYSTEMD = PACKAGING / "systemd"


def test_debian_version_is_the_program_version() -> None:
    first = (PACKAGING / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(rf"pysshfs \({re.escape(__version__)}\) ", first), first


def test_bundled_wheels_satisfy_pyproject() -> None:
    import tomllib

    wanted = {Requirement(r).name: Requirement(r) for r in
              tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    pins = [Requirement(line) for line in
            (PACKAGING / "debian" / "vendor.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert {p.name for p in pins} == {"paramiko", "mfusepy"}
    for pin in pins:
        version = next(iter(pin.specifier)).version
        assert wanted[pin.name].specifier.contains(version), (pin, wanted[pin.name])
        # The lower bound is the tested release (test_private_hooks): bundle that one.
        lower = [Version(s.version) for s in wanted[pin.name].specifier if s.operator == ">="]
        assert lower == [Version(version)], (pin, wanted[pin.name])


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def test_systemd_example_pair() -> None:
    mount, automount = SYSTEMD / "mnt-data.mount", SYSTEMD / "mnt-data.automount"
    m, a = unit(mount), unit(automount)
    assert m["Mount"]["Type"] == "fuse.pysshfs"
    assert m["Mount"]["Where"] == a["Automount"]["Where"] == "/mnt/data"
    # systemd runs: mount What Where -t Type -o Options -> pysshfs What Where -o Options
    spec = parse_args([m["Mount"]["What"], m["Mount"]["Where"], "-o", m["Mount"]["Options"]])
    assert spec.host == "build-box" and spec.user == "alice"
    assert spec.opts.allow_other and spec.opts.uid == 1000
    if shutil.which("systemd-escape"):
        name = subprocess.run(["systemd-escape", "--path", "/mnt/data"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert mount.name == f"{name}.mount" and automount.name == f"{name}.automount"


def test_systemd_analyze_verify_accepts_the_examples() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        str(SYSTEMD / "mnt-data.mount"), str(SYSTEMD / "mnt-data.automount")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Unknown" not in r.stderr and "mnt-data" not in r.stderr, r.stderr


def complete(line: str) -> list[str]:
    """Run the generated completion function for `line` (cursor at the end) in bash."""
    script = (f"source {PACKAGING / 'pysshfs.bash-completion'}\n"
              'COMP_LINE=$1; COMP_POINT=${#COMP_LINE}\n'
              # split into words the way bash's completion does (= and : break words)
              'read -r -a COMP_WORDS <<< "$(sed -E "s/([=:])/ \\1 /g" <<< "$COMP_LINE")"\n'
              '[[ $COMP_LINE == *" " || $COMP_LINE == *[=:] ]] && COMP_WORDS+=("")\n'
              "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
              '_pysshfs pysshfs "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "-c", script, "bash", line], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


@pytest.mark.parametrize("line, expected", [
    ("pysshfs -o allow_", ["allow_other", "allow_root"]),
    ("pysshfs -o ro,allow_", ["ro,allow_other", "ro,allow_root"]),
    ("pysshfs -oidm", ["-oidmap="]),
    ("pysshfs -o Identit", ["IdentitiesOnly=", "IdentityAgent=", "IdentityFile="]),
    ("pysshfs -o idmap=", ["file", "names", "none", "user"]),
    ("pysshfs -o ro,nomap=e", ["error"]),
    ("pysshfs -o reconnect=", ["no", "yes"]),
    ("pysshfs -o noe", ["noexec"]),
    ("pysshfs --ver", ["--version"]),
])
def test_completion(line: str, expected: list[str]) -> None:
    assert sorted(complete(line)) == expected


def test_completion_of_file_values_and_mountpoint(tmp_path: Path) -> None:
    (tmp_path / "id_ed25519").write_text("key")
    (tmp_path / "mnt").mkdir()
    assert complete(f"pysshfs -o IdentityFile={tmp_path}/id_") == [f"{tmp_path}/id_ed25519"]
    assert complete(f"pysshfs host:/srv {tmp_path}/m") == [f"{tmp_path}/mnt"]


def test_every_sshfs_option_is_known() -> None:
    """Each -o of the installed sshfs is in the option table or in SSHFS_ONLY."""
    if shutil.which("sshfs") is None:
        pytest.skip("sshfs is not installed (packaging/bootstrap.sh installs it)")
    text = subprocess.run(["sshfs", "-h"], capture_output=True, text=True, timeout=30)
    names: set[str] = set()
    for match in re.finditer(r"-o (\[no\])?([a-zA-Z_{},]+)", text.stdout + text.stderr):
        word = match.group(2)
        brace = re.fullmatch(r"(\w*)\{([\w,]+)\}(\w*)", word)
        if brace:
            names |= {f"{brace[1]}{part}{brace[3]}" for part in brace[2].split(",")}
        elif word.rstrip(",") not in ("opt", "SSHOPT"):
            names.add(word)
    assert len(names) > 30, names  # the help was really read
    unknown = sorted(n for n in names if options.lookup(n) is None
                     and options.sshfs_only(n) is None
                     and not options.is_generic_mount_option(n, None))
    assert unknown == [], f"sshfs options missing from pysshfs/options.py: {unknown}"
