"""The import contracts of docs/ARCHITECTURE.md ([tool.importlinter] in pyproject.toml) hold.

``./dev lint`` runs the same check; this test makes ``./dev test`` (and so CI) fail on a broken contract, with
import-linter's report (which contract, which import, which line) as the failure message.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is missing: install the test extras (./dev install)"
    return found


def test_the_import_contracts_hold() -> None:
    # The checkout's folder first on sys.path: the packages analysed are the ones in this checkout.
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True,  # noqa: S603
                          timeout=120, check=False)
    report = done.stdout[done.stdout.find("Contracts"):] if "Contracts" in done.stdout else done.stdout
    assert done.returncode == 0, (f"an import contract of docs/ARCHITECTURE.md is broken "
                                  f"(lint-imports exit {done.returncode}):\n{report}\n{done.stderr}")
    assert "0 broken" in done.stdout, done.stdout


def test_the_architecture_document_lists_every_contract() -> None:
    # A contract added, renamed or dropped in pyproject.toml without docs/ARCHITECTURE.md (or the reverse) fails here.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [c["id"] for c in config["tool"]["importlinter"]["contracts"]]
    documented = re.findall(r"^\| `([a-z-]+)` \|", (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8"),
                            re.MULTILINE)
    assert sorted(documented) == sorted(declared)
    assert "product-has-no-sql" in declared
