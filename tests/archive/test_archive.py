"""The archive tier against a real recording: every row round-trips exactly, crashes are repaired, bad files are
never trusted."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql
from reporting_recording import Recording

from kalshi_store import archive, reads

TABLES = tuple(archive.ARCHIVED_TABLES)


def _today() -> Any:
    return datetime.now(UTC).date()


def _hot_rows(url: str, table: str) -> list[dict[str, Any]]:
    key = archive.ARCHIVED_TABLES[table].key
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql.SQL("select * from {} order by {}").format(
            sql.Identifier("kalshi", table), sql.SQL(", ").join(map(sql.Identifier, key)))).fetchall()


def _python(table: pa.Table, key: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        for name, field in zip(table.column_names, table.schema, strict=True):
            if pa.types.is_fixed_size_binary(field.type) and row[name] is not None:
                row[name] = uuid.UUID(bytes=row[name])
    return sorted(rows, key=lambda r: tuple(r[c] for c in key))


def _exact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Values with their exact representation (a Decimal's digits and scale, not only its value)."""
    def one(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, list):
            return [one(v) for v in value]
        return value
    return [{k: one(v) for k, v in row.items()} for row in rows]


def _partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where c.relname ~ '_p[0-9]{8}$'").fetchall()}


def test_every_row_round_trips_exactly_and_the_partition_is_dropped(recorded: Recording, tmp_path: Path) -> None:
    day = _today()
    before = {table: _hot_rows(recorded.url, table) for table in TABLES}
    assert len(before["orderbook_deltas"]) > 1000 and before["trades"] and before["tickers"]
    moved = [archive.archive_day(recorded.url, str(tmp_path), table, day) for table in TABLES]
    for table, result in zip(TABLES, moved, strict=True):
        assert result is not None and result.rows == len(before[table]) and result.bytes > 0
        assert Path(result.path) == tmp_path / f"table={table}" / f"date={day}" / "part-0.parquet"
        assert _hot_rows(recorded.url, table) == []
        stored = archive.read_archive(str(tmp_path), table, [day])
        assert stored is not None
        assert _exact(_python(stored, archive.ARCHIVED_TABLES[table].key)) == _exact(before[table]), table
    assert not any(day.strftime("%Y%m%d") in name for name in _partitions(recorded.url))
    assert archive.archived_days(str(tmp_path), "orderbook_deltas") == [day]
    windows = archive.read_archive(str(tmp_path), archive.WINDOWS_TABLE, [day])
    assert windows is not None and windows.num_rows > 0
    # Archiving again finds nothing to do.
    assert archive.archive_day(recorded.url, str(tmp_path), "trades", day) is None


