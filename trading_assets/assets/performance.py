"""trade_journal, performance_metrics and performance_report: the end of the lineage graph.

Thin: the rules live in trading_assets.core (journal, positions, metrics, report).
"""

import datetime as dt

import dagster as dg
import pandas as pd

from trading_assets.assets.backtests import PORTFOLIO_GROUP, TRADE_ID
from trading_assets.core.backtest.result import DEFAULT_EQUITY, TRADE_COLUMNS
from trading_assets.core.journal import match_round_trips, read_trade_file
from trading_assets.core.metrics import (
    SUMMARY_KEYS,
    TRADE_STATISTICS_KEYS,
    performance_summary,
    returns_from_equity,
    trade_statistics,
)
from trading_assets.core.plots import drawdown_png, equity_curve_png, png_data_uri_markdown
from trading_assets.core.positions import mark_to_market
from trading_assets.core.quarantine import QUARANTINE_COLUMN
from trading_assets.core.report import render_report
from trading_assets.partitions import CALENDAR_CODE, START_DATE, sessions_between
from trading_assets.resources import ReportStoreResource, TradeJournalResource
from trading_assets.storage.contract import TableStore

USER = "user"  # the strategy name of the trader's own round trips
JOURNAL_COLUMNS = ["strategy", "trade_id", *TRADE_COLUMNS[1:]]
BENCHMARK = "SPY"
BENCHMARK_ROW = "SPY buy-and-hold"
STRATEGY, KIND = "strategy", "kind"
KINDS = ("backtest", "journal", "benchmark")
CALENDAR_SPAN = (dt.date(1900, 1, 1), dt.date(2200, 1, 1))


class PerformanceConfig(dg.Config):
    risk_free: float = 0.0
    """Annual risk-free rate for Sharpe and Sortino, e.g. 0.02."""
    journal_equity: float = DEFAULT_EQUITY
    """Starting capital the user's journal is measured against."""


@dg.asset(
    group_name=PORTFOLIO_GROUP,
    kinds={"pandas", "duckdb"},
    metadata={"unique_key": [STRATEGY, TRADE_ID], "allow_empty": True},
    ins={"symbols": dg.AssetIn(metadata={"columns": ["symbol"]})},
)
def trade_journal(
    context: dg.AssetExecutionContext,
    backtest_trades: pd.DataFrame,
    symbols: pd.DataFrame,
    trade_file: TradeJournalResource,
    io_manager: dg.ResourceParam[TableStore],
) -> dg.Output[pd.DataFrame]:
    """Every round trip in one table: the backtests' trades, and when TRADING_ASSETS_TRADES_PATH
    names a CSV of the trader's own fills (date, symbol, side, quantity, price, fees), those fills
    matched FIFO into round trips under strategy `user`, open lots marked at the last close. A
    file with any bad row (unknown symbol, non-positive quantity or price, a sell beyond the open
    position, a date that is not a session, a malformed row) is refused whole, each line named."""
    # an all-empty table comes back without its untyped (text) columns: give them back
    backtest_trades = backtest_trades.reindex(columns=JOURNAL_COLUMNS)
    user = _user_trades(trade_file.path, set(symbols["symbol"]), io_manager)
    if len(user):
        user = user.assign(**{STRATEGY: USER, TRADE_ID: range(len(user))})
    journal = pd.concat(
        [frame for frame in (backtest_trades, user) if len(frame)]
        or [pd.DataFrame(columns=[STRATEGY, TRADE_ID, *TRADE_COLUMNS[1:]])],
        ignore_index=True,
    )[[STRATEGY, TRADE_ID, *TRADE_COLUMNS[1:]]]
    counts = journal.groupby(STRATEGY).size() if len(journal) else pd.Series(dtype=int)
    return dg.Output(
        journal,
        metadata={
            "rows": len(journal),
            "user_trades_file": trade_file.path or "",
            "user_rows": len(user),
            "open_positions": int(journal["exit_date"].isna().sum()),
            "rows_by_strategy": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
        },
    )


def _user_trades(path: str | None, universe: set[str], store: TableStore) -> pd.DataFrame:
    if not path:
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    fills = read_trade_file(
        path, symbols=universe, sessions=sessions_between(CALENDAR_CODE, START_DATE, *CALENDAR_SPAN)
    )
    closes = _closes(store, sorted(set(fills["symbol"])))
    last = closes.groupby("symbol")["close"].last().to_dict() if len(closes) else {}
    return match_round_trips(fills, last_close=last)


def _closes(store: TableStore, symbols: list[str]) -> pd.DataFrame:
    """Stored clean closes of ``symbols``, by symbol and date."""
    rows = store.read_rows(
        "raw_prices", columns=["symbol", "date", "close", QUARANTINE_COLUMN], symbols=symbols
    )
    if rows.empty:
        return pd.DataFrame(columns=["symbol", "date", "close"])
    return rows[rows[QUARANTINE_COLUMN].isna()][["symbol", "date", "close"]]


@dg.asset(
    group_name=PORTFOLIO_GROUP,
    kinds={"pandas", "duckdb"},
    metadata={"unique_key": [STRATEGY]},
)
def performance_metrics(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    backtest_equity: pd.DataFrame,
    trade_journal: pd.DataFrame,
    io_manager: dg.ResourceParam[TableStore],
) -> dg.Output[pd.DataFrame]:
    """One row per strategy, the user's journal when there is one, and SPY bought and held over
    the strategies' dates: total return, CAGR, volatility, Sharpe, Sortino, max drawdown, Calmar,
    daily win rate, profit factor, average win and loss (as quantstats computes them), and the
    trade statistics: closed trades, trade win rate, expectancy in R, average holding days and
    exposure %."""
    trade_journal = trade_journal.reindex(columns=JOURNAL_COLUMNS)
    curves = _curves(backtest_equity, trade_journal, io_manager, config.journal_equity)
    rows = []
    for name, (kind, equity) in curves.items():
        trades = trade_journal[trade_journal[STRATEGY] == name] if kind != "benchmark" else None
        rows.append(_metrics_row(name, kind, equity, trades, config.risk_free))
    frame = pd.DataFrame(rows)
    shown = frame[[STRATEGY, "total_return", "cagr", "sharpe", "max_drawdown", "trade_count"]]
    return dg.Output(
        frame,
        metadata={
            "rows": len(frame),
            "risk_free": config.risk_free,
            "summary": dg.MetadataValue.md(shown.to_markdown(index=False, floatfmt=".4f")),
        },
    )


