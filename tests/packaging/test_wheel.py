"""The built wheel is the whole product: migrations, market sets and flows are in it, and it works without the
checkout (imports, prefect.yaml's entrypoint, `kalshi-ingest db migrate`).

The cheap version of ``.ci/wheel-check`` (which installs the wheel with its dependencies into a fresh venv and
records a demo session from it): here the wheel is installed without dependencies into a folder that is put
first on ``PYTHONPATH`` of a child process whose current folder is not the checkout, so every ``kalshi_*``
module comes from the wheel and the third-party libraries from this venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
#: Where each installed package's files come from in the repository (pyproject.toml, [tool.setuptools]).
SOURCES = {"kalshi_ws": "kalshi_ws", "kalshi_store": "kalshi_store", "kalshi_ingest": "kalshi_ingest",
           "kalshi_flows": "flows"}

_CHECK = """
import importlib.util, json, sys
from prefect.flows import load_flow_from_entrypoint
import kalshi_flows.ingest, kalshi_ingest.settings as settings, kalshi_store.migrations as migrations
from kalshi_ingest.report import page
flow = load_flow_from_entrypoint("kalshi_flows.ingest:ingest_market_set")
template = page.template_environment().get_template("report.html.j2")
print(json.dumps({"flow": flow.name, "flows_module": importlib.util.find_spec("flows") is not None,
                  "files": [kalshi_flows.ingest.__file__, str(migrations.SQL_DIR), str(settings.DEFAULT_CONFIG),
                            template.filename],
                  "migrations": [[m.name, m.checksum] for m in migrations.discover()]}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    # A clean copy: a stale build/ folder of the checkout would leak into the wheel.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".venv", "venv", ".data", "__pycache__", ".*_cache", ".kalshi-sim",
        "tests", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"),
                    str(source)], check=True, capture_output=True, timeout=180)
    (built,) = (work / "dist").glob("kalshi_ingest-*.whl")
    return built


def test_the_wheel_holds_every_module_migration_and_the_market_sets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in SOURCES.items():
        expected = {f"{package}/{p.relative_to(ROOT / folder).as_posix()}" for p in (ROOT / folder).rglob("*.py")}
        assert expected <= names, f"missing from the wheel (a sub-package not listed in pyproject.toml?): " \
                                  f"{sorted(expected - names)}"
    with zipfile.ZipFile(wheel) as archive:
        for path in sorted((ROOT / "sql").glob("*.sql")):
            assert archive.read(f"kalshi_store/sql/{path.name}") == path.read_bytes(), path.name
        assert archive.read("kalshi_ingest/deployments/market_sets.yaml") == \
            (ROOT / "deployments" / "market_sets.yaml").read_bytes()
        for path in sorted((ROOT / "kalshi_ingest" / "report" / "templates").iterdir()):
            assert archive.read(f"kalshi_ingest/report/templates/{path.name}") == path.read_bytes(), path.name
    assert sorted({n.split("/")[0] for n in names if ".dist-info/" not in n}) == sorted(SOURCES)


def test_the_installed_wheel_works_without_the_checkout(wheel: Path, tmp_path: Path, empty_db_url: str) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=120)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "PREFECT_API_URL", "DATABASE_URL"))}
    env.update(PYTHONPATH=str(target), KALSHI_INGEST_DATA_DIR=str(tmp_path / "data"),
               PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")

    checked = subprocess.run([sys.executable, "-c", _CHECK], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0, checked.stderr
    facts = json.loads(checked.stdout.splitlines()[-1])
    assert facts["flow"] == "ingest-market-set"
    assert not facts["flows_module"], "a top-level module `flows` is importable"
    for file in facts["files"]:
        assert Path(file).is_relative_to(target), f"{file} is not from the installed wheel"
    from kalshi_store.migrations import discover

    assert facts["migrations"] == [[m.name, m.checksum] for m in discover(ROOT / "sql")]

    migrated = subprocess.run([sys.executable, "-m", "kalshi_ingest.cli", "db", "migrate"], cwd=cwd,
                              env={**env, "DATABASE_URL": empty_db_url}, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("database migrated")
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute("select count(*) from kalshi.schema_migrations").fetchone()
    assert row == (len(facts["migrations"]),)
