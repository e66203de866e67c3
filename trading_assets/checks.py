"""Asset-check names and specs, kept as constants so schedules, sensors and tests refer to one name.

raw_prices' checks run inside the asset on exactly the rows it stores, so they hold for any IO
manager. Blocking (downstream assets in the run do not start when it fails):
- duplicates: two different bars for one session make every indicator ambiguous;
- OHLC consistency: a low above the close or a negative price corrupts ATR, stochastics, stops;
- bad ticks: a x5 spike that reverts poisons moving averages for 200 sessions.
Not blocking (warn, keep going):
- completeness: a few missing sessions are common (halts, late listings, a provider gap) and
  indicators skip them; the check lists the pairs so they can be re-fetched.
- fetch failures: one delisted or renamed symbol must not stop the other 499.
"""

from __future__ import annotations

import dagster as dg

RAW_PRICES_NO_DUPLICATES = "no_duplicate_symbol_date"
RAW_PRICES_OHLC_CONSISTENT = "ohlc_consistent"
RAW_PRICES_NO_BAD_TICKS = "no_bad_ticks"
RAW_PRICES_COMPLETE = "complete_for_universe_and_calendar"
RAW_PRICES_ALL_FETCHED = "all_symbols_fetched"

RAW_PRICES_BLOCKING_CHECKS = (RAW_PRICES_NO_DUPLICATES, RAW_PRICES_OHLC_CONSISTENT, RAW_PRICES_NO_BAD_TICKS)


def raw_prices_check_specs(asset: str = "raw_prices") -> list[dg.AssetCheckSpec]:
    def spec(name: str, description: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            name=name, asset=asset, description=description, blocking=name in RAW_PRICES_BLOCKING_CHECKS
        )

    return [
        spec(RAW_PRICES_NO_DUPLICATES, "The source served at most one bar per (symbol, session)."),
        spec(RAW_PRICES_OHLC_CONSISTENT, "low <= open, close <= high; prices > 0; volume >= 0."),
        spec(RAW_PRICES_NO_BAD_TICKS, "No one-session move of x5 (or /5) that reverts the next session."),
        spec(RAW_PRICES_COMPLETE, "Every universe symbol has a bar on every session since its first bar."),
        spec(RAW_PRICES_ALL_FETCHED, "The source returned data for every requested symbol."),
    ]

ENVIRONMENT_INPUTS_PRESENT = "benchmark_inputs_present"
