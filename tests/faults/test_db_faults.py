"""Database faults during a recording session: PostgreSQL stopped and restarted mid-session, slow (a
transaction holding ACCESS EXCLUSIVE locks; the postmaster and backends SIGSTOPped), and down for a whole
session (everything spilled, then replayed by the next run). Every trade of the covered window is stored
exactly once and every book equals the exchange's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kalshi_store.embedded import EmbeddedPostgres
from kalshi_ws.simulator import Simulator

from .harness import Window, check_all, framed_session, random_plan, rows, scalar, wait_until

pytestmark = pytest.mark.timeout(180)

#: CI outage length (s); the soak (bench/soak.py --outage) uses longer ones.
OUTAGE = 10.0


async def _outage(server: EmbeddedPostgres, seconds: float, *, after: float) -> None:
    await asyncio.sleep(after)  # fault schedule, not a wait for a condition
    await asyncio.to_thread(server.stop, "fast")
    try:
        await asyncio.sleep(seconds)
    finally:  # the harness may cut the plan short on a slow machine: the database still comes back
        await asyncio.to_thread(server.start)


async def test_database_stopped_mid_session_and_restarted(sim: Simulator, own_pg: tuple[EmbeddedPostgres, str],
                                                          tmp_path: Path) -> None:
    server, url = own_pg
    wire = random_plan(5, ["close", "drop", "duplicate"], rate=0.4, channel="orderbook_delta")

    async def plan(s: Simulator) -> None:
        await asyncio.gather(_outage(server, OUTAGE, after=2.0), wire(s))

    summary, window = await framed_session(sim, url, tmp_path / "data", duration=OUTAGE + 7, plan=plan)
    report = check_all(url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 50
    assert summary.rows_spilled > 0, "the outage never made the recorder spill"
    # the session row was written as soon as the database came back, with its final status (a session that spilled
    # is degraded and says so)
    assert scalar(url, "select status from kalshi.sessions where session_id = %s", summary.session_id) == "degraded"
    spill = tmp_path / "data" / "spill"
    assert spill.is_dir(), "the recorder spilled somewhere else"  # else the next line could not fail
    assert not list(spill.rglob("*.spill")) and not list(spill.rglob("*.quarantine")), "spill files left behind"


def _hold_lock(url: str, released: threading.Event, taken: threading.Event) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("lock table kalshi.trades, kalshi.orderbook_deltas, kalshi.tickers in access exclusive mode")
        taken.set()
        released.wait(60)
        conn.rollback()


@pytest.mark.parametrize("hold", [11.5], ids=["lock-beyond-write-timeout"])
async def test_database_slow_locks_held(hold: float, sim: Simulator, own_pg: tuple[EmbeddedPostgres, str],
                                        tmp_path: Path) -> None:
    _server, url = own_pg
    released, taken = threading.Event(), threading.Event()

    async def plan(s: Simulator) -> None:
        await asyncio.sleep(2.0)
        holder = asyncio.create_task(asyncio.to_thread(_hold_lock, url, released, taken))
        await asyncio.sleep(hold)
        released.set()
        await holder

    try:
        summary, window = await framed_session(sim, url, tmp_path / "data", duration=hold + 6.5, plan=plan)
    finally:
        released.set()
    assert taken.is_set()
    report = check_all(url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 50


async def test_database_frozen_sigstop(sim: Simulator, own_pg: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    server, url = own_pg

    async def plan(s: Simulator) -> None:
        for pause in (3.0, 1.5):
            await asyncio.sleep(1.5)
            await asyncio.to_thread(server.freeze)
            try:
                await asyncio.sleep(pause)
            finally:  # the harness cuts the plan short on a slow machine: never leave the server frozen
                server.thaw()

    try:
        summary, window = await framed_session(sim, url, tmp_path / "data", duration=10.5, plan=plan)
    finally:
        server.thaw()
    report = check_all(url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 50


async def test_database_down_for_the_whole_session_then_replayed(
        sim: Simulator, own_pg: tuple[EmbeddedPostgres, str], tmp_path: Path) -> None:
    server, url = own_pg
    data = tmp_path / "data"
    await asyncio.to_thread(server.stop, "fast")
    wire = random_plan(3, ["close", "drop"], rate=0.5, channel="orderbook_delta")
    window = Window()
    first, window = await framed_session(sim, url, data, duration=7, plan=wire, window=window)
    assert first.rows_spilled > 0
    assert first.status != "completed", "a session that stored nothing in the database must not say completed"
    assert list((data / "spill").rglob("*.spill")), "nothing in the spill"
    await asyncio.to_thread(server.start)
    # the next run (same data dir) replays the spill before recording
    second, window = await framed_session(sim, url, data, duration=5, window=window)
    report = check_all(url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 50
    assert scalar(url, "select count(*) from kalshi.sessions where session_id = any(%s::uuid[])",
                  [first.session_id, second.session_id]) == 2
    assert scalar(url, "select count(*) from kalshi.orderbook_snapshots where session_id = %s",
                  first.session_id) >= len(sim.tickers)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (writes past it fail with ENOSPC), unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],  # noqa: S603, S607
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a 2 MiB tmpfs for the full-disk test (needs root and mount permission): "
                    f"{done.stderr.strip() or f'exit status {done.returncode}'}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:  # noqa: S603, S607
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)  # noqa: S603, S607


async def test_spill_disk_full_while_the_database_is_down(
        sim: Simulator, own_pg: tuple[EmbeddedPostgres, str], tmp_path: Path, small_disk: Path,
        captured_logs: pytest.LogCaptureFixture) -> None:
    """PostgreSQL stopped mid-session with the spill folder on a 2 MiB tmpfs that another file has almost filled:
    the spill fills the disk, the session stops reading the socket (the exchange's frames wait in the socket),
    space is freed, the database restarted. Every trade is stored once, every book equals the exchange's, and
    the session is degraded naming the full disk and the pause."""
    server, url = own_pg
    data = tmp_path / "data"
    data.mkdir()
    (data / "spill").symlink_to(small_disk, target_is_directory=True)

    def disk_full() -> bool:
        return any("no space left for the spill" in r.getMessage() for r in captured_logs.records)

    async def plan(s: Simulator) -> None:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.stop, "fast")
        stat = os.statvfs(small_disk)
        ballast = small_disk / "ballast"
        ballast.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 48 * 1024))
        await wait_until(disk_full, 20, "the spill to hit the full disk")
        await asyncio.sleep(2.0)  # fault schedule: the disk stays full while the exchange keeps printing
        ballast.unlink()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)

    summary, window = await framed_session(sim, url, data, duration=18, plan=plan)
    report = check_all(url, sim, window)
    report.assert_clean()
    assert report.trades_expected > 50
    assert summary.rows_spilled > 0
    status, message, paused = rows(url, "select status, status_message, paused_count from kalshi.sessions "
                                        "where session_id = %s", summary.session_id)[0]
    assert status == "degraded" and paused >= 1
    assert "the disk under the local spill was full" in message and "No space left on device" in message
    assert "reading paused" in message
    assert rows(url, "select detail ->> 'cause', outcome from kalshi.gap_ledger where session_id = %s "
                     "and kind = 'backpressure' order by started_at", summary.session_id)[0] == ("spill_full", "resumed")
    assert not list(small_disk.rglob("*.spill")) and not list(small_disk.rglob("*.quarantine"))
