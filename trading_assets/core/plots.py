"""Small PNG charts for asset metadata: rendered off-screen, embedded as markdown data URIs.

Figures are drawn on the Agg canvas directly, never through pyplot: no global backend switch, no
display needed, and no pyplot figure registry shared between threads of a run.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter, PercentFormatter

from trading_assets.core.report import (
    BENCHMARK_COLOR,
    DRAWDOWN_COLOR,
    LOG_SCALE_SPAN,
    STRATEGY_COLOR,
    ReportInputError,
    drawdown_series,
    equity_series,
    rebase_benchmark,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Low resolution keeps six years of sessions well under 200 KB inside Dagster run metadata.
PLOT_DPI = 90
PLOT_SIZE_INCHES = (10.0, 4.0)

ENVIRONMENT_COLORS: Mapping[str, str] = {
    "A": "#2ca02c",  # green: aggressive
    "B": "#bcdf8a",  # light green: normal
    "C": "#ffbf66",  # orange: defensive
    "D": "#e8575a",  # red: avoid
}
UNCLASSIFIED_COLOR = "#d0d0d0"
ENVIRONMENT_LABELS: Mapping[str, str] = {
    "A": "A aggressive",
    "B": "B normal",
    "C": "C defensive",
    "D": "D avoid",
}


class PlotInputError(ValueError):
    """Nothing to plot, or the frame lacks the columns a chart needs."""


def environment_plot_png(env_df: pd.DataFrame) -> bytes:
    """SPY close over time on a background shaded by the session's environment (A/B/C/D; grey where
    it is unclassified). Takes compute_market_environment's frame (date, spy_close, environment)."""
    absent = [c for c in ("date", "spy_close", "environment") if c not in env_df.columns]
    if absent:
        raise PlotInputError(f"environment frame lacks column(s) {absent}")
    frame = env_df.sort_values("date")
    if frame.empty:
        raise PlotInputError("no sessions to plot")
    x = mdates.date2num(pd.to_datetime(frame["date"]).to_numpy())
    env = frame["environment"].where(frame["environment"].isin(list(ENVIRONMENT_COLORS)), None)
    env = env.to_numpy(dtype=object)
    spy = pd.to_numeric(frame["spy_close"], errors="coerce").to_numpy(dtype="float64")

    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Each session's shade runs to the next session, so runs of one environment touch.
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    edges = np.append(x, x[-1] + step)
    change = np.flatnonzero(np.r_[True, env[1:] != env[:-1]])
    for start, stop in zip(change, np.r_[change[1:], len(x)], strict=True):
        label = env[start]
        color = ENVIRONMENT_COLORS.get(label, UNCLASSIFIED_COLOR) if label else UNCLASSIFIED_COLOR
        ax.axvspan(edges[start], edges[stop], color=color, alpha=0.45, linewidth=0)
    ax.plot(x, spy, color="black", linewidth=1.0)
    ax.set_xlim(edges[0], edges[-1])
    ax.xaxis.set_major_locator(mdates.AutoDateLocator())
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylabel("SPY close")
    ax.set_title("SPY and market environment", loc="left")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    handles = [
        Patch(color=c, alpha=0.6, label=ENVIRONMENT_LABELS[e])
        for e, c in ENVIRONMENT_COLORS.items()
    ]
    if any(v is None for v in env):
        handles.append(Patch(color=UNCLASSIFIED_COLOR, alpha=0.6, label="unclassified"))
    # Legend above the axes, right of the title, so it never hides the price line.
    ax.legend(
        handles=handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        ncol=len(handles),
        borderaxespad=0.2,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    return buf.getvalue()


def png_data_uri_markdown(png: bytes, alt: str) -> str:
    """``![alt](data:image/png;base64,...)`` for MetadataValue.md. Raises PlotInputError if not a PNG."""
    if not isinstance(png, bytes | bytearray) or not bytes(png).startswith(PNG_SIGNATURE):
        raise PlotInputError("expected PNG bytes (missing PNG signature)")
    # Brackets or line breaks in the alt text would end the markdown image early.
    safe_alt = " ".join(str(alt).replace("[", "(").replace("]", ")").split())
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(bytes(png)).decode('ascii')})"


def _equity_or_raise(equity: pd.Series) -> pd.Series:
    try:
        curve = equity_series(equity)
    except ReportInputError as exc:
        raise PlotInputError(str(exc)) from exc
    if curve.empty:
        raise PlotInputError("no sessions to plot")
    return curve


