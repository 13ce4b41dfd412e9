"""``kalshi-ingest``: the command line. One cyclopts app, one function per command:
``demo``, ``run``, ``simulate``, ``db migrate|replay|retention|archive``, ``report``, ``bench``.

Heavy imports (Prefect, pandas, the database driver) happen inside the command that needs them, so
``kalshi-ingest --help`` answers at once. ``simulate`` and ``bench`` hand every argument (``--help`` included) to
the simulator's and the benchmark's own command lines.

A mistake on the command line (an unknown option, a bad value) or in the setup (:data:`USER_ERRORS`) ends in one
line, ``kalshi-ingest: error: ...``, and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

from cyclopts import App, CycloptsError, Parameter, Token

from kalshi_ingest.report.options import MAX_BARS, MAX_CHARTS, parse_bar, parse_time
from kalshi_ingest.settings import (
    Settings,
    check_exchange_access,
    local_prefect_defaults,
    redacted,
    session_duration,
)

EPILOG = """\
Environment:

- KALSHI_ENV: production | demo | production-shared | demo-shared | simulator | a base URL
- KALSHI_API_KEY_ID: your API key id
- KALSHI_PRIVATE_KEY_PATH: PEM file with the RSA private key (or KALSHI_PRIVATE_KEY_PEM, or KALSHI_PRIVATE_KEY_BLOCK =
  a Prefect Secret block name)
- DATABASE_URL: postgresql://...; unset -> embedded PostgreSQL in KALSHI_INGEST_DATA_DIR
- KALSHI_INGEST_DATA_DIR: default $XDG_DATA_HOME/kalshi-ingest or ~/.local/share/kalshi-ingest
- KALSHI_INGEST_CONFIG: default: the market_sets.yaml installed with the package
"""

app = App(
    name="kalshi-ingest",
    help="Record Kalshi market data (WebSocket) into PostgreSQL, orchestrated by Prefect.",
    help_epilogue=EPILOG,
    version_flags=(),
    # A flag is --no-live, not also --no-no-live; each help text says its default in words.
    default_parameter=Parameter(negative=(), show_default=False),
)
db = App(name="db", help="database maintenance: migrate | replay | retention | archive", help_epilogue="")
app.command(db)


_COMMANDS: Final = "demo, run, simulate, db, report or bench"
_DB_COMMANDS: Final = "migrate, replay, retention or archive"


@app.default
def _no_command(*words: Annotated[str, Parameter(show=False)]) -> int:
    what = f"unknown command {words[0]!r}" if words else "no command"
    raise CommandError(f"{what}: give one of {_COMMANDS} (see: kalshi-ingest --help)")


@db.default
def _no_db_command(*words: Annotated[str, Parameter(show=False)]) -> int:
    what = f"unknown db command {words[0]!r}" if words else "no db command"
    raise CommandError(f"{what}: give one of {_DB_COMMANDS} (see: kalshi-ingest db --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2: a mistake to fix, named in one line on stderr)."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        status = app(tokens, exit_on_error=False, print_error=False, result_action="return_value")
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        print("kalshi-ingest: stopped by SIGTERM; the session was flushed and closed as cancelled", file=sys.stderr)
        return 143
    except CycloptsError as exc:  # the command line itself: an unknown command or option, a bad or missing value
        command = " ".join(["kalshi-ingest", *(exc.command_chain or ())])
        print(f"kalshi-ingest: error: {one_line(str(exc))} (see: {command} --help)", file=sys.stderr)
        return 2
    except Exception as exc:
        if not is_user_error(exc):
            raise  # a bug: the traceback is what the report needs
        print(f"kalshi-ingest: error: {one_line(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return 2
    return int(status or 0)  # --help returns None


class CommandError(RuntimeError):
    """A command cannot run as asked (a bad option value, a part missing from this checkout)."""


#: Errors whose message is the whole story (a setting, a file, a key, the database or exchange being away):
#: ``main`` prints them as one line and exits 2. Anything else is a bug and keeps its traceback.
USER_ERRORS: Final = (
    ("kalshi_ingest.config", "ConfigError"),
    ("kalshi_ingest.settings", "SettingsError"),
    ("kalshi_ingest.settings", "CredentialsError"),
    ("kalshi_ingest.report.data", "ReportError"),
    ("kalshi_ingest.session", "NoMarketsError"),
    ("kalshi_ws.auth", "PrivateKeyError"),
    ("kalshi_ws.errors", "AuthenticationError"),
    ("kalshi_store.embedded", "EmbeddedPostgresError"),
    ("kalshi_store.migrations", "MigrationError"),
    ("kalshi_store.archive", "ArchiveError"),
    ("kalshi_store.dberrors", "DatabaseConfigError"),
    ("psycopg", "OperationalError"),  # the database cannot be reached or refuses the login
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake in the setup to report in one line (see :data:`USER_ERRORS`)."""
    if isinstance(exc, CommandError):
        return True
    if isinstance(exc, OSError):  # a file or folder that is missing, not writable, not a folder: the message names it
        return exc.filename is not None  # without a file name (a socket reset, say), nothing tells the user what to fix
    for module_name, name in USER_ERRORS:
        module = sys.modules.get(module_name)  # a module never imported cannot have raised its error
        kind = getattr(module, name, None) if module is not None else None
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def one_line(text: str) -> str:
    """``text`` on one line (libpq's messages have several) with any password in a URL or conninfo masked."""
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


