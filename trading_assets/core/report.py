"""The HTML performance report of one strategy: a single self-contained file, nothing fetched.

Sections: the equity curve against the benchmark (SPY, rebased to the strategy's starting equity),
the drawdown, a monthly-returns heatmap, the metrics table and the trade list.

The charts are inline SVG (svg_charts.py); the PNGs for the Dagster UI are in plots.py.
A Content-Security-Policy meta tag lets the browser fetch nothing, should anything ever try.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from trading_assets.core.metrics import drawdown
from trading_assets.core.svg_charts import ChartSeries, empty_figure, line_chart_svg

TRADE_ROWS_SHOWN = 500
# Shown in the trade list, in this order; ``strategy`` is the report's own name.
TRADE_LIST_COLUMNS: tuple[str, ...] = tuple(
    "symbol side setup entry_date entry_price exit_date exit_price shares fees pnl r_multiple "
    "exit_reason".split()
)
TEXT_COLUMNS = frozenset({"symbol", "side", "setup", "exit_reason"})  # left-aligned
TEXT_CLASS = ' class="text"'
MISSING = "–"  # en dash: a NaN metric, an empty cell

STRATEGY_COLOR = "#1f77b4"
BENCHMARK_COLOR = "#ff7f0e"
DRAWDOWN_COLOR = "#d62728"
GAIN_RGB = (26, 152, 80)
LOSS_RGB = (215, 48, 39)
# A month (year) this far from zero gets the heatmap's full colour; smaller moves are paler.
HEATMAP_FULL_MONTH = 0.10
HEATMAP_FULL_YEAR = 0.30
# The equity chart turns logarithmic when its lines span more than this factor (25 years of a
# strategy that grew 50x would otherwise flatten the first decade and the benchmark to the floor).
LOG_SCALE_SPAN = 10.0

# Metrics given as fractions (0.25) and shown as percentages (25.00%); exposure_pct is already in
# percent (core/metrics.py: 100 x the share of sessions with a position open).
PERCENT_METRICS = frozenset(
    "total_return cagr volatility max_drawdown win_rate avg_win avg_loss trade_win_rate".split()
)
PERCENT_POINT_METRICS = frozenset({"exposure_pct"})
COUNT_METRICS = frozenset({"trade_count"})
METRIC_LABELS: Mapping[str, str] = {
    "total_return": "Total return",
    "cagr": "CAGR",
    "volatility": "Volatility (annualised)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "Max drawdown",
    "calmar": "Calmar",
    "win_rate": "Win rate (days)",
    "profit_factor": "Profit factor",
    "avg_win": "Average win",
    "avg_loss": "Average loss",
    "trade_count": "Trades",
    "trade_win_rate": "Win rate (trades)",
    "expectancy_r": "Expectancy (R)",
    "avg_holding_days": "Average holding (days)",
    "exposure_pct": "Exposure",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:24px auto;max-width:1000px;padding:0 12px;color:#222;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.summary,.note,footer{color:#555}footer{margin-top:24px}.empty{color:#a33;font-style:italic}
figure{margin:0}svg{width:100%;height:auto;display:block;background:#fff}
svg .grid{stroke:#e3e3e3;stroke-width:1}svg .axis{stroke:#999;stroke-width:1}
svg text{font-size:11px;fill:#444}svg .legend{font-size:12px;fill:#222}
svg .series{fill:none;stroke-width:1.5;stroke-linejoin:round}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 7px;border:1px solid #ddd;text-align:right;white-space:nowrap}
th{background:#f5f5f5}.text{text-align:left}
#monthly-returns-table td{min-width:46px}.pos{color:#11773a}.neg{color:#b42318}
#trades-table td.pos,#trades-table td.neg{font-weight:600}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class ReportInputError(ValueError):
    """An equity, benchmark or trade frame the report cannot read."""


# --- the numbers behind the charts -----------------------------------------------------------------


def equity_series(values: pd.Series) -> pd.Series:
    """Float values on a sorted DatetimeIndex, NaN values and dates dropped (datetime.date index in)."""
    if not isinstance(values, pd.Series):
        raise ReportInputError(f"expected a pandas Series, got {type(values).__name__}")
    index = pd.DatetimeIndex(pd.to_datetime(values.index))
    series = pd.Series(pd.to_numeric(values, errors="coerce").to_numpy("float64"), index=index)
    series = series[series.index.notna()].dropna().sort_index()
    if series.index.has_duplicates:
        raise ReportInputError("series has duplicated dates")
    return series


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Equity below its running peak, as a fraction (-0.25 = 25% under the high-water mark), on the
    sessions equity_series keeps."""
    return drawdown(equity_series(equity))


