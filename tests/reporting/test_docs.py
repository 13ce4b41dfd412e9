"""Every example query of docs/queries.md runs, as the read-only role, against a real recording."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from reporting_recording import Recording

DOC = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
EXAMPLE_MARKET = "KXFED-26DEC-T4.00"


def _statements() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    statements = []
    for block in blocks:
        if "create role" in block:  # the administrator's one-off setup
            continue
        statements += [s.strip() for s in re.split(r";\s*\n", block) if s.strip().rstrip(";").strip()]
    return statements


def test_every_example_query_runs_as_the_reader(recording: Recording) -> None:
    statements = _statements()
    assert len(statements) >= 18
    with psycopg.connect(recording.url) as conn:
        conn.execute("set role kalshi_reader")
        for statement in statements:
            text = statement.rstrip(";").replace(EXAMPLE_MARKET, recording.tickers[0])
            conn.execute(text).fetchall()  # type: ignore[call-overload]
    rows = 0
    with psycopg.connect(recording.url) as conn:
        for statement in statements:
            if "book_at" in statement and "best_bid" in statement:
                text = statement.rstrip(";").replace(EXAMPLE_MARKET, recording.tickers[0])
                text = re.sub(r"'2026-11-25 10:15:03\+00'", "now()", text)
                rows += len(conn.execute(text).fetchall())  # type: ignore[call-overload]
    assert rows == 1
