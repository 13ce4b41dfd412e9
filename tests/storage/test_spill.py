"""SpillBuffer: exact round trip, torn records after a crash, replay into PostgreSQL, folder ownership."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
import storage_frames as f

from kalshi_store.batch import Batch, LedgerOp, SessionManifest, SessionProgress
from kalshi_store.rows import TRADES, RowBuilders, dead_letter_row, fill_row, trade_row
from kalshi_store.spill import (
    SpillBuffer,
    SpillDiskFull,
    SpillFull,
    SpillLocked,
    SpillTarget,
    read_segment,
    replay_spill,
    url_target,
)
from kalshi_ws import messages as m

SESSION = "3f2b8a34-5d2c-4e5e-8f6a-0123456789ab"
#: The target of spills that are never replayed.
NOWHERE = url_target("postgresql://kalshi@127.0.0.1:9/nowhere")


def make_batch(batch_id: int, first_seq: int = 1, n: int = 3) -> Batch:
    builders = RowBuilders(SESSION, date(2026, 11, 25), use_yes_price=True)
    tables: dict[str, list[tuple[object, ...]]] = {}
    messages = [*f.one_of_each(), *(f.trade(f"t-{first_seq + i}", seq=first_seq + i) for i in range(n))]
    for message in messages:
        table, build = builders.dispatch[type(message)]
        tables.setdefault(table, []).append(build(message, 1, 1_795_600_000_123_456_789))
    tables["dead_letter"] = [dead_letter_row(m.decode(b"{bad"), 1, 1_795_600_000_000_000_001, SESSION)]
    # a REST backfill: the WS payloads (as KalshiRestClient returns them) without a connection
    rest_trade, rest_fill = f.trade(f"rest-{batch_id}"), f.fill(f"rest-{batch_id}", "order-9")
    assert isinstance(rest_trade, m.Trade) and isinstance(rest_fill, m.Fill)
    tables["trades"].append(trade_row(rest_trade.msg, 1_795_600_001_000_000_000, "rest", SESSION, None, None, None))
    tables["rest_fills"] = [fill_row(rest_fill.msg, 1_795_600_001_000_000_000, SESSION, None, None)]
    manifest = SessionManifest(session_id=SESSION, market_set="set", environment="demo", markets=["M"],
                               channels=["trade"], started_at=datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    progress = SessionProgress(session_id=SESSION, at=datetime(2026, 11, 25, 9, 1, tzinfo=UTC),
                               received={"trades": n + 1})
    ledger = [LedgerOp(op="open", event_id="0e4c1b7a-7c7e-4a55-9a6e-9d2f8a1b2c3d", session_id=SESSION,
                       at_ns=1_795_600_000_000_000_000, incident_id=1, kind="gap", sid=2, markets=["M"],
                       expected_seq=3, received_seq=7)]
    return Batch(batch_id=batch_id, session=manifest, session_id=SESSION, session_date=date(2026, 11, 25),
                 tables=tables, ledger=ledger, progress=progress)


def test_spilled_batches_read_back_identical(tmp_path: Path) -> None:
    batches = [make_batch(i, first_seq=10 * i) for i in range(1, 4)]
    with SpillBuffer(tmp_path / "spill", target=NOWHERE) as spill:
        for batch in batches:
            spill.append(batch)
        (segment,) = spill.segments()
        read = read_segment(segment)
    assert read.torn == 0
    assert read.batches == batches  # Decimal, bytes, dates, None: every value and type survives
    first = read.batches[0].tables["trades"][0]
    assert [str(first[TRADES.index(c)]) for c in ("yes_price", "no_price", "count")] == ["0.0050", "0.9950", "75.25"]


def test_a_torn_last_record_is_skipped_and_the_rest_replayed(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "spill"
    batches = [make_batch(i, first_seq=10 * i) for i in range(1, 4)]
    with SpillBuffer(folder, target=url_target(db_url)) as spill:
        for batch in batches:
            spill.append(batch)
        (segment,) = spill.segments()
    size = segment.stat().st_size
    with segment.open("r+b") as handle:  # the process died in the middle of the third append
        handle.truncate(size - 25)
    read = read_segment(segment)
    assert (len(read.batches), read.torn) == (2, 1)

    result = replay_spill(db_url, tmp_path)
    assert (result.batches, result.torn_records, result.segments) == (2, 1, 1)
    assert not any(folder.glob("*.spill"))
    assert result.quarantined == [str(segment.with_suffix(".quarantine"))]  # the torn tail is kept, not deleted
    assert segment.with_suffix(".quarantine").stat().st_size == size - 25
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
        assert {"t-10", "t-12", "t-20", "t-22", "t-1", "rest-1", "rest-2"} <= ids and "t-30" not in ids
        assert conn.execute("select trade_id, source, exchange_ts, generation from kalshi.fills "
                            "where source = 'rest' order by trade_id").fetchall() == [
            (f"rest-{i}", "rest", datetime(2026, 11, 25, 9, 46, 40, 123000, tzinfo=UTC), None) for i in (1, 2)]
        assert conn.execute("select count(*) from kalshi.gap_ledger").fetchone() == (1,)
        assert conn.execute("select count(*) from kalshi.dead_letter").fetchone() == (2,)
        assert conn.execute("select status from kalshi.sessions").fetchall() == [("running",)]
    # Replaying the same batches again (say the first replay died before deleting) changes nothing.
    with SpillBuffer(folder, target=url_target(db_url)) as spill:
        spill.append(batches[0])
    again = replay_spill(db_url, tmp_path)
    assert again.batches == 1 and again.inserted == 0


def test_garbage_after_the_last_record_does_not_crash_replay(tmp_path: Path) -> None:
    folder = tmp_path / "spill"
    with SpillBuffer(folder, target=NOWHERE) as spill:
        spill.append(make_batch(1))
        (segment,) = spill.segments()
    with segment.open("ab") as handle:
        handle.write(b"\x05\x00")  # half a header
    read = read_segment(segment)
    assert (len(read.batches), read.torn) == (1, 1)


_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_spill import NOWHERE, make_batch
from kalshi_store.spill import SpillBuffer
spill = SpillBuffer(Path({folder!r}), target=NOWHERE, segment_bytes=1 << 30)
i = 0
while True:
    i += 1
    spill.append(make_batch(i, first_seq=10 * i, n=200))
    print(i, flush=True)
"""


