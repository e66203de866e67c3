"""indicators → market_environment → watchlist, and the fundamentals the screen reads.

Thin: every rule lives in trading_assets.core (indicators, regime, screen, sizing, plots).
"""

import dataclasses

import dagster as dg
import pandas as pd

from trading_assets import checks
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.core.fundamentals import snapshot_summary
from trading_assets.core.indicators import (
    INDICATOR_LOOKBACK_SESSIONS,
    compute_indicators,
    continue_obv,
)
from trading_assets.core.plots import environment_plot_png, png_data_uri_markdown
from trading_assets.core.regime import (
    DEFAULT_ENVIRONMENT_PARAMS,
    compute_market_environment,
    environment_report_markdown,
    missing_benchmark_sessions,
)
from trading_assets.core.screen import DEFAULT_SCREEN_PARAMS, screen_watchlist
from trading_assets.core.sizing import DEFAULT_SIZING_PARAMS
from trading_assets.partitions import sessions_in_window, trading_days
from trading_assets.resources import FundamentalsResource

# Columns of raw_prices repeated in the indicators table, so a screen reads one table.
PRICE_COLUMNS_KEPT = ("close", "volume")
# History the environment plot shows besides the sessions just materialised (one trading year).
PLOT_HISTORY_SESSIONS = 252

# Every daily analytics asset: trading-session partitions, one run per range, the DuckDB writers' pool.
DAILY = dict(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="analytics",
    kinds={"pandas", "duckdb"},
    pool="duckdb",
)


def _previous_sessions(n: int) -> dg.TimeWindowPartitionMapping:
    """The n partitions before the ones being materialised (a self-dependency), missing ones allowed."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-n, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def _in_window(frame: pd.DataFrame, context: dg.AssetExecutionContext) -> pd.DataFrame:
    sessions = set(sessions_in_window(context.partition_time_window))
    return frame[frame["date"].isin(sessions)].reset_index(drop=True)


class ParamOverrides(dg.Config):
    overrides: dict[str, float] = {}
    """Named constants to override for this run, e.g. {"a_vix_max": 22}. Names as in trading_assets.core."""


def _params(defaults, overrides: dict[str, float]):
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(defaults, **overrides)


# Snapshots written by earlier materialisations, carried in metadata (the table keeps them all).
STORED_AS_OF_KEY = "stored_as_of"


@dg.asset(
    group_name="market",
    kinds={"pandas", "duckdb"},
    pool="duckdb",
    # One growing table of dated snapshots: a write replaces only the as_of dates it carries.
    metadata={
        "partition_expr": "as_of",
        "replace_keys": ["as_of"],
        "unique_key": ["symbol", "as_of"],
    },
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"symbols": dg.AssetIn(metadata={"columns": ["symbol", "is_benchmark"]})},
)
def fundamentals(
    context: dg.AssetExecutionContext,
    symbols: pd.DataFrame,
    fundamentals_source: FundamentalsResource,
) -> dg.Output[pd.DataFrame]:
    """Market capitalisation per symbol as known on each snapshot date (as_of): every snapshot
    file, and with the yahoo price source one snapshot of the universe per day. Older snapshots
    are kept, so the screen can judge each session with the latest cap known at or before it and
    a backtest never sees today's sizes; before a stock's first snapshot its cap is `unknown`."""
    stocks = symbols.loc[~symbols["is_benchmark"].astype(bool), "symbol"].tolist()
    loaded = fundamentals_source.load(stocks)
    frame = loaded.snapshots
    summary = snapshot_summary(frame)
    stored = sorted(set(_stored_as_of(context)) | set(summary["as_of"].astype(str)))
    newest = frame[frame["as_of"] == frame["as_of"].max()]
    known = set(newest.loc[newest["market_cap"].notna(), "symbol"])
    return dg.Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "snapshots_written": len(summary),
            "snapshots": dg.MetadataValue.md(summary.to_markdown(index=False)),
            "snapshots_stored": len(stored),
            "newest_as_of": stored[-1],
            "symbols_with_known_cap": len(known),
            "universe_stocks_with_known_cap": len(known & set(stocks)),
            "universe_stocks": len(stocks),
            "yahoo_as_of": str(loaded.yahoo_as_of or ""),
            "market_caps_failed": len(loaded.failed),
            "failed": dg.MetadataValue.json(loaded.failed),
            STORED_AS_OF_KEY: dg.MetadataValue.json(stored),
        },
    )


def _stored_as_of(context: dg.AssetExecutionContext) -> list[str]:
    """The as_of dates the last materialisation recorded as stored, from the Dagster instance."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return []
    value = event.asset_materialization.metadata.get(STORED_AS_OF_KEY)
    return list(value.value) if value is not None else []