# ------------------------------------------------------------------------------------------------ commands


@app.command(help_epilogue="")
def demo(*, duration: float = 60.0, market_set: str = "demo", data_dir: Path | None = None,
         no_live: bool = False) -> int:
    """embedded PostgreSQL + simulator + one recorded session, with a live display

    Start an embedded PostgreSQL and the local Kalshi simulator, record the 'demo' market set for --duration
    seconds through the Prefect flow, then print what was stored.

    Parameters
    ----------
    duration
        session length in seconds (default 60)
    market_set
        market set to record (default: demo)
    data_dir
        data folder (default: KALSHI_INGEST_DATA_DIR or ~/.local/share/kalshi-ingest)
    no_live
        no live display (plain log lines instead)
    """
    from kalshi_ingest.demo import run_demo

    seconds = session_duration(duration) or 60.0
    settings = Settings() if data_dir is None else Settings(kalshi_ingest_data_dir=data_dir)
    return asyncio.run(run_demo(settings, market_set=market_set, duration=seconds, live=not no_live))


@app.command(help_epilogue="")
def run(market_set: Annotated[str, Parameter(name="MARKET_SET")], /, *, duration: float | None = None,
        config: Path | None = None) -> int:
    """record one market set now (one flow run)

    Run the ingest flow once for MARKET_SET, in this process. Uses PREFECT_API_URL if set (the run then shows in
    your Prefect UI), otherwise a temporary local Prefect server.

    Parameters
    ----------
    market_set
        a name from the market-set file
    duration
        session length in seconds (default: the set's session_seconds)
    config
        market-set file (default: KALSHI_INGEST_CONFIG)
    """
    # Every mistake in the setup fails here, in one line, before Prefect starts or a session opens.
    seconds = session_duration(duration)
    settings = Settings() if config is None else Settings(kalshi_ingest_config=config)
    from kalshi_ingest.config import load_config

    load_config(settings.config_path).get(market_set)
    asyncio.run(check_exchange_access(settings))
    if config is not None:
        os.environ["KALSHI_INGEST_CONFIG"] = str(settings.config_path)
    local_prefect_defaults(settings, quiet=False)
    from kalshi_flows.ingest import ingest_market_set

    state: Any = asyncio.run(ingest_market_set(market_set, seconds, return_state=True))  # type: ignore[arg-type]
    print(f"{state.name}: {state.message or ''}".rstrip(": "))
    if state.is_cancelled():  # stopped by SIGTERM: the session was flushed and closed as cancelled
        return 143
    return 0 if state.is_completed() else 1


_HANDED_OVER: Final = Parameter(allow_leading_hyphen=True, show=False)


@app.command(help_flags=())
def simulate(*args: Annotated[str, _HANDED_OVER]) -> int:
    """run the local Kalshi simulator (arguments go to the simulator; try: simulate --help)"""
    from kalshi_ws import simulator

    # The key goes where runs against the simulator look for it (Settings.simulator_dir: absolute, the same
    # whatever the current folder); an explicit --data-dir comes later and wins.
    return int(simulator.main(["--data-dir", str(Settings().simulator_dir), *args]) or 0)


