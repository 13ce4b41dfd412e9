"""Packing finished delta partitions (kalshi_store.compaction), run by ``kalshi-ingest db archive`` and the
archive flow: each finished day once, rows unchanged, the primary key no larger."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from live_deltas import BOOKS, SEQS, exact_rows, key_state, write_live_deltas

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
    assert out[0].startswith(f"packed {partition}: primary key {size_before:,} -> ")
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
    assert compaction.compact_day(db_url, finished) is None


def test_only_finished_days_with_rows_are_packed(db_url: str) -> None:
    today = datetime.now(UTC).date()
    # Today's partition is not finished, whatever ``today`` says; an empty finished day is not marked.
    write_live_deltas(db_url, today)
    assert compaction.days_to_compact(db_url, today=today + timedelta(days=5)) == []
    assert compaction.compact_finished_days(db_url, today=today + timedelta(days=5)) == []
    assert key_state(db_url, today - timedelta(days=1))[1] is None
    assert compaction.compact_day(db_url, today) is None
    # A packed day's report: the partition and its key's sizes.
    day = today - timedelta(days=1)
    write_live_deltas(db_url, day)
    [done] = compaction.compact_finished_days(db_url)
    assert (done.day, done.partition) == (day, f"kalshi.orderbook_delta_rows_p{day:%Y%m%d}")
    assert done.bytes_after == key_state(db_url, day)[0] <= done.bytes_before
