"""Market-set files: mistakes that used to pass silently (and names that escape the data folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalshi_ingest.config import ConfigError, load_config, unmatched_tickers
from kalshi_ingest.report import report_path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "market_sets.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("market_sets:\n  cpi:\n    series: [KXCPI]\n    series: [KXFED]\n",
     "line 4: key 'series' appears twice in the same mapping"),
    ("market_sets:\n  cpi: {series: [KXCPI]}\n  cpi: {series: [KXFED]}\n",
     "line 3: key 'cpi' appears twice in the same mapping"),
    ("market_sets:\n  cpi: {series: [KXCPI], channels: [ticker, trade, ticker]}\n",
     "market set 'cpi': key 'channels': 'ticker' is listed twice (items 0 and 2)"),
    ("market_sets:\n  cpi: {tickers: ['']}\n", "market set 'cpi': key 'tickers': item 0 ('') is not a ticker"),
    ("market_sets:\n  cpi: {tickers: ['KXA-1,KXA-2']}\n", "key 'tickers': item 0 ('KXA-1,KXA-2') is not a ticker"),
    ("market_sets:\n  cpi: {tickers: [KXA-1, KXA-1]}\n", "key 'tickers': 'KXA-1' is listed twice"),
    ("market_sets:\n  cpi: {series: [KXCPI], session_seconds: .nan}\n", "key 'session_seconds'"),
    ("market_sets:\n  ../../x: {series: [KXCPI]}\n", "market set '../../x': not a usable market-set name"),
    ("market_sets:\n  'a b': {series: [KXCPI]}\n", "market set 'a b': not a usable market-set name"),
])
def test_silent_mistakes_are_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = _write(tmp_path, "defaults: &d\n  channels: [ticker]\nmarket_sets:\n  cpi:\n    <<: *d\n    series: [KXCPI]\n")
    assert load_config(path).get("cpi").channels == ["ticker"]


def test_tickers_that_match_no_market_give_warning_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "market_sets:\n  cpi: {tickers: [KXCPI-1, KXCPI-TYPO], series: [KXCPI]}\n")
    market_set = load_config(path).get("cpi")
    assert unmatched_tickers(market_set, ["KXCPI-1", "KXCPI-2"]) == [
        "market set 'cpi': ticker 'KXCPI-TYPO' is not an open market right now (paused, closed, or misspelled?): it "
        "is subscribed anyway; check its spelling, or remove it if the market closed"]
    assert unmatched_tickers(market_set, ["KXCPI-1", "KXCPI-TYPO"]) == []


@pytest.mark.parametrize("name", ["../../x", "/etc/cron.d/x", "a/../../b", "..", ""])
def test_report_path_stays_in_the_reports_folder(tmp_path: Path, name: str) -> None:
    out = tmp_path / "data" / "reports"
    path = report_path(out, name, "20260101T000000-abcdef12")
    assert path.parent == out
    assert path.resolve().is_relative_to(out.resolve())
    assert path.name.startswith("report-") and path.name.endswith("-20260101T000000-abcdef12.html")
