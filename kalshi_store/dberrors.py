"""Database errors: an outage, a configuration error or a value the database cannot store; credential redaction.

Three kinds of failure, handled three ways:

``transient``
    The database is unreachable or went away (connection refused, server shutting down or restarting, too many
    connections, a timeout, a serialization failure). The recorder spills and retries.
``config``
    The database answered, and said no: authentication failed, the database or role does not exist, the role
    lacks privileges, the schema is missing or malformed ``DATABASE_URL``. Retrying cannot help; the recorder fails
    fast before recording starts with :class:`DatabaseConfigError` (one line naming ``DATABASE_URL``).
``permanent``
    Anything else the database rejects (a value it cannot store: NUL in text, out of range, a constraint). Never
    an outage: the writer isolates the offending rows and moves them to ``kalshi.dead_letter``.

Error texts may echo the connection string (libpq repeats a malformed one verbatim), so every error text that is
logged, stored or shown goes through :func:`redact`.
"""

from __future__ import annotations

import re
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

import psycopg

__all__ = [
    "DatabaseConfigError", "DatabaseUnavailableError", "ErrorKind", "classify", "connect_error", "describe",
    "redact", "redact_url", "url_secrets", "url_without_password",
]

ErrorKind = Literal["transient", "config", "permanent"]

_MASK: Final = "***"
# scheme://user:PASSWORD@host (the password may be empty; stops at the last '@' before the host).
_URL_PASSWORD: Final = re.compile(r"(?P<pre>\b[a-z][a-z0-9+.\-]*://[^\s:/?#@'\"]*:)(?P<pw>[^\s'\"]*)(?=@)", re.I)
# password=VALUE / password = 'quoted value' (conninfo), also ?password=VALUE&... in a URL query.
_KV_PASSWORD: Final = re.compile(r"(?P<pre>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I)

#: SQLSTATEs that mean "the database is configured differently from what DATABASE_URL / the role expects".
_CONFIG_STATES: Final = {
    "3D000": "the database does not exist",
    "3F000": "the schema is missing (run `kalshi-ingest db migrate`)",
    "42501": "the role lacks privileges on the kalshi schema",
    "42P01": "a kalshi table is missing (run `kalshi-ingest db migrate`)",
    "42883": "a kalshi function is missing (run `kalshi-ingest db migrate`)",
    "42703": "a kalshi column is missing (run `kalshi-ingest db migrate`)",
}
#: Connection failures libpq reports without a SQLSTATE, recognised by their text (server messages are English
#: unless lc_messages says otherwise; anything unrecognised stays transient, the safe side: spill and retry).
_CONFIG_TEXTS: Final = (
    ("password authentication failed", "authentication failed (wrong user or password)"),
    ("authentication failed", "authentication failed (wrong user or password)"),
    ("no password supplied", "the server asks for a password and none was given"),
    ("no pg_hba.conf entry", "the server does not accept this user/database/host (pg_hba.conf)"),
    ("does not exist", "the role or database does not exist"),  # FATAL:  role/database "x" does not exist
    ("permission denied", "the role lacks privileges"),
    ("invalid connection option", "malformed URL"),
    ("missing \"=\"", "malformed URL"),
    ("invalid uri", "malformed URL"),
    ("invalid dsn", "malformed URL"),
    ("invalid integer value", "malformed URL"),
    ("invalid port", "malformed URL"),
    ("invalid sslmode", "malformed URL"),
    ("unterminated quoted string", "malformed URL"),
)
_TRANSIENT_CLASSES: Final = {"08", "53", "57", "40", "58"}


class DatabaseConfigError(ValueError):
    """``DATABASE_URL`` (or the database behind it) is wrong in a way that retrying cannot fix.

    The message is one line, names ``DATABASE_URL`` and says what is wrong, without the password.
    """


class DatabaseUnavailableError(ConnectionError):
    """The database cannot be reached right now (refused, restarting, timed out); the message is redacted."""


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The password(s) in ``url`` (a URL or a conninfo string, malformed or not), to be masked wherever they appear."""
    if not url:
        return ()
    found: set[str] = set()
    for match in _URL_PASSWORD.finditer(url):
        found.add(match["pw"])
    for match in _KV_PASSWORD.finditer(url):
        value = match["pw"]
        found.add(value)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            found.add(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        found.update({password, unquote(password)})
    try:
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(url).get("password")
    except Exception:  # malformed: the regular expressions above found what can be found
        parsed = None
    if isinstance(parsed, str):
        found.add(parsed)
    # Very short strings would mask ordinary words; the patterns still mask them in URL/conninfo position.
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact(text: str, *secrets: str) -> str:
    """``text`` with URL passwords, ``password=...`` values and every occurrence of ``secrets`` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    text = _URL_PASSWORD.sub(lambda m: m["pre"] + (_MASK if m["pw"] else ""), text)
    return _KV_PASSWORD.sub(lambda m: m["pre"] + _MASK, text)


def redact_url(url: str) -> str:
    """``url`` with its password masked (works on malformed URLs and conninfo strings too)."""
    return redact(url, *url_secrets(url))


def url_without_password(url: str) -> str:
    """``postgresql://user@host:port/dbname`` of a database URL or conninfo string: what to show a person (no
    password, no other parameters)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    user = params.get("user") or ""
    return f"postgresql://{user}{'@' if user else ''}{params.get('host', '')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def describe(exc: BaseException, url: str | None = None) -> str:
    """``"<Type>: <message>"`` on one line, redacted (safe to log, store or show)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}", *url_secrets(url))


def _config_reason(exc: BaseException) -> str | None:
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate
    if state is not None:
        if state[:2] == "28":
            return "authentication failed (wrong user or password, or not allowed to log in)"
        return _CONFIG_STATES.get(state)
    if isinstance(exc, psycopg.OperationalError | psycopg.ProgrammingError):
        text = str(exc).lower()
        for needle, reason in _CONFIG_TEXTS:
            if needle in text:
                if needle == "does not exist":
                    return "the database does not exist" if 'database "' in text else "the role does not exist"
                return reason
    return None


def classify(exc: BaseException) -> ErrorKind:
    """Which of the three kinds (module docstring) ``exc`` is."""
    if _config_reason(exc) is not None:
        return "config"
    if isinstance(exc, DatabaseConfigError):
        return "config"
    if isinstance(exc, OSError | TimeoutError | DatabaseUnavailableError):
        return "transient"
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is not None:
            return "transient" if state[:2] in _TRANSIENT_CLASSES or state == "55P03" else "permanent"
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return "transient"  # client-side: connection refused / lost / closed
        return "permanent"  # client-side DataError (NUL in text) and the like
    if isinstance(exc, UnicodeError):
        return "permanent"  # a string the connection encoding cannot carry (lone surrogates)
    return "permanent"


def connect_error(exc: BaseException, url: str) -> Exception:
    """The typed, redacted error to raise for a failed connection/preparation (``raise connect_error(e, url) from
    None``): :class:`DatabaseConfigError` for configuration errors, else :class:`DatabaseUnavailableError`."""
    reason = _config_reason(exc)
    detail = describe(exc, url)
    if reason is not None:
        return DatabaseConfigError(f"DATABASE_URL ({redact_url(url)}): {reason} [{detail}]")
    return DatabaseUnavailableError(f"database at {redact_url(url)} unavailable: {detail}")
