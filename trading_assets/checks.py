"""Asset-check names and specs, kept as constants so schedules, sensors and tests refer to one name.

raw_prices' checks run inside the asset on the rows it stores, judged against the stored bars
before them (see trading_assets.core.quarantine), so they hold for any IO manager and a daily run
reaches the verdict a backfill reaches. A bad bar is quarantined, not fatal: it is stored as
delivered, flagged, listed by a warning and kept out of everything downstream, while the other
symbols and the rest of its history flow on.

Blocking (downstream assets in the run do not start when it fails), only for what really breaks
the run:
- quarantine_within_limits: a benchmark bar (SPY, QQQ, or ^VIX's close) quarantined on a session
  being classified, or more than ``max_quarantined_share`` of the run's bars quarantined (a
  systematic source failure, not a bad print).
Not blocking (warn, keep going): duplicates (the last bar is kept), OHLC consistency and bad ticks
(the bars are quarantined), completeness (gaps are common), fetch failures (one delisted symbol
must not stop the other 499), and history changes (a split or dividend re-adjusted a symbol's
history, which was fetched again and replaced; the symbols and factors are listed).
"""

from __future__ import annotations

import dagster as dg

RAW_PRICES_NO_DUPLICATES = "no_duplicate_symbol_date"
RAW_PRICES_OHLC_CONSISTENT = "ohlc_consistent"
RAW_PRICES_NO_BAD_TICKS = "no_bad_ticks"
RAW_PRICES_COMPLETE = "complete_for_universe_and_calendar"
RAW_PRICES_ALL_FETCHED = "all_symbols_fetched"
RAW_PRICES_HISTORY_UNCHANGED = "history_unchanged"
RAW_PRICES_QUARANTINE_LIMITS = "quarantine_within_limits"

RAW_PRICES_BLOCKING_CHECKS = (RAW_PRICES_QUARANTINE_LIMITS,)


def raw_prices_check_specs(asset: str = "raw_prices") -> list[dg.AssetCheckSpec]:
    def spec(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name=name, asset=asset, description=description, blocking=name in RAW_PRICES_BLOCKING_CHECKS
        )

    return [
        spec(RAW_PRICES_NO_DUPLICATES, "The source served at most one bar per (symbol, session); else the last is kept."),
        spec(RAW_PRICES_OHLC_CONSISTENT, "low <= open, close <= high; prices > 0; volume >= 0. Offenders are quarantined."),
        spec(RAW_PRICES_NO_BAD_TICKS, "No x3 (or /3) move against the last clean close that reverts the next session (judged against stored bars). Offenders are quarantined."),
        spec(RAW_PRICES_COMPLETE, "Every universe symbol has a bar on every session since its first bar."),
        spec(RAW_PRICES_ALL_FETCHED, "The source returned data for every requested symbol."),
        spec(RAW_PRICES_HISTORY_UNCHANGED, "Stored bars equal the same bars fetched again; a changed history (split, dividend) is re-fetched and listed."),
        spec(RAW_PRICES_QUARANTINE_LIMITS, "No benchmark bar quarantined, and at most max_quarantined_share of the run's bars."),
    ]

ENVIRONMENT_INPUTS_PRESENT = "benchmark_inputs_present"
