"""Packing finished day partitions of the deltas, trades and tickers (kalshi_store.compaction), run by
``kalshi-ingest db archive`` and the archive flow: each finished day once, rows unchanged, the indexes no larger."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live_deltas import (
    BOOKS,
    MARKETS,
    SEQS,
    UPDATES,
    exact_rows,
    exact_trades_tickers,
    index_state,
    key_state,
    write_live_deltas,
    write_live_trades_tickers,
)

from kalshi_ingest.cli import main
from kalshi_store import compaction


def test_the_archive_command_packs_each_finished_day_once(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: object,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(UTC).date()
    finished, running = today - timedelta(days=3), today - timedelta(days=2)
    write_live_deltas(db_url, finished)
    write_live_deltas(db_url, running, status="running")  # a session still writing to its day: not touched
    before = exact_rows(db_url, finished)
    assert len(before) == BOOKS * SEQS
    size_before, options = key_state(db_url, finished)
    assert options is None
    assert compaction.days_to_compact(db_url) == [finished]
    assert compaction.days_to_compact(db_url, skip=[finished]) == []

    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["db", "archive", "--to", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    partition = f"kalshi.orderbook_delta_rows_p{finished:%Y%m%d}"
    assert out[0].startswith(f"packed {partition}: indexes {size_before:,} -> ")
    assert out[1:] == ["nothing older than 30 days to archive"]

    size_after, options = key_state(db_url, finished)
    assert options == ["fillfactor=100"] and size_after <= size_before
    assert size_after < size_before  # pages split by the interleaved writes are packed
    assert exact_rows(db_url, finished) == before
    assert key_state(db_url, running)[1] is None

    # Once only: a second run packs nothing.
    assert compaction.days_to_compact(db_url) == []
    assert main(["db", "archive", "--to", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["nothing older than 30 days to archive"]
    assert key_state(db_url, finished) == (size_after, ["fillfactor=100"])
    assert compaction.compact_day(db_url, finished) == []


def test_only_finished_days_with_rows_are_packed(db_url: str) -> None:
    today = datetime.now(UTC).date()
    # Today's partition is not finished, whatever ``today`` says; an empty finished day is not marked.
    write_live_deltas(db_url, today)
    assert compaction.days_to_compact(db_url, today=today + timedelta(days=5)) == []
    assert compaction.compact_finished_days(db_url, today=today + timedelta(days=5)) == []
    assert key_state(db_url, today - timedelta(days=1))[1] is None
    assert compaction.compact_day(db_url, today) == []
    # A packed day's report: the partition and its key's sizes.
    day = today - timedelta(days=1)
    write_live_deltas(db_url, day)
    [done] = compaction.compact_finished_days(db_url)
    assert (done.day, done.table, done.partition) == (day, "kalshi.orderbook_delta_rows",
                                                      f"kalshi.orderbook_delta_rows_p{day:%Y%m%d}")
    assert done.bytes_after == key_state(db_url, day)[0] <= done.bytes_before


def test_finished_trades_and_tickers_are_packed_with_their_day(db_url: str) -> None:
    today = datetime.now(UTC).date()
    finished, backfilled, running = today - timedelta(days=3), today - timedelta(days=4), today - timedelta(days=2)
    write_live_trades_tickers(db_url, finished, write_live_deltas(db_url, finished))
    write_live_trades_tickers(db_url, backfilled)  # trades and updates only (a REST backfill): packed too
    session = write_live_deltas(db_url, running, status="running")
    write_live_trades_tickers(db_url, running, session)  # the day a running session started on: not touched
    write_live_trades_tickers(db_url, today, session)  # not finished
    rows = {day: exact_trades_tickers(db_url, day) for day in (finished, backfilled)}
    assert all(len(trades) == len(tickers) == MARKETS * UPDATES for trades, tickers in rows.values())
    state = {(table, day): index_state(db_url, table, day)
             for table in ("trade_rows", "ticker_rows") for day in (finished, backfilled, running, today)}
    assert all(options == [None] * len(options) for _size, options in state.values())
    assert [len(state["trade_rows", today][1]), len(state["ticker_rows", today][1])] == [2, 1]
    assert compaction.days_to_compact(db_url) == [backfilled, finished]

    done = compaction.compact_finished_days(db_url)
    assert [(c.day, c.table, c.partition) for c in done] == [
        (day, f"kalshi.{table}", f"kalshi.{table}_p{day:%Y%m%d}")
        for day, tables in ((backfilled, ("ticker_rows", "trade_rows")),
                            (finished, ("orderbook_delta_rows", "ticker_rows", "trade_rows"))) for table in tables]
    for c in done:
        if c.table == "kalshi.orderbook_delta_rows":
            continue
        size, options = index_state(db_url, c.table.removeprefix("kalshi."), c.day)
        assert options == [["fillfactor=100"]] * len(options)  # every index of the partition, marked
        assert (c.bytes_before, c.bytes_after) == (state[c.table.removeprefix("kalshi."), c.day][0], size)
        assert size <= c.bytes_before
    # The random trade ids split the key pages anywhere: packed, they take less room.
    assert all(c.bytes_after < c.bytes_before for c in done if c.table == "kalshi.trade_rows")
    assert {day: exact_trades_tickers(db_url, day) for day in rows} == rows  # the same rows, value for value
    for table in ("trade_rows", "ticker_rows"):
        for day in (running, today):
            assert index_state(db_url, table, day) == state[table, day]

    # Once only: a second run packs nothing.
    assert compaction.days_to_compact(db_url) == []
    assert compaction.compact_finished_days(db_url) == []
    assert compaction.compact_day(db_url, finished) == []
