"""raw_prices' asset-check results, judged on exactly the rows the run stores (see checks.py)."""

import dagster as dg
import pandas as pd

from trading_assets import checks
from trading_assets.core import quality
from trading_assets.core.quarantine import (
    BAD_TICK,
    QUARANTINE_COLUMN,
    SPIKE_UNCONFIRMED,
    close_is_usable,
)
from trading_assets.core.universe import BENCHMARK_SYMBOLS

MAX_LISTED = 50  # rows of offending data shown in check metadata


def check_results(
    window, restated, duplicates, failed, wanted, sessions, changes, config, restated_from
):
    """One AssetCheckResult per raw_prices check: ``window`` the run's bars in its window,
    ``restated`` those it rewrites before it, ``failed`` symbol -> reason, ``changes`` the history
    changes found in the overlap, ``config`` the run's RawPricesConfig (max_quarantined_share)."""
    judged = pd.concat([window, restated], ignore_index=True)
    flagged = judged[judged[QUARANTINE_COLUMN].notna()]
    spikes = flagged[QUARANTINE_COLUMN].isin([BAD_TICK, SPIKE_UNCONFIRMED])
    ohlc, ticks = flagged[~spikes], flagged[spikes]
    shown = ["symbol", "date", "open", "high", "low", "close", "volume", QUARANTINE_COLUMN]
    missing = quality.find_missing_sessions(
        window, [s for s in wanted if s not in failed], sessions
    )
    warn = dg.AssetCheckSeverity.WARN
    yield _result(
        checks.RAW_PRICES_NO_DUPLICATES,
        duplicates[["symbol", "date", "close"]],
        "duplicate_rows",
        warn,
    )
    yield _result(checks.RAW_PRICES_OHLC_CONSISTENT, ohlc[shown], "quarantined_bars", warn)
    yield _result(checks.RAW_PRICES_NO_BAD_TICKS, ticks[shown], "quarantined_bars", warn)
    yield _result(
        checks.RAW_PRICES_COMPLETE,
        missing,
        "missing_pairs",
        warn,
        extra={
            "symbols_without_rows": dg.MetadataValue.json(
                sorted(set(wanted) - set(window["symbol"]) - set(failed))
            )
        },
    )
    failed_frame = pd.DataFrame({"symbol": list(failed), "reason": list(failed.values())})
    yield _result(checks.RAW_PRICES_ALL_FETCHED, failed_frame, "failed_symbols", warn)
    changes = changes.assign(restated_from=changes["symbol"].map(restated_from))
    yield _result(checks.RAW_PRICES_HISTORY_UNCHANGED, changes, "symbols_changed", warn)

    in_window = window[window[QUARANTINE_COLUMN].notna()]
    benchmark_bad = in_window[
        in_window["symbol"].isin(BENCHMARK_SYMBOLS)
        & ~((in_window["symbol"] == "^VIX") & close_is_usable(in_window[QUARANTINE_COLUMN]))
    ]
    limit = max(1.0, config.max_quarantined_share * len(window))
    too_many = len(in_window) > limit
    offending = benchmark_bad if not too_many else in_window
    yield dg.AssetCheckResult(
        check_name=checks.RAW_PRICES_QUARANTINE_LIMITS,
        passed=benchmark_bad.empty and not too_many,
        metadata={
            "quarantined_in_window": len(in_window),
            "limit": round(limit, 2),
            "benchmark_bars_quarantined": len(benchmark_bad),
            **_listed("offending", offending[shown]),
        },
    )


def _listed(label: str, offending: pd.DataFrame) -> dict:
    if offending.empty:
        return {}
    return {
        f"{label}_listed": dg.MetadataValue.md(offending.head(MAX_LISTED).to_markdown(index=False))
    }


def _result(name, offending: pd.DataFrame, label: str, severity, extra=None):
    metadata = {
        label: dg.MetadataValue.int(len(offending)),
        **(extra or {}),
        **_listed(label, offending),
    }
    return dg.AssetCheckResult(
        check_name=name, passed=offending.empty, severity=severity, metadata=metadata
    )
