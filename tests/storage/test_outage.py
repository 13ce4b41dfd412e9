"""The database goes away mid-stream (crash, hang, down at start): nothing is lost, nothing is duplicated.

These tests use a private PostgreSQL server (``private_pg``, not the shared ``pg_server``) because they stop
and freeze it. The test servers run with ``synchronous_commit = off``; the writer must (and does) switch it on
for its own commits, or a crash right after a commit would lose the batch, which these tests would catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest
import storage_frames as f
from kalshi_testing import wait_until

from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.migrations import migrate
from kalshi_store.recorder import Recorder

pytestmark = pytest.mark.asyncio


@pytest.fixture
def outage_pg(private_pg: EmbeddedPostgres) -> EmbeddedPostgres:
    return private_pg


_db_counter = iter(range(1, 10_000))


@pytest.fixture
def outage_db(outage_pg: EmbeddedPostgres) -> str:
    outage_pg.thaw()
    outage_pg.start()
    url = outage_pg.create_database(f"outage_{next(_db_counter)}")
    migrate(url)
    # Test servers run with fsync and synchronous_commit off; these tests crash the server
    # (pg_ctl stop -m immediate), which could otherwise take the just-committed schema with it.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("checkpoint")
    return url


def fast_recorder(url: str, spill: Path, **overrides: float) -> Recorder:
    options: dict[str, float] = dict(batch_rows=200, flush_interval=0.05, write_timeout=1.0, connect_timeout=1.0,
                                     retry_initial=0.05, retry_max=0.2)
    options.update(overrides)
    return Recorder(url, spill_dir=spill, **options)  # type: ignore[arg-type]


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        trades = conn.execute("select count(*), count(distinct trade_id) from kalshi.trades").fetchone()
        deltas = conn.execute("select count(*), count(distinct seq) from kalshi.orderbook_deltas").fetchone()
    assert trades is not None and deltas is not None
    assert trades[0] == trades[1] and deltas[0] == deltas[1]
    return {"trades": trades[0], "orderbook_deltas": deltas[0]}


class Stream:
    """Delivers trades and deltas into a recorder in small chunks, yielding to the event loop between them."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.sent = 0

    async def send(self, n: int) -> None:
        for _ in range(n // 2):
            self.sent += 1
            now = time.time_ns()
            self.recorder.on_message(f.trade(f"t-{self.sent}", seq=self.sent), 1, now)
            self.recorder.on_message(f.delta(self.sent), 1, now)
            if self.sent % 50 == 0:
                if self.recorder.paused:
                    await self.recorder.wait_resumed()
                await asyncio.sleep(0)


async def run_in_thread(fn: Callable[[], object]) -> None:
    await asyncio.to_thread(fn)


async def _outage(url: str, spill: Path, break_db: Callable[[], Awaitable[None]],
                  mend_db: Callable[[], Awaitable[None]], **overrides: float) -> Recorder:
    recorder = fast_recorder(url, spill, **overrides)
    async with recorder:
        await recorder.open_session("test", "simulator", ["M"], ["trade", "orderbook_delta"])
        stream = Stream(recorder)
        await stream.send(2000)
        await recorder.flush()
        assert recorder.stats().database_available
        await break_db()
        await stream.send(2000)
        await wait_until(lambda: recorder.stats().rows_spilled > 0, what="rows to be spilled")
        await stream.send(2000)
        await mend_db()
        await stream.send(2000)
        await wait_until(lambda: recorder.stats().database_available and recorder.stats().spill_bytes == 0,
                         what="the spill to be replayed")
        await stream.send(2000)
        await recorder.close_session()
    assert counts(url) == {"trades": stream.sent, "orderbook_deltas": stream.sent}
    with psycopg.connect(url) as conn:
        row = conn.execute("select status, status_message, received, written, rows_spilled from kalshi.sessions"
                           ).fetchone()
    assert row is not None
    status, message, received, written, spilled = row
    # Nothing lost, but a session that spilled is degraded and says so (one rule: kalshi_store.health).
    assert status == "degraded" and "rows went to the local spill" in message and "still in the local spill" not in message
    assert received == written == {"trades": stream.sent, "orderbook_deltas": stream.sent}
    assert spilled > 0
    assert not any(spill.rglob("*.spill"))
    return recorder


async def test_database_crash_mid_stream_loses_and_duplicates_nothing(
        outage_pg: EmbeddedPostgres, outage_db: str, tmp_path: Path) -> None:
    async def crash() -> None:
        await run_in_thread(lambda: outage_pg.stop("immediate"))

    async def restart() -> None:
        await run_in_thread(outage_pg.start)

    await _outage(outage_db, tmp_path, crash, restart)


async def test_hung_database_is_detected_and_spilled(
        outage_pg: EmbeddedPostgres, outage_db: str, tmp_path: Path) -> None:
    async def freeze() -> None:
        outage_pg.freeze()

    async def thaw() -> None:
        outage_pg.thaw()

    await _outage(outage_db, tmp_path, freeze, thaw, write_timeout=0.5, connect_timeout=1.0)


@pytest.mark.parametrize("replayed", ["while_recording", "at_stop"])
async def test_session_opened_while_the_database_is_down_is_written_when_it_returns(
        replayed: str, outage_pg: EmbeddedPostgres, outage_db: str, tmp_path: Path) -> None:
    """The session row and its rows reach the database once it is back: while recording, or (``at_stop``) when it
    returns while the backoff still waits (here a minute) and the session ends: the stop tries once more at once,
    so the rows do not wait in the spill for a later replay."""
    await run_in_thread(lambda: outage_pg.stop("immediate"))
    retry = {"retry_initial": 60.0, "retry_max": 60.0} if replayed == "at_stop" else {}
    async with fast_recorder(outage_db, tmp_path, **retry) as recorder:
        session_id = await recorder.open_session("test", "simulator", ["M"], ["trade"])
        stream = Stream(recorder)
        await stream.send(1000)
        await recorder.flush()
        assert recorder.stats().rows_spilled == 1000
        await run_in_thread(outage_pg.start)
        if replayed == "while_recording":
            await wait_until(lambda: recorder.stats().spill_bytes == 0, what="the spill to be replayed")
        await recorder.close_session()
    assert counts(outage_db) == {"trades": 500, "orderbook_deltas": 500}
    assert not any(tmp_path.rglob("*.spill"))
    with psycopg.connect(outage_db) as conn:
        assert conn.execute("select session_id::text, status from kalshi.sessions").fetchall() == [
            (session_id, "degraded")]  # it spilled (and says so)


async def test_backpressure_pauses_reading_when_memory_and_spill_are_full(
        outage_pg: EmbeddedPostgres, outage_db: str, tmp_path: Path) -> None:
    await run_in_thread(lambda: outage_pg.stop("immediate"))
    recorder = fast_recorder(outage_db, tmp_path, max_rows_in_memory=1000)
    recorder.spill_max_bytes = 1  # the spill refuses everything
    async with recorder:
        await recorder.open_session("test", "simulator", ["M"], ["trade"])
        stream = Stream(recorder)
        while not recorder.paused:  # deliver like a client that ignores nothing: check paused between reads
            for _ in range(50):
                stream.sent += 1
                now = time.time_ns()
                recorder.on_message(f.trade(f"t-{stream.sent}", seq=stream.sent), 1, now)
                recorder.on_message(f.delta(stream.sent), 1, now)
            await asyncio.sleep(0)
            if stream.sent > 5000:
                raise AssertionError("the recorder never paused")
        assert recorder.stats().pending_rows >= 1000
        await run_in_thread(outage_pg.start)
        await asyncio.wait_for(recorder.wait_resumed(), 20)
        await recorder.close_session()
    assert counts(outage_db)["orderbook_deltas"] == stream.sent
    with psycopg.connect(outage_db) as conn:
        status, paused = conn.execute("select status, paused_count from kalshi.sessions").fetchone() or (None, None)
        ledger = conn.execute("select kind, outcome, ended_at is not null from kalshi.gap_ledger").fetchall()
    assert (status, paused) == ("degraded", 1)
    assert ledger == [("backpressure", "resumed", True)]


async def test_a_backlog_larger_than_the_free_space_still_spills_what_fits(
        outage_pg: EmbeddedPostgres, outage_db: str, small_disk: Path) -> None:
    """Rows that piled up while the database was slow to answer are one backlog; the disk under the spill has
    room for part of it. The spill takes what fits (batches are cut to ``batch_rows``), reading pauses for the
    rest, and once the database is back every row is stored once."""
    from disk import fill

    await run_in_thread(lambda: outage_pg.stop("immediate"))
    recorder = fast_recorder(outage_db, small_disk / "spill", max_rows_in_memory=100_000)
    async with recorder:
        await recorder.open_session("test", "simulator", ["M"], ["trade", "orderbook_delta"])
        ballast = fill(small_disk, leave=400_000)
        stream = Stream(recorder)
        for _ in range(20_000):  # no await: the flush loop sees all of it at once, as after a slow connect
            stream.sent += 1
            now = time.time_ns()
            recorder.on_message(f.trade(f"t-{stream.sent}", seq=stream.sent), 1, now)
            recorder.on_message(f.delta(stream.sent), 1, now)
        await wait_until(lambda: recorder.paused and recorder.stats().spill_full, what="the disk to fill")
        spilled = recorder.stats().rows_spilled
        assert 0 < spilled < 2 * stream.sent  # the part that fits was spilled; the rest waits in memory
        ballast.unlink()
        # The freed space takes more of the backlog (40 000 rows are some 5.7 MB of spill) until the spill itself
        # fills the disk: a second fill, though reading never resumed in between.
        await wait_until(lambda: recorder.stats().spill_full_count == 2, what="the spill itself to fill the disk")
        assert recorder.stats().rows_spilled > spilled and recorder.paused
        await run_in_thread(outage_pg.start)
        await wait_until(lambda: recorder.stats().database_available and not recorder.paused
                         and recorder.stats().spill_bytes == 0, timeout=60, what="the spill to be replayed")
        await recorder.close_session()
    assert counts(outage_db) == {"trades": stream.sent, "orderbook_deltas": stream.sent}
    with psycopg.connect(outage_db) as conn:
        message = (conn.execute("select status_message from kalshi.sessions").fetchone() or ("",))[0]
    assert "the disk under the local spill was full 2 times" in message


async def test_the_spill_disk_fills_during_an_outage_reading_pauses_and_nothing_is_lost(
        outage_pg: EmbeddedPostgres, outage_db: str, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is down, the spill is on a real 2 MiB tmpfs: first another file fills the disk, then (once it
    is deleted) the spill itself does; each time reading pauses until the spill takes batches again (space freed,
    then the database back). Every row the source sent is stored once; the session says what happened."""
    from disk import fill

    from kalshi_store.spill import SpillBuffer, read_segment

    deleted: list[Path] = []
    unread: list[str] = []
    remove = SpillBuffer.remove

    def checked_remove(self: SpillBuffer, path: Path) -> None:  # the real removal, after a look at the segment
        read = read_segment(path)
        if read.unreadable or read.header is None:
            unread.append(f"{path}: {read.unreadable}")
        deleted.append(path)
        remove(self, path)

    monkeypatch.setattr(SpillBuffer, "remove", checked_remove)
    spill_dir = small_disk / "spill"
    recorder = fast_recorder(outage_db, spill_dir, max_rows_in_memory=50_000)
    stop = asyncio.Event()
    async with recorder:
        session_id = await recorder.open_session("test", "simulator", ["M"], ["trade", "orderbook_delta"])
        stream = Stream(recorder)
        await stream.send(2000)
        await recorder.flush()
        assert recorder.stats().database_available
        await run_in_thread(lambda: outage_pg.stop("immediate"))
        ballast = fill(small_disk, leave=300_000)

        async def source() -> None:  # a client that reads as fast as it may: it stops while paused
            while not stop.is_set():
                await stream.send(100)

        sender = asyncio.create_task(source())
        try:
            await wait_until(lambda: recorder.paused and recorder.stats().spill_full,
                             what="the disk to fill and reading to pause")
            ballast.unlink()
            # Space came back: the spill takes batches again (reading resumes, unless what waited in memory is
            # already more than the freed space: on a busy machine the source outran the spill) until the spill
            # itself fills the disk.
            await wait_until(lambda: recorder.paused and recorder.stats().spill_full_count >= 2,
                             what="the spill itself to fill the disk")
            fills = recorder.stats().spill_full_count
            assert not recorder.stats().database_available
            await run_in_thread(outage_pg.start)
            await wait_until(lambda: recorder.stats().database_available and not recorder.paused
                             and recorder.stats().spill_bytes == 0, timeout=60, what="the spill to be replayed")
            await stream.send(2000)  # and recording goes on
        finally:
            stop.set()
            if recorder.paused:  # a failed wait above: do not hang on a source that waits for a resume
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await recorder.close_session()
    assert stream.sent > 10_000
    assert counts(outage_db) == {"trades": stream.sent, "orderbook_deltas": stream.sent}
    with psycopg.connect(outage_db) as conn:
        status, message, received, written, spilled, paused = conn.execute(
            "select status, status_message, received, written, rows_spilled, paused_count from kalshi.sessions "
            "where session_id = %s", (session_id,)).fetchone() or (None,) * 6
        ledger = conn.execute("select detail ->> 'cause', outcome, ended_at is not null from kalshi.gap_ledger "
                              "where kind = 'backpressure' order by started_at").fetchall()
    assert status == "degraded"
    assert f"the disk under the local spill was full {fills} times" in message
    assert "No space left on device" in message
    assert f"reading paused {'once' if paused == 1 else f'{paused} times'}" in message
    assert received == written == {"trades": stream.sent, "orderbook_deltas": stream.sent}
    # Reading paused for the first fill, unless it was paused already: the source can fill memory while the
    # recorder still finds out that the database is gone (a memory_full pause, which the fill then finds in place).
    # Whether it resumed before the second fill depends on the machine: the spill may take the freed space and fill
    # it again within one flush (reading still paused).
    assert spilled > 0 and paused >= 1 and len(ledger) == paused
    assert all(row[1:] == ("resumed", True) and row[0] in ("spill_full", "memory_full") for row in ledger)
    assert deleted and unread == []  # no segment was deleted with records it had not read
    assert not [p.name for p in spill_dir.rglob("*") if p.suffix in (".spill", ".quarantine")]


class SwitchableProxy:
    """A TCP proxy on 127.0.0.1 whose upstream can be switched (cutting the connections it carries): the
    database URL stays the same while another server answers behind it."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def switch(self, port: int) -> None:
        self.upstream = port
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.switch(self.upstream)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_another_database_behind_the_same_url_gets_none_of_the_rows(
        outage_pg: EmbeddedPostgres, outage_db: str, pg_url: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """The URL first reaches the session's database; then (a failover to the wrong server, say) another cluster
    with a database of the same name answers behind it: the recorder refuses it and keeps spilling, and stores
    everything in its own database once that is back behind the URL."""
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(outage_db)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the other cluster: the shared test server
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    other_url = make_conninfo(pg_url, dbname=name)
    migrate(other_url)
    proxy = SwitchableProxy(int(conninfo_to_dict(outage_db)["port"]))
    url = make_conninfo(outage_db, host="127.0.0.1", port=str(await proxy.start()))
    try:
        async with fast_recorder(url, tmp_path) as recorder:
            await recorder.open_session("test", "simulator", ["M"], ["trade", "orderbook_delta"])
            stream = Stream(recorder)
            await stream.send(1000)
            await recorder.flush()
            assert recorder.stats().database_available
            proxy.switch(int(conninfo_to_dict(pg_url)["port"]))
            await stream.send(1000)
            await wait_until(lambda: "now reaches" in (recorder.stats().last_error or ""),
                             what="the recorder to notice the other database")
            await stream.send(1000)
            await recorder.flush()
            assert recorder.stats().rows_spilled > 0
            proxy.switch(int(conninfo_to_dict(outage_db)["port"]))
            await wait_until(lambda: recorder.stats().database_available and recorder.stats().spill_bytes == 0,
                             what="the spill to be replayed into the session's database")
            await recorder.close_session()
        assert counts(outage_db) == {"trades": stream.sent, "orderbook_deltas": stream.sent}
        assert counts(other_url) == {"trades": 0, "orderbook_deltas": 0}
        refused = [r.getMessage() for r in caplog.records if "now reaches" in r.getMessage()]
        assert refused and f"database {name!r}" in refused[0] and "not database" in refused[0], refused
    finally:
        await proxy.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
