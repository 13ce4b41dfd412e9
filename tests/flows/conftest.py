"""Fixtures for flow tests: a real Prefect test server, the simulator, and the environment a run reads.

Nothing is mocked: the flow talks to the simulator over loopback sockets with a real signed key, writes
into a fresh migrated PostgreSQL database (``db_url`` from tests/conftest.py) and reports to a real
Prefect API server started by ``prefect_test_harness`` once per test run and
xdist worker (fixture ``prefect_server``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kalshi_ws.simulator import Simulator


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED",
                                           "PREFECT_LOGGING_LEVEL")}
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                      PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"))
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(markets=4, seed=7, rate=150.0, data_dir=tmp_path / "sim") as sim:
        yield sim


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write a market-set file and point KALSHI_INGEST_CONFIG at it."""

    def write(text: str) -> Path:
        path = tmp_path / "market_sets.yaml"
        path.write_text(text)
        monkeypatch.setenv("KALSHI_INGEST_CONFIG", str(path))
        return path

    return write


@pytest.fixture
def ingest_env(simulator: Simulator, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The variables a production run would have, pointing at the simulator and the test database."""
    env = {
        "KALSHI_ENV": simulator.base_url,
        "KALSHI_API_KEY_ID": simulator.key_id,
        "KALSHI_PRIVATE_KEY_PATH": str(simulator.private_key_path),
        "DATABASE_URL": db_url,
        "KALSHI_INGEST_DATA_DIR": str(tmp_path / "data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("KALSHI_PRIVATE_KEY_PEM", "KALSHI_PRIVATE_KEY_BLOCK", "KALSHI_WS_URL", "KALSHI_REST_URL",
                "KALSHI_SESSION_LIMIT"):
        monkeypatch.delenv(key, raising=False)
    return env


@pytest.fixture
async def prefect_api(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """A ``prefect server`` of the test's own on loopback (the environment that points at it), without a scheduler:
    a deployment's own schedule must not add runs the test's worker would pick up."""
    from .prefect_e2e import prefect_server as own_server

    async with own_server(tmp_path / "prefect-home", scheduler=False) as env:
        yield env