def _time_axis(ax, title: str) -> None:
    ax.xaxis.set_major_locator(mdates.AutoDateLocator())
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_title(title, loc="left")
    ax.grid(axis="y", linewidth=0.4, alpha=0.5)


def _figure_png(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    return buf.getvalue()


def equity_curve_png(
    equity: pd.Series, benchmark: pd.Series | None = None, *, benchmark_label: str = "SPY"
) -> bytes:
    """The strategy's daily equity against the benchmark rebased to the same starting equity (see
    report.rebase_benchmark); a log scale when the lines span more than LOG_SCALE_SPAN, as the
    HTML report. Raises PlotInputError when there is no session."""
    curve = _equity_or_raise(equity)
    bench = rebase_benchmark(benchmark, curve)
    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = mdates.date2num(curve.index.to_numpy())
    ax.plot(x, curve.to_numpy(), color=STRATEGY_COLOR, linewidth=1.0, label="Strategy")
    lines = [curve]
    if bench is not None:
        valid = bench.dropna()
        ax.plot(
            mdates.date2num(valid.index.to_numpy()),
            valid.to_numpy(),
            color=BENCHMARK_COLOR,
            linewidth=1.0,
            label=f"{benchmark_label} (rebased)",
        )
        lines.append(valid)
    values = pd.concat(lines)
    if values.min() > 0 and values.max() / values.min() > LOG_SCALE_SPAN:
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    _time_axis(ax, f"Equity vs {benchmark_label}" if bench is not None else "Equity")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _figure_png(fig)


def drawdown_png(equity: pd.Series) -> bytes:
    """Equity below its running peak, in percent, shaded down from zero. Raises PlotInputError when
    there is no session."""
    drawdown = drawdown_series(_equity_or_raise(equity)) * 100.0
    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = mdates.date2num(drawdown.index.to_numpy())
    ax.fill_between(x, drawdown.to_numpy(), 0.0, color=DRAWDOWN_COLOR, alpha=0.3, linewidth=0)
    ax.plot(x, drawdown.to_numpy(), color=DRAWDOWN_COLOR, linewidth=0.8)
    ax.set_ylim(top=0.0)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    _time_axis(ax, f"Drawdown (deepest {drawdown.min():.1f}%)")
    return _figure_png(fig)


# The walk-forward optimizer's folds table (core/optimize/search.py FOLD_COLUMNS) side by side.
IN_VS_OUT_OF_SAMPLE_PANELS: tuple[tuple[str, str], ...] = (
    ("sharpe", "Sharpe"),
    ("cagr", "CAGR"),
    ("max_drawdown", "Max drawdown"),
)


def in_vs_out_of_sample_png(folds: pd.DataFrame, title: str = "") -> bytes:
    """One panel per metric (Sharpe, CAGR, max drawdown), two bars per walk-forward fold: the best
    trial on its training window (in-sample) beside the same parameters on the next, unseen
    window (out-of-sample), labelled by the test window's first session. An undefined value (NaN)
    draws no bar. Raises PlotInputError without a fold or without the columns."""
    needed = [
        "test_start",
        *(f"{s}_{m}" for m, _ in IN_VS_OUT_OF_SAMPLE_PANELS for s in ("is", "oos")),
    ]
    absent = [c for c in needed if c not in folds.columns]
    if absent:
        raise PlotInputError(f"folds frame lacks column(s) {absent}")
    if folds.empty:
        raise PlotInputError("no fold to plot")
    fig = Figure(figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    x = np.arange(len(folds))
    labels = [str(d) for d in folds["test_start"]]
    width = 0.4
    for i, (metric, name) in enumerate(IN_VS_OUT_OF_SAMPLE_PANELS):
        ax = fig.add_subplot(1, len(IN_VS_OUT_OF_SAMPLE_PANELS), i + 1)
        for offset, side, label, color in (
            (-width / 2, "is", "in-sample (train)", STRATEGY_COLOR),
            (width / 2, "oos", "out-of-sample (test)", BENCHMARK_COLOR),
        ):
            values = pd.to_numeric(folds[f"{side}_{metric}"], errors="coerce").to_numpy(float)
            shown = np.isfinite(values)
            ax.bar(x[shown] + offset, values[shown], width, color=color, label=label)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x, labels, rotation=60, fontsize=7, ha="right")
        if metric != "sharpe":
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_title(name, loc="left", fontsize=9)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        if i == 0:
            ax.legend(loc="best", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    return _figure_png(fig)