@db.command
def migrate() -> int:
    """apply sql/NNN_*.sql migrations (idempotent)

    Create the database if it is embedded, then apply migrations.
    """
    from kalshi_store.migrations import migrate as apply_migrations

    url = _database_url()
    with _database_errors(url):
        apply_migrations(url)
    print(f"database migrated: {redacted(url)}")
    return 0


@db.command
def replay(*, folder: Annotated[Path | None, Parameter(name="--dir")] = None) -> int:
    """load spilled files (written while the database was away) into PostgreSQL

    Replay spill files into the database; rows already stored are skipped. Spill files that belong to another
    database (or have no header) are left in place, one line each, exit status 1.

    Parameters
    ----------
    folder
        spill folder (default: DATA_DIR/spill)
    """
    from kalshi_store.spill import replay_spill

    url = _database_url()
    folder = folder or Settings().data_dir / "spill"
    with _database_errors(url):
        result = replay_spill(url, folder)
    if not (result.folders or result.locked_folders):
        print(f"replayed nothing: no spill files under {folder}")
        return 0
    print(f"replayed into {redacted(url)}: {result.summary()}")
    for locked in result.locked_folders:
        print(f"{locked}: in use by a running recorder (it replays its own spill); left alone")
    for moved in result.quarantined:
        print(f"{moved}: held unreadable bytes; its readable batches are stored and the file is kept for inspection")
    for line in result.skipped:  # one line per folder: whose database it is
        print(f"kalshi-ingest: {line}", file=sys.stderr)
    return 1 if result.skipped else 0


@db.command
def retention(*, keep_days: int) -> int:
    """delete recorded data older than --keep-days

    Delete market data older than --keep-days days.

    Parameters
    ----------
    keep_days
        whole days of market data to keep (0 = today only)
    """
    from kalshi_store.retention import apply_retention

    if keep_days < 0:
        raise CommandError(f"--keep-days: {keep_days} is negative: give the whole days of data to keep (0 = today)")
    url = _database_url()
    with _database_errors(url):
        changes = apply_retention(url, keep_days)
    for table, action, rows in changes:
        print(f"{table}: {action} ({rows} rows)")
    if not changes:
        print(f"nothing older than {keep_days} days")
    return 0


@db.command
def archive(*, older_than_days: int | None = None, to: str | None = None) -> int:
    """pack finished day partitions, move old day partitions to Parquet files (verified, then dropped)

    First pack the indexes of every finished day partition of the order book deltas, trades and ticker updates not
    packed yet (once per day; days archived by this run are left alone). Then write every day partition older than --older-than-days
    days to Parquet (zstd, one file per table and day), read each file back and compare it with the partition,
    then drop the partition. Idempotent: run it again after a crash. The daily deployment 'archive-partitions/daily' does the same on a schedule.

    Parameters
    ----------
    older_than_days
        archive days older than this (default: KALSHI_ARCHIVE_AFTER_DAYS, 30)
    to
        a folder or an object-store URL (default: KALSHI_ARCHIVE_URL)
    """
    from kalshi_store.archive import archive_older_than, days_not_to_pack, days_to_archive
    from kalshi_store.compaction import compact_finished_days

    settings = Settings()
    destination = to or settings.kalshi_archive_url
    if not destination:
        raise CommandError("no archive destination: set KALSHI_ARCHIVE_URL or give --to (a folder or an "
                           "object-store URL)")
    days = settings.kalshi_archive_after_days if older_than_days is None else older_than_days
    url = _database_url()
    with _database_errors(url):
        todo = days_to_archive(url, days)
        packed = compact_finished_days(url, skip=days_not_to_pack(todo))
        for done in packed:
            print(f"packed {done.partition}: indexes {done.bytes_before:,} -> {done.bytes_after:,} bytes")
        moved = archive_older_than(url, destination, days, todo=todo)
    for item in moved:
        print(f"{item.table} {item.day}: {item.rows:,} rows -> {item.path} ({item.bytes:,} bytes, "
              f"{item.bytes_per_row:.1f} B/row)")
    if not moved:
        print(f"nothing older than {days} days to archive")
    return 0


