"""Every Python example of docs/queries.md runs against a real recording: first on the hot tables, then with the
recorded day archived, giving the same DataFrames. (The SQL examples are run by tests/reporting/test_docs.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from reporting_recording import Recording

from kalshi_store import archive

DOC = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
EXAMPLE_MARKET = "KXFED-26DEC-T4.00"
RESULTS = ("trades", "volume_by_taker", "bars", "top", "book", "replay", "touch")


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _run(recording: Recording, times: dict[str, str], *, archived: bool) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for block in _blocks():
        if "pq.read_table" in block and not archived:  # reads an archived day's file
            continue
        code = block.replace(EXAMPLE_MARKET, recording.tickers[0])
        for example, actual in times.items():
            code = code.replace(f'"{example}"', f'"{actual}"').replace(f'date={example}"', f'date={actual}"')
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 (the documented examples, as written)
    return namespace


def test_every_python_example_runs_on_hot_and_archived_data(recorded: Recording, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(_blocks()) >= 8
    monkeypatch.setenv("DATABASE_URL", recorded.url)
    monkeypatch.setenv("KALSHI_ARCHIVE_URL", str(tmp_path / "archive"))
    span = recorded.query("select min(received_at) as lo, max(received_at) as hi from kalshi.orderbook_deltas")[0]
    lo, hi = span["lo"].astimezone(UTC), span["hi"].astimezone(UTC)
    day = lo.date()
    times = {"2026-11-25": day.isoformat(), "2026-11-26": (day + timedelta(days=1)).isoformat(),
             "2026-11-25 10:15:03.250+00": (lo + (hi - lo) / 2).isoformat(),
             "2026-11-25 10:00": lo.isoformat(), "2026-11-25 10:05": hi.isoformat()}
    hot = _run(recorded, times, archived=False)
    assert len(hot["trades"]) > 10 and len(hot["bars"]) > 0 and len(hot["book"]) > 0 and len(hot["touch"]) > 10
    assert len(hot["spreads"]) == len(recorded.tickers)
    for table in archive.ARCHIVED_TABLES:
        assert archive.archive_day(recorded.url, str(tmp_path / "archive"), table, datetime.now(UTC).date())
    archived = _run(recorded, times, archived=True)
    for name in RESULTS:
        expected, got = hot[name], archived[name]
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True), obj=name)
        else:
            pd.testing.assert_series_equal(got, expected, obj=name)
    assert len(archived["day"]) > 0
