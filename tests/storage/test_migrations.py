"""Migrations, partitions, retention and the reader role, against a real PostgreSQL."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from kalshi_store.embedded import EmbeddedPostgres, ensure_database
from kalshi_store.migrations import SQL_DIR, MigrationChecksumError, MigrationError, discover, migrate
from kalshi_store.retention import apply_retention

TABLES = {
    "sessions", "gap_ledger", "dead_letter", "market_keys", "feeds", "trade_rows", "trade_extras",
    "orderbook_snapshots", "orderbook_delta_books", "orderbook_delta_rows", "orderbook_delta_extras", "ticker_rows",
    "ticker_extras", "fills", "user_orders", "market_positions",
    "market_lifecycle", "event_lifecycle", "event_fee_updates", "order_group_updates", "communications", "reference_values", "schema_migrations",
}


def test_migrations_apply_to_an_empty_database_then_are_a_no_op(empty_db_url: str) -> None:
    applied = migrate(empty_db_url)
    assert applied == [m.name for m in discover()]
    assert migrate(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        tables = {r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'kalshi' and c.relkind in ('r', 'p') and not c.relispartition").fetchall()}
        assert TABLES <= tables
        # Order book deltas are read through a view with the columns of the table it replaced (050).
        assert conn.execute("select relkind from pg_class where oid = 'kalshi.orderbook_deltas'::regclass"
                            ).fetchone() == ("v",)
        # So are trades and ticker updates (060).
        assert conn.execute("select array_agg(relkind::text order by relname) from pg_class "
                            "where oid in ('kalshi.trades'::regclass, 'kalshi.tickers'::regclass)"
                            ).fetchone() == (["v", "v"],)
        recorded = conn.execute("select name, checksum from kalshi.schema_migrations order by version").fetchall()
        assert recorded == [(m.name, m.checksum) for m in discover()]


def test_every_user_facing_column_has_a_comment(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        missing = conn.execute(
            """
            select c.relname || '.' || a.attname
            from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
            where n.nspname = 'kalshi' and c.relkind in ('r', 'p') and not c.relispartition
              and c.relname = any(%s) and c.relname <> 'schema_migrations'
              and col_description(c.oid, a.attnum) is null
            """,
            (sorted(TABLES),),
        ).fetchall()
    assert missing == []


def test_a_changed_released_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    migrate(empty_db_url, sql_dir=sql_dir)
    first = sorted(sql_dir.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(MigrationChecksumError, match="changed after it was applied"):
        migrate(empty_db_url, sql_dir=sql_dir)


def test_a_new_migration_is_applied_once(empty_db_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    migrate(empty_db_url, sql_dir=sql_dir)
    (sql_dir / "099_extra.sql").write_text("create table kalshi.extra (x integer);")
    assert migrate(empty_db_url, sql_dir=sql_dir) == ["099_extra.sql"]
    assert migrate(empty_db_url, sql_dir=sql_dir) == []


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_no_migration_files_is_an_error_not_a_migrated_database(folder: str, tmp_path: Path) -> None:
    # An installation that lost its migrations (a wheel without package data) used to apply nothing and
    # report "database migrated". Nothing is connected to: the error comes first.
    sql_dir = tmp_path / "sql"
    if folder == "empty":
        sql_dir.mkdir()
        (sql_dir / "README").write_text("not a migration")
    with pytest.raises(MigrationError, match=r"incomplete \(reinstall the package\)"):
        migrate("postgresql://nobody@127.0.0.1:1/none", sql_dir=sql_dir)


def test_reader_role_can_select_and_cannot_write(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("set role kalshi_reader")
        assert conn.execute("select count(*) from kalshi.trades").fetchone() == (0,)
        assert conn.execute("select count(*) from kalshi.sessions").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "insert into kalshi.sessions (session_id, market_set, environment, started_at) "
                "values (gen_random_uuid(), 'x', 'demo', now())"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from kalshi.trades")
        conn.execute("reset role")
        # Tables created later by the migrating role are readable too (default privileges).
        conn.execute("create table kalshi.later (x integer)")
        conn.execute("set role kalshi_reader")
        assert conn.execute("select count(*) from kalshi.later").fetchone() == (0,)


def _insert_trade(conn: psycopg.Connection, trade_id: str, day: date) -> None:
    conn.execute(
        "insert into kalshi.trades (trade_id, trade_date, market_ticker, yes_price, no_price, count, received_at,"
        " source) values (%s, %s, 'M', 0.5, 0.5, 1, now(), 'ws')",
        (trade_id, day),
    )


def test_rows_outside_the_partitions_land_in_default_and_move_to_a_new_partition(db_url: str) -> None:
    today = datetime.now(UTC).date()
    far = today + timedelta(days=40)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _insert_trade(conn, "far", far)
        _insert_trade(conn, "today", today)
        # Trades are stored in kalshi.trade_rows (060), keyed by kalshi.trade_uuid(trade_id).
        located = ("select tableoid::regclass::text from kalshi.trade_rows "
                   "where trade_uuid = kalshi.trade_uuid('far')")
        where = conn.execute(located).fetchone()
        assert where == ("kalshi.trade_rows_default",)
        created = conn.execute("select kalshi.ensure_partitions(45)").fetchone()
        assert created is not None and created[0] > 0
        where = conn.execute(located).fetchone()
        assert where == (f"kalshi.trade_rows_p{far:%Y%m%d}",)
        assert conn.execute("select count(*) from kalshi.trades").fetchone() == (2,)
        assert conn.execute("select kalshi.ensure_partitions(45)").fetchone() == (0,)


def test_retention_drops_old_days_and_keeps_recent_ones(db_url: str) -> None:
    today = datetime.now(UTC).date()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select kalshi.ensure_partitions(1, 5)")
        _insert_trade(conn, "old", today - timedelta(days=4))
        _insert_trade(conn, "ancient", today - timedelta(days=400))  # in the default partition
        _insert_trade(conn, "new", today)
    dropped = apply_retention(db_url, keep_days=2)
    names = {name for name, _action, _rows in dropped}
    assert f"kalshi.trade_rows_p{today - timedelta(days=4):%Y%m%d}" in names
    assert "kalshi.trade_rows_default" in names
    with psycopg.connect(db_url) as conn:
        remaining = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
        assert remaining == {"new"}
        assert conn.execute("select to_regclass(%s)", (f"kalshi.trade_rows_p{today:%Y%m%d}",)).fetchone() != (None,)


def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(migrate, [empty_db_url] * 3))
    assert sorted(len(r) for r in results) == [0, 0, len(discover())]
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("select count(*) from kalshi.schema_migrations").fetchone() == (len(discover()),)


def test_embedded_server_restarts_on_the_same_url() -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="kalshi-test-restart-"))  # not under pytest's 0700 tmp (server user)
    server = EmbeddedPostgres(base / "pg", settings={"fsync": "off"})
    try:
        url = server.start()
        assert server.is_running and server.start() == url  # a second start reuses the running server
        database = server.create_database("kalshi")
        server.stop("immediate")
        assert not server.is_running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(database, connect_timeout=2).close()
        assert server.start() == url
        with psycopg.connect(database) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert ensure_database(None, base).endswith("/kalshi")  # data_dir/postgres: another server, same API
        EmbeddedPostgres(base / "postgres").stop()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
