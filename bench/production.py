"""(c) The production pipeline: KalshiWebSocketClient -> Recorder -> PostgreSQL, plus a client-only variant.

* ``production``: the real recording path: :class:`kalshi_ws.client.KalshiWebSocketClient` (signed
  handshake, decode, per-sid sequence tracking, books) delivering into
  :class:`kalshi_store.recorder.Recorder` (batching, COPY into staging, INSERT ... ON CONFLICT, session row,
  gap ledger). Done when the stream's end trade is visible in ``kalshi.trades`` (polled on a separate
  connection every 50 ms; the throughput uses that row's commit timestamp, not the poll time).
* ``client``: the same client into a sink that only counts (no storage): the wire layer's own cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import time
from collections.abc import Callable
from typing import Any

from psycopg import sql

#: Tables the mixed and trades-only streams write, and the rest of the recorder's bookkeeping.
#: The tables storing the recorded rows (order book deltas: the compact table of 050, not the view).
#: The tables that hold the rows (behind the views of 050 and 060: a view has no ``xmin`` and is not truncated).
DATA_TABLES = ("trade_rows", "orderbook_snapshots", "orderbook_delta_rows", "ticker_rows")
BOOKKEEPING_TABLES = ("sessions", "gap_ledger", "dead_letter", "orderbook_delta_books", "orderbook_delta_extras",
                      "trade_extras", "ticker_extras", "market_keys", "feeds")

#: ``bench.run --compare-layouts``: the layout of before 050 ("040": wide rows, text keys; a database migrated with
#: ``migrate(dsn, before=50)``, written by a ``CopyWriter`` without moves) against today's ("current").
OLD_LAYOUT = "040"
NEW_LAYOUT = "current"
#: The tables that hold the rows in the 040 layout (tables there, views since 050 and 060).
DATA_TABLES_040 = ("trades", "orderbook_snapshots", "orderbook_deltas", "tickers")
#: The logical tables the streams fill, read through the names both layouts have (tables in 040, views since).
VIEWS = ("orderbook_snapshots", "orderbook_deltas", "trades", "tickers")


def available() -> str | None:
    """``None`` when the production path can run, else what is missing."""
    missing = [name for name in ("kalshi_ws.protocol", "kalshi_ws.client", "kalshi_store.recorder",
                                 "kalshi_store.migrations")
               if importlib.util.find_spec(name) is None]
    return f"not available yet: {', '.join(missing)}" if missing else None


def client_available() -> str | None:
    missing = [name for name in ("kalshi_ws.protocol", "kalshi_ws.client") if importlib.util.find_spec(name) is None]
    return f"not available yet: {', '.join(missing)}" if missing else None


def prepare(dsn: str, layout: str | None = None) -> None:
    """Apply the storage migrations (creates the ``kalshi`` schema and today's partitions); with
    ``layout=OLD_LAYOUT`` only those before 050."""
    from kalshi_store.migrations import migrate

    migrate(dsn, before=50 if layout == OLD_LAYOUT else None)


def use_old_layout() -> None:
    """Make every ``CopyWriter`` of this process write the 040 layout, as ``bench.storage_scale.LegacyWriter`` does:
    no moves (each table stored by its ``TableSpec.insert``, into the 040 tables; its connect-time privilege check
    then asks for none of the compact tables of 050 and 060). For a pipeline process, before it connects."""
    from kalshi_store import writer

    writer.CopyWriter.moves = {}


def _data_tables(layout: str | None) -> tuple[str, ...]:
    return DATA_TABLES_040 if layout == OLD_LAYOUT else DATA_TABLES


def truncate(conn: Any, layout: str | None = None) -> None:
    """Empty the recorder's tables between runs, so every run starts from the same database size."""
    tables = (*_data_tables(layout), *BOOKKEEPING_TABLES)
    names = [sql.Identifier("kalshi", t) for t in tables]
    existing = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'kalshi'")}
    names = [n for n, t in zip(names, tables, strict=True) if t in existing]
    if names:
        conn.execute(sql.SQL("truncate {} cascade").format(sql.SQL(", ").join(names)))
    conn.execute("checkpoint")


def _end_trade_query(layout: str | None, what: str) -> sql.Composed:
    """``what`` (a constant expression) of the stream's end trade, found by its id in the layout's table."""
    if layout == OLD_LAYOUT:
        return sql.SQL("select {} from kalshi.trades where trade_id = %s").format(sql.SQL(what))
    return sql.SQL("select {} from kalshi.trade_rows where trade_uuid = %s::uuid").format(sql.SQL(what))


def measure_queries(layout: str | None = None) -> tuple[sql.Composable, sql.Composable]:
    """(commit time of the end trade, every stored row's receive time in ns and xmin)."""
    end_q = _end_trade_query(layout, "pg_xact_commit_timestamp(xmin)")
    parts = [sql.SQL("select (extract(epoch from received_at) * 1e9)::bigint as received_ns, xmin from {}").format(
        sql.Identifier("kalshi", t)) for t in _data_tables(layout)]
    return end_q, sql.SQL(" union all ").join(parts)


def view_counts(conn: Any) -> dict[str, int]:
    """Rows per logical table, read through the names both layouts have (``--compare-layouts`` checks that both
    stored the same)."""
    return {name: conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("kalshi", name))).fetchone()[0]
            for name in VIEWS}


