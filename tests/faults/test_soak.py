"""The long soak as a pytest run (``pytest tests/faults -m soak``): many random fault schedules in a row through
bench/soak.py; fails if any trade was lost or duplicated, any book was wrong or any fault left no trace.

Environment: ``SOAK_SCHEDULES`` (default 12), ``SOAK_SEED`` (default 1000), ``SOAK_OUTAGE`` (default 30 s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _soak_main():  # type: ignore[no-untyped-def]
    """bench/soak.py's main (loaded by path: the repository root is not on sys.path under importlib mode)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kalshi_bench_soak", Path(__file__).parents[2] / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main

pytestmark = [pytest.mark.soak, pytest.mark.timeout(6 * 3600)]


async def test_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    code = await _soak_main()([
        "--schedules", os.environ.get("SOAK_SCHEDULES", "12"), "--seed", os.environ.get("SOAK_SEED", "1000"),
        "--outage", os.environ.get("SOAK_OUTAGE", "30"), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["rows_lost"] == 0 and result["duplicates"] == 0 and result["books_wrong"] == 0, result["problems"]
    assert code == 0, result["problems"]
