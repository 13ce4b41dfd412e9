"""Market sets: what to record, how long, and which alerts to raise (``deployments/market_sets.yaml``).

A market set names markets directly (``tickers``) and/or by ``series`` or ``events``, which are expanded
to the markets open at the start of each session through REST. The file is validated completely before
anything connects; an error names the file, the market set and the key, for example::

    deployments/market_sets.yaml: market set 'cpi': key 'channels[2]': unknown channel 'ticker_v2'
    (removed 2026-02-12)

File shape::

    defaults:            # optional; merged into every market set (a set's own keys win)
      channels: [orderbook_delta, ticker, trade]
    market_sets:
      cpi:
        series: [KXCPI]
        session_seconds: 3600
        alerts:
          - {kind: spread_above, threshold: 0.10}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kalshi_ws.messages import CHANNELS, REMOVED_CHANNELS

#: Longest session: the flow's hard backstop (flows/ingest.py BACKSTOP_SECONDS) is 6 hours.
MAX_SESSION_SECONDS = 5 * 3600


#: Market-set names become file names (reports) and Prefect tags: a safe, short charset.
MARKET_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: A market, event or series ticker as Kalshi writes them (KXCPI-26JAN-T0.3): no spaces, commas or slashes.
TICKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ConfigError(ValueError):
    """The market-set file is unreadable or invalid; the message names the file, the set and the key."""


def _known_channel(name: str) -> str:
    if name in REMOVED_CHANNELS:
        raise ValueError(f"unknown channel {name!r} ({REMOVED_CHANNELS[name]})")
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r} (known: {', '.join(sorted(CHANNELS))})")
    return name


Channel = Annotated[str, AfterValidator(_known_channel)]
Dollars = Annotated[Decimal, Field(ge=0, le=1)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Overrides the generated rule name (used in messages and to avoid repeating the same alert).
    name: str | None = None


class PriceMoveRule(_Rule):
    """The last price moved by ``threshold`` dollars or more, within ``window_seconds`` or, if that is
    omitted, since the end of the previous session of this market set."""

    kind: Literal["price_move"]
    threshold: Dollars
    window_seconds: float | None = Field(default=None, gt=0)


class SpreadRule(_Rule):
    """The YES spread (best ask - best bid) at the end of the session is above/below ``threshold``."""

    kind: Literal["spread_above", "spread_below"]
    threshold: Dollars


class DepthBelowRule(_Rule):
    """Resting contracts within ``within`` dollars of the touch (both sides) fell below ``threshold``."""

    kind: Literal["depth_below"]
    threshold: Decimal = Field(gt=0)
    within: Dollars = Decimal("0.05")


class MarketStaleRule(_Rule):
    """No data at all for a market during the last ``seconds`` of the session."""

    kind: Literal["market_stale"]
    seconds: float = Field(gt=0)


class SessionUnhealthyRule(_Rule):
    """The session had more gaps or reconnects than allowed, or spilled data to local files."""

    kind: Literal["session_unhealthy"]
    max_gaps: int = Field(default=0, ge=0)
    max_reconnects: int = Field(default=0, ge=0)


AlertRule = Annotated[
    PriceMoveRule | SpreadRule | DepthBelowRule | MarketStaleRule | SessionUnhealthyRule,
    Field(discriminator="kind"),
]
RULE_KINDS = frozenset({"price_move", "spread_above", "spread_below", "depth_below", "market_stale",
                        "session_unhealthy"})


class MarketSet(BaseModel):
    """One market set; every key is documented in ``deployments/market_sets.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    tickers: list[str] = []
    series: list[str] = []
    events: list[str] = []
    channels: list[Channel] = ["orderbook_delta", "ticker", "trade"]
    #: At most 5 hours: the flow's hard backstop (flows/ingest.py BACKSTOP_SECONDS) is 6 hours.
    session_seconds: float = Field(default=3600, gt=0, le=MAX_SESSION_SECONDS, allow_inf_nan=False)
    use_yes_price: bool = False
    #: Name of a Prefect notification block (SlackWebhook, CustomWebhookNotificationBlock, ...).
    notify_block: str | None = None
    alerts: list[AlertRule] = []
    depth_bucket_seconds: float = Field(default=60, gt=0)
    #: Distances from the touch (dollars) at which resting depth is summed.
    depth_distances: list[Dollars] = [Decimal("0.01"), Decimal("0.02"), Decimal("0.05"), Decimal("0.10")]
    #: Upper bound on markets after series/event expansion (Kalshi limits subscriptions per connection).
    max_markets: int = Field(default=500, gt=0)
    #: Scheduled sessions: how long past its slot a session keeps recording while the next one starts (it stops as
    #: soon as the next one has its books stored).
    handover_seconds: float = Field(default=120, ge=0, le=3600)
    #: Followed sets (series/events): seconds between REST polls for markets that opened or closed.
    discovery_seconds: float = Field(default=60, gt=0)

    @field_validator("tickers", "series", "events", "channels")
    @classmethod
    def _no_repeats(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for i, value in enumerate(values):
            if info.field_name != "channels" and not TICKER.fullmatch(value):
                raise ValueError(f"item {i} ({value!r}) is not a ticker: use letters, digits, '.', '_' and '-', "
                                 "one ticker per list item")
            if value in values[:i]:
                raise ValueError(f"{value!r} is listed twice (items {values.index(value)} and {i}): remove one")
        return values

    @model_validator(mode="after")
    def _has_markets(self) -> MarketSet:
        if not (self.tickers or self.series or self.events):
            raise ValueError("names no markets: give at least one of 'tickers', 'series' or 'events'")
        if not self.channels:
            raise ValueError("subscribes to no channel: 'channels' is empty")
        return self

    def rule_names(self) -> list[str]:
        return [rule_name(rule) for rule in self.alerts]


def rule_name(rule: _Rule) -> str:
    if rule.name:
        return rule.name
    fields = rule.model_dump(exclude={"name", "kind"}, exclude_none=True)
    detail = ",".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return f"{rule.kind}({detail})"  # type: ignore[attr-defined]


class MarketSetsFile(BaseModel):
    path: Path
    sets: dict[str, MarketSet]

    def get(self, name: str) -> MarketSet:
        try:
            return self.sets[name]
        except KeyError:
            known = ", ".join(sorted(self.sets)) or "none"
            raise ConfigError(f"{self.path}: no market set {name!r} (defined: {known})") from None


def load_config(path: str | Path) -> MarketSetsFile:
    """Read and validate every market set in ``path``; :class:`ConfigError` on the first bad file/key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}): "
                          "save the market-set file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the market-set file ({exc.strerror or type(exc).__name__}); "
                          "set KALSHI_INGEST_CONFIG to its location") from None
    try:
        document = yaml.load(text, Loader=_StrictLoader) or {}  # noqa: S506  # a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{p}: line {exc.line}: key {exc.key!r} appears twice in the same mapping "
                          "(YAML keeps only the last one): remove or rename one") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{p}:{line} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(document, p)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r} on line {line}")
        self.key = key
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key repeated within one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(document: Any, path: Path) -> MarketSetsFile:
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'market_sets' key")
    unknown = set(document) - {"defaults", "market_sets"}
    if unknown:
        raise ConfigError(f"{path}: key {sorted(unknown)[0]!r}: unknown top-level key "
                          "(allowed: defaults, market_sets)")
    defaults = document.get("defaults") or {}
    raw_sets = document.get("market_sets")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: key 'defaults': expected a mapping")
    if not isinstance(raw_sets, dict) or not raw_sets:
        raise ConfigError(f"{path}: key 'market_sets': expected a non-empty mapping of name -> market set")
    sets: dict[str, MarketSet] = {}
    for name, body in raw_sets.items():
        where = f"{path}: market set {name!r}"
        if not MARKET_SET_NAME.fullmatch(str(name)):
            raise ConfigError(f"{where}: not a usable market-set name (it names files and Prefect tags): use 1-64 "
                              "letters, digits, '_' or '-', starting with a letter or digit")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(body).__name__}")
        if "name" in body:
            raise ConfigError(f"{where}: key 'name': not allowed (the mapping key is the name)")
        try:
            sets[str(name)] = MarketSet.model_validate({**defaults, **body, "name": str(name)})
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc)}") from None
    return MarketSetsFile(path=path, sets=sets)


def _describe(exc: ValidationError) -> str:
    """The first error as ``key 'alerts[0].threshold': <what is wrong>``."""
    error = exc.errors(include_url=False)[0]
    key = ""
    for part in error["loc"]:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part in RULE_KINDS and key.endswith("]"):
            continue  # the discriminator pydantic inserts into the path of a union member
        else:
            key += f".{part}" if key else str(part)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if error["type"] == "union_tag_invalid":
        message = f"unknown alert kind {error['input'].get('kind')!r} (known: {', '.join(sorted(RULE_KINDS))})"
    return f"key {key!r}: {message}" if key else message


def unmatched_tickers(market_set: MarketSet, resolved: Iterable[str]) -> list[str]:
    """Warning lines for the set's explicit ``tickers`` that are not among the ``resolved`` (open) markets:
    a typo or a closed market would otherwise just record nothing for it."""
    found = set(resolved)
    return [f"market set {market_set.name!r}: ticker {ticker!r} is not an open market right now (paused, closed, "
            "or misspelled?): it is subscribed anyway; check its spelling, or remove it if the market closed"
            for ticker in market_set.tickers if ticker not in found]