def test_a_process_killed_while_spilling_leaves_a_readable_spill(tmp_path: Path) -> None:
    folder = tmp_path / "spill"
    child = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", _CHILD.format(tests=str(Path(__file__).parent), folder=str(folder))],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = 0
    while acknowledged < 20:
        line = child.stdout.readline()
        assert line, "the spilling process died"
        acknowledged = int(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with SpillBuffer(folder) as spill:  # the lock died with the process
        reads = [read_segment(path) for path in spill.segments()]
    batches = [b for r in reads for b in r.batches]
    assert len(batches) >= acknowledged  # every acknowledged append survived
    assert [b.batch_id for b in batches] == list(range(1, len(batches) + 1))
    assert sum(r.torn for r in reads) <= 1


def test_a_live_folder_is_not_replayed_by_others(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "recorder-live"
    with SpillBuffer(folder, target=url_target(db_url)) as spill:
        spill.append(make_batch(1))
        with pytest.raises(SpillLocked):
            SpillBuffer(folder)
        result = replay_spill(db_url, tmp_path)
        assert result.locked_folders == [str(folder)] and result.batches == 0
    assert replay_spill(db_url, tmp_path).batches == 1


def test_the_spill_refuses_batches_beyond_its_size_limit(tmp_path: Path) -> None:
    with SpillBuffer(tmp_path / "spill", target=NOWHERE, max_bytes=10_000) as spill:
        spill.append(make_batch(1, n=1))
        with pytest.raises(SpillFull):
            for i in range(2, 100):
                spill.append(make_batch(i, n=1))
        assert spill.pending_bytes <= 10_000


def test_segments_rotate_and_replay_in_order(tmp_path: Path) -> None:
    with SpillBuffer(tmp_path / "spill", target=NOWHERE, segment_bytes=1) as spill:
        for i in range(1, 6):
            spill.append(make_batch(i))
            time.sleep(0)  # names come from a strictly increasing counter, not the clock's resolution
        ids = [b.batch_id for path in spill.segments() for b in read_segment(path).batches]
        assert len(spill.segments()) == 5
    assert ids == [1, 2, 3, 4, 5]


@pytest.mark.asyncio
async def test_the_next_recorder_replays_what_a_dead_one_left(tmp_path: Path, db_url: str) -> None:
    from kalshi_store.recorder import Recorder

    dead = tmp_path / "recorder-dead"
    with SpillBuffer(dead, target=url_target(db_url)) as spill:  # a recorder that died while the database was down
        spill.append(make_batch(1, first_seq=500))
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("next", "simulator", ["M"], ["trade"])
        await recorder.close_session()
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
        sessions = conn.execute("select market_set from kalshi.sessions order by market_set").fetchall()
    assert {"t-500", "t-501", "t-502"} <= ids
    assert sessions == [("next",), ("set",)]
    assert not dead.exists()


@pytest.mark.asyncio
async def test_a_running_recorder_picks_up_what_a_recorder_ending_meanwhile_left(tmp_path: Path, db_url: str) -> None:
    from kalshi_store.recorder import Recorder

    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("next", "simulator", ["M"], ["trade"])
        await recorder.flush()  # connected; the folder below appears only after its first look for leftovers
        ended = tmp_path / "recorder-ended-meanwhile"
        with SpillBuffer(ended, target=url_target(db_url)) as spill:
            spill.append(make_batch(1, first_seq=700))
        await recorder.close_session()
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
    assert {"t-700", "t-701", "t-702"} <= ids
    assert not ended.exists()


# -- torn records --------------------------------------------------------------------------------------------


def _segment_parts(folder: Path, batches: list[Batch], target: SpillTarget) -> tuple[Path, bytes, list[bytes]]:
    """Spill ``batches`` into one segment; return it, its header bytes and each batch's record bytes."""
    with SpillBuffer(folder, target=target) as spill:
        sizes = []
        for batch in batches:
            spill.append(batch)
            (segment,) = spill.segments()
            sizes.append(segment.stat().st_size)
    data = segment.read_bytes()
    head_end = sizes[0] - _record_size(batches[0])
    ends = [head_end, *sizes]
    return segment, data[:head_end], [data[a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _record_size(batch: Batch) -> int:
    from kalshi_store.spill import _record, encode_batch

    return len(_record(encode_batch(batch)))


def test_a_torn_record_followed_by_good_ones_reads_every_good_one(tmp_path: Path, db_url: str) -> None:
    """A short write then ENOSPC left half a record, the retry appended the whole record after it, and a later
    record has a flipped byte: every intact record before and after them is read, and replayed."""
    batches = [make_batch(i, first_seq=10 * i) for i in range(1, 6)]
    segment, head, (r1, r2, r3, r4, r5) = _segment_parts(tmp_path / "spill", batches, url_target(db_url))
    flipped = bytearray(r4)
    flipped[len(r4) // 2] ^= 0xFF
    segment.write_bytes(head + r1 + r2[:37] + r2 + r3 + bytes(flipped) + r5)
    read = read_segment(segment)
    assert read.batches == [batches[0], batches[1], batches[2], batches[4]]
    torn_at = len(head) + len(r1)
    flipped_at = torn_at + 37 + len(r2) + len(r3)
    assert read.unreadable == [(torn_at, torn_at + 37), (flipped_at, flipped_at + len(r4))]

    # Replay stores every readable batch and keeps the segment aside (*.quarantine): it is never deleted.
    result = replay_spill(db_url, tmp_path)
    assert (result.batches, result.torn_records, result.segments) == (4, 2, 1)
    quarantined = segment.with_suffix(".quarantine")
    assert result.quarantined == [str(quarantined)] and not segment.exists()
    assert read_segment(quarantined).unreadable == read.unreadable
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
    assert {"t-10", "t-20", "t-30", "t-50", "t-52"} <= ids and not {"t-40", "t-41", "t-42"} & ids


def test_a_full_disk_never_leaves_a_torn_record(small_disk: Path) -> None:
    """On a real tmpfs: appends fail with ENOSPC part-way through a record (short write, then ENOSPC) and while
    starting a segment; each failure is cut back, so the spill holds exactly the acknowledged batches, and once
    space is freed appending goes on (and every batch reads back, in order)."""
    from disk import fill

    folder = small_disk / "spill"
    ballast = fill(small_disk, leave=150_000)
    acknowledged: list[int] = []
    refused = 0
    with SpillBuffer(folder, target=NOWHERE, segment_bytes=40_000) as spill:
        for i in range(1, 400):
            try:
                spill.append(make_batch(i, first_seq=1000 * i, n=60))
            except SpillDiskFull as exc:
                assert "no space left for the spill" in str(exc).lower()
                refused += 1
                if refused == 3:
                    ballast.unlink()  # space comes back
                continue
            acknowledged.append(i)
            if refused >= 3 and len(acknowledged) > 60:
                break
        assert spill.disk_full_count == refused == 3
        reads = [read_segment(path) for path in spill.segments()]
    assert [r.unreadable for r in reads if r.unreadable] == []
    assert [b.batch_id for r in reads for b in r.batches] == acknowledged
    assert all(r.header is not None and r.header.target == NOWHERE for r in reads)


# -- which database a spill belongs to -----------------------------------------------------------------------


async def _identity(url: str) -> SpillTarget:
    from kalshi_store.spill import database_identity

    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await database_identity(conn, url)


def identity(url: str) -> SpillTarget:
    import asyncio

    return asyncio.run(_identity(url))


def test_the_database_identity_is_read(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        name, system = conn.execute(
            "select current_database(), (select system_identifier::text from pg_control_system())").fetchone() or ()
    assert identity(db_url) == SpillTarget(url=url_target(db_url).url, database=name, system_identifier=system)
    assert "password" not in url_target("postgresql://u:password@h:6000/db?sslmode=require").url
    assert url_target("postgresql://u:password@h:6000/db?sslmode=require").url == "postgresql://h:6000/db"


def test_a_spill_is_replayed_only_into_the_database_it_belongs_to(tmp_path: Path, db_url: str) -> None:
    here = identity(db_url)
    assert here.database is not None and here.system_identifier is not None
    other_cluster = SpillTarget(url=here.url, database=here.database, system_identifier="1234567")
    other_database = SpillTarget(url=here.url, database="kalshi_elsewhere", system_identifier=here.system_identifier)
    elsewhere = url_target("postgresql://db.internal:5432/kalshi")  # spilled before it ever reached its database
    for name, target, first in [("cluster", other_cluster, 100), ("database", other_database, 200),
                                ("never-reached", elsewhere, 300), ("ours", here, 400), ("ours-early", url_target(db_url), 500)]:
        with SpillBuffer(tmp_path / name, target=target) as spill:
            spill.append(make_batch(first, first_seq=first))
    result = replay_spill(db_url, tmp_path)
    assert (result.folders, result.batches, result.segments) == (5, 2, 2)
    assert sorted(result.skipped) == sorted([
        f"spill folder {tmp_path / 'cluster'}: belongs to database {here.database!r} (system 1234567, {here.url}), "
        f"not to {here.describe()}; not replayed",
        f"spill folder {tmp_path / 'database'}: belongs to database 'kalshi_elsewhere' (system "
        f"{here.system_identifier}, {here.url}), not to {here.describe()}; not replayed",
        f"spill folder {tmp_path / 'never-reached'}: belongs to the database at postgresql://db.internal:5432/kalshi "
        f"(never reached while spilling), not to {here.describe()}; not replayed",
    ])
    for name in ("cluster", "database", "never-reached"):  # left in place, whole
        (segment,) = (tmp_path / name).glob("*.spill")
        assert len(read_segment(segment).batches) == 1
        assert str(segment) in result.left
    assert not list((tmp_path / "ours").glob("*.spill")) and not list((tmp_path / "ours-early").glob("*.spill"))
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
    assert {"t-400", "t-500"} <= ids and not {"t-100", "t-200", "t-300"} & ids


def test_a_role_that_may_not_read_the_system_identifier_falls_back_to_name_and_url(db_url: str) -> None:
    import uuid

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from kalshi_store.spill import SegmentHeader, target_mismatch

    role = f"spill_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("revoke execute on function pg_control_system() from public")
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
    try:
        restricted = identity(make_conninfo(db_url, user=role))
        full = identity(db_url)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
    assert restricted.system_identifier is None and restricted.database == full.database
    assert restricted.url == full.url  # the user is not part of the target

    def header(target: SpillTarget) -> SegmentHeader:
        return SegmentHeader(target=target, created_ns=0, host="h", pid=1)

    assert target_mismatch(header(full), restricted) is None  # same name, same server
    assert target_mismatch(header(restricted), full) is None
    moved = SpillTarget(url="postgresql://elsewhere:5432/x", database=full.database,
                        system_identifier=full.system_identifier)
    assert "belongs to database" in (target_mismatch(header(moved), restricted) or "")
    assert target_mismatch(None, full) == "has no spill header (not written by this version); not replayed"


def test_a_spill_file_without_header_is_reported_and_left_in_place(tmp_path: Path, db_url: str) -> None:
    """A file in the format of the unreleased first version (no header, no record markers) does not crash replay."""
    import struct
    import zlib

    from kalshi_store.spill import encode_batch

    folder = tmp_path / "recorder-old"
    folder.mkdir()
    payload = encode_batch(make_batch(1, first_seq=900))
    old = folder / f"{1:020d}.spill"
    old.write_bytes(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    result = replay_spill(db_url, tmp_path)
    assert result.batches == 0 and result.left == [str(old)]
    assert result.skipped == [f"spill folder {folder}: has no spill header (not written by this version); not replayed"]
    assert old.read_bytes()[8:] == payload


@pytest.mark.asyncio
async def test_the_recorder_leaves_the_spill_of_another_database_in_place(
        tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from kalshi_store.recorder import Recorder

    here = await _identity(db_url)
    theirs = SpillTarget(url=here.url, database="kalshi_prod", system_identifier="42")
    foreign = tmp_path / "recorder-foreign"
    with SpillBuffer(foreign, target=theirs) as spill:
        spill.append(make_batch(1, first_seq=800))
    caplog.set_level(logging.WARNING, logger="kalshi_store.recorder")
    async with Recorder(db_url, spill_dir=tmp_path) as recorder:
        await recorder.open_session("next", "simulator", ["M"], ["trade"])
        await recorder.flush()
        await recorder.close_session()
    (segment,) = foreign.glob("*.spill")
    assert [b.batch_id for b in read_segment(segment).batches] == [1]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select count(*) from kalshi.trades where trade_id = 't-800'").fetchone() == (0,)
        assert conn.execute("select market_set from kalshi.sessions").fetchall() == [("next",)]
    lines = [r.getMessage() for r in caplog.records if str(foreign) in r.getMessage()]
    assert lines == [f"recorder: spill folder {foreign}: belongs to {theirs.describe()}, not to {here.describe()}; "
                     "not replayed"]  # one line, once per recorder
    assert "database 'kalshi_prod' (system 42, " in lines[0]


def test_db_replay_names_the_database_a_foreign_spill_belongs_to(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kalshi_ingest.cli import main

    here = identity(db_url)
    theirs = SpillTarget(url="postgresql://db.internal:5432/kalshi", database="kalshi", system_identifier="99")
    with SpillBuffer(tmp_path / "recorder-theirs", target=theirs, segment_bytes=1) as spill:
        for i in (1, 2):  # two segments: still one line
            spill.append(make_batch(i, first_seq=100 * i))
    with SpillBuffer(tmp_path / "recorder-ours", target=here) as spill:
        spill.append(make_batch(3, first_seq=300))
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["db", "replay", "--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "replayed into " in out and "1 batches" in out
    assert err.splitlines() == [
        f"kalshi-ingest: spill folder {tmp_path / 'recorder-theirs'}: belongs to database 'kalshi' (system 99, "
        f"postgresql://db.internal:5432/kalshi), not to {here.describe()}; not replayed"]
    assert len(list((tmp_path / "recorder-theirs").glob("*.spill"))) == 2


# -- the outbox and its replay loop (kalshi_store.outbox) ------------------------------------------------------


async def test_the_replay_loop_also_replays_what_is_spilled_while_it_runs(tmp_path: Path, db_url: str) -> None:
    """A recorder catching up spills new rows behind the replay (``after_batch``): they are replayed too, in order."""
    from kalshi_store.outbox import replay_folder
    from kalshi_store.spill import ReplayResult, database_identity
    from kalshi_store.writer import CopyWriter

    spill = SpillBuffer(tmp_path / "own", target=url_target(db_url))
    spill.append(make_batch(1, first_seq=100))
    spill.append(make_batch(2, first_seq=200))
    late = [make_batch(3, first_seq=300)]
    order: list[int] = []
    writer = await CopyWriter.connect(db_url)
    try:
        async def write(batch: Batch) -> object:
            order.append(batch.batch_id)
            return await writer.write(batch)

        async def spill_more() -> None:
            if late:
                spill.seal()
                spill.append(late.pop())

        result = ReplayResult()
        here = await database_identity(writer.conn, db_url)
        assert await replay_folder(spill, here, write, result, after_batch=spill_more)  # type: ignore[arg-type]
    finally:
        await writer.close()
        spill.close()
    assert order == [1, 2, 3] and result.batches == 3 and not spill.segments()
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
    assert {"t-100", "t-200", "t-300"} <= ids


async def test_the_outbox_keeps_what_the_spill_refuses_and_writes_it_later(tmp_path: Path, db_url: str) -> None:
    from kalshi_store.outbox import Outbox
    from kalshi_store.writer import CopyWriter

    outbox = Outbox(tmp_path)
    outbox.open(SpillBuffer(tmp_path / "own", target=url_target(db_url), max_bytes=64))
    outbox.put(make_batch(1, first_seq=500))
    rows = outbox.rows
    failure = await outbox.to_spill(held=0)
    assert isinstance(failure, SpillFull) and not isinstance(failure, SpillDiskFull)
    assert outbox.stuck and outbox.rows == rows and outbox.spill_error and outbox.durable_through == 0
    writer = await CopyWriter.connect(db_url)
    try:
        async def write(batch: Batch) -> bool:
            await writer.write(batch)
            return True

        assert await outbox.write(write)
    finally:
        await writer.close()
        outbox.close()
    assert not outbox and outbox.rows == 0 and outbox.durable_through == 1 and not outbox.stuck
    assert not (tmp_path / "own").exists()  # an empty spill folder is removed on close
