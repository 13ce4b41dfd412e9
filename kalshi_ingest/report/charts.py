"""The report's charts: one matplotlib figure per market (price, volume, spread, depth on one UTC time axis).

Windows in which the data is incomplete are shaded red; step lines stop at the start of time nobody recorded
instead of carrying the last value across it. Figures are rendered with the Agg backend to PNG bytes (no display).
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from kalshi_ingest.report import formatting as fmt
from kalshi_ingest.report.data import ReportData

__all__ = ["COLORS", "market_chart"]

COLORS: Final = {
    "bid": "#1a7f5a", "ask": "#c0392b", "price": "#1f3a93", "spread": "#6c3483", "untrusted": "#e74c3c",
    "volume_yes": "#27ae60", "volume_no": "#e67e22", "grid": "#e5e8ec", "text": "#2c3e50",
}


def _untrusted_spans(data: ReportData, market: str) -> list[tuple[datetime, datetime]]:
    windows = data.windows[data.windows.market_ticker == market]
    return [(max(w.started_at, data.start), min(w.ended_at, data.end)) for w in windows.itertuples()]


def _holes(data: ReportData, market: str) -> list[tuple[datetime, datetime]]:
    """Windows in which nobody was recording the market: lines must not be drawn across them."""
    windows = data.windows[(data.windows.market_ticker == market) & (data.windows.kind == "uncovered")]
    return [(w.started_at, w.ended_at) for w in windows.itertuples()]


def _broken(times: list[Any], values: list[float], holes: list[tuple[datetime, datetime]]) -> tuple[list[Any], list[float]]:
    """``times``/``values`` of a step line with a NaN at the start of every hole, so the line stops there instead of
    carrying the last value across time nobody recorded."""
    if not holes:
        return times, values
    points = sorted([*zip(times, values, strict=True), *((start, math.nan) for start, _ in holes)],
                    key=lambda p: p[0])
    return [p[0] for p in points], [p[1] for p in points]


def market_chart(data: ReportData, market: str) -> bytes:
    """PNG: price (bid/ask band, VWAP, trades), volume by taker side, spread, and depth, on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    bars = data.bars[data.bars.market_ticker == market]
    spreads = data.spreads[data.spreads.market_ticker == market]
    depth = data.depth[data.depth.market_ticker == market]
    fig, axes = plt.subplots(4, 1, figsize=(11, 8.2), sharex=True,
                             gridspec_kw={"height_ratios": [3.2, 1.3, 1.3, 2.0], "hspace": 0.12})
    price_ax, volume_ax, spread_ax, depth_ax = axes
    for ax in axes:
        ax.set_facecolor("white")
        ax.grid(True, color=COLORS["grid"], linewidth=0.8)
        ax.tick_params(colors=COLORS["text"], labelsize=8.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color("#b0b8c1")
        for start, end in _untrusted_spans(data, market):
            ax.axvspan(start, end if end > start else start + timedelta(milliseconds=200), color=COLORS["untrusted"],
                       alpha=0.18, linewidth=0, zorder=0)

    holes = _holes(data, market)
    if len(spreads):
        raw_times = list(spreads.bar_start) + [spreads.bar_end.iloc[-1]]
        times, bid = _broken(raw_times, [_f(v) for v in spreads.yes_bid] + [_f(spreads.yes_bid.iloc[-1])], holes)
        _, ask = _broken(raw_times, [_f(v) for v in spreads.yes_ask] + [_f(spreads.yes_ask.iloc[-1])], holes)
        _, spread = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread) + [spreads.spread.iloc[-1]]], holes)
        _, low = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread_min) + [spreads.spread_min.iloc[-1]]],
                         holes)
        _, high = _broken(raw_times, [_f(v) * 100 for v in list(spreads.spread_max) + [spreads.spread_max.iloc[-1]]],
                          holes)
        price_ax.fill_between(times, bid, ask, step="post", color=COLORS["price"], alpha=0.08, label="bid–ask")
        price_ax.step(times, ask, where="post", color=COLORS["ask"], linewidth=1.1, label="best ask (YES)")
        price_ax.step(times, bid, where="post", color=COLORS["bid"], linewidth=1.1, label="best bid (YES)")
        spread_ax.step(times, spread, where="post", color=COLORS["spread"], linewidth=1.2)
        spread_ax.fill_between(times, low, high, step="post", color=COLORS["spread"], alpha=0.12, linewidth=0)
    if len(bars):
        mids = [b + data.bar / 2 for b in bars.bar_start]
        price_ax.vlines(mids, [_f(v) for v in bars.low], [_f(v) for v in bars.high], color=COLORS["price"],
                        linewidth=1.0, alpha=0.55)
        price_ax.plot(mids, [_f(v) for v in bars.vwap], "o-", color=COLORS["price"], markersize=3.2, linewidth=1.0,
                      label="trade VWAP (high–low)")
        width = data.bar * 0.8
        yes = [_f(v) for v in bars.yes_taker_volume]
        no = [_f(v) for v in bars.no_taker_volume]
        volume_ax.bar(list(bars.bar_start), yes, width=width, align="edge", color=COLORS["volume_yes"],
                      label="taker bought YES")
        volume_ax.bar(list(bars.bar_start), no, width=width, align="edge", bottom=yes, color=COLORS["volume_no"],
                      label="taker bought NO")
    if len(depth):
        distances = sorted(set(depth.distance))
        shown = [distances[0], distances[-1]] if len(distances) > 1 else distances
        for distance, style in zip(shown, ("-", "--"), strict=False):
            rows = depth[depth.distance == distance]
            label = "at the touch" if distance == 0 else f"within {fmt.cents(distance)}"
            raw_times = [*rows.bucket_start, rows.bucket_end.iloc[-1]]
            times, bid_depth = _broken(raw_times, [_f(v) for v in [*rows.bid_depth, rows.bid_depth.iloc[-1]]], holes)
            _, ask_depth = _broken(raw_times, [-_f(v) for v in [*rows.ask_depth, rows.ask_depth.iloc[-1]]], holes)
            depth_ax.step(times, bid_depth, where="post", linestyle=style, color=COLORS["bid"], linewidth=1.2,
                          label=f"bid depth {label}")
            depth_ax.step(times, ask_depth, where="post", linestyle=style, color=COLORS["ask"], linewidth=1.2,
                          label=f"offer depth {label}")
        depth_ax.axhline(0, color="#7f8c8d", linewidth=0.8)
        depth_ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
    else:
        depth_ax.text(0.5, 0.5, "no depth summary for this range (computed after each session)",
                      transform=depth_ax.transAxes, ha="center", va="center", color="#7f8c8d", fontsize=9)

    price_ax.set_ylabel("YES price ($)", color=COLORS["text"], fontsize=9)
    volume_ax.set_ylabel("volume", color=COLORS["text"], fontsize=9)
    spread_ax.set_ylabel("spread (¢)", color=COLORS["text"], fontsize=9)
    depth_ax.set_ylabel("depth", color=COLORS["text"], fontsize=9)
    if len(depth):
        depth_ax.text(0.005, 0.97, "bids ↑", transform=depth_ax.transAxes, va="top", fontsize=8, color=COLORS["bid"])
        depth_ax.text(0.005, 0.03, "offers ↓", transform=depth_ax.transAxes, va="bottom", fontsize=8,
                      color=COLORS["ask"])
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    if _untrusted_spans(data, market):
        from matplotlib.patches import Patch

        handles.append(Patch(color=COLORS["untrusted"], alpha=0.25))
        labels.append("data incomplete (gap, disconnect, or not recorded)")
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.895), ncol=5, fontsize=8, frameon=False)
    depth_ax.set_xlim(data.start, data.end)
    locator = mdates.AutoDateLocator(tz=UTC)
    depth_ax.xaxis.set_major_locator(locator)
    depth_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    depth_ax.set_xlabel("UTC", color=COLORS["text"], fontsize=8.5)
    fig.align_ylabels(axes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def _f(value: Any) -> float:
    return float("nan") if value is None else float(value)