def health(conn: Any) -> dict[str, Any]:
    """What the run left in the bookkeeping tables: gap-ledger rows by kind (a clean run has one
    ``disconnect``, the client's stop at the end, and possibly ``backpressure``) and dead letters."""
    kinds = dict(conn.execute("select kind, count(*) from kalshi.gap_ledger group by kind").fetchall())
    dead = conn.execute("select count(*) from kalshi.dead_letter").fetchone()[0]
    status = conn.execute("select status from kalshi.sessions order by started_at desc limit 1").fetchone()
    return {"gap_ledger": kinds, "dead_letter": dead, "session_status": status[0] if status else None}


def _subscriptions(cfg: dict[str, Any]) -> list[Any]:
    from kalshi_ws.protocol import Subscription

    tickers = tuple(cfg["tickers"])
    return [Subscription(channel, tickers) for channel in cfg["channels"]]


def _client(cfg: dict[str, Any], sink: Any) -> Any:
    from kalshi_ws.auth import Signer
    from kalshi_ws.client import ClientOptions, KalshiWebSocketClient

    signer = Signer.from_file(cfg["key_id"], cfg["private_key_path"])
    return KalshiWebSocketClient(cfg["ws_url"], sink, _subscriptions(cfg), signer=signer,
                                 options=ClientOptions(max_connect_failures=3))


class CountingSink:
    """A MessageSink that stores nothing: counts messages and events, notices the end trade."""

    def __init__(self, end_trade_id: str) -> None:
        self.end_trade_id = end_trade_id
        self.messages = 0
        self.events: dict[str, int] = {}
        self.done = asyncio.Event()
        self.done_ns = 0
        from kalshi_ws import messages as m

        self._trade = m.Trade

    def on_message(self, message: Any, generation: int, received_ns: int) -> None:
        self.messages += 1
        if type(message) is self._trade and message.msg.trade_id == self.end_trade_id:
            self.done_ns = time.time_ns()
            self.done.set()

    def on_event(self, event: Any) -> None:
        name = type(event).__name__
        self.events[name] = self.events.get(name, 0) + 1

    @property
    def paused(self) -> bool:
        return False

    async def wait_resumed(self) -> None:
        return None


async def run_client_only(cfg: dict[str, Any], child_stats: Callable[[float], dict[str, Any]]) -> dict[str, Any]:
    sink = CountingSink(cfg["end_trade_id"])
    client = _client(cfg, sink)
    cpu0 = time.process_time()
    runner = asyncio.create_task(client.run())
    done = asyncio.create_task(sink.done.wait())
    await asyncio.wait((runner, done), return_when=asyncio.FIRST_COMPLETED)
    stats = child_stats(cpu0)
    client.stop()
    await runner
    if not sink.done.is_set():
        raise RuntimeError(f"client stopped before the end of the stream; events {sink.events}")
    return {"done_ns": sink.done_ns, "delivered": sink.messages, "events": sink.events, **stats}


async def run(cfg: dict[str, Any], child_stats: Callable[[float], dict[str, Any]]) -> dict[str, Any]:
    """The real path. Session bookkeeping included: open_session before, close_session after."""
    import tempfile

    import psycopg

    from kalshi_store.recorder import Recorder

    end_id = cfg["end_trade_id"]
    layout = cfg.get("layout")
    if layout == OLD_LAYOUT:
        use_old_layout()
    end_poll = _end_trade_query(layout, "1")
    with tempfile.TemporaryDirectory(prefix="kalshi-bench-spill-") as spill:
        async with Recorder(cfg["dsn"], spill_dir=spill, **cfg.get("recorder_options", {})) as recorder:
            await recorder.open_session("bench", "bench", cfg["tickers"], cfg["channels"])
            client = _client(cfg, recorder)
            poll = await psycopg.AsyncConnection.connect(cfg["dsn"], autocommit=True)
            cpu0 = time.process_time()
            runner = asyncio.create_task(client.run(), name="bench-client")
            done_ns = 0
            try:
                while not runner.done():
                    cur = await poll.execute(end_poll, (end_id,))
                    if await cur.fetchone() is not None:
                        done_ns = time.time_ns()
                        break
                    await asyncio.sleep(0.05)
                stats = child_stats(cpu0)
                rec = recorder.stats()
            finally:
                await poll.close()
                client.stop()
                with contextlib.suppress(Exception):
                    await runner
            if not done_ns:
                raise RuntimeError(f"the client stopped before the end trade was stored: {runner.exception()!r}")
            await recorder.close_session("completed")
    return {"done_ns": done_ns, "recorder": {"received": rec.received, "written": rec.written,
                                             "duplicates": rec.duplicates, "rows_spilled": rec.rows_spilled,
                                             "paused": rec.paused, "lag_seconds": rec.lag_seconds},
            **stats}


