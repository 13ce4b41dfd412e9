"""``kalshi-ingest``: the command line (demo, run, simulate, db, report, bench).

Heavy imports (Prefect, pandas, the database driver) happen inside the command that needs them, so
``kalshi-ingest --help`` answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from kalshi_ingest.settings import (
    Settings,
    check_exchange_access,
    local_prefect_defaults,
    redacted,
    session_duration,
)

EPILOG = """\
environment:
  KALSHI_ENV                production | demo | production-shared | demo-shared | simulator | a base URL
  KALSHI_API_KEY_ID         your API key id
  KALSHI_PRIVATE_KEY_PATH   PEM file with the RSA private key (or KALSHI_PRIVATE_KEY_PEM,
                            or KALSHI_PRIVATE_KEY_BLOCK = a Prefect Secret block name)
  DATABASE_URL              postgresql://...; unset -> embedded PostgreSQL in KALSHI_INGEST_DATA_DIR
  KALSHI_INGEST_DATA_DIR    default $XDG_DATA_HOME/kalshi-ingest or ~/.local/share/kalshi-ingest
  KALSHI_INGEST_CONFIG      default: the market_sets.yaml installed with the package
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kalshi-ingest",
        description="Record Kalshi market data (WebSocket) into PostgreSQL, orchestrated by Prefect.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", help="embedded PostgreSQL + simulator + one recorded session, with a live display",
        description="Start an embedded PostgreSQL and the local Kalshi simulator, record the 'demo' market "
                    "set for --duration seconds through the Prefect flow, then print what was stored.")
    demo.add_argument("--duration", type=float, default=60.0, help="session length in seconds (default 60)")
    demo.add_argument("--market-set", default="demo", help="market set to record (default: demo)")
    demo.add_argument("--data-dir", type=Path, help="data folder (default: KALSHI_INGEST_DATA_DIR or ~/.local/share/kalshi-ingest)")
    demo.add_argument("--no-live", action="store_true", help="no live display (plain log lines instead)")
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run", help="record one market set now (one flow run)",
        description="Run the ingest flow once for MARKET_SET, in this process. Uses PREFECT_API_URL if set "
                    "(the run then shows in your Prefect UI), otherwise a temporary local Prefect server.")
    run.add_argument("market_set", metavar="MARKET_SET", help="a name from the market-set file")
    run.add_argument("--duration", type=float, help="session length in seconds (default: the set's session_seconds)")
    run.add_argument("--config", type=Path, help="market-set file (default: KALSHI_INGEST_CONFIG)")
    run.set_defaults(handler=_run)

    simulate = commands.add_parser(
        "simulate", help="run the local Kalshi simulator (arguments go to the simulator; try: simulate --help)",
        add_help=False)
    simulate.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    simulate.set_defaults(handler=_simulate)

    db = commands.add_parser("db", help="database maintenance: migrate | replay | retention",
                             description="Database maintenance on DATABASE_URL (or the embedded database).")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    migrate = db_commands.add_parser("migrate", help="apply sql/NNN_*.sql migrations (idempotent)",
                                     description="Create the database if it is embedded, then apply migrations.")
    migrate.set_defaults(handler=_db_migrate)
    replay = db_commands.add_parser(
        "replay", help="load spilled files (written while the database was away) into PostgreSQL",
        description="Replay spill files into the database; rows already stored are skipped. Spill files that "
                    "belong to another database (or have no header) are left in place, one line each, exit status 1.")
    replay.add_argument("--dir", type=Path, help="spill folder (default: DATA_DIR/spill)")
    replay.set_defaults(handler=_db_replay)
    retention = db_commands.add_parser("retention", help="delete recorded data older than --keep-days",
                                       description="Delete market data older than --keep-days days.")
    retention.add_argument("--keep-days", type=int, required=True,
                           help="whole days of market data to keep (0 = today only)")
    retention.set_defaults(handler=_db_retention)

    report = commands.add_parser("report", help="reports from the recorded data (see: report --help)",
                                 add_help=False)
    report.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    report.set_defaults(handler=_report)

    bench = commands.add_parser("bench", help="run the benchmark in bench/ (see: bench --help)", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    bench.set_defaults(handler=_bench)
    return parser


#: Commands whose arguments belong to another part's own parser (argparse's REMAINDER cannot pass options).
PASSTHROUGH: dict[str, Callable[[argparse.Namespace], int]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        args = argparse.Namespace(command=argv[0], args=argv[1:], handler=PASSTHROUGH[argv[0]])
    else:
        args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        print("kalshi-ingest: stopped by SIGTERM; the session was flushed and closed as cancelled", file=sys.stderr)
        return 143
    except Exception as exc:
        if not is_user_error(exc):
            raise  # a bug: the traceback is what the report needs
        print(f"kalshi-ingest: error: {one_line(str(exc) or type(exc).__name__)}", file=sys.stderr)
        return 2


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
    ("kalshi_store.dberrors", "DatabaseConfigError"),
    ("psycopg", "OperationalError"),  # the database cannot be reached or refuses the login
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake in the setup to report in one line (see :data:`USER_ERRORS`)."""
    if isinstance(exc, (CommandError, OSError)):  # OSError: a file, a port, a permission; the message names it
        return True
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


def _demo(args: argparse.Namespace) -> int:
    from kalshi_ingest.demo import run_demo

    duration = session_duration(args.duration) or 60.0
    settings = Settings() if args.data_dir is None else Settings(kalshi_ingest_data_dir=args.data_dir)
    return asyncio.run(run_demo(settings, market_set=args.market_set, duration=duration, live=not args.no_live))


def _run(args: argparse.Namespace) -> int:
    # Every mistake in the setup fails here, in one line, before Prefect starts or a session opens.
    args.duration = session_duration(args.duration)
    settings = Settings() if args.config is None else Settings(kalshi_ingest_config=args.config)
    from kalshi_ingest.config import load_config

    load_config(settings.config_path).get(args.market_set)
    asyncio.run(check_exchange_access(settings))
    if args.config is not None:
        os.environ["KALSHI_INGEST_CONFIG"] = str(settings.config_path)
    local_prefect_defaults(settings, quiet=False)
    from kalshi_flows.ingest import ingest_market_set

    state: Any = asyncio.run(ingest_market_set(args.market_set, args.duration, return_state=True))  # type: ignore[arg-type]
    print(f"{state.name}: {state.message or ''}".rstrip(": "))
    if state.is_cancelled():  # stopped by SIGTERM: the session was flushed and closed as cancelled
        return 143
    return 0 if state.is_completed() else 1


def _simulate(args: argparse.Namespace) -> int:
    simulator_main = _entry_point(("kalshi_ws.simulator", "kalshi_ws.simulator.cli", "kalshi_ws.simulator.__main__"),
                                  "main", "the simulator")
    # The key goes where runs against the simulator look for it (Settings.simulator_dir: absolute, the same
    # whatever the current folder); an explicit --data-dir comes later and wins.
    return int(simulator_main(["--data-dir", str(Settings().simulator_dir), *args.args]) or 0)


def _db_migrate(args: argparse.Namespace) -> int:
    from kalshi_store.migrations import migrate

    url = _database_url()
    with _database_errors(url):
        migrate(url)
    print(f"database migrated: {redacted(url)}")
    return 0


def _db_replay(args: argparse.Namespace) -> int:
    from kalshi_store.spill import replay_spill

    url = _database_url()
    folder = args.dir or Settings().data_dir / "spill"
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


def _db_retention(args: argparse.Namespace) -> int:
    from kalshi_store.retention import apply_retention

    if args.keep_days < 0:
        raise CommandError(f"--keep-days: {args.keep_days} is negative: give the whole days of data to keep (0 = today)")
    url = _database_url()
    with _database_errors(url):
        changes = apply_retention(url, args.keep_days)
    for table, action, rows in changes:
        print(f"{table}: {action} ({rows} rows)")
    if not changes:
        print(f"nothing older than {args.keep_days} days")
    return 0


def _database_url() -> str:
    """DATABASE_URL, or the embedded server (started if needed) in the data dir."""
    from kalshi_store.embedded import ensure_database

    settings = Settings()
    return ensure_database(settings.database(), settings.data_dir)


@contextlib.contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """A database that cannot be reached or refuses the login is a setup problem: one line naming it."""
    import psycopg

    from kalshi_store.dberrors import DatabaseUnavailableError

    try:
        yield
    except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
        source = "DATABASE_URL" if Settings().database() else "the embedded database"
        raise CommandError(f"cannot use the database {redacted(url)} ({source}): {one_line(str(exc))}: "
                           "check that it is running and reachable, and DATABASE_URL") from None


def _report(args: argparse.Namespace) -> int:
    report_main = _entry_point(("kalshi_ingest.report",), "main", "reporting (kalshi_ingest/report.py)")
    return int(report_main(list(args.args)) or 0)


def _bench(args: argparse.Namespace) -> int:
    bench_main = _entry_point(("bench", "bench.run", "bench.__main__"), "main", "the benchmark (bench/)")
    return int(bench_main(list(args.args)) or 0)


def _entry_point(modules: Sequence[str], attribute: str, what: str) -> Callable[[list[str]], int | None]:
    """The first ``module.main`` found; a clear error if the part is not installed in this checkout."""
    root = str(Path.cwd())
    if root not in sys.path:
        sys.path.append(root)  # bench/ lives in the checkout, not in the installed package
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        function = getattr(module, attribute, None)
        if callable(function):
            return function  # type: ignore[no-any-return]
    raise CommandError(f"{what} is not available in this checkout (looked for {attribute}() in {', '.join(modules)})")


PASSTHROUGH.update(simulate=_simulate, report=_report, bench=_bench)

if __name__ == "__main__":
    raise SystemExit(main())
