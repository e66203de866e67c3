"""raw_prices: daily OHLCV bars per (symbol, session), from the configured price source."""

import dagster as dg
import pandas as pd

from trading_assets import checks
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.core import quality
from trading_assets.core.symbols import validate_symbols
from trading_assets.partitions import sessions_in_window, trading_days
from trading_assets.resources import PriceSourceResource

MAX_LISTED = 50  # rows of offending data shown in check metadata


class NoPricesFetchedError(RuntimeError):
    """The source returned no bar at all for the requested symbols and sessions."""


class UnknownSymbolsError(ValueError):
    """A re-fetch asked for symbols that are not in the universe."""


class RawPricesConfig(dg.Config):
    symbols: list[str] | None = None
    """Re-fetch only these universe symbols; their stored rows in the range are replaced, others kept."""


@dg.asset(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market",
    kinds={"pandas", "duckdb"},
    pool="duckdb",
    metadata={
        "partition_expr": "date",
        "replace_keys": ["symbol"],
        "unique_key": ["symbol", "date"],
    },
    check_specs=checks.raw_prices_check_specs(),
)
def raw_prices(
    context: dg.AssetExecutionContext,
    config: RawPricesConfig,
    symbols: pd.DataFrame,
    price_source: PriceSourceResource,
):
    """Daily bars (open, high, low, close, volume) for every universe symbol on every session of the
    partition range, with provenance (source, fetched_at). Prices are as the source serves them:
    yfinance auto-adjusted for splits and dividends. A range is fetched in one request per batch of
    symbols, not per day; a symbol that fails is reported and keeps whatever was stored before."""
    sessions = sessions_in_window(context.partition_time_window)
    universe = symbols["symbol"].tolist()
    wanted = _requested_symbols(config, universe)
    if not sessions:
        raise NoPricesFetchedError(f"no {context.partition_key_range} session in the calendar")
    source = price_source.build()
    context.log.info(
        f"fetching {len(wanted)} symbols from {source.name}, {sessions[0]}..{sessions[-1]}"
    )
    result = source.fetch(wanted, sessions[0], sessions[-1])
    prices = result.prices
    on_calendar = prices["date"].isin(set(sessions))
    off_calendar = int((~on_calendar).sum())  # e.g. CBOE-only ^VIX sessions
    prices = prices[on_calendar]
    duplicates = quality.find_duplicates(prices)
    fetched_rows = len(prices)
    prices = quality.drop_duplicates(prices)
    if prices.empty:
        raise NoPricesFetchedError(
            f"{source.name} returned no bars for {len(wanted)} symbols over {sessions[0]}..{sessions[-1]}; "
            f"failures: {_head(result.failed)}"
        )
    light = {
        "rows": len(prices),
        "source": source.name,
        "symbols_requested": len(wanted),
        "symbols_fetched": int(prices["symbol"].nunique()),
        "sessions": len(sessions),
        "first_session": str(sessions[0]),
        "last_session": str(sessions[-1]),
        "failed_symbols_count": len(result.failed),
        "rows_off_calendar_dropped": off_calendar,
        "duplicate_rows_dropped": fetched_rows - len(prices),
    }
    heavy = {**frame_metadata(prices), "failed_symbols": dg.MetadataValue.json(result.failed)}
    metadata, events = split_metadata(context, light, heavy)
    yield dg.Output(prices, metadata=metadata)
    yield from events
    yield from _check_results(prices, duplicates, result.failed, wanted, sessions)


def _requested_symbols(config: RawPricesConfig, universe: list[str]) -> list[str]:
    if not config.symbols:
        return universe
    wanted = validate_symbols(config.symbols)
    unknown = sorted(set(wanted) - set(universe))
    if unknown:
        raise UnknownSymbolsError(
            f"not in the universe (materialise `symbols` first or fix the list): {unknown}"
        )
    return wanted


def _check_results(prices, duplicates, failed, wanted, sessions):
    violations = quality.find_ohlc_violations(prices)
    bad_ticks = quality.find_bad_ticks(prices)
    missing = quality.find_missing_sessions(
        prices, [s for s in wanted if s not in failed], sessions
    )
    yield _result(
        checks.RAW_PRICES_NO_DUPLICATES, duplicates[["symbol", "date", "close"]], "duplicate_rows"
    )
    yield _result(
        checks.RAW_PRICES_OHLC_CONSISTENT,
        violations[["symbol", "date", "open", "high", "low", "close", "volume", "violation"]],
        "violations",
    )
    yield _result(checks.RAW_PRICES_NO_BAD_TICKS, bad_ticks, "bad_ticks")
    yield _result(
        checks.RAW_PRICES_COMPLETE,
        missing,
        "missing_pairs",
        severity=dg.AssetCheckSeverity.WARN,
        extra={
            "symbols_without_rows": dg.MetadataValue.json(
                sorted(set(wanted) - set(prices["symbol"]) - set(failed))
            )
        },
    )
    failed_frame = pd.DataFrame({"symbol": list(failed), "reason": list(failed.values())})
    yield _result(
        checks.RAW_PRICES_ALL_FETCHED,
        failed_frame,
        "failed_symbols",
        severity=dg.AssetCheckSeverity.WARN,
    )


def _result(
    name, offending: pd.DataFrame, label: str, severity=dg.AssetCheckSeverity.ERROR, extra=None
):
    metadata = {label: dg.MetadataValue.int(len(offending)), **(extra or {})}
    if len(offending):
        metadata[f"{label}_listed"] = dg.MetadataValue.md(
            offending.head(MAX_LISTED).to_markdown(index=False)
        )
    return dg.AssetCheckResult(
        check_name=name, passed=offending.empty, severity=severity, metadata=metadata
    )


def _head(failed: dict[str, str], n: int = 5) -> str:
    items = list(failed.items())
    return "; ".join(f"{s}: {r}" for s, r in items[:n]) + (
        f" (+{len(items) - n} more)" if len(items) > n else ""
    )
