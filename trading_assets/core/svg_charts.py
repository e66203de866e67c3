"""Inline SVG line charts for the HTML report, written by hand rather than by matplotlib's SVG backend.

matplotlib's SVG writes every glyph as a path, every vertex of the line and hashed clip-path ids.
Here a series is one ``<polyline class="series series-<key>">`` of at most two points per pixel
column (``downsample_minmax``), so 25 years of sessions take a few tens of KB, the output is
byte-for-byte deterministic, and tests and CSS can find each series by its class. matplotlib is
used only for its tick locators. The ``<svg>`` carries no xmlns: HTML parsers put inline SVG in
the SVG namespace themselves, and the report then holds no URL at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.ticker import LogLocator, MaxNLocator

CHART_WIDTH, CHART_HEIGHT = 960, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 76, 16, 30, 26
PLOT_WIDTH = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
PLOT_HEIGHT = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
AREA_FILL_OPACITY = 0.3


@dataclass(frozen=True)
class ChartSeries:
    key: str  # CSS class suffix: polyline.series-<key>
    label: str
    values: pd.Series  # on a sorted DatetimeIndex, no NaN, not empty
    color: str
    fill_to: float | None = None  # shade between the line and this level (the drawdown's zero)


def downsample_minmax(y: np.ndarray, buckets: int) -> np.ndarray:
    """Positions to plot: all of them when there are at most 2 x ``buckets``, else the first, the
    last and each bucket's lowest and highest point in time order, so peaks and troughs (the max
    drawdown) survive where striding would skip them."""
    count = len(y)
    if count <= 2 * buckets:
        return np.arange(count)
    edges = np.linspace(0, count, buckets + 1).astype(int)
    keep = [0, count - 1]
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        if stop > start:
            chunk = y[start:stop]
            keep += [start + int(np.argmin(chunk)), start + int(np.argmax(chunk))]
    return np.unique(keep)


def _x_ticks(x0: float, x1: float) -> list[tuple[float, str]]:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ticks = [
        float(t)
        for t in locator.tick_values(mdates.num2date(x0), mdates.num2date(x1))
        if x0 <= t <= x1
    ]
    days = [mdates.num2date(t) for t in ticks]
    if all(d.month == 1 and d.day == 1 for d in days):
        pattern = "%Y"
    elif all(d.day == 1 for d in days):
        pattern = "%b %Y"
    else:
        pattern = "%Y-%m-%d"
    return [(t, d.strftime(pattern)) for t, d in zip(ticks, days, strict=True)]


def _y_ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        ticks = LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)).tick_values(lo, hi)
        inside = [float(t) for t in ticks if lo <= t <= hi]
        return inside if len(inside) >= 2 else [lo, hi]
    return [float(t) for t in MaxNLocator(nbins=5).tick_values(lo, hi)]


def line_chart_svg(
    chart_id: str,
    title: str,
    series: list[ChartSeries],
    y_format: Callable[[float], str],
    *,
    log_y: bool = False,
) -> str:
    """An inline ``<figure id=chart_id>`` holding an SVG line chart of ``series`` against time.
    ``log_y`` needs positive values; each decade then takes the same height."""
    xs = [mdates.date2num(s.values.index.to_numpy()) for s in series]
    x0, x1 = min(float(x[0]) for x in xs), max(float(x[-1]) for x in xs)
    if x1 <= x0:
        x0, x1 = x0 - 1.0, x1 + 1.0
    levels = [s.values.to_numpy() for s in series]
    levels += [np.array([s.fill_to]) for s in series if s.fill_to is not None]
    lo = min(float(np.min(v)) for v in levels)
    hi = max(float(np.max(v)) for v in levels)
    if hi <= lo:
        pad = abs(hi) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    y_ticks = _y_ticks(lo, hi, log_y)
    if not log_y:
        lo, hi = min(lo, y_ticks[0]), max(hi, y_ticks[-1])
    scale = np.log10 if log_y else np.asarray
    y0, y1 = float(scale(lo)), float(scale(hi))

    def px(x: np.ndarray) -> np.ndarray:
        return MARGIN_LEFT + (x - x0) / (x1 - x0) * PLOT_WIDTH

    def py(y: np.ndarray) -> np.ndarray:
        return MARGIN_TOP + (y1 - scale(y)) / (y1 - y0) * PLOT_HEIGHT

    bottom, right = MARGIN_TOP + PLOT_HEIGHT, MARGIN_LEFT + PLOT_WIDTH
    parts = [
        f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title"><title id="{chart_id}-title">{escape(title)}</title>'
    ]
    for tick in y_ticks:
        y = float(py(np.array(tick)))
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(y_format(tick))}</text>"
        )
    for tick, label in _x_ticks(x0, x1):
        x = float(px(np.array(tick)))
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>'
            f'<text class="tick" x="{x:.1f}" y="{bottom + 17}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{MARGIN_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}"/>'
    )
    for item, x in zip(series, xs, strict=True):
        y = item.values.to_numpy("float64")
        keep = downsample_minmax(y, PLOT_WIDTH)
        sx, sy = px(x[keep]), py(y[keep])
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx, sy, strict=True))
        if item.fill_to is not None:
            base = float(py(np.array(item.fill_to)))
            parts.append(
                f'<polygon class="area area-{item.key}" fill="{item.color}" '
                f'fill-opacity="{AREA_FILL_OPACITY}" stroke="none" '
                f'points="{sx[0]:.1f},{base:.1f} {points} {sx[-1]:.1f},{base:.1f}"/>'
            )
        parts.append(
            f'<polyline class="series series-{item.key}" stroke="{item.color}" '
            f'data-sessions="{len(y)}" points="{points}"/>'
        )
    legend_x = MARGIN_LEFT
    for item in series:
        parts.append(
            f'<rect x="{legend_x}" y="9" width="14" height="4" fill="{item.color}"/>'
            f'<text class="legend" x="{legend_x + 19}" y="15">{escape(item.label)}</text>'
        )
        legend_x += 40 + 7 * len(item.label)
    if log_y:
        parts.append(f'<text class="tick" x="{right}" y="15" text-anchor="end">log scale</text>')
    parts.append("</svg>")
    return f'<figure id="{chart_id}" class="chart">{"".join(parts)}</figure>'


def empty_figure(chart_id: str, message: str) -> str:
    """The chart's place when there is nothing to draw, saying why."""
    return f'<figure id="{chart_id}" class="chart"><p class="empty">{escape(message)}</p></figure>'
