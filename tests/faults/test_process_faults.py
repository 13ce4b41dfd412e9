"""Process faults: the session cancelled by SIGTERM mid-batch, the process SIGKILLed mid-batch (database up,
or down and spilling) and run again; the deadline falling in the middle of a recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kalshi_store.embedded import EmbeddedPostgres
from kalshi_store.spill import _spill_folders, read_segment
from kalshi_ws.simulator import Simulator

from .harness import (
    CHANNELS,
    Window,
    check_all,
    framed_session,
    last_connection,
    rows,
    scalar,
    subscribed_everywhere,
    wait_until,
    wait_until_db,
)

pytestmark = pytest.mark.timeout(180)

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A recording session in a subprocess (tests/faults/child.py); stdout lines and stderr kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._readers = [asyncio.create_task(self._read_out()), asyncio.create_task(self._read_err())]

    @classmethod
    async def start(cls, sim: Simulator, url: str, data_dir: Path, duration: float, **extra: Any) -> Child:
        cfg = {"base_url": sim.base_url, "key_id": sim.key_id, "key_path": str(sim.private_key_path),
               "db_url": url, "data_dir": str(data_dir), "duration": duration, "tickers": list(sim.tickers),
               "channels": CHANNELS, **extra}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), json.dumps(cfg), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return cls(proc)

    async def _read_out(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.stdout.append(json.loads(line))

    async def _read_err(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    async def wait(self, timeout: float = 60) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return await self.wait()


def _spilled(data_dir: Path) -> Counter[str]:
    """Rows per table sitting in the spill folders under ``data_dir``."""
    counts: Counter[str] = Counter()
    for folder in _spill_folders(data_dir / "spill"):
        for path in sorted(folder.glob("*")):
            if path.is_file() and not path.name.startswith("."):
                with contextlib.suppress(Exception):
                    for batch in read_segment(path).batches:
                        for table, table_rows in batch.tables.items():
                            counts[table] += len(table_rows)
    return counts


async def _start_child_window(sim: Simulator, url: str, data: Path, duration: float, window: Window,
                              **extra: Any) -> Child:
    await sim.pause_market_activity()
    before = last_connection(sim)
    child = await Child.start(sim, url, data, duration, **extra)
    await wait_until(lambda: subscribed_everywhere(sim, after=before) or child.proc.returncode is not None, 30,
                     "the child subscribed")
    assert child.proc.returncode is None, "".join(child.stderr[-20:])
    if not window.started:
        window.tape_start, window.started = len(sim.model.tape), True
    await sim.resume()
    return child


@pytest.mark.parametrize("seed", [3])
async def test_sigkill_mid_batch_database_up_then_run_again(seed: int, sim: Simulator, db_url: str,
                                                            tmp_path: Path) -> None:
    rng = random.Random(seed)
    data, window = tmp_path / "data", Window()
    child = await _start_child_window(sim, db_url, data, 60, window)
    await wait_until_db(db_url, "select count(*) from kalshi.trades", (), lambda n: (n or 0) >= 30, 30,
                        "trades stored by the child")
    await asyncio.sleep(rng.uniform(0.0, 0.3))  # anywhere inside the 0.25 s flush cycle: mid-batch
    assert await child.kill(signal.SIGKILL) == -signal.SIGKILL
    await asyncio.sleep(1.0)  # the exchange keeps printing while nobody records
    killed = scalar(db_url, "select session_id::text from kalshi.sessions where status = 'running'")
    summary, window = await framed_session(sim, db_url, data, duration=6, window=window)
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 40
    assert summary.rest_backfilled > 0, "the rerun did not backfill the trades printed while nobody recorded"
    # the killed session's row cannot say how it ended; it must not claim completed
    assert scalar(db_url, "select status from kalshi.sessions where session_id = %s", killed) != "completed"


async def test_sigkill_while_spilling_then_run_again_replays_the_spill(
        sim: Simulator, own_pg: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    server, url = own_pg
    data, window = tmp_path / "data", Window()
    await asyncio.to_thread(server.stop, "fast")
    child = await _start_child_window(sim, url, data, 60, window)
    await wait_until(lambda: _spilled(data)["trades"] >= 30, 30, "the child spilled trades")
    await asyncio.sleep(0.13)
    assert await child.kill(signal.SIGKILL) == -signal.SIGKILL
    spilled = _spilled(data)
    assert spilled["orderbook_deltas"] > 0
    await asyncio.to_thread(server.start)
    summary, window = await framed_session(sim, url, data, duration=6, window=window)
    report = check_all(url, sim, window)
    report.assert_clean()
    # everything that reached the spill is in the database once (rows of the killed session come only from it)
    killed = [r[0] for r in rows(url, "select session_id::text from kalshi.sessions where session_id <> %s",
                                 summary.session_id)]
    assert len(killed) == 1, killed
    stored = scalar(url, "select count(*) from kalshi.orderbook_deltas where session_id = %s", killed[0])
    assert stored >= spilled["orderbook_deltas"]
    # _spilled reads what it can (a segment being written may not parse): the files themselves must be gone
    assert not list((data / "spill").rglob("*.spill")), "spill left after the replay"


async def test_sigterm_mid_batch_flushes_and_closes_cancelled(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    data, window = tmp_path / "data", Window()
    child = await _start_child_window(sim, db_url, data, 60, window, handle_sigterm=True)
    await wait_until_db(db_url, "select count(*) from kalshi.trades", (), lambda n: (n or 0) >= 30, 30,
                        "trades stored by the child")
    await asyncio.sleep(0.11)
    await sim.pause_market_activity()  # what the child received is what the exchange printed up to now
    window.tape_end = len(sim.model.tape)
    await wait_until(lambda: all(c.closed or not c.queue for c in sim.connections.values()), 10, "queues drained")
    code = await child.kill(signal.SIGTERM)
    assert code == 3, "".join(child.stderr[-30:])
    session = scalar(db_url, "select session_id::text from kalshi.sessions")
    status = scalar(db_url, "select status from kalshi.sessions where session_id = %s", session)
    assert status == "cancelled"
    window.summaries.append(type("S", (), {"session_id": session})())  # type: ignore[arg-type]
    from .harness import check_books, check_dead_letter, check_trades
    report = check_trades(db_url, sim, window)
    check_books(db_url, sim, session, report=report)
    check_dead_letter(db_url, window, report=report, sim=sim)
    report.assert_clean()


async def test_deadline_in_the_middle_of_a_recovery(sim: Simulator, db_url: str, tmp_path: Path) -> None:
    """The deadline falls while the client is reconnecting (the server answers every handshake 503) after a
    gap: the session ends on time, says it is not complete, the disconnect stays open in the gap ledger, and the
    next session's REST backfill stores every trade printed meanwhile."""
    duration = 7.0
    data = tmp_path / "data"

    async def plan(s: Simulator) -> None:
        await asyncio.sleep(1.5)
        s.inject("auth_reject", count=1000, mode="503")  # no handshake succeeds until the deadline
        s.inject("drop", channel="orderbook_delta")
        s.inject("close", mode="abort")

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    first, window = await framed_session(sim, db_url, data, duration=duration, plan=plan)
    elapsed = loop.time() - t0
    assert elapsed < duration + 6, f"the session overran its deadline: {elapsed:.1f} s"
    ledger = rows(db_url, "select kind, ended_at is null from kalshi.gap_ledger where session_id = %s",
                  first.session_id)
    assert ("disconnect", True) in ledger, ledger
    sim._auth_rejects.clear()  # the exchange accepts handshakes again
    second, window = await framed_session(sim, db_url, data, duration=5, window=window)
    report = check_all(db_url, sim, window)
    report.assert_clean()
    assert second.rest_backfilled > 0
    # bug 3 (fixed in 3071f3a): a connection lost and not back by the deadline degrades the session
    assert first.status != "completed", first.status_message