def storage_available() -> str | None:
    missing = [name for name in ("kalshi_store.rows", "kalshi_store.writer", "kalshi_store.batch")
               if importlib.util.find_spec(name) is None]
    return f"not available yet: {', '.join(missing)}" if missing else None


def breakdown_stages(msgs: list[Any], dsn: str, n: int, timer: Callable[..., float]) -> dict[str, float]:
    """Storage stages, client CPU per frame: row building (rows.py), COPY formatting into the staging tables,
    and CopyWriter.write as a whole (COPY + INSERT ... ON CONFLICT + commit, the client's share only); plus the
    wall time of the server-side merge per batch of 5 000 frames (not client CPU: the database's work)."""
    import datetime as dt
    import uuid

    import psycopg

    from kalshi_store.batch import Batch
    from kalshi_store.rows import TABLES, RowBuilders
    from kalshi_store.writer import CopyWriter

    builders = RowBuilders(str(uuid.uuid4()), dt.datetime.now(dt.UTC).date())
    dispatch = builders.dispatch
    ns = time.time_ns()
    out: dict[str, float] = {}
    holder: dict[str, dict[str, list[Any]]] = {}

    def build() -> None:
        tables: dict[str, list[Any]] = {}
        for msg in msgs:
            table, fn = dispatch[type(msg)]
            rows = tables.get(table)
            if rows is None:
                rows = tables[table] = []
            rows.append(fn(msg, 1, ns))
        holder["tables"] = tables

    out["rows (RowBuilders.dispatch, per frame)"] = timer(build, n)
    tables = holder["tables"]
    with psycopg.connect(dsn) as conn:
        for spec in TABLES.values():
            conn.execute(spec.create_staging)
        conn.commit()

        def copy_only() -> None:
            with conn.cursor() as cur:
                for name, rows in tables.items():
                    with cur.copy(TABLES[name].copy) as cp:
                        write_row = cp.write_row
                        for row in rows:
                            write_row(row)
            conn.rollback()

        out["COPY formatting + send (write_row, per frame)"] = timer(copy_only, n)
        for name, rows in tables.items():
            out[f"  COPY {name} (per row of that table)"] = timer(
                lambda rows=rows, name=name: _copy_one(conn, TABLES[name], rows), len(rows))
        # Server side: INSERT ... SELECT ... ON CONFLICT DO NOTHING from staging, wall time per row (5000-row
        # chunks, fresh keys each time; the table is emptied first). This is PostgreSQL's CPU, not the client's.
        conn.execute("set time zone 'UTC'")
        truncate(conn)
        conn.commit()
        for name, rows in tables.items():
            spec = TABLES[name]
            total = 0.0
            for i in range(0, len(rows), 5_000):
                chunk = rows[i:i + 5_000]
                with conn.cursor() as cur:
                    with cur.copy(spec.copy) as cp:
                        for row in chunk:
                            cp.write_row(row)
                    t0 = time.perf_counter()
                    cur.execute(spec.insert)
                    total += time.perf_counter() - t0
                conn.commit()
            out[f"  server INSERT..ON CONFLICT {name} (wall us per row)"] = total * 1e6 / len(rows)

    async def write_batches() -> tuple[float, float]:
        writer = await CopyWriter.connect(dsn)
        try:
            cpu = 0.0
            wall = 0.0
            batches = 0
            step = 5_000
            for i in range(0, n, step):
                part: dict[str, list[Any]] = {}
                for msg in msgs[i:i + step]:
                    table, fn = dispatch[type(msg)]
                    part.setdefault(table, []).append(fn(msg, 1, ns))
                c0, w0 = time.process_time(), time.perf_counter()
                await writer.write(Batch(batch_id=i, session_id=builders.session_id,
                                         session_date=builders.session_date, tables=part))
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                batches += 1
            return cpu * 1e6 / n, wall * 1e3 / batches
        finally:
            await writer.close()

    with psycopg.connect(dsn, autocommit=True) as conn:
        truncate(conn)
    cpu_us, wall_ms = asyncio.run(write_batches())
    out["CopyWriter.write total, client CPU (per frame)"] = cpu_us
    out["CopyWriter.write wall per 5000-frame batch (ms, incl. server)"] = wall_ms
    return out


def _copy_one(conn: Any, spec: Any, rows: list[Any]) -> None:
    with conn.cursor() as cur, cur.copy(spec.copy) as cp:
        write_row = cp.write_row
        for row in rows:
            write_row(row)
    conn.rollback()
