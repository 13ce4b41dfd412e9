"""The archive tier: whole days of market data moved from PostgreSQL partitions to Parquet files.

A day partition of ``kalshi.trades``, ``kalshi.orderbook_snapshots``, ``kalshi.orderbook_deltas`` or
``kalshi.tickers`` older than the configured age is written to one Parquet file (zstd) in a folder or an
object store (any URI ``pyarrow.fs.FileSystem.from_uri`` understands: a path, ``file://``, ``s3://``,
``gs://``...), laid out by table and day, hive style::

    <archive>/table=orderbook_deltas/date=2026-11-03/part-0.parquet
    <archive>/table=untrusted_windows/date=2026-11-03/part-0.parquet

Rows are sorted by market, then stream/time inside a file (what makes zstd and the delta encodings small, and
lets a reader skip row groups by market). Numeric columns stay exact: ``decimal128`` with the largest scale found
in the partition (never rounded: a value that does not fit fails the write); timestamps are UTC microseconds.

One day of one table moves in four steps, each safe to repeat after a crash:

1. read the partition and its fingerprint (row count + an order-independent checksum of every row) in one
   repeatable-read snapshot;
2. write the file under a temporary name, read it back and compare it with the rows read, value for value,
   then move it to its final name. A final file that already exists is reused only when it holds exactly the
   partition's rows (a crash after step 2); otherwise its rows are never taken as the partition's: the new file
   is the partition's rows plus those of the old file whose key is not in the partition (an earlier archive of
   the same day, when late rows refilled it), and is verified the same way;
3. the untrusted windows around the day (``kalshi.untrusted_windows``, computed from the rows about to leave) are
   merged into ``table=untrusted_windows``, so archived rows keep their trust flag. A run archiving several tables
   computes each day's windows once, before it drops anything (:func:`windows_around`), and stores those for every
   table of the day: the gap bounds and abandoned-gap ends the view derives from deltas, trades and snapshots do
   not change as the day's tables leave one by one;
4. in one transaction, with writers to that partition blocked: the partition's fingerprint is taken again and must
   equal step 1's (a row that arrived since sends the day back to step 1), then the partition is detached and
   dropped.

``orderbook_deltas`` is a view over compact tables since migration 050 (docs/storage.md): its archive file holds
the view's rows of the day (``session_date``), the same columns as before, and its step 4 drops the day partitions
of ``orderbook_delta_rows`` and ``orderbook_delta_extras`` together, then, in the same transaction, the day's books
that no delta refers to any more. ``trades`` and ``tickers`` are views too since 060: a day is the view's rows of the
day (``trade_date``; ``exchange_ts`` in the UTC day), and the day partitions of ``trade_rows`` and ``trade_extras``
(``ticker_rows`` and ``ticker_extras``) are dropped together, then the feeds only the dropped days used (the
market keys stay). :data:`_STORAGE` is the only
place that knows this.

Rows of an old day that sit in a table's ``_default`` partition (written before the day's partition existed and
never moved) stay in PostgreSQL; the read side reads them with the rest of the hot tier.

Every query of the archive tier, and every read of the files, is in this module: a change of the hot tables'
physical layout is adapted here, in :data:`_STORAGE` (and in :mod:`kalshi_store.reads`).
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from psycopg import sql

from kalshi_store import retention

__all__ = [
    "ARCHIVED_TABLES",
    "WINDOWS_TABLE",
    "ArchiveError",
    "ArchivedTable",
    "Moved",
    "archive_day",
    "archive_older_than",
    "archived_days",
    "day_signature",
    "day_windows",
    "days_to_archive",
    "days_not_to_pack",
    "open_archive",
    "read_archive",
    "windows_around",
]

#: The archived untrusted windows (``kalshi.untrusted_windows`` of each archived day and its neighbours).
WINDOWS_TABLE = "untrusted_windows"
#: Minimum age: ``kalshi.ensure_partitions`` recreates yesterday's partition, so younger days could come back.
MIN_AGE_DAYS = 2
#: Attempts of one day when rows keep arriving between the read and the drop.
ATTEMPTS = 3
#: How long the drop transaction waits for the table's writers before giving up (and retrying on the next run).
LOCK_TIMEOUT = "10s"
#: Rows read from PostgreSQL at a time, and rows per Parquet row group (one chunk = one row group).
_CHUNK_ROWS = 128 * 1024
_PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>[0-9]{8})$")


class ArchiveError(RuntimeError):
    """A day could not be archived; nothing was dropped. The message says what did not match or what to do."""


@dataclass(frozen=True)
class ArchivedTable:
    """A day-partitioned table of the hot tier and how its archive files are laid out."""

    name: str
    #: The natural key (the primary key): a row in both tiers is the same row.
    key: tuple[str, ...]
    #: Order of the rows inside a file: market first, then the order the data happened in.
    sort: tuple[str, ...]
    #: Columns stored with delta encoding instead of a dictionary (increasing along ``sort``).
    delta_encoded: tuple[str, ...]


_STREAM = ("session_id", "generation", "sid", "seq", "session_date")
ARCHIVED_TABLES: dict[str, ArchivedTable] = {
    t.name: t for t in (
        ArchivedTable("trades", ("trade_id", "trade_date"), ("market_ticker", "exchange_ts", "seq", "trade_id"),
                      ("exchange_ts", "received_at")),
        ArchivedTable("orderbook_snapshots", _STREAM, ("market_ticker", "session_id", "generation", "sid", "seq"),
                      ("seq", "received_at")),
        ArchivedTable("orderbook_deltas", _STREAM, ("market_ticker", "session_id", "generation", "sid", "seq"),
                      ("seq", "exchange_ts", "received_at")),
        ArchivedTable("tickers", ("market_ticker", "exchange_ts", "content_hash"),
                      ("market_ticker", "exchange_ts", "content_hash"), ("exchange_ts", "received_at")),
    )
}


@dataclass(frozen=True)
class _Storage:
    """Where a logical table's rows of one day are stored in PostgreSQL (what :func:`archive_day` reads and drops).

    Every layout-specific detail of the archive is here: a table stored as itself has ``partitioned == (name,)``
    and its day partition is read as is; a table stored in several partitioned tables behind a view (050's
    ``orderbook_deltas``) is read through the view by its day column, and all the physical tables' day partitions
    are dropped together."""

    #: The partitioned tables whose day partitions hold the rows; the days to archive are those of the first.
    partitioned: tuple[str, ...]
    #: The column selecting a day's rows in the logical table (the view); ``None``: the day partition is read.
    day_column: str | None = None
    #: How many stored rows of the day ({day}) the logical table does not show (they would be dropped unarchived);
    #: the day is refused while it is not zero.
    unseen: sql.SQL | None = None
    #: Run in the drop transaction after the day partitions are dropped (connection, day): what the day's rows
    #: leave behind (050's books, 060's feeds).
    after_drop: Callable[[psycopg.Connection[Any], date], object] | None = None
    #: Whether ``day_column`` is a time (the rows of the UTC day are selected) rather than a date (equal to it).
    day_is_time: bool = False


_STORAGE: dict[str, _Storage] = {
    "orderbook_deltas": _Storage(
        ("orderbook_delta_rows", "orderbook_delta_extras"), "session_date", sql.SQL(
            "select (select count(*) from kalshi.orderbook_delta_rows d where d.session_date = {day} and not exists ("
            "          select from kalshi.orderbook_delta_books b"
            "          where b.book_key = d.book_key and b.session_date = d.session_date))"
            "     + (select count(*) from kalshi.orderbook_delta_extras x where x.session_date = {day} and not exists ("
            "          select from kalshi.orderbook_delta_rows d join kalshi.orderbook_delta_books b"
            "            on b.book_key = d.book_key and b.session_date = d.session_date"
            "          where d.book_key = x.book_key and d.session_date = x.session_date and d.seq = x.seq))"),
        lambda conn, day: retention.delete_unused_books(conn, day=day)),
    # A stored row the view would not show: its market or feed missing (extras are read only through their row).
    # The feeds only the archived days used go after the trades' drop: a day's trades leave after its tickers
    # (days_to_archive's order), so no day partition of either is left to read by then.
    "trades": _Storage(
        ("trade_rows", "trade_extras"), "trade_date", unseen=sql.SQL(
            "select count(*) from kalshi.trade_rows t where t.trade_date = {day} and not ("
            "    exists (select from kalshi.market_keys m where m.market_key = t.market_key)"
            "    and exists (select from kalshi.feeds f where f.feed_key = t.feed_key))"),
        after_drop=lambda conn, day: retention.delete_unused_feeds(conn, before=day + timedelta(days=1))),
    "tickers": _Storage(
        ("ticker_rows", "ticker_extras"), "exchange_ts", unseen=sql.SQL(
            "select count(*) from kalshi.ticker_rows t"
            " where t.exchange_ts >= {day}::timestamp at time zone 'UTC'"
            "   and t.exchange_ts < ({day} + 1)::timestamp at time zone 'UTC' and not ("
            "    exists (select from kalshi.market_keys m where m.market_key = t.market_key)"
            "    and exists (select from kalshi.feeds f where f.feed_key = t.feed_key))"),
        day_is_time=True),
}


def _storage(table: str) -> _Storage:
    return _STORAGE.get(table) or _Storage((table,))


_WINDOW_COLUMNS = ("market_ticker", "kind", "session_id", "lower", "upper", "lower_inc", "upper_inc")
_WINDOW_SCHEMA = pa.schema([pa.field(name, _type) for name, _type in zip(_WINDOW_COLUMNS, (
    pa.string(), pa.string(), pa.binary(16), pa.timestamp("us", "UTC"), pa.timestamp("us", "UTC"), pa.bool_(),
    pa.bool_()), strict=True)])


@dataclass(frozen=True)
class Moved:
    """One table-day moved to the archive."""

    table: str
    day: date
    rows: int
    bytes: int
    path: str
    seconds: float

    @property
    def bytes_per_row(self) -> float:
        return self.bytes / self.rows if self.rows else 0.0


def open_archive(url: str) -> tuple[pafs.FileSystem, str]:
    """The file system and base path of an archive URL: a local folder (created if missing) or an object-store URI."""
    if "://" not in url:
        path = os.path.abspath(os.path.expanduser(url))
        os.makedirs(path, exist_ok=True)
        return pafs.LocalFileSystem(), path
    fs, path = pafs.FileSystem.from_uri(url)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path, recursive=True)
    return fs, path.rstrip("/")


def _file_path(base: str, table: str, day: date, part: int = 0) -> str:
    return f"{base}/table={table}/date={day.isoformat()}/part-{part}.parquet"


# ---- the hot tier: partitions, columns, fingerprints -------------------------------------------------------


def _partitions(conn: psycopg.Connection[Any], table: str) -> dict[date, str]:
    """The day partitions of the partitioned table ``kalshi.<table>`` by day (``_default`` is not one)."""
    rows = conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass", (f"kalshi.{table}",)).fetchall()
    found = {}
    for (name,) in rows:
        match = _PARTITION_NAME.match(name)
        if match and match["table"] == table:
            found[datetime.strptime(match["day"], "%Y%m%d").date()] = name
    return found


def days_to_archive(db_url: str, older_than_days: int, *, today: date | None = None) -> list[tuple[str, date]]:
    """``(table, day)`` of every day partition older than ``older_than_days`` days (UTC), oldest first."""
    if older_than_days < MIN_AGE_DAYS:
        raise ArchiveError(f"archive age must be at least {MIN_AGE_DAYS} days (KALSHI_ARCHIVE_AFTER_DAYS), "
                           f"not {older_than_days}: younger partitions are still written to and recreated")
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=older_than_days)
    with psycopg.connect(db_url, autocommit=True) as conn:
        todo = [(table, day) for table in ARCHIVED_TABLES
                for day in _partitions(conn, _storage(table).partitioned[0]) if day < cutoff]
    return sorted(todo, key=lambda item: (item[1], item[0]))


def _columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    """The logical columns of a table (name, PostgreSQL type name), in order."""
    rows = conn.execute(
        "select a.attname, format_type(a.atttypid, null) from pg_attribute a "
        "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
        (f"kalshi.{table}",)).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def _day_source(table: str, day: date, partition: str) -> sql.Composable:
    """The logical rows of ``table`` of ``day`` as a FROM item: the day partition itself, or the logical table (a
    view over partitioned tables) selected by its day column (the planner reads only that day's partitions)."""
    storage = _storage(table)
    if storage.day_column is None:
        return sql.Identifier("kalshi", partition)
    if storage.day_is_time:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return sql.SQL("(select * from {table} where {column} >= {start} and {column} < {end})").format(
            table=sql.Identifier("kalshi", table), column=sql.Identifier(storage.day_column),
            start=sql.Literal(start), end=sql.Literal(start + timedelta(days=1)))
    return sql.SQL("(select * from {} where {} = {})").format(
        sql.Identifier("kalshi", table), sql.Identifier(storage.day_column), sql.Literal(day))


def _fingerprint(conn: psycopg.Connection[Any], table: str, day: date, partition: str) -> tuple[int, Decimal, int]:
    """Row count and an order-independent checksum of the day's logical rows, and how many stored rows of the day
    the logical table does not show (:attr:`_Storage.unseen`; 0 for a table stored as itself)."""
    row = conn.execute(sql.SQL(
        "select count(*), coalesce(sum(('x' || left(md5(p::text), 16))::bit(64)::bigint::numeric), 0) "
        "from {} p").format(_day_source(table, day, partition))).fetchone()
    assert row is not None
    unseen = _storage(table).unseen
    hidden = conn.execute(unseen.format(day=sql.Literal(day))).fetchone() if unseen is not None else (0,)
    assert hidden is not None
    return int(row[0]), Decimal(row[1]), int(hidden[0])


# ---- Arrow types: exact decimals, UTC microseconds ---------------------------------------------------------


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(), "date": pa.date32(), "integer": pa.int32(), "bigint": pa.int64(), "smallint": pa.int16(),
    "boolean": pa.bool_(), "timestamp with time zone": pa.timestamp("us", "UTC"), "uuid": pa.binary(16)}


