"""The command line: --help everywhere, config errors that name file/set/key, lazy optional parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kalshi_ingest.cli import main
from kalshi_ingest.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "kalshi_ingest.cli"]


@pytest.mark.parametrize("argv", [[], ["demo"], ["run"], ["db"], ["db", "migrate"], ["db", "replay"],
                                  ["db", "retention"], ["report"]])
def test_help_works_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    usage, _, description = out.partition("\n\n")
    assert usage.startswith(f"Usage: {' '.join(['kalshi-ingest', *argv])}")
    assert description.strip(), "every command says what it does"


def test_top_level_help_lists_every_command_and_variable() -> None:
    result = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True, cwd=ROOT)
    for word in ("demo", "run", "simulate", "db", "report", "bench", "KALSHI_ENV", "DATABASE_URL",
                 "KALSHI_PRIVATE_KEY_PATH"):
        assert word in result.stdout


def test_simulate_help_is_the_simulators() -> None:
    result = subprocess.run([*CLI, "simulate", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "kalshi-ingest simulate" in result.stdout and "--port" in result.stdout


def test_shipped_market_sets_are_valid() -> None:
    config = load_config(ROOT / "deployments" / "market_sets.yaml")
    demo = config.get("demo")
    assert demo.series and set(demo.channels) >= {"orderbook_delta", "ticker", "trade"}
    assert demo.alerts


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "market_sets.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("body", "expected"), [
    ("cpi:\n    series: [KXCPI]\n    channels: [ticker, trade, ticker_v2]",
     "market set 'cpi': key 'channels[2]': unknown channel 'ticker_v2' (removed 2026-02-12)"),
    ("cpi:\n    series: [KXCPI]\n    chanels: [ticker]", "market set 'cpi': key 'chanels': unknown key"),
    ("cpi:\n    series: [KXCPI]\n    alerts: [{kind: spread_above, threshold: 5}]",
     "market set 'cpi': key 'alerts[0].threshold': Input should be less than or equal to 1"),
    ("cpi:\n    series: [KXCPI]\n    alerts: [{kind: spread_wide, threshold: 0.1}]",
     "market set 'cpi': key 'alerts[0]': unknown alert kind 'spread_wide'"),
    ("cpi:\n    channels: [ticker]", "market set 'cpi': names no markets"),
    ("cpi:\n    series: [KXCPI]\n    session_seconds: -1",
     "market set 'cpi': key 'session_seconds': Input should be greater than 0"),
])
def test_config_errors_name_file_set_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, "market_sets:\n  " + body + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "market_sets:\n  cpi: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line \d+ not valid YAML"):
        load_config(path)


def test_unknown_market_set_lists_the_defined_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "market_sets:\n  cpi: {series: [KXCPI]}\n  fed: {series: [KXFED]}\n")
    with pytest.raises(ConfigError, match="no market set 'btc' \\(defined: cpi, fed\\)"):
        load_config(path).get("btc")


def test_run_with_a_bad_config_fails_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "market_sets:\n  cpi:\n    series: [KXCPI]\n    channels: [ticker_v2]\n")
    assert main(["run", "cpi", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: market set 'cpi': key 'channels[0]': unknown channel 'ticker_v2'" in err


def test_simulate_hands_every_argument_over() -> None:
    """simulate gives all its arguments (options included) to the simulator's own command line."""
    result = subprocess.run([*CLI, "simulate", "--port", "not-a-number"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "kalshi-ingest simulate: error: argument --port: invalid int value" in result.stderr


def test_simulate_writes_its_key_where_runs_look_for_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`kalshi-ingest simulate` keys go to Settings.simulator_dir (absolute, <data dir>/simulator), whatever the
    current folder; an explicit --data-dir still wins (it comes later on the simulator's command line)."""
    from kalshi_ws import simulator
    from kalshi_ws.simulator.cli import build_parser as simulator_parser

    handed: list[list[str]] = []
    monkeypatch.setattr(simulator, "main", lambda argv: handed.append(argv) or 0)
    monkeypatch.setenv("KALSHI_INGEST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("KALSHI_SIMULATOR_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--port", "0"]) == 0
    assert main(["simulate", "--data-dir", "mine"]) == 0
    assert handed[0] == ["--data-dir", str(tmp_path / "data" / "simulator"), "--port", "0"]
    assert simulator_parser().parse_args(handed[1]).data_dir == Path("mine")