@dg.asset(
    **DAILY,
    metadata={"partition_expr": "date", "unique_key": ["symbol", "date"]},
    ins={
        # Bounded lookback: enough sessions for every recursive indicator to converge (see core).
        "raw_prices": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-INDICATOR_LOOKBACK_SESSIONS,
                allow_nonexistent_upstream_partitions=True,
            ),
            metadata={"columns": ["symbol", "date", "open", "high", "low", "close", "volume"]},
        ),
        # OBV is a running sum that never converges: carry it from the stored previous session.
        "previous": dg.AssetIn(
            key="indicators",
            partition_mapping=_previous_sessions(1),
            metadata={"columns": ["symbol", "date", "obv"], "allow_missing": True},
        ),
    },
)
def indicators(context: dg.AssetExecutionContext, raw_prices: pd.DataFrame, previous: pd.DataFrame):
    """Technical indicators per symbol and session (SMA 20/50/200, EMA 12/26, RSI 14, MACD, Bollinger,
    ATR 14, OBV, slow stochastic: equal to TA-Lib), the STDEV-tactic columns (z-score, ATR rank,
    EMA slope, 20-day HH/LL, 52-week distance, 50-day volume) and the relative-strength rating
    rs_rating 1-99 across the universe's stocks. A new session reads a bounded lookback of prices,
    not the whole history, and still equals a full backfill."""
    full = compute_indicators(raw_prices)
    full = continue_obv(full, previous if previous is not None else full.iloc[:0])
    # Only the partition window is stored: cut the lookback off before joining prices to it.
    out = _in_window(full, context).merge(
        raw_prices[["symbol", "date", *PRICE_COLUMNS_KEPT]], on=["symbol", "date"], how="left"
    )
    light = {
        "rows": len(out),
        "lookback_first_date": str(raw_prices["date"].min()) if len(raw_prices) else "",
        "lookback_rows": len(raw_prices),
        "symbols": int(out["symbol"].nunique()),
    }
    metadata, events = split_metadata(context, light, frame_metadata(out))
    yield dg.Output(out, metadata=metadata)
    yield from events


