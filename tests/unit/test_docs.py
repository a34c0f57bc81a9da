"""README, man page and CI agree with the code: the option table generates the docs, and
CI runs the test command the README gives."""

from __future__ import annotations

import re
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


def _readme_command(marker: str) -> list[str]:
    return [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("bash packaging/bootstrap.sh && ") and marker in line]


def test_ci_runs_the_readme_test_command() -> None:
    """CI must run what the README tells a person to run, lint included."""
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    readme = _readme_command("pytest tests")
    assert readme, "README.md has no test command"
    assert set(readme) == set(ci), (readme, ci)
    for step in ("ruff check pysshfs tests", "mypy pysshfs", "-m pytest tests"):
        assert step in readme[0], step
    assert readme[0].index("mypy") < readme[0].index("pytest"), "lint must run before the tests"


def test_bootstrap_installs_the_tools_the_test_command_runs() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    bootstrap = (ROOT / "packaging" / "bootstrap.sh").read_text()
    installed = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", bootstrap)
    assert installed, "bootstrap.sh no longer installs pysshfs with extras"
    names = {re.split(r"[<>=~! \[]", req, maxsplit=1)[0]
             for extra in installed.group(1).split(",") for req in extras[extra]}
    assert {"pytest", "ruff", "mypy"} <= names, names
