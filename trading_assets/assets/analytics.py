"""watchlist, and the fundamentals the screen reads.

Thin: every rule lives in trading_assets.core (screen, sizing, fundamentals).
"""

import dagster as dg
import pandas as pd

from trading_assets.assets.common import (
    DAILY,
    day_after,
    from_date,
    params,
    recompute_start,
    window_sessions,
)
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.core.fundamentals import snapshot_summary
from trading_assets.core.screen import (
    CRITERIA,
    DEFAULT_SCREEN_PARAMS,
    FAIL,
    PASS,
    UNKNOWN,
    evaluate_criteria,
    screen_watchlist,
)
from trading_assets.core.sizing import DEFAULT_SIZING_PARAMS
from trading_assets.resources import FundamentalsResource
from trading_assets.storage.contract import Restatement, TableStore

# Snapshots written by earlier materialisations, carried in metadata (the table keeps them all).
STORED_AS_OF_KEY = "stored_as_of"


@dg.asset(
    group_name="market",
    kinds={"pandas", "duckdb"},
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


class WatchlistConfig(dg.Config):
    screen: dict[str, float] = {}
    """Screen cut-offs to override, e.g. {"min_rs_rating": 85}."""
    sizing: dict[str, float] = {}
    """Sizing constants to override, e.g. {"equity": 250000, "stop_atr_multiple": 1.5}."""


@dg.asset(
    **DAILY,
    # A session on which no stock passes the screen is a real, empty watchlist.
    metadata={"partition_expr": "date", "unique_key": ["symbol", "date"], "allow_empty": True},
    ins={"price_revisions": dg.AssetIn(metadata={"allow_missing": True})},
)
def watchlist(
    context: dg.AssetExecutionContext,
    config: WatchlistConfig,
    indicators: pd.DataFrame,
    market_environment: pd.DataFrame,
    fundamentals: pd.DataFrame,
    price_revisions: pd.DataFrame,
    io_manager: dg.ResourceParam[TableStore],
):
    """Stocks passing the screen each session (RS rating ≥ 80, 50-day volume ≥ 500k, close above the
    50- and 200-day SMAs, market cap ≥ $1B by the latest snapshot at or before the session, flagged
    `unknown` where there is none), each with a position plan sized for that
    day's environment: confluence edges, entry, stop (2 ATR), shares, risk $, targets +10/+20/+75%,
    and `heat_exceeded` where the portfolio heat limit leaves no room."""
    screen = params(DEFAULT_SCREEN_PARAMS, config.screen)
    sizing = params(DEFAULT_SIZING_PARAMS, config.sizing)
    sessions = window_sessions(context)
    # Any re-adjusted symbol changes entries, stops and share counts (and through the heat limit,
    # other symbols' sizes) over its history; a revised or re-judged bar, the sessions from it.
    start = recompute_start(price_revisions, sessions[0], whole_history_for=None)
    if start < sessions[0]:
        end = day_after(sessions[-1])
        indicators = io_manager.read_rows("indicators", start=start, end=end)
        market_environment = io_manager.read_rows("market_environment", start=start, end=end)
    out = screen_watchlist(indicators, market_environment, fundamentals, screen, sizing)
    out = from_date(out, start, sessions[-1])
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
        "criteria_last_session": dg.MetadataValue.md(
            _criteria_breakdown(indicators, fundamentals, screen)
        ),
    }
    light["recomputed_from"] = str(start) if start < sessions[0] else ""
    metadata, events = split_metadata(context, light, heavy)
    restatement = Restatement(all_from=start if start < sessions[0] else None)
    yield dg.Output(out, metadata={**metadata, **restatement.to_metadata()})
    yield from events


def _criteria_breakdown(indicators: pd.DataFrame, fundamentals: pd.DataFrame, screen) -> str:
    """For the last session, how many stocks pass, fail or are unknown on each criterion: why the
    watchlist is as long as it is."""
    if indicators.empty:
        return "no session"
    last = indicators[indicators["date"] == indicators["date"].max()]
    judged = evaluate_criteria(last, fundamentals, screen)
    table = pd.DataFrame(
        {c: judged[c].value_counts().reindex([PASS, FAIL, UNKNOWN], fill_value=0) for c in CRITERIA}
    ).T
    return f"session {last['date'].iloc[0]}, {len(judged)} stocks\n\n" + table.to_markdown()
