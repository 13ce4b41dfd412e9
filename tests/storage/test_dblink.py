"""DatabaseLink (kalshi_store.dblink): the recorder's connection, its backoff and the database it pins."""

from __future__ import annotations

import socket

from kalshi_store.dblink import DatabaseLink, _Backoff
from kalshi_store.spill import SpillTarget


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = _Backoff(0.2, 1.0)
    backoff.schedule.rng.seed(3)
    bounds = [0.2, 0.4, 0.8, 1.0, 1.0]  # kalshi_ws.Backoff: full jitter under a bound that doubles to the cap
    delays = [backoff.failed() for _ in bounds]
    assert all(0.0 <= delay <= bound for delay, bound in zip(delays, bounds, strict=True)), delays
    assert backoff.failures == 5 and len(set(delays)) == 5  # drawn, not a fixed schedule (recorders spread out)
    backoff.reset()
    assert backoff.failures == 0 and backoff.failed() <= 0.2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_database_is_retried_only_after_the_backoff() -> None:
    lost: list[bool] = []
    link = DatabaseLink(f"postgresql://postgres@127.0.0.1:{_closed_port()}/kalshi", connect_timeout=1.0,
                        write_timeout=1.0, retry_initial=60.0, retry_max=120.0, days_ahead=lambda: 1,
                        on_lost=lambda: lost.append(True))
    assert not await link.ready()
    assert lost == [True] and not link.available and link.last_error is not None
    assert not await link.ready()  # within the backoff: no new attempt, so nothing new is lost
    assert lost == [True]


async def test_the_first_database_reached_is_pinned(db_url: str) -> None:
    pinned: list[SpillTarget] = []
    link = DatabaseLink(db_url, connect_timeout=3.0, write_timeout=5.0, retry_initial=0.1, retry_max=1.0,
                        days_ahead=lambda: 1, on_identity=pinned.append)
    try:
        assert await link.ready()
        link.set_available()
        assert link.available and link.identity is not None and link.identity.database
        assert pinned == [link.identity]
        await link.close()
        assert await link.ready()  # reconnects to the same database: not pinned again
        assert pinned == [link.identity]
    finally:
        await link.close()