def _time(_: Any, tokens: Sequence[Token]) -> datetime:
    return parse_time(tokens[0].value)


def _bar(_: Any, tokens: Sequence[Token]) -> timedelta:
    return parse_bar(tokens[0].value)


#: ``--from -2h``: a relative time starts with a hyphen, and is still the option's value.
_TIME: Final = Parameter(converter=_time, allow_leading_hyphen=True)


@app.command(name="report", help_epilogue="")
def report_command(
        market_set: str | None = None, /, *,
        start: Annotated[datetime | None, _TIME, Parameter(name="--from")] = None,
        end: Annotated[datetime | None, _TIME, Parameter(name="--to")] = None,
        bar: Annotated[timedelta | None, Parameter(converter=_bar, help=(
            f"trade bar length (10s, 1m, 5min, 1h); default: at most {MAX_BARS} bars over the range"))] = None,
        out: Path | None = None,
        max_charts: Annotated[int, Parameter(help=(
            f"chart at most this many markets, the most traded (default {MAX_CHARTS})"))] = MAX_CHARTS,
        no_html: bool = False, quiet: bool = False,
        database_url: str | None = None) -> int:
    """reports from the recorded data: an HTML file and tables (see: report --help)

    Report a market set over a time range: an HTML file (charts, tables) and the same tables here.

    Parameters
    ----------
    market_set
        market set to report (default: every recorded market)
    start
        start (ISO 8601 UTC, or relative: -2h); default: a day before --to, or the first session
    end
        end (ISO 8601 UTC, 'now', or relative); default: when the set last recorded
    out
        HTML file to write (default: DATA_DIR/reports/report-....html)
    no_html
        only print the tables
    quiet
        do not print the tables
    database_url
        database to read (default: DATABASE_URL, or the embedded database)
    """
    from rich.markup import escape

    from kalshi_ingest.report import collect, print_report, report_path, write_html
    from kalshi_ingest.report.terminal import fitting_console

    settings = Settings()
    url = database_url or _database_url()
    with _database_errors(url, "--database-url" if database_url else None):
        data = collect(url, market_set, start, end, bar=bar)
    console = fitting_console()
    if not quiet:
        print_report(data, console)
    if not no_html:
        path = out or report_path(settings.data_dir / "reports", market_set or "all",
                                  f"{data.start:%Y%m%dT%H%M%S}-{data.end:%Y%m%dT%H%M%S}")
        write_html(data, path, max_charts=max_charts)
        console.print(f"HTML report: [bold]{escape(str(path))}[/] (open it in a browser)")
    return 0


@app.command(help_flags=())
def bench(*args: Annotated[str, _HANDED_OVER]) -> int:
    """run the benchmark in bench/ (see: bench --help)

    The benchmark is part of the checkout, not of the installed package: run this from the checkout's top folder.
    """
    if not (Path.cwd() / "bench" / "run.py").is_file():
        raise CommandError(f"the benchmark is not here: no bench/run.py in {Path.cwd()}; run `kalshi-ingest bench` "
                           "from the top folder of a checkout (the benchmark is not installed with the package)")
    # `python -m` puts the current folder first on the benchmark's own import path: bench/ is importable there.
    return subprocess.run([sys.executable, "-m", "bench.run", *args], check=False).returncode


# ------------------------------------------------------------------------------------------------ helpers


def _database_url() -> str:
    """DATABASE_URL, or the embedded server (started if needed) in the data dir."""
    from kalshi_store.embedded import ensure_database

    settings = Settings()
    return ensure_database(settings.database(), settings.data_dir)


@contextlib.contextmanager
def _database_errors(url: str, option: str | None = None) -> Iterator[None]:
    """A database that cannot be reached or refuses the login is a setup problem: one line naming it and where
    its URL came from (``option``, else DATABASE_URL or the embedded database)."""
    import psycopg

    from kalshi_store.dberrors import DatabaseUnavailableError

    try:
        yield
    except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
        source = option or ("DATABASE_URL" if Settings().database() else "the embedded database")
        raise CommandError(f"cannot use the database {redacted(url)} ({source}): {one_line(str(exc))}: "
                           f"check that it is running and reachable, and {option or 'DATABASE_URL'}") from None


if __name__ == "__main__":
    raise SystemExit(main())
