"""The untrusted windows of a day are computed once per archive run, before any table of the day is dropped: every
table of the day is stored with the same windows, and archived rows keep the trusted flags they had hot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from reporting_recording import Recording

from kalshi_ingest.data import MarketData
from kalshi_store import archive


def _sorted(windows: pa.Table) -> list[dict[str, Any]]:
    return sorted(windows.to_pylist(), key=lambda r: tuple(str(v) for v in r.values()))


def _flags(data: MarketData, tickers: list[str], start: datetime, end: datetime) -> dict[str, Any]:
    flags = {}
    for ticker in tickers:
        trades = data.trades(ticker, start, end)
        tops = data.top_of_book(ticker, start, end)
        flags[ticker] = (list(zip(trades["exchange_ts"], trades["trusted"], strict=True)),
                         list(zip(tops["exchange_ts"], tops["trusted"], strict=True)))
    return flags


def test_every_table_of_a_day_is_archived_with_the_same_windows(recorded: Recording, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    day = datetime.now(UTC).date()
    start, end = datetime.combine(day, datetime.min.time(), UTC), datetime.combine(day, datetime.max.time(), UTC)
    expected = archive.windows_around(recorded.url, day)
    assert expected.num_rows > 0 and "gap" in expected.column("kind").to_pylist()
    monkeypatch.delenv("KALSHI_ARCHIVE_URL", raising=False)
    hot = _flags(MarketData(recorded.url), recorded.tickers, start, end)
    assert any(not flag for trades, tops in hot.values() for _, flag in trades + tops)  # some rows untrusted

    stored: dict[str, pa.Table] = {}
    real_archive_day, real_store = archive.archive_day, archive._store_windows

    def archive_day(db_url: str, archive_url: str, table: str, day_: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(archive, "_store_windows",
                            lambda fs, base, d, windows: (stored.__setitem__(table, windows)
                                                          if d == day else None, real_store(fs, base, d, windows)))
        return real_archive_day(db_url, archive_url, table, day_, **kwargs)

    monkeypatch.setattr(archive, "archive_day", archive_day)
    moved = archive.archive_older_than(recorded.url, str(tmp_path), 2, today=day + timedelta(days=3))
    assert {m.table for m in moved if m.day == day} == set(archive.ARCHIVED_TABLES)
    # One set of windows for the whole day, computed before the first table was dropped.
    assert set(stored) == set(archive.ARCHIVED_TABLES)
    for table, windows in stored.items():
        assert _sorted(windows) == _sorted(expected), table
    on_file = archive.read_archive(str(tmp_path), archive.WINDOWS_TABLE, [day])
    assert on_file is not None and _sorted(on_file) == _sorted(expected)

    # Trades and top of book (tickers) read from the archive carry the flags they had hot, instant for instant.
    archived = _flags(MarketData(recorded.url, archive_url=str(tmp_path)), recorded.tickers, start, end)
    assert archived == hot