def _curves(
    backtest_equity: pd.DataFrame,
    journal: pd.DataFrame,
    store: TableStore,
    journal_equity: float,
) -> dict[str, tuple[str, pd.Series]]:
    """name -> (kind, daily equity): each strategy, the user's journal, SPY over the same dates."""
    curves: dict[str, tuple[str, pd.Series]] = {}
    for name, group in backtest_equity.groupby(STRATEGY, sort=False):
        curves[str(name)] = ("backtest", group.set_index("date")["equity"].sort_index())
    user = journal[journal[STRATEGY] == USER]
    if len(user):
        closes = _closes(store, sorted(set(user["symbol"])))
        curves[USER] = ("journal", mark_to_market(user, closes, journal_equity))
    dates = [
        d
        for _, curve in curves.values()
        for d in (curve.index.min(), curve.index.max())
        if len(curve)
    ]
    spy = _closes(store, [BENCHMARK]) if dates else pd.DataFrame(columns=["date", "close"])
    if dates and len(spy):
        spy = spy[(spy["date"] >= min(dates)) & (spy["date"] <= max(dates))]
        curves[BENCHMARK_ROW] = ("benchmark", spy.set_index("date")["close"].sort_index())
    return curves


def _metrics_row(
    name: str, kind: str, equity: pd.Series, trades: pd.DataFrame | None, risk_free: float
) -> dict[str, object]:
    summary = performance_summary(returns_from_equity(equity), risk_free=risk_free)
    if trades is None:  # buy and hold: always invested, never a round trip
        stats = dict.fromkeys(TRADE_STATISTICS_KEYS, float("nan"))
        stats.update(trade_count=0, exposure_pct=100.0 if len(equity) else float("nan"))
    else:
        stats = trade_statistics(trades[list(TRADE_COLUMNS)], equity)
    return {
        STRATEGY: name,
        KIND: kind,
        "first_session": equity.index.min() if len(equity) else None,
        "last_session": equity.index.max() if len(equity) else None,
        "sessions": len(equity),
        "start_equity": float(equity.iloc[0]) if len(equity) else float("nan"),
        "end_equity": float(equity.iloc[-1]) if len(equity) else float("nan"),
        **{k: summary[k] for k in SUMMARY_KEYS},
        **{k: stats[k] for k in TRADE_STATISTICS_KEYS},
    }


@dg.asset(
    group_name=PORTFOLIO_GROUP,
    kinds={"html"},
    ins={
        "performance_metrics": dg.AssetIn(),
        "backtest_equity": dg.AssetIn(),
        "trade_journal": dg.AssetIn(),
    },
)
def performance_report(
    context: dg.AssetExecutionContext,
    config: PerformanceConfig,
    performance_metrics: pd.DataFrame,
    backtest_equity: pd.DataFrame,
    trade_journal: pd.DataFrame,
    report_store: ReportStoreResource,
    io_manager: dg.ResourceParam[TableStore],
) -> dg.MaterializeResult:
    """A self-contained HTML report per strategy (and for the user's journal): the equity curve
    against SPY, the drawdown, a monthly-returns heatmap, the metrics table and the trade list,
    written to reports/<strategy>.html (TRADING_ASSETS_REPORTS_DIR). Open it in any browser; it
    fetches nothing. The UI shows every strategy's equity and drawdown here."""
    trade_journal = trade_journal.reindex(columns=JOURNAL_COLUMNS)
    curves = _curves(backtest_equity, trade_journal, io_manager, config.journal_equity)
    spy = curves.get(BENCHMARK_ROW, ("benchmark", None))[1]
    paths: dict[str, str] = {}
    strategy_curves: dict[str, pd.Series] = {}
    for row in performance_metrics.to_dict("records"):
        name = row[STRATEGY]
        if row[KIND] == "benchmark" or name not in curves:
            continue
        equity = curves[name][1]
        strategy_curves[name] = equity
        trades = trade_journal[trade_journal[STRATEGY] == name][list(TRADE_COLUMNS)]
        metrics = {k: row[k] for k in (*SUMMARY_KEYS, *TRADE_STATISTICS_KEYS)}
        html = render_report(name, equity, spy, trades, metrics)
        paths[name] = report_store.write(f"{name}.html", html)
    listing = "\n".join(f"- {name}: `{path}`" for name, path in paths.items())
    return dg.MaterializeResult(
        metadata={
            "reports": dg.MetadataValue.md(listing or "no strategy"),
            "report_dir": dg.MetadataValue.path(report_store.directory),
            **{f"path_{name}": dg.MetadataValue.path(path) for name, path in paths.items()},
            **{
                f"{kind}_{name}": dg.MetadataValue.md(
                    png_data_uri_markdown(plot(curve), f"{kind} {name}")
                )
                for name, curve in strategy_curves.items()
                if len(curve)
                for kind, plot in (
                    ("equity", lambda c: equity_curve_png(c, spy)),
                    ("drawdown", drawdown_png),
                )
            },
        }
    )