def rebase_benchmark(benchmark: pd.Series | None, equity: pd.Series) -> pd.Series | None:
    """The benchmark on the strategy's sessions, scaled to the strategy's equity on the first session
    both have (its start, when the benchmark covers it); a benchmark gap carries the last close.
    None when there is no benchmark or no session in common."""
    if benchmark is None:
        return None
    strategy = equity_series(equity)
    bench = equity_series(benchmark)
    bench = bench[bench > 0]
    if strategy.empty or bench.empty:
        return None
    aligned = bench.reindex(strategy.index.union(bench.index)).ffill().reindex(strategy.index)
    aligned[strategy.index > bench.index[-1]] = np.nan
    common = aligned.dropna().index
    if common.empty:
        return None
    first = common[0]
    return aligned * (strategy[first] / aligned[first])


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Rows = years, columns 1..12 and ``year``: the daily returns compounded within each calendar
    month (year). The first session has no return, so the first month runs from the first equity."""
    series = equity_series(equity)
    columns = [*range(1, 13), "year"]
    if series.empty:
        return pd.DataFrame(columns=columns, dtype="float64")
    growth = 1.0 + series.pct_change().fillna(0.0)
    years, months = series.index.year, series.index.month
    table = (growth.groupby([years, months]).prod() - 1.0).unstack()
    table = table.reindex(columns=range(1, 13))
    table["year"] = growth.groupby(years).prod() - 1.0
    table.index.name = "year"
    table.columns = columns
    return table


# --- formatting --------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def format_percent(value: float, digits: int = 2) -> str:
    if _is_missing(value) or not math.isfinite(value):
        return MISSING
    return f"{value * 100:.{digits}f}%"


def format_metric(key: str, value: object) -> str:
    """Fractions as percentages, counts as integers, ratios with two decimals; NaN as an en dash."""
    if isinstance(value, str):
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING if _is_missing(value) else str(value)
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if key in PERCENT_METRICS:
        return format_percent(number)
    if key in PERCENT_POINT_METRICS:
        return f"{number:.2f}%"
    if key in COUNT_METRICS:
        return f"{number:,.0f}"
    if key in METRIC_LABELS:
        return f"{number:,.2f}"
    return f"{number:,.4g}"


def _date_text(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, dt.datetime | pd.Timestamp):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _number_text(value: object, spec: str) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return MISSING
    return MISSING if math.isnan(number) else format(number, spec)


def _sign_class(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "pos" if number > 0 else "neg" if number < 0 else ""


def heat_color(value: float, full: float) -> str:
    """Background of a heatmap cell: green for a gain, red for a loss, deeper as it nears ``full``."""
    if _is_missing(value) or not math.isfinite(value):
        return "#ffffff"
    strength = 0.8 * min(abs(value) / full, 1.0)
    base = GAIN_RGB if value >= 0 else LOSS_RGB
    r, g, b = (round(255 + (c - 255) * strength) for c in base)
    return f"#{r:02x}{g:02x}{b:02x}"


def _money(value: float) -> str:
    return f"{value:,.0f}"


# --- sections ----------------------------------------------------------------------------------------


def _equity_section(equity: pd.Series, bench: pd.Series | None, label: str, note: str) -> str:
    heading = f"<h2>Equity vs {escape(label)}</h2>"
    if equity.empty:
        body = empty_figure("equity-chart", "No equity data: nothing to chart.")
    else:
        series = [ChartSeries("strategy", "Strategy", equity, STRATEGY_COLOR)]
        if bench is not None:
            series.append(
                ChartSeries("benchmark", f"{label} (rebased)", bench.dropna(), BENCHMARK_COLOR)
            )
        values = np.concatenate([s.values.to_numpy() for s in series])
        log_y = bool(values.min() > 0 and values.max() / values.min() > LOG_SCALE_SPAN)
        body = line_chart_svg("equity-chart", f"Equity vs {label}", series, _money, log_y=log_y)
    notes = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section id="equity">{heading}{body}{notes}</section>'


def _drawdown_section(equity: pd.Series) -> str:
    heading = "<h2>Drawdown</h2>"
    if equity.empty:
        body = empty_figure("drawdown-chart", "No equity data: no drawdown.")
        return f'<section id="drawdown">{heading}{body}</section>'
    underwater = drawdown_series(equity)
    trough = underwater.idxmin()
    peak = equity.loc[:trough].idxmax()
    series = [ChartSeries("drawdown", "Drawdown", underwater, DRAWDOWN_COLOR, fill_to=0.0)]
    # ticks of a shallow drawdown are fractions of a percent apart: enough digits to tell them apart
    digits = 0 if underwater[trough] <= -0.05 else 1 if underwater[trough] <= -0.005 else 2
    body = line_chart_svg("drawdown-chart", "Drawdown", series, lambda v: format_percent(v, digits))
    if underwater[trough] < 0:
        note = (
            f"Deepest: {format_percent(underwater[trough])} on {trough.date().isoformat()} "
            f"(peak {peak.date().isoformat()})."
        )
    else:
        note = "No drawdown: the equity never fell below a previous high."
    return f'<section id="drawdown">{heading}{body}<p class="note">{escape(note)}</p></section>'


def _monthly_section(equity: pd.Series) -> str:
    heading = "<h2>Monthly returns</h2>"
    table = monthly_returns(equity)
    if table.empty:
        return f'<section id="monthly-returns">{heading}<p class="empty">No equity data: no monthly returns.</p></section>'
    month_names = [dt.date(2000, m, 1).strftime("%b") for m in range(1, 13)]
    head = "".join(f"<th>{name}</th>" for name in ["Year", *month_names, "Year total"])
    rows = []
    for year, values in table.iterrows():
        cells = [f'<th scope="row">{year}</th>']
        for column, value in values.items():
            full = HEATMAP_FULL_YEAR if column == "year" else HEATMAP_FULL_MONTH
            if _is_missing(value):
                cells.append(f'<td data-month="{column}"></td>')
                continue
            cells.append(
                f'<td data-month="{column}" data-return="{float(value)!r}" '
                f'style="background:{heat_color(value, full)}">{format_percent(value, 1)}</td>'
            )
        rows.append(f'<tr data-year="{year}">{"".join(cells)}</tr>')
    note = "Daily returns compounded within each calendar month; the first month starts at the first session."
    return (
        f'<section id="monthly-returns">{heading}<table id="monthly-returns-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p class="note">{note}</p></section>'
    )


def _metrics_section(metrics: Mapping[str, object]) -> str:
    heading = "<h2>Metrics</h2>"
    if not metrics:
        return f'<section id="metrics">{heading}<p class="empty">No metrics given.</p></section>'
    rows = "".join(
        f'<tr data-metric="{escape(str(key))}"><th scope="row" class="text">'
        f"{escape(METRIC_LABELS.get(str(key), str(key).replace('_', ' ')))}</th>"
        f"<td>{escape(format_metric(str(key), value))}</td></tr>"
        for key, value in metrics.items()
    )
    return f'<section id="metrics">{heading}<table id="metrics-table"><tbody>{rows}</tbody></table></section>'


def _trade_cells(trade: Mapping[str, object]) -> str:
    open_trade = _is_missing(trade["exit_date"])
    shares = trade["shares"]
    whole = isinstance(shares, int | float | np.number) and float(shares).is_integer()
    cells = [
        ("text", escape(str(trade["symbol"]))),
        ("text", escape(str(trade["side"]))),
        ("text", "" if _is_missing(trade["setup"]) else escape(str(trade["setup"]))),
        ("", _date_text(trade["entry_date"])),
        ("", _number_text(trade["entry_price"], ",.2f")),
        ("", "open" if open_trade else _date_text(trade["exit_date"])),
        ("", _number_text(trade["exit_price"], ",.2f")),
        ("", _number_text(shares, ",.0f" if whole else ",.4g")),
        ("", _number_text(trade["fees"], ",.2f")),
        (_sign_class(trade["pnl"]), _number_text(trade["pnl"], "+,.2f")),
        (_sign_class(trade["r_multiple"]), _number_text(trade["r_multiple"], "+.2f")),
        ("text", "" if _is_missing(trade["exit_reason"]) else escape(str(trade["exit_reason"]))),
    ]
    return "".join(f'<td class="{c}">{text}</td>' if c else f"<td>{text}</td>" for c, text in cells)


def _trades_section(trades: pd.DataFrame | None, shown: int) -> str:
    heading = "<h2>Trades</h2>"
    if trades is None or trades.empty:
        return f'<section id="trades">{heading}<p class="empty">No trades.</p></section>'
    absent = [c for c in TRADE_LIST_COLUMNS if c not in trades.columns]
    if absent:
        raise ReportInputError(f"trades frame lacks column(s) {absent}")
    order = trades.assign(_entry=pd.to_datetime(trades["entry_date"]))
    order = order.sort_values(["_entry", "symbol"], ascending=[False, True], kind="mergesort")
    newest = order.head(shown)
    open_count = int(trades["exit_date"].isna().sum())
    pnl = pd.to_numeric(trades["pnl"], errors="coerce").sum()
    summary = (
        f"{len(trades):,} trades ({open_count:,} open, marked at the last close); "
        f"total P&amp;L {pnl:+,.2f}."
    )
    if len(trades) > shown:
        summary += f" Showing the newest {shown:,}; {len(trades) - shown:,} older trades omitted."
    head = "".join(
        f"<th{TEXT_CLASS if c in TEXT_COLUMNS else ''}>{c.replace('_', ' ')}</th>"
        for c in TRADE_LIST_COLUMNS
    )
    rows = "".join(
        f'<tr class="trade {"open" if _is_missing(t["exit_date"]) else "closed"}">'
        f"{_trade_cells(t)}</tr>"
        for t in newest[list(TRADE_LIST_COLUMNS)].to_dict("records")
    )
    return (
        f'<section id="trades">{heading}<p class="note" id="trades-summary">{summary}</p>'
        f'<table id="trades-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        "</section>"
    )


# --- the report --------------------------------------------------------------------------------------


def render_report(
    strategy: str,
    equity: pd.Series,
    benchmark: pd.Series | None,
    trades: pd.DataFrame | None,
    metrics: Mapping[str, object],
    *,
    title: str | None = None,
    generated_at: str | None = None,
    benchmark_label: str = "SPY",
    max_trades: int = TRADE_ROWS_SHOWN,
) -> str:
    """The whole report as one HTML document (UTF-8 text; write it with ``write_report``).

    ``equity``: daily portfolio equity indexed by session date; ``benchmark``: the benchmark's close
    on (about) the same dates, rebased here; ``trades``: the backtest's TRADE_COLUMNS (open trades
    have null exit fields); ``metrics``: shown in the given order, fractions as percentages.
    Empty equity, no trades, no benchmark and NaN metrics still render, saying so.
    """
    curve = equity_series(equity)
    bench = rebase_benchmark(benchmark, curve) if not curve.empty else None
    if benchmark is None:
        bench_note = f"No benchmark given: the {benchmark_label} line is not drawn."
    elif bench is None and not curve.empty:
        bench_note = f"{benchmark_label} has no session in common with the strategy: not drawn."
    else:
        bench_note = ""
    strategy = str(strategy)
    heading = title or f"Performance report: {strategy}"
    generated = generated_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if curve.empty:
        summary = "No equity data: the strategy has no sessions."
    else:
        summary = (
            f"{curve.index[0].date()} to {curve.index[-1].date()} ({len(curve):,} sessions). "
            f"Equity {curve.iloc[0]:,.2f} to {curve.iloc[-1]:,.2f}: "
            f"{format_percent(curve.iloc[-1] / curve.iloc[0] - 1.0)}"
        )
        if bench is not None:
            bench_valid = bench.dropna()
            summary += (
                f"; {benchmark_label} {format_percent(bench_valid.iloc[-1] / bench_valid.iloc[0] - 1.0)}"
                f" from {bench_valid.index[0].date()}"
            )
        summary += "."
    body = "".join(
        [
            f'<header><h1>{escape(heading)}</h1><p class="summary">{escape(summary)}</p></header>',
            _equity_section(curve, bench, benchmark_label, bench_note),
            _drawdown_section(curve),
            _monthly_section(curve),
            _metrics_section(metrics),
            _trades_section(trades, max_trades),
            f"<footer>Strategy {escape(strategy)}. Generated {escape(generated)}.</footer>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(heading)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def write_report(path: str | os.PathLike[str], html: str) -> Path:
    """Write ``html`` to ``path`` atomically: a temporary file in the same directory, fsynced, then
    os.replace, so a reader sees the old report or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates 0600; a report is for reading, so keep the old file's mode or use 0644.
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
