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
from kalshi_store.rows import TABLES, RowBuilders, dead_letter_row
from kalshi_store.spill import SpillBuffer, SpillFull, SpillLocked, read_segment, replay_spill
from kalshi_ws import messages as m

SESSION = "3f2b8a34-5d2c-4e5e-8f6a-0123456789ab"


def make_batch(batch_id: int, first_seq: int = 1, n: int = 3) -> Batch:
    builders = RowBuilders(SESSION, date(2026, 11, 25), use_yes_price=True)
    tables: dict[str, list[tuple[object, ...]]] = {}
    messages = [*f.one_of_each(), *(f.trade(f"t-{first_seq + i}", seq=first_seq + i) for i in range(n))]
    for message in messages:
        table, build = builders.dispatch[type(message)]
        tables.setdefault(table, []).append(build(message, 1, 1_795_600_000_123_456_789))
    tables["dead_letter"] = [dead_letter_row(m.decode(b"{bad"), 1, 1_795_600_000_000_000_001, SESSION)]
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
    with SpillBuffer(tmp_path / "spill") as spill:
        for batch in batches:
            spill.append(batch)
        (segment,) = spill.segments()
        read = read_segment(segment)
    assert read.torn == 0
    assert read.batches == batches  # Decimal, bytes, dates, None: every value and type survives
    trade_row = read.batches[0].tables["trades"][0]
    assert [str(v) for v in trade_row[2:5]] == ["0.0050", "0.9950", "75.25"]


def test_a_torn_last_record_is_skipped_and_the_rest_replayed(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "spill"
    batches = [make_batch(i, first_seq=10 * i) for i in range(1, 4)]
    with SpillBuffer(folder) as spill:
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
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
        assert {"t-10", "t-12", "t-20", "t-22", "t-1"} <= ids and "t-30" not in ids
        assert conn.execute("select count(*) from kalshi.gap_ledger").fetchone() == (1,)
        assert conn.execute("select count(*) from kalshi.dead_letter").fetchone() == (2,)
        assert conn.execute("select status from kalshi.sessions").fetchall() == [("running",)]
    # Replaying the same batches again (say the first replay died before deleting) changes nothing.
    with SpillBuffer(folder) as spill:
        spill.append(batches[0])
    again = replay_spill(db_url, tmp_path)
    assert again.batches == 1 and again.inserted == 0


def test_garbage_after_the_last_record_does_not_crash_replay(tmp_path: Path) -> None:
    folder = tmp_path / "spill"
    with SpillBuffer(folder) as spill:
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
from test_spill import make_batch
from kalshi_store.spill import SpillBuffer
spill = SpillBuffer(Path({folder!r}), segment_bytes=1 << 30)
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
    with SpillBuffer(folder) as spill:
        spill.append(make_batch(1))
        with pytest.raises(SpillLocked):
            SpillBuffer(folder)
        result = replay_spill(db_url, tmp_path)
        assert result.locked_folders == [str(folder)] and result.batches == 0
    assert replay_spill(db_url, tmp_path).batches == 1


def test_the_spill_refuses_batches_beyond_its_size_limit(tmp_path: Path) -> None:
    with SpillBuffer(tmp_path / "spill", max_bytes=10_000) as spill:
        spill.append(make_batch(1, n=1))
        with pytest.raises(SpillFull):
            for i in range(2, 100):
                spill.append(make_batch(i, n=1))
        assert spill.pending_bytes <= 10_000


def test_segments_rotate_and_replay_in_order(tmp_path: Path) -> None:
    with SpillBuffer(tmp_path / "spill", segment_bytes=1) as spill:
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
    with SpillBuffer(dead) as spill:  # a recorder that died while the database was down
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
        with SpillBuffer(ended) as spill:
            spill.append(make_batch(1, first_seq=700))
        await recorder.close_session()
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("select trade_id from kalshi.trades").fetchall()}
    assert {"t-700", "t-701", "t-702"} <= ids
    assert not ended.exists()


def test_batches_spilled_by_the_older_row_layout_read_back(tmp_path: Path) -> None:
    """Older versions put the session's id and day in every order book row; such spill files still replay."""
    from kalshi_store.spill import _encoder, decode_batch

    batch = make_batch(1)
    day = date(2026, 11, 25)
    legacy_tables = {name: ([(SESSION, day, *row) for row in rows] if TABLES[name].legacy_columns else rows)
                     for name, rows in batch.tables.items()}
    assert any(TABLES[name].legacy_columns for name in legacy_tables)
    legacy = _encoder.encode({"batch_id": 1, "session": batch.session, "tables": legacy_tables,
                              "ledger": batch.ledger, "progress": batch.progress})
    assert decode_batch(legacy) == batch