@dg.asset(
    **DAILY,
    metadata={"partition_expr": "date", "unique_key": ["date"]},
    ins={
        "indicators": dg.AssetIn(
            metadata={"columns": ["symbol", "date", "close", "sma_50", "sma_200"]}
        ),
        "history": dg.AssetIn(
            key="market_environment",
            partition_mapping=_previous_sessions(PLOT_HISTORY_SESSIONS),
            metadata={"allow_missing": True},
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            checks.ENVIRONMENT_INPUTS_PRESENT,
            asset="market_environment",
            blocking=True,
            description="SPY, QQQ and ^VIX have a close (and their SMAs once warmed up) on every session.",
        )
    ],
)
def market_environment(
    context: dg.AssetExecutionContext,
    config: ParamOverrides,
    indicators: pd.DataFrame,
    history: pd.DataFrame,
):
    """The market environment per session: A (aggressive), B (normal), C (defensive) or D (avoid),
    from SPY and QQQ against their 50/200-day SMAs, the % of stocks above their 50-day SMA and the
    VIX, with the sizing it allows (base size, risk per trade, portfolio heat limit). A session with
    a missing SPY, QQQ or VIX input is left unclassified and fails the blocking check."""
    params = _params(DEFAULT_ENVIRONMENT_PARAMS, config.overrides)
    env = compute_market_environment(indicators, params)
    env = _in_window(env, context)
    missing = missing_benchmark_sessions(env)
    shown = (
        pd.concat([history, env], ignore_index=True)
        if history is not None and len(history)
        else env
    )
    shown = shown.drop_duplicates("date", keep="last").sort_values("date")
    light: dict[str, object] = {
        "rows": len(env),
        "environments": dg.MetadataValue.json(
            env["environment"].fillna("unclassified").value_counts().to_dict()
        ),
    }
    heavy: dict[str, object] = frame_metadata(env)
    classified = env[env["environment"].notna()]
    if len(classified):
        latest = classified.iloc[-1]
        light["latest_session"] = str(latest["date"])
        light["latest_environment"] = str(latest["environment"])
        heavy["report"] = dg.MetadataValue.md(environment_report_markdown(latest))
    if shown["spy_close"].notna().any():
        png = environment_plot_png(shown)
        heavy["plot"] = dg.MetadataValue.md(png_data_uri_markdown(png, "market environment vs SPY"))
    metadata, events = split_metadata(context, light, heavy)
    yield dg.Output(env, metadata=metadata)
    yield from events
    yield dg.AssetCheckResult(
        check_name=checks.ENVIRONMENT_INPUTS_PRESENT,
        passed=missing.empty,
        metadata={
            "sessions_missing_inputs": len(missing),
            "listed": dg.MetadataValue.md(missing.head(50).to_markdown(index=False)),
        },
    )


class WatchlistConfig(dg.Config):
    screen: dict[str, float] = {}
    """Screen cut-offs to override, e.g. {"min_rs_rating": 85}."""
    sizing: dict[str, float] = {}
    """Sizing constants to override, e.g. {"equity": 250000, "stop_atr_multiple": 1.5}."""


@dg.asset(
    **DAILY,
    # A session on which no stock passes the screen is a real, empty watchlist.
    metadata={"partition_expr": "date", "unique_key": ["symbol", "date"], "allow_empty": True},
)
def watchlist(
    context: dg.AssetExecutionContext,
    config: WatchlistConfig,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    fundamentals: pd.DataFrame,
):
    """Stocks passing the screen each session (RS rating ≥ 80, 50-day volume ≥ 500k, close above the
    50- and 200-day SMAs, market cap ≥ $1B by the latest snapshot at or before the session, flagged
    `unknown` where there is none), each with a position plan sized for that
    day's environment: confluence edges, entry, stop (2 ATR), shares, risk $, targets +10/+20/+75%,
    and `heat_exceeded` where the portfolio heat limit leaves no room."""
    screen = _params(DEFAULT_SCREEN_PARAMS, config.screen)
    sizing = _params(DEFAULT_SIZING_PARAMS, config.sizing)
    out = screen_watchlist(indicators, market_environment, fundamentals, screen, sizing)
    out = _in_window(out, context)
    sized = out[out["shares"].fillna(0) > 0]
    light = {
        "rows": len(out),
        "sessions": int(out["date"].nunique()),
        "sized_positions": len(sized),
        "heat_exceeded": int(out["heat_exceeded"].fillna(False).astype(bool).sum()),
        "market_cap_unknown": int((out["crit_market_cap"] == "unknown").sum()),
    }
    heavy = {
        "latest": dg.MetadataValue.md(
            out[out["date"] == out["date"].max()].head(20).to_markdown(index=False)
            if len(out)
            else "empty"
        ),
    }
    metadata, events = split_metadata(context, light, heavy)
    yield dg.Output(out, metadata=metadata)
    yield from events
