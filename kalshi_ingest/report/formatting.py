"""How the report writes its values: prices, counts, cents, money, durations and UTC times, as plain text.

Every function takes what pandas hands over (``None``, NaN or NaT for a missing value) and writes ``–`` for a
missing value. The HTML page, the terminal tables and the markdown summary all use these, so a number reads the
same everywhere.
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

import pandas as pd

MISSING: Final = "–"

#: What each kind of untrusted window means, for a reader (kalshi.untrusted_windows.kind).
KIND_TEXT: Final = {
    "gap": "sequence gap (messages lost)", "disconnect": "connection lost", "backpressure": "reading paused",
    "book_inconsistency": "book inconsistent", "stale": "stream silent", "subscription_error": "subscription failed",
    "uncovered": "not recorded",
}
#: How an uncovered window ended (kalshi.uncovered_windows.reason), in the "repaired by" column.
OUTCOME_TEXT: Final = {"between_sessions": "next session (none was recording)",
                       "before_subscribed": "its first snapshot (market opened mid-session)"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def mean(values: pd.Series) -> Decimal | None:
    present = [Decimal(v) for v in values if not _missing(v)]
    return sum(present, Decimal(0)) / len(present) if present else None


def price(value: Any, places: int = 2) -> str:
    if _missing(value):
        return MISSING
    return f"{Decimal(value):.{places}f}"


def places(*columns: pd.Series) -> int:
    """4 decimals when any price of the columns is sub-penny (tapered markets), else 2."""
    for column in columns:
        for value in column:
            if not _missing(value) and Decimal(value) % Decimal("0.01"):
                return 4
    return 2


def cents(value: Any) -> str:
    if _missing(value):
        return MISSING
    amount = Decimal(value) * 100
    return f"{amount:.2f}¢".replace(".00¢", "¢")


def count(value: Any) -> str:
    if _missing(value):
        return MISSING
    number = Decimal(value)
    return f"{number:,.0f}" if number == number.to_integral_value() else f"{number:,.2f}"


def money(value: Any) -> str:
    if _missing(value):
        return MISSING
    number = Decimal(value)
    return f"{'-' if number < 0 else ''}${abs(number):,.2f}"


def number(value: Any) -> str:
    if _missing(value):
        return MISSING
    return f"{Decimal(value).normalize():f}"


def seconds(value: Any) -> str:
    amount = float(value or 0)
    if amount < 1:
        return f"{amount * 1000:.0f} ms"
    if amount < 120:
        return f"{amount:.1f} s"
    if amount < 7200:
        return f"{amount / 60:.1f} min"
    return f"{amount / 3600:.1f} h"


def text(value: Any) -> str:
    """A text cell: '–' for a missing value (None, or NaN/NaT from pandas)."""
    return MISSING if value is None or pd.isna(value) else str(value)


def time(value: Any, *, ms: bool = False) -> str:
    """A UTC time: ``2026-11-25 10:00:00``, or ``10:00:00.250`` with ``ms``."""
    if value is None or pd.isna(value):
        return MISSING
    at = pd.Timestamp(value).tz_convert("UTC")
    return at.strftime("%H:%M:%S.%f")[:-3] if ms else at.strftime("%Y-%m-%d %H:%M:%S")


def span(bar: timedelta) -> str:
    """A bar length: ``1 min``, ``4 h``, ``15 s``."""
    total = int(bar.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if total >= size and total % size == 0:
            return f"{total // size} {unit}"
    return f"{total} s"


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else MISSING


def kind_text(kind: str) -> str:
    return KIND_TEXT.get(kind, kind)


def outcome_text(outcome: Any) -> str:
    written = text(outcome)
    return OUTCOME_TEXT.get(written, written)


def trusted_kind(share: float) -> str:
    """The colour class of a trusted share (0..1): good from 99.9%, warn from 95%, else bad."""
    return "good" if share >= 0.999 else "warn" if share >= 0.95 else "bad"
