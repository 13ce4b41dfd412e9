"""The report (``kalshi-ingest report``) over the shared recording: HTML, terminal tables, the flow's summary."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from reporting_recording import MARKET_SET, Recording
from rich.console import Console

from kalshi_ingest import report


@pytest.fixture(scope="module")
def alerted(recording: Recording) -> Recording:
    """The recording plus one alert fired during it (the flow's alert rules would write such a row)."""
    session = recording.query("select started_at, ended_at from kalshi.sessions")[0]
    with psycopg.connect(recording.url) as conn:
        conn.execute(
            "insert into kalshi.alerts (alert_id, market_set, condition_key, rule, kind, market_ticker, session_id, "
            "value, threshold, message, fired_at, last_seen_at, last_session_id) "
            "values (%s, %s, %s, 'spread_above_0.05', 'spread_above', %s, %s, 0.07, 0.05, %s, %s, %s, %s)",
            (uuid.uuid4(), MARKET_SET, f"spread_above_0.05|{recording.tickers[0]}", recording.tickers[0],
             recording.session_id, f"{recording.tickers[0]}: spread 7¢ above 5¢", session["ended_at"],
             session["ended_at"], recording.session_id))
    return recording


def test_the_html_report_is_self_contained_and_shows_every_part(alerted: Recording, tmp_path: Path) -> None:
    out = report.build_report(alerted.url, MARKET_SET, out=tmp_path / "r" / "report.html")
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "</html>" in text
    assert not re.search(r"""(src|href)=["'](?!data:)""", text), "the report must not load anything"
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(alerted.tickers)
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    for ticker in alerted.tickers:
        assert ticker in text
    for heading in ("Markets", "Data completeness", "Incidents", "Alerts fired", "Price, volume, spread and depth",
                    "Account: positions"):
        assert heading in text
    assert "sequence gap (messages lost)" in text and "connection lost" in text
    assert "spread 7¢ above 5¢" in text
    assert text.count('class="badge bad">incomplete<') >= 1  # bars overlapping the gap are flagged


def test_report_data_matches_the_tape(alerted: Recording) -> None:
    data = report.collect(alerted.url, MARKET_SET)
    assert data.markets == sorted(alerted.tickers)
    summary = {r.market: r for r in data.market_summary().itertuples()}
    for ticker in alerted.tickers:
        tape = [t for t in alerted.tape if t["ticker"] == ticker]
        volume = sum(Decimal(t["count_fp"]) for t in tape)
        assert summary[ticker].trades == len(tape) and summary[ticker].volume == volume
        assert summary[ticker].open == Decimal(tape[0]["yes_price_dollars"])
        assert summary[ticker].close == Decimal(tape[-1]["yes_price_dollars"])
        notional = sum(Decimal(t["count_fp"]) * Decimal(t["yes_price_dollars"]) for t in tape)
        assert abs(summary[ticker].vwap - notional / volume) < Decimal("1e-12")
        assert 0 < summary[ticker].untrusted < summary[ticker].recorded
    assert len(data.alerts) == 1 and len(data.sessions) == 1


def test_the_terminal_tables(alerted: Recording) -> None:
    console = Console(record=True, width=200)
    report.print_report(report.collect(alerted.url, MARKET_SET), console)
    text = console.export_text()
    for title in ("Markets (YES prices in dollars)", "Data completeness: sessions", "Incidents: data incomplete",
                  "trade bars of", "Alerts fired", "Account: positions"):
        assert title in text
    assert all(ticker in text for ticker in alerted.tickers)


def test_the_command_writes_the_file_and_prints(alerted: Recording, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from kalshi_ingest.cli import main

    out = tmp_path / "cli.html"
    session = alerted.query("select started_at, ended_at from kalshi.sessions")[0]
    argv = ["report", MARKET_SET, "--database-url", alerted.url, "--out", str(out), "--bar", "100ms",
            "--from", session["started_at"].isoformat(), "--to", (session["ended_at"] + timedelta(seconds=1)).isoformat()]
    assert main(argv) == 0
    assert out.exists() and "HTML report" in capsys.readouterr().out
    assert main(["report", "no-such-set", "--database-url", alerted.url, "--no-html"]) == 2
    assert capsys.readouterr().err == ("kalshi-ingest: error: no recording session found for market set "
                                       "'no-such-set'; record one first (kalshi-ingest demo)\n")


def test_a_report_file_that_cannot_be_written_is_one_line_naming_it(
        alerted: Recording, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kalshi_ingest.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", MARKET_SET, "--database-url", alerted.url, "--quiet",
                 "--out", str(blocker / "report.html")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("kalshi-ingest: error: ") and str(blocker) in line


def test_relative_times_on_the_command_line(alerted: Recording, tmp_path: Path) -> None:
    """``--from -2h`` (a value that starts with a hyphen) and ``--to now``, spelled apart or with ``=``."""
    from kalshi_ingest.cli import main

    for spelling in (["--from", "-2h", "--to", "now"], ["--from=-120min", "--to=now"]):
        out = tmp_path / f"relative-{len(spelling)}.html"
        assert main(["report", MARKET_SET, "--database-url", alerted.url, "--quiet", "--out", str(out),
                     *spelling]) == 0
        assert all(ticker in out.read_text() for ticker in alerted.tickers)


def test_session_report_for_the_flow(alerted: Recording, tmp_path: Path) -> None:
    made = report.session_report(alerted.url, alerted.session_id, tmp_path / "reports")
    assert made.path.exists() and made.path.parent == tmp_path / "reports"
    assert f"`{made.path.resolve()}`" in made.markdown and "file://" not in made.markdown
    assert f"**{len(alerted.tickers)} markets**" in made.markdown
    assert all(f"| {ticker} |" in made.markdown for ticker in alerted.tickers)


def test_time_arguments() -> None:
    now = report.parse_time("2026-11-25T10:00:00+00:00")
    assert report.parse_time("-2h", now=now) == now - timedelta(hours=2)
    assert report.parse_time("-30min", now=now) == now - timedelta(minutes=30)
    assert report.parse_time("2026-11-25T10:00") == now
    assert report.parse_bar("5min") == timedelta(minutes=5) and report.parse_bar("10s") == timedelta(seconds=10)
    assert report.parse_bar("250ms") == timedelta(milliseconds=250)
    assert report.choose_bar(now, now + timedelta(minutes=1)) == timedelta(seconds=1)
    assert report.choose_bar(now, now + timedelta(days=1)) == timedelta(minutes=15)


def test_the_cli_command_and_the_chart_limit(alerted: Recording, tmp_path: Path) -> None:
    from kalshi_ingest.cli import main as cli_main

    out = tmp_path / "limited.html"
    assert cli_main(["report", MARKET_SET, "--database-url", alerted.url, "--out", str(out), "--max-charts", "1",
                     "--quiet"]) == 0
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 1
    assert f"Charts of the {len(alerted.tickers) - 1} least traded markets are left out" in text


HOSTILE = "<script>alert('x')</script>"


def test_text_from_the_database_is_shown_never_run(alerted: Recording) -> None:
    """A ticker or an alert message is text: escaped in the HTML page, printed as it is (not as rich markup) in the
    terminal."""
    with psycopg.connect(alerted.url) as conn:
        conn.execute(
            "insert into kalshi.alerts (alert_id, market_set, condition_key, rule, kind, market_ticker, session_id, "
            "value, threshold, message, fired_at, last_seen_at, last_session_id) "
            "select %s, market_set, 'hostile', %s, 'spread_above', %s, session_id, 0.07, 0.05, %s, started_at, "
            "started_at, session_id from kalshi.sessions",
            (uuid.uuid4(), HOSTILE, HOSTILE, f"{HOSTILE} [bold]loud[/bold] [/]"))
    try:
        data = report.collect(alerted.url, MARKET_SET)
        ticker = alerted.tickers[0]  # the same data under a hostile ticker: every table and heading shows it
        data.markets = [HOSTILE if m == ticker else m for m in data.markets]
        for frame in (data.bars, data.spreads, data.completeness, data.windows, data.depth):
            frame.loc[frame.market_ticker == ticker, "market_ticker"] = HOSTILE
        page = report.render_html(data)
        assert "<script" not in page
        assert page.count("&lt;script&gt;alert(") >= 5  # in the tables, the market's heading and chart, the alert
        console = Console(record=True, width=400)
        report.print_report(data, console)
        text = console.export_text()
        assert f"{HOSTILE} [bold]loud[/bold] [/]" in text
        assert HOSTILE in text
    finally:
        with psycopg.connect(alerted.url) as conn:
            conn.execute("delete from kalshi.alerts where condition_key = 'hostile'")
