"""indicators: the TA-Lib set, the STDEV-tactic columns and rs_rating per (symbol, session).

Thin: the rules live in trading_assets.core.indicators; quarantine in core.quarantine.
"""

import dagster as dg
import pandas as pd

from trading_assets.assets.common import DAILY, day_after, window_sessions
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.core.adjustments import restatement_plan
from trading_assets.core.indicators import (
    INDICATOR_LOOKBACK_SESSIONS,
    compute_indicators,
    continue_obv,
)
from trading_assets.core.prices import PRICE_COLUMNS
from trading_assets.core.quarantine import QUARANTINE_COLUMN, close_is_usable
from trading_assets.storage.contract import Restatement, TableStore

KEYS = ["symbol", "date"]
RAW_COLUMNS = [*PRICE_COLUMNS, QUARANTINE_COLUMN]


@dg.asset(
    **DAILY,
    metadata={"partition_expr": "date", "unique_key": KEYS},
    ins={
        # Bounded lookback: enough sessions for every recursive indicator to converge (see core).
        "raw_prices": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-INDICATOR_LOOKBACK_SESSIONS,
                allow_nonexistent_upstream_partitions=True,
            ),
            metadata={"columns": RAW_COLUMNS},
        ),
        # What raw_prices restated in this window: those rows are recomputed too.
        "price_revisions": dg.AssetIn(metadata={"allow_missing": True}),
    },
)
def indicators(
    context: dg.AssetExecutionContext,
    raw_prices: pd.DataFrame,
    price_revisions: pd.DataFrame,
    io_manager: dg.ResourceParam[TableStore],
):
    """Technical indicators per symbol and session (SMA 20/50/200, EMA 12/26, RSI 14, MACD, Bollinger,
    ATR 14, OBV, slow stochastic: equal to TA-Lib), the STDEV-tactic columns (z-score, ATR rank,
    EMA slope, 20-day HH/LL, 52-week distance, 50-day volume) and the relative-strength rating
    rs_rating 1-99 across the universe's stocks. A quarantined bar is a missing session: its row is
    kept (with `quarantine` and, where still sound, its close) but every indicator is computed
    without it. A new session reads a bounded lookback of prices and still equals a full backfill;
    when raw_prices restated a symbol's history (split, dividend) or re-judged a bar, the affected
    rows are recomputed in the same run."""
    sessions = window_sessions(context)
    raw_prices = _with_quarantine(raw_prices)
    adjusted, revised_from = restatement_plan(price_revisions, sessions[0])
    start = revised_from or sessions[0]  # restatement_plan: always before the window

    computed = compute_indicators(_usable(raw_prices))
    # OBV is a running sum: carry it from the last stored session before the rows recomputed.
    previous = (
        io_manager.read_rows(
            "indicators",
            columns=["symbol", "date", "obv"],
            start=raw_prices["date"].min(),
            end=start,
        )
        if len(raw_prices)
        else None
    )
    computed = continue_obv(computed, previous if previous is not None else computed.iloc[:0])
    computed = computed[computed["date"] >= start]
    ranked = computed.loc[computed["symbol"].isin(adjusted), ["symbol", "date", "rs_rating"]]
    computed = computed[~computed["symbol"].isin(adjusted)]
    bars = raw_prices[(raw_prices["date"] >= start) & ~raw_prices["symbol"].isin(adjusted)]

    key_from = {}
    if adjusted:
        history, rated = _readjusted(io_manager, adjusted, sessions[-1], start, ranked)
        computed = pd.concat([computed, rated], ignore_index=True)
        bars = pd.concat([bars, history], ignore_index=True)
        key_from = history.groupby("symbol")["date"].min().to_dict()
    out = _rows(bars, computed)
    restatement = Restatement(
        all_from=start if start < sessions[0] else None, column="symbol", key_from=key_from
    )
    light = {
        "rows": len(out),
        "lookback_first_date": str(raw_prices["date"].min()) if len(raw_prices) else "",
        "lookback_rows": len(raw_prices),
        "symbols": int(out["symbol"].nunique()),
        "quarantined_rows": int(out[QUARANTINE_COLUMN].notna().sum()),
        "symbols_recomputed_over_history": len(adjusted),
    }
    metadata, events = split_metadata(context, light, frame_metadata(out))
    yield dg.Output(out, metadata={**metadata, **restatement.to_metadata()})
    yield from events


def _with_quarantine(raw: pd.DataFrame) -> pd.DataFrame:
    if QUARANTINE_COLUMN not in raw:
        raw = raw.assign(**{QUARANTINE_COLUMN: None})
    return raw


def _usable(raw: pd.DataFrame) -> pd.DataFrame:
    """The bars indicators are computed on: every bar not quarantined."""
    return raw[raw[QUARANTINE_COLUMN].isna()].reset_index(drop=True)


def _readjusted(io_manager, adjusted, last, start, ranked):
    """Whole-history indicators of re-adjusted symbols (OBV from their first bar). rs_rating ranks
    across the universe: from the lookback computation from ``start`` on, and before it the stored
    rating (a split or dividend scales all earlier prices alike, so the ratios behind it hold)."""
    history = io_manager.read_rows(
        "raw_prices", columns=RAW_COLUMNS, symbols=adjusted, end=day_after(last)
    )
    history = _with_quarantine(history)
    own = compute_indicators(_usable(history))
    stored = io_manager.read_rows(
        "indicators", columns=["symbol", "date", "rs_rating"], symbols=adjusted, end=start
    )
    ratings = pd.concat([stored, ranked], ignore_index=True)
    own = own.drop(columns="rs_rating").merge(ratings, on=KEYS, how="left")
    own["rs_rating"] = own["rs_rating"].astype("Int64")
    return history, own


def _rows(bars: pd.DataFrame, computed: pd.DataFrame) -> pd.DataFrame:
    """One row per bar: the indicators (NaN for a quarantined bar), its close where sound, volume."""
    quarantined = bars[QUARANTINE_COLUMN].notna()
    base = pd.DataFrame(
        {
            "symbol": bars["symbol"].to_numpy(),
            "date": bars["date"].to_numpy(),
            QUARANTINE_COLUMN: bars[QUARANTINE_COLUMN].to_numpy(),
            "close": bars["close"]
            .where(~quarantined | close_is_usable(bars[QUARANTINE_COLUMN]))
            .to_numpy(),
            "volume": bars["volume"].where(~quarantined).to_numpy(),
        }
    )
    out = base.merge(computed, on=KEYS, how="left")
    out[QUARANTINE_COLUMN] = out[QUARANTINE_COLUMN].astype("string")
    columns = [
        *KEYS,
        *[c for c in computed.columns if c not in KEYS],
        "close",
        "volume",
        QUARANTINE_COLUMN,
    ]
    return out[columns].sort_values(KEYS, ignore_index=True)