def _decimal(scale: int | None, digits: int | None) -> pa.Decimal128Type:
    """The Parquet decimal holding every value: the largest scale found, 18 digits (int64) when they fit."""
    scale, digits = int(scale or 0), int(digits or 1)
    if digits + scale > 38:
        raise ArchiveError(f"a numeric value needs {digits + scale} digits: more than Parquet's decimal128 (38)")
    return pa.decimal128(18 if digits + scale <= 18 else 38, scale)


def _schema(conn: psycopg.Connection[Any], relation: str | sql.Composable,
            columns: Sequence[tuple[str, str]]) -> pa.Schema:
    """The Arrow schema of a partition's rows (``relation``: a partition's name or a FROM item, :func:`_day_source`); numeric columns get the largest scale and integer digits present
    (numeric columns are unconstrained: the scale is the data's). Any other type is an error, never a guess."""
    fields = []
    for name, kind in columns:
        if kind in ("numeric", "numeric[]"):
            values = sql.SQL("p.{}").format(sql.Identifier(name)) if kind == "numeric" else sql.SQL("x")
            source = sql.SQL("{} p").format(
                sql.Identifier("kalshi", relation) if isinstance(relation, str) else relation)
            if kind == "numeric[]":
                source = sql.SQL("{} cross join lateral unnest(p.{}) x").format(source, sql.Identifier(name))
            row = conn.execute(sql.SQL("select max(scale({v})), max(length(trunc(abs({v}))::text)) from {s}").format(
                v=values, s=source)).fetchone()
            element = _decimal(*(row or (None, None)))
            fields.append(pa.field(name, element if kind == "numeric" else pa.list_(element)))
        elif kind in _SIMPLE_TYPES:
            fields.append(pa.field(name, _SIMPLE_TYPES[kind]))
        else:
            raise ArchiveError(f"no Parquet type for PostgreSQL type {kind!r} (column {name})")
    return pa.schema(fields)


