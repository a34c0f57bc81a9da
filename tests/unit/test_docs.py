"""The man page and README's option table are generated from the option table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pysshfs import options

ROOT = Path(__file__).resolve().parents[2]


def test_manpage_and_readme_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "packaging" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_readme_table_lists_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    for opt in options.OPTIONS:
        assert f"| `{opt.name}" in readme, opt.name


def test_manpage_lists_every_option() -> None:
    page = (ROOT / "packaging" / "pysshfs.1").read_text()
    for opt in options.OPTIONS:
        assert f"\\-o {opt.name.replace('-', chr(92) + '-')}" in page, opt.name