def test_a_crash_between_write_and_drop_is_verified_and_finished(recorded: Recording, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    day = _today()
    before = _hot_rows(recorded.url, "orderbook_deltas")

    def crash(*args: Any) -> bool:
        raise SystemExit("killed after the write")

    with monkeypatch.context() as patch:
        patch.setattr(archive, "_drop_if_unchanged", crash)
        with pytest.raises(SystemExit):
            archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", day)
    assert len(_hot_rows(recorded.url, "orderbook_deltas")) == len(before)  # nothing dropped
    path = tmp_path / "table=orderbook_deltas" / f"date={day}" / "part-0.parquet"
    written = path.stat().st_mtime_ns
    moved = archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", day)
    assert moved is not None and moved.rows == len(before)
    assert path.stat().st_mtime_ns == written  # the file verified: not rewritten
    assert _hot_rows(recorded.url, "orderbook_deltas") == []
    assert not list(path.parent.glob(".*.tmp"))


def test_an_existing_file_that_does_not_match_is_never_trusted(recorded: Recording, tmp_path: Path) -> None:
    day = _today()
    spec = archive.ARCHIVED_TABLES["trades"]
    before = _hot_rows(recorded.url, "trades")
    # A file holding only some of the partition's rows (written before later rows arrived, then the run died).
    path = tmp_path / "table=trades" / f"date={day}" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    with psycopg.connect(recorded.url) as conn:
        columns = archive._columns(conn, "trades")
        schema = archive._schema(conn, archive._day_source("trades", day, f"trade_rows_p{day:%Y%m%d}"), columns)
        rows = conn.execute(sql.SQL("select * from kalshi.trades order by trade_id limit 3")).fetchall()
    pq.write_table(archive._to_arrow(schema, rows), path)
    moved = archive.archive_day(recorded.url, str(tmp_path), "trades", day)
    assert moved is not None and moved.rows == len(before)
    stored = archive.read_archive(str(tmp_path), "trades", [day])
    assert stored is not None
    assert _exact(_python(stored, spec.key)) == _exact(before)


def test_an_unreadable_file_stops_the_day_and_keeps_the_partition(recorded: Recording, tmp_path: Path) -> None:
    day = _today()
    path = tmp_path / "table=tickers" / f"date={day}" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    before = _hot_rows(recorded.url, "tickers")
    with pytest.raises(archive.ArchiveError, match="not trusted"):
        archive.archive_day(recorded.url, str(tmp_path), "tickers", day)
    assert _hot_rows(recorded.url, "tickers") == before
    assert path.read_bytes() == b"not parquet"


def test_an_archived_day_refilled_later_keeps_both_archives(recorded: Recording, tmp_path: Path) -> None:
    day = _today()
    before = _hot_rows(recorded.url, "tickers")
    archive.archive_day(recorded.url, str(tmp_path), "tickers", day)
    # Late rows of the day land in a recreated partition (ensure_partitions recreates yesterday and today).
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        conn.execute("select kalshi.ensure_partitions(1)")
        conn.execute("insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, price, yes_bid, yes_ask, "
                     "received_at) values ('LATE', now(), gen_random_uuid(), 0.5100, 0.5000, 0.5200, now())")
    moved = archive.archive_day(recorded.url, str(tmp_path), "tickers", day)
    assert moved is not None and moved.rows == 1
    stored = archive.read_archive(str(tmp_path), "tickers", [day])
    assert stored is not None and stored.num_rows == len(before) + 1


_LATE_ROWS = {
    "tickers": "insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, received_at) "
               "values ('LATE', now(), gen_random_uuid(), now())",
    "orderbook_deltas": "insert into kalshi.orderbook_deltas (session_id, session_date, generation, sid, seq, "
                        "market_ticker, side, price, delta, received_at) "
                        "values (gen_random_uuid(), current_date, 1, 1, 1, 'LATE', 'yes', 0.5, 1, now())",
}


@pytest.mark.parametrize("table", sorted(_LATE_ROWS))
def test_rows_arriving_during_the_archive_send_the_day_round_again(recorded: Recording, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   table: str) -> None:
    day = _today()
    real = archive._drop_if_unchanged
    calls: list[str] = []

    def late_row(db_url: str, table: str, day: date, fingerprint: Any) -> bool:
        if not calls:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(sql.SQL(_LATE_ROWS[table]))  # type: ignore[arg-type]  # a constant
        calls.append(table)
        return real(db_url, table, day, fingerprint)

    before = _hot_rows(recorded.url, table)
    monkeypatch.setattr(archive, "_drop_if_unchanged", late_row)
    moved = archive.archive_day(recorded.url, str(tmp_path), table, day)
    assert len(calls) == 2
    assert moved is not None and moved.rows == len(before) + 1
    stored = archive.read_archive(str(tmp_path), table, [day])
    assert stored is not None and stored.num_rows == len(before) + 1
    assert _hot_rows(recorded.url, table) == []


def test_days_to_archive_are_the_old_partitions_only(recorded: Recording) -> None:
    with pytest.raises(archive.ArchiveError, match="at least 2 days"):
        archive.days_to_archive(recorded.url, 1)
    later = _today().replace(year=_today().year + 1)
    todo = archive.days_to_archive(recorded.url, 30, today=later)
    assert ("orderbook_deltas", _today()) in todo and {t for t, _ in todo} == set(TABLES)
    assert archive.days_to_archive(recorded.url, 2) == [
        (t, d) for t, d in archive.days_to_archive(recorded.url, 2) if (_today() - d).days > 2]


def test_an_object_store_style_url_works_like_a_folder(recorded: Recording, tmp_path: Path) -> None:
    """A URL goes through pyarrow.fs (file:// here; s3://, gs://... the same way)."""
    url = f"file://{tmp_path}/store"
    before = _hot_rows(recorded.url, "trades")
    moved = archive.archive_day(recorded.url, url, "trades", _today())
    assert moved is not None and moved.rows == len(before)
    assert (tmp_path / "store" / "table=trades" / f"date={_today()}" / "part-0.parquet").is_file()
    stored = archive.read_archive(url, "trades", [_today()])
    assert stored is not None and _exact(_python(stored, ("trade_id", "trade_date"))) == _exact(before)
    assert archive.archived_days(url, "trades") == [_today()]


_DELTA_COLUMNS = ("session_id, session_date, generation, sid, seq, market_ticker, market_id, side, price, delta, "
                  "client_order_id, subaccount, exchange_ts, received_at")


def _day_partitions(url: str, parent: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = %s::regclass", (f"kalshi.{parent}",)).fetchall()}


def test_deltas_are_archived_as_logical_rows_extras_included(recorded: Recording, tmp_path: Path) -> None:
    """The compact layout (050) is archived as the view's rows: our own orders' columns and an exchange time kept
    in the extras come back exactly; the day partitions of the rows and the extras go, and the day's books with them."""
    day = _today()
    partition = f"_p{day:%Y%m%d}"
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        for seq, extra in enumerate((("own-1", 2, "2026-01-01 00:00:00.000123+00"),
                                     (None, None, "2001-01-01 00:00:00+00"),
                                     ("own-2", None, None)), start=1):
            conn.execute(sql.SQL("insert into kalshi.orderbook_deltas ({}) values ({})").format(
                sql.SQL(_DELTA_COLUMNS), sql.SQL(", ").join(sql.Placeholder() * 14)),
                (recorded.session_id, day, 9, 99, seq, "OWN-MARKET", None, "no", Decimal("0.0990"), Decimal("-3.00"),
                 *extra[:2], extra[2], datetime.now(UTC)))
        extras = conn.execute("select count(*) from kalshi.orderbook_delta_extras").fetchone()
        books = conn.execute("select count(*) from kalshi.orderbook_delta_books where session_date = %s",
                             (day,)).fetchone()
    assert extras is not None and extras[0] >= 3 and books is not None
    before = _hot_rows(recorded.url, "orderbook_deltas")
    assert {"own-1", "own-2"} <= {r["client_order_id"] for r in before}
    assert f"orderbook_delta_extras{partition}" in _day_partitions(recorded.url, "orderbook_delta_extras")

    moved = archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", day)
    assert moved is not None and moved.rows == len(before)
    stored = archive.read_archive(str(tmp_path), "orderbook_deltas", [day])
    assert stored is not None and stored.column_names == [name for name, _ in reads.COLUMNS["orderbook_deltas"]]
    assert _exact(_python(stored, archive.ARCHIVED_TABLES["orderbook_deltas"].key)) == _exact(before)
    tickers = stored.column("market_ticker").to_pylist()
    assert tickers == sorted(tickers)  # sorted by market (what compresses)
    assert _hot_rows(recorded.url, "orderbook_deltas") == []
    for parent in ("orderbook_delta_rows", "orderbook_delta_extras"):
        assert f"{parent}{partition}" not in _day_partitions(recorded.url, parent)
    with psycopg.connect(recorded.url) as conn:
        kept = conn.execute("select count(*) from kalshi.orderbook_delta_books where session_date = %s",
                            (day,)).fetchone()
    assert books is not None and books[0] > 0 and kept == (0,)
    assert archive.archive_day(recorded.url, str(tmp_path), "orderbook_deltas", day) is None


_UNSEEN_ROWS = {
    # A stored delta whose book is missing, a stored trade whose market is missing: not in the view.
    "orderbook_deltas": ("orderbook_delta_rows",
                         "insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, price, "
                         "delta) values (now(), 1, -1, %s, 0.5, 1)"),
    "trades": ("trade_rows",
               "insert into kalshi.trade_rows (received_at, trade_uuid, market_key, feed_key, trade_date, flags, "
               "yes_price, count) values (now(), gen_random_uuid(), -1, -1, %s, 0, 0.5, 1)"),
}


@pytest.mark.parametrize("table", sorted(_UNSEEN_ROWS))
def test_a_row_the_view_does_not_show_stops_the_day(recorded: Recording, tmp_path: Path, table: str) -> None:
    """A stored row the logical table (the view) does not show would be dropped unarchived with its partition, so
    the day is refused and nothing is dropped."""
    day = _today()
    parent, insert = _UNSEEN_ROWS[table]
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        conn.execute(sql.SQL(insert), (day,))  # type: ignore[arg-type]  # a constant
    before = _hot_rows(recorded.url, table)
    with pytest.raises(archive.ArchiveError, match=f"1 stored rows are not in kalshi.{table}"):
        archive.archive_day(recorded.url, str(tmp_path), table, day)
    assert _hot_rows(recorded.url, table) == before
    assert f"{parent}_p{day:%Y%m%d}" in _day_partitions(recorded.url, parent)
    assert not (tmp_path / f"table={table}").exists()


_EXTRA_ROWS = {
    # A trade id that is not a uuid, a no_price that is not 1 - yes_price, an odd side: kept in trade_extras.
    # (Same scales as the recorded rows: a file holds one scale per column, the largest of the day.)
    "trades": ("insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, "
               "taker_outcome_side, exchange_ts, received_at, source) "
               "values ('Odd-Trade-Id', current_date, 'ODD', 0.4100, 0.6000, 2.50, 'sideways', now(), now(), 'rest')"),
    # A content hash that is not the md5 of the values: kept in ticker_extras.
    "tickers": ("insert into kalshi.tickers (market_ticker, exchange_ts, content_hash, price, received_at) "
                "values ('ODD', now(), gen_random_uuid(), 0.4100, now())"),
}


@pytest.mark.parametrize("table", sorted(_EXTRA_ROWS))
def test_trades_and_tickers_are_archived_as_logical_rows_extras_included(recorded: Recording, tmp_path: Path,
                                                                         table: str) -> None:
    """The compact layout (060) is archived as the view's rows, the extras' values included; the day partitions of
    the rows and the extras go, the markets and feeds stay."""
    day = _today()
    parents = {"trades": ("trade_rows", "trade_extras"), "tickers": ("ticker_rows", "ticker_extras")}[table]
    with psycopg.connect(recorded.url, autocommit=True) as conn:
        conn.execute(sql.SQL(_EXTRA_ROWS[table]))  # type: ignore[arg-type]  # a constant
        extras = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("kalshi", parents[1])))
        assert extras.fetchone() == (1,)
        dimensions = conn.execute("select (select count(*) from kalshi.market_keys), "
                                  "(select count(*) from kalshi.feeds)").fetchone()
    before = _hot_rows(recorded.url, table)
    assert len(before) > 1 and "ODD" in {r["market_ticker"] for r in before}
    for parent in parents:
        assert f"{parent}_p{day:%Y%m%d}" in _day_partitions(recorded.url, parent)

    moved = archive.archive_day(recorded.url, str(tmp_path), table, day)
    assert moved is not None and moved.rows == len(before)
    stored = archive.read_archive(str(tmp_path), table, [day])
    assert stored is not None and stored.column_names == [name for name, _ in reads.COLUMNS[table]]
    assert _exact(_python(stored, archive.ARCHIVED_TABLES[table].key)) == _exact(before)
    assert _hot_rows(recorded.url, table) == []
    for parent in parents:
        assert f"{parent}_p{day:%Y%m%d}" not in _day_partitions(recorded.url, parent)
    with psycopg.connect(recorded.url) as conn:
        kept = conn.execute("select (select count(*) from kalshi.market_keys), "
                            "(select count(*) from kalshi.feeds)").fetchone()
    assert kept == dimensions