def _column_expression(name: str, kind: str) -> sql.Composable:
    """How a column is read for the file: numbers as their exact text (cast to the decimal by Arrow, which refuses
    any loss), times as integer microseconds since the epoch, uuids as their 16 bytes; fast to convert in bulk."""
    column = sql.Identifier(name)
    if kind == "numeric":
        return sql.SQL("{}::text").format(column)
    if kind == "timestamp with time zone":
        return sql.SQL("(extract(epoch from {}) * 1000000)::bigint").format(column)
    if kind == "uuid":
        return sql.SQL("uuid_send({})").format(column)
    return column


def _to_arrow(schema: pa.Schema, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows as an Arrow table of ``schema``; a value that does not fit its type exactly is an error (never rounded).
    Values may be Python objects (Decimal, datetime, UUID) or the bulk forms of :func:`_column_expression`."""
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, by_column, strict=True):
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, str) and pa.types.is_decimal(field.type):
            arrays.append(pa.array(values, type=pa.string()).cast(field.type))
        elif isinstance(sample, int) and pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, type=pa.int64()).cast(field.type))
        elif isinstance(sample, uuid.UUID):
            arrays.append(pa.array([None if v is None else v.bytes for v in values], type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _partition_chunks(conn: psycopg.Connection[Any], select: sql.Composed, schema: pa.Schema,
                      ) -> Iterator[pa.Table]:
    """The partition's rows in chunks of :data:`_CHUNK_ROWS` (a server-side cursor: memory stays bounded)."""
    with conn.cursor(name=f"archive_{uuid.uuid4().hex}", binary=True) as cursor:
        cursor.itersize = _CHUNK_ROWS
        cursor.execute(select)
        while rows := cursor.fetchmany(_CHUNK_ROWS):
            yield _to_arrow(schema, rows)


def _unify(tables: Sequence[pa.Table]) -> pa.Table:
    """One table from tables whose decimal columns may differ in scale (days of different precision)."""
    if len(tables) == 1:
        return tables[0]
    fields = []
    for i, first in enumerate(tables[0].schema):
        kinds = [t.schema.field(i).type for t in tables]
        fields.append(pa.field(first.name, _widest(kinds)))
    schema = pa.schema(fields)
    return pa.concat_tables([t.cast(schema) for t in tables])


def _widest(kinds: Sequence[pa.DataType]) -> pa.DataType:
    if all(pa.types.is_decimal(k) for k in kinds):
        scale = max(k.scale for k in kinds)
        digits = max(k.precision - k.scale for k in kinds)
        return pa.decimal128(18 if digits + scale <= 18 else 38, scale)
    if all(pa.types.is_list(k) for k in kinds):
        return pa.list_(_widest([k.value_type for k in kinds]))
    return kinds[0]


# ---- files -------------------------------------------------------------------------------------------------


def _write(fs: pafs.FileSystem, path: str, schema: pa.Schema, chunks: Callable[[], Iterator[pa.Table]],
           delta_encoded: Sequence[str]) -> int:
    """Write the rows of ``chunks()`` to ``path`` (one row group per chunk, via a temporary name), read the file back
    and compare it with a second ``chunks()`` pass value for value, then give it its final name. Returns its size."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    temporary = f"{parent}/.{uuid.uuid4().hex}.tmp"
    encoded = [c for c in delta_encoded if c in schema.names
               and (pa.types.is_integer(schema.field(c).type) or pa.types.is_timestamp(schema.field(c).type))]
    try:
        with fs.open_output_stream(temporary) as out, pq.ParquetWriter(
                out, schema, compression="zstd", compression_level=9,
                use_dictionary=[c for c in schema.names if c not in encoded],
                column_encoding={c: "DELTA_BINARY_PACKED" for c in encoded} or None,
                write_statistics=True) as writer:
            for chunk in chunks():
                writer.write_table(chunk, row_group_size=_CHUNK_ROWS)
        if not _matches(fs, temporary, schema, chunks):
            raise ArchiveError(f"{path}: the file read back differs from the rows written; nothing was dropped")
        fs.move(temporary, path)
    finally:
        if fs.get_file_info(temporary).type != pafs.FileType.NotFound:
            fs.delete_file(temporary)
    return int(fs.get_file_info(path).size)


def _matches(fs: pafs.FileSystem, path: str, schema: pa.Schema, chunks: Callable[[], Iterator[pa.Table]]) -> bool:
    """Whether the file holds exactly the rows of ``chunks()``, row group by row group (values, order, types)."""
    with fs.open_input_file(path) as source:
        try:
            stored = pq.ParquetFile(source)
            if not stored.schema_arrow.remove_metadata().equals(schema):
                return False
            groups = 0
            for chunk in chunks():
                if groups >= stored.num_row_groups:
                    return False
                if not stored.read_row_group(groups).replace_schema_metadata(None).equals(chunk):
                    return False
                groups += 1
            return groups == stored.num_row_groups
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveError(f"{path} exists but cannot be read ({exc}): it is not trusted and not replaced; "
                               "move it away to archive this day again") from exc


def _table_chunks(table: pa.Table) -> Callable[[], Iterator[pa.Table]]:
    return lambda: (pa.Table.from_batches([b], schema=table.schema) for b in table.to_batches(_CHUNK_ROWS))


def _read_file(fs: pafs.FileSystem, path: str, filters: Any = None) -> pa.Table:
    with fs.open_input_file(path) as source:
        return pq.read_table(source, filters=filters).replace_schema_metadata(None)


def _existing(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        return _read_file(fs, path)
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(f"{path} exists but cannot be read ({exc}): it is not trusted and not replaced; "
                           "move it away to archive this day again") from exc


def _keys(table: pa.Table, key: Sequence[str]) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(c).to_pylist() for c in key), strict=True))


def _merged(table: pa.Table, old: pa.Table, key: Sequence[str], sort: Sequence[str]) -> pa.Table:
    """``table`` plus the rows of ``old`` whose key is not in it, sorted."""
    present = set(_keys(table, key))
    keep = [k not in present for k in _keys(old, key)]
    if not any(keep):
        return table
    merged = _unify([table, old.filter(pa.array(keep))])
    return merged.sort_by([(c, "ascending") for c in sort])


# ---- archiving ---------------------------------------------------------------------------------------------


def archive_day(db_url: str, archive_url: str, table: str, day: date, *,
                windows: pa.Table | None = None) -> Moved | None:
    """Move one day partition of ``table`` to the archive (see the module docstring); ``None`` if there is none.
    ``windows``: the day's untrusted windows computed by :func:`windows_around` before any table of the day was
    dropped (default: computed now, with the rows read).

    Memory stays bounded by a chunk of rows, except when an existing file of the day must be merged with the
    partition (a crash's leftover, or an earlier archive of a refilled day): then both are held in memory."""
    spec = ARCHIVED_TABLES[table]
    fs, base = open_archive(archive_url)
    path = _file_path(base, table, day)
    started = time.monotonic()
    for _attempt in range(ATTEMPTS):
        with psycopg.connect(db_url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                partition = _partitions(conn, _storage(table).partitioned[0]).get(day)
                if partition is None:
                    return None
                fingerprint = _fingerprint(conn, table, day, partition)
                if fingerprint[2]:
                    raise ArchiveError(
                        f"kalshi.{table} of {day}: {fingerprint[2]} stored rows are not in kalshi.{table} (e.g. a "
                        "delta whose book is missing); they would be dropped unarchived: nothing was archived")
                source = _day_source(table, day, partition)
                columns = _columns(conn, table)
                schema = _schema(conn, source, columns)
                select = sql.SQL("select {} from {} p order by {}").format(  # p.x: the stored value
                    sql.SQL(", ").join(_column_expression(name, kind) for name, kind in columns),
                    source,
                    sql.SQL(", ").join(sql.Identifier("p", c) for c in spec.sort))

                chunks = functools.partial(_partition_chunks, conn, select, schema)
                exists = fs.get_file_info(path).type != pafs.FileType.NotFound
                if not exists:
                    _write(fs, path, schema, chunks, spec.delta_encoded)
                elif not _matches(fs, path, schema, chunks):
                    rows = pa.concat_tables([*chunks(), schema.empty_table()])
                    merged = _merged(rows, _read_file(fs, path), spec.key, spec.sort)
                    _write(fs, path, merged.schema, _table_chunks(merged), spec.delta_encoded)
                day_windows = windows if windows is not None else _windows_around(conn, day)
        _store_windows(fs, base, day, day_windows)
        if _drop_if_unchanged(db_url, table, day, fingerprint):
            size = int(fs.get_file_info(path).size)
            return Moved(table, day, fingerprint[0], size, path, time.monotonic() - started)
    raise ArchiveError(f"kalshi.{table} of {day}: rows kept arriving while it was archived ({ATTEMPTS} attempts); "
                       "the partition is kept, the next run tries again")


def _drop_if_unchanged(db_url: str, table: str, day: date, fingerprint: tuple[int, Decimal, int]) -> bool:
    """Detach and drop the day partitions of ``table``'s partitioned tables if the day's rows are still those
    archived (``fingerprint``); ``False`` (nothing dropped) if they changed."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        conn.execute("select pg_advisory_xact_lock(hashtext('kalshi.ensure_partitions'))")
        parts = [(parent, part) for parent in _storage(table).partitioned
                 if (part := _partitions(conn, parent).get(day)) is not None]
        if not parts or parts[0][0] != _storage(table).partitioned[0]:
            return False  # dropped meanwhile (another run): archive_day starts again and finds nothing
        # Writers of this (old) day wait while its rows are counted again; writers of other days do not: only the
        # detach below takes the parent tables, for a moment (lock_timeout bounds the wait for long readers).
        for _parent, part in parts:
            conn.execute(sql.SQL("lock table {} in share mode").format(sql.Identifier("kalshi", part)))
        if _fingerprint(conn, table, day, parts[0][1]) != fingerprint:
            return False
        for parent, part in parts:
            conn.execute(sql.SQL("alter table {} detach partition {}").format(
                sql.Identifier("kalshi", parent), sql.Identifier("kalshi", part)))
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier("kalshi", part)))
        if (after_drop := _storage(table).after_drop) is not None:
            after_drop(conn, day)
    return True


def _windows_around(conn: psycopg.Connection[Any], day: date) -> pa.Table:
    """The untrusted windows overlapping the day and the days either side (trust of rows near midnight)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    rows = conn.execute(
        "select market_ticker, kind, session_id, lower(time_range), upper(time_range), "
        "lower_inc(time_range), upper_inc(time_range) from kalshi.untrusted_windows "
        "where time_range && tstzrange(%s, %s, '[)') order by market_ticker, lower(time_range)",
        (start, start + timedelta(days=3))).fetchall()
    return _to_arrow(_WINDOW_SCHEMA, rows)


def windows_around(db_url: str, day: date) -> pa.Table:
    """The untrusted windows of ``day`` and the days either side as of now, as :func:`archive_day` stores them:
    compute them before dropping any table of the day and pass them to each table's :func:`archive_day`."""
    with psycopg.connect(db_url) as conn:
        return _windows_around(conn, day)


def _store_windows(fs: pafs.FileSystem, base: str, day: date, windows: pa.Table) -> None:
    path = _file_path(base, WINDOWS_TABLE, day)
    old = _existing(fs, path)
    if old is not None:
        if old.equals(windows):
            return
        windows = _merged(windows, old, _WINDOW_COLUMNS, ("market_ticker", "lower"))
    _write(fs, path, windows.schema, _table_chunks(windows), ())


def days_not_to_pack(todo: Iterable[tuple[str, date]]) -> set[date]:
    """The days among ``todo`` (``days_to_archive``) whose deltas, trades or tickers leave: not to pack
    (:mod:`kalshi_store.compaction` packs a day's partitions of the three together)."""
    return {day for table, day in todo if table in {"orderbook_deltas", "trades", "tickers"}}


def day_windows(db_url: str, todo: Iterable[tuple[str, date]]) -> dict[date, pa.Table]:
    """The untrusted windows of every day of ``todo`` (:func:`windows_around`), computed once, before anything is
    dropped: each table of a day stores the same ones."""
    return {day: windows_around(db_url, day) for day in sorted({day for _table, day in todo})}


def archive_older_than(db_url: str, archive_url: str, older_than_days: int, *, today: date | None = None,
                       todo: list[tuple[str, date]] | None = None) -> list[Moved]:
    """Archive every day partition older than ``older_than_days`` days (``todo``: the caller's
    :func:`days_to_archive`); what was moved, oldest first. The untrusted windows of every day are computed once,
    before anything is dropped, and stored with each of its tables."""
    if todo is None:
        todo = days_to_archive(db_url, older_than_days, today=today)
    windows = day_windows(db_url, todo)
    moved = []
    for table, day in todo:
        result = archive_day(db_url, archive_url, table, day, windows=windows[day])
        if result is not None:
            moved.append(result)
    return moved


# ---- reading the archive -----------------------------------------------------------------------------------


def archived_days(archive_url: str, table: str) -> list[date]:
    """The days of ``table`` in the archive."""
    fs, base = open_archive(archive_url)
    folder = f"{base}/table={table}"
    if fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return []
    days = []
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        name = info.base_name
        if info.type == pafs.FileType.Directory and name.startswith("date="):
            days.append(date.fromisoformat(name.removeprefix("date=")))
    return sorted(days)


def day_signature(archive_url: str, table: str, day: date) -> tuple[tuple[str, int, Any], ...]:
    """What identifies the files of one table-day as stored now (paths, sizes, modification times): a reader may
    keep what it read of the day while this is unchanged."""
    fs, base = open_archive(archive_url)
    folder = f"{base}/table={table}/date={day.isoformat()}"
    if fs.get_file_info(folder).type == pafs.FileType.NotFound:
        return ()
    return tuple(sorted((i.path, int(i.size or 0), i.mtime_ns) for i in fs.get_file_info(pafs.FileSelector(folder))
                        if i.base_name.startswith("part-") and i.base_name.endswith(".parquet")))


def read_archive(archive_url: str, table: str, days: Iterable[date], *, market: str | None = None) -> pa.Table | None:
    """The archived rows of ``table`` for ``days`` (of one market when given; row groups of other markets are
    skipped by their statistics); ``None`` when the archive holds none of those days."""
    fs, base = open_archive(archive_url)
    parts = []
    for day in sorted(set(days)):
        folder = f"{base}/table={table}/date={day.isoformat()}"
        if fs.get_file_info(folder).type == pafs.FileType.NotFound:
            continue
        for info in fs.get_file_info(pafs.FileSelector(folder)):
            if info.base_name.startswith("part-") and info.base_name.endswith(".parquet"):
                filters = None if market is None else [("market_ticker", "=", market)]
                parts.append(_read_file(fs, info.path, filters))
    return _unify(parts) if parts else None
