"""The archive flow on a real Prefect test server: a recorded day moves to Parquet and the run reports it."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "reporting"))

from reporting_recording import fresh_database, record  # noqa: E402

from kalshi_flows.archive import archive_partitions  # noqa: E402
from kalshi_store import archive  # noqa: E402

from .test_ingest_flow import flow_run_artifacts  # noqa: E402

pytestmark = [pytest.mark.timeout(240), pytest.mark.usefixtures("prefect_server")]
ROOT = Path(__file__).resolve().parents[2]


async def test_the_flow_archives_old_days_and_reports_what_moved(pg_url: str, _template_db: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    databases = fresh_database(pg_url, _template_db)
    url = next(databases)
    try:
        await record(url, tmp_path / "recording", chunks=12, faults=False)
        with psycopg.connect(url) as conn:
            deltas = conn.execute("select count(*) from kalshi.orderbook_deltas").fetchone()
        folder = tmp_path / "archive"
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("KALSHI_ARCHIVE_URL", str(folder))
        monkeypatch.setenv("KALSHI_ARCHIVE_AFTER_DAYS", "2")
        today = datetime.now(UTC).date()
        state = await archive_partitions(today=today + timedelta(days=3), return_state=True)
        assert state.is_completed()
        moved = await state.result()
        recorded_day = [m for m in moved if m.day == today]
        assert {m.table for m in recorded_day} == set(archive.ARCHIVED_TABLES)
        assert next(m.rows for m in recorded_day if m.table == "orderbook_deltas") == deltas[0]  # type: ignore[index]
        assert (folder / "table=orderbook_deltas" / f"date={today}" / "part-0.parquet").is_file()
        artifacts = await flow_run_artifacts(state.state_details.flow_run_id)
        report = artifacts["archive"].data
        assert "| orderbook_deltas |" in report and f"{deltas[0]:,}" in report  # type: ignore[index]
        # Nothing left: a second run moves nothing and says so.
        again = await archive_partitions(today=today + timedelta(days=3))
        assert again == []
    finally:
        databases.close()


def test_the_daily_deployment_is_in_prefect_yaml() -> None:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    daily = next(d for d in document["deployments"] if d["entrypoint"] == "kalshi_flows.archive:archive_partitions")
    assert daily["name"] == "daily" and daily["schedules"][0]["cron"] == "30 3 * * *"
    assert daily["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_no_destination_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KALSHI_ARCHIVE_URL", raising=False)
    with pytest.raises(ValueError, match="KALSHI_ARCHIVE_URL"):
        asyncio.run(archive_partitions.fn())


async def test_the_flow_packs_each_finished_delta_day_once_and_reports_it(db_url: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "archive"))
    from live_deltas import exact_rows, key_state, write_live_deltas

    day = datetime.now(UTC).date() - timedelta(days=3)
    write_live_deltas(db_url, day)
    before, (size, _) = exact_rows(db_url, day), key_state(db_url, day)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("KALSHI_ARCHIVE_URL", str(tmp_path / "archive"))
    monkeypatch.setenv("KALSHI_ARCHIVE_AFTER_DAYS", "30")
    state = await archive_partitions(return_state=True)
    assert state.is_completed() and await state.result() == []
    report = (await flow_run_artifacts(state.state_details.flow_run_id))["archive"].data
    partition = f"kalshi.orderbook_delta_rows_p{day:%Y%m%d}"
    assert f"| {day} | {partition} | {size:,} |" in report and "Nothing to archive." in report
    packed = key_state(db_url, day)
    assert packed[1] == ["fillfactor=100"] and packed[0] <= size
    assert exact_rows(db_url, day) == before
    # Once: the next run has nothing to pack.
    state = await archive_partitions(return_state=True)
    report = (await flow_run_artifacts(state.state_details.flow_run_id))["archive"].data
    assert "No day partition to pack." in report and partition not in report
    assert key_state(db_url, day) == packed
