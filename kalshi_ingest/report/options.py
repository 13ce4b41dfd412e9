"""The report's options and their defaults: ``--from``/``--to`` (ISO 8601, ``now``, or relative such as ``-2h``),
``--bar`` and ``--max-charts``.

Light on purpose (no pandas, no database driver): the command line reads these defaults for its help.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["BAR_CHOICES", "DEFAULT_SPAN", "MAX_BARS", "MAX_CHARTS", "parse_bar", "parse_time"]

#: Bar lengths the report chooses from: the shortest that gives at most MAX_BARS bars over the range.
BAR_CHOICES: Final = tuple(timedelta(seconds=s) for s in (1, 5, 10, 15, 30, 60, 300, 900, 1800, 3600, 14400, 86400))
MAX_BARS: Final = 120
#: When no range is given: the last day recorded for the market set (or less, if it recorded less).
DEFAULT_SPAN: Final = timedelta(days=1)
#: Markets charted in the HTML (the most traded first); every market stays in the tables. Each chart adds about
#: 150 kB to the file.
MAX_CHARTS: Final = 24

_UNIT: Final = r"(ms|min|s|m|h|d)"
_RELATIVE: Final = re.compile(r"^-(\d+(?:\.\d+)?)\s*" + _UNIT + "$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it has an offset), ``now``, or a relative time such as ``-2h``/``-30min``.

    Raises ``ValueError`` naming the accepted forms.
    """
    now = now or datetime.now(UTC)
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-25T10:00), 'now' or a relative time like -2h") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_bar(text: str) -> timedelta:
    """A bar length such as ``500ms``, ``10s``, ``1m``, ``5min``, ``1h``; raises ``ValueError`` otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*" + _UNIT, text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a bar length: use e.g. 500ms, 10s, 1m, 5min, 1h")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
