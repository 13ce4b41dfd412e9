"""(c) The production pipeline: KalshiWebSocketClient -> Recorder -> PostgreSQL.

Plugged in once ``kalshi_ws.protocol`` / ``kalshi_ws.client`` and ``kalshi_store.recorder`` exist.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any


def available() -> str | None:
    """``None`` when the production path can run, else what is missing."""
    missing = [name for name in ("kalshi_ws.protocol", "kalshi_ws.client", "kalshi_store.recorder",
                                 "kalshi_store.migrations")
               if importlib.util.find_spec(name) is None]
    return f"not available yet: {', '.join(missing)}" if missing else None


def prepare(dsn: str) -> None:
    """Apply the storage migrations (placeholder until kalshi_store lands)."""


async def run(cfg: dict[str, Any], child_stats: Callable[[float], dict[str, Any]]) -> dict[str, Any]:
    raise NotImplementedError(available() or "production pipeline not plugged in yet")


def truncate(conn: Any) -> None:
    """Empty the recorder's tables between runs (placeholder)."""


def measure_queries() -> tuple[Any, Any]:
    """(end-trade commit time query, rows with received_ns and xmin) for the recorder's schema (placeholder)."""
    raise NotImplementedError("production pipeline not plugged in yet")


def breakdown_stages(msgs: list[Any], dsn: str, n: int, timer: Callable[..., float]) -> dict[str, float]:
    """Storage stages per frame for bench.breakdown (placeholder until the recorder lands)."""
    return {}
