"""DatabaseLink (kalshi_store.dblink): the recorder's connection, its backoff and the database it pins."""

from __future__ import annotations

import socket

import pytest

from kalshi_store.dblink import DatabaseLink, _Backoff
from kalshi_store.spill import SpillTarget


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = _Backoff(0.2, 1.0)
    for bound in (0.2, 0.4, 0.8, 1.0, 1.0):  # full jitter (kalshi_ws.Backoff): uniform in [0, bound]
        assert backoff.schedule.bound(backoff.failures) == pytest.approx(bound)
        assert 0.0 <= backoff.failed() <= bound + 1e-12
    backoff.reset()
    assert backoff.failures == 0 and backoff.schedule.bound(0) == pytest.approx(0.2)
    assert 0.0 <= backoff.failed() <= 0.2 + 1e-12


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
