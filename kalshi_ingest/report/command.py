"""``kalshi-ingest report``'s arguments (argparse, until the CLI is one app)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kalshi_ingest.report.data import MAX_BARS, ReportError, collect
from kalshi_ingest.report.files import report_path, write_html
from kalshi_ingest.report.page import MAX_CHARTS
from kalshi_ingest.report.terminal import fitting_console, print_report
from kalshi_ingest.report.times import _RELATIVE, parse_bar, parse_time


def _time(text: str) -> object:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bar(text: str) -> object:
    try:
        return parse_bar(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kalshi-ingest report",
        description="Report a market set over a time range: an HTML file (charts, tables) and the same tables here.")
    parser.add_argument("market_set", nargs="?", help="market set to report (default: every recorded market)")
    parser.add_argument("--from", dest="start", type=_time, metavar="TIME",
                        help="start (ISO 8601 UTC, or relative: -2h); default: a day before --to, or the first session")
    parser.add_argument("--to", dest="end", type=_time, metavar="TIME",
                        help="end (ISO 8601 UTC, 'now', or relative); default: when the set last recorded")
    parser.add_argument("--bar", type=_bar, help="trade bar length (10s, 1m, 5min, 1h); default: at most "
                        f"{MAX_BARS} bars over the range")
    parser.add_argument("--out", type=Path, help="HTML file to write (default: <data dir>/reports/report-....html)")
    parser.add_argument("--max-charts", type=int, default=MAX_CHARTS,
                        help=f"chart at most this many markets, the most traded (default {MAX_CHARTS})")
    parser.add_argument("--no-html", action="store_true", help="only print the tables")
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")
    parser.add_argument("--database-url", help="database to read (default: DATABASE_URL, or the embedded database)")
    return parser


def _join_relative_times(argv: list[str]) -> list[str]:
    """``--from -2h`` -> ``--from=-2h``: argparse would read ``-2h`` as an option."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in ("--from", "--to") and _RELATIVE.match(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: list[str] | None = None) -> int:
    """``kalshi-ingest report [MARKET_SET] [--from T] [--to T] [--bar 1m] [--out FILE]``; returns the exit code."""
    args = _parser().parse_args(_join_relative_times(sys.argv[1:] if argv is None else argv))
    console = fitting_console()
    from kalshi_ingest.settings import Settings

    settings = Settings()
    if args.database_url:
        url = args.database_url
    else:
        from kalshi_store.embedded import ensure_database

        url = ensure_database(settings.database(), settings.data_dir)
    try:
        data = collect(url, args.market_set, args.start, args.end, bar=args.bar)
    except ReportError as exc:
        console.print(f"[red]report: {exc}[/]")
        return 2
    if not args.quiet:
        print_report(data, console)
    if not args.no_html:
        out: Path = args.out or report_path(settings.data_dir / "reports", args.market_set or "all",
                                            f"{data.start:%Y%m%dT%H%M%S}-{data.end:%Y%m%dT%H%M%S}")
        write_html(data, out, max_charts=args.max_charts)
        console.print(f"HTML report: [bold]{out}[/] (open it in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
