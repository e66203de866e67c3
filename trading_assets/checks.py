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

import datetime as dt

import dagster as dg
import pandas as pd

from trading_assets import market_hours
from trading_assets.market_hours import DEFAULT_CLOSE_DELAY_MINUTES
from trading_assets.partitions import CALENDAR_CODE, START_DATE, trading_calendar

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
            name=name,
            asset=asset,
            description=description,
            blocking=name in RAW_PRICES_BLOCKING_CHECKS,
        )

    return [
        spec(
            RAW_PRICES_NO_DUPLICATES,
            "The source served at most one bar per (symbol, session); else the last is kept.",
        ),
        spec(
            RAW_PRICES_OHLC_CONSISTENT,
            "low <= open, close <= high; prices > 0; volume >= 0. Offenders are quarantined.",
        ),
        spec(
            RAW_PRICES_NO_BAD_TICKS,
            "No x3 (or /3) move against the last clean close that reverts the next session (judged against stored bars). Offenders are quarantined.",
        ),
        spec(
            RAW_PRICES_COMPLETE,
            "Every universe symbol has a bar on every session since its first bar.",
        ),
        spec(RAW_PRICES_ALL_FETCHED, "The source returned data for every requested symbol."),
        spec(
            RAW_PRICES_HISTORY_UNCHANGED,
            "Stored bars equal the same bars fetched again; a changed history (split, dividend) is re-fetched and listed.",
        ),
        spec(
            RAW_PRICES_QUARANTINE_LIMITS,
            "No benchmark bar quarantined, and at most max_quarantined_share of the run's bars.",
        ),
    ]


ENVIRONMENT_INPUTS_PRESENT = "benchmark_inputs_present"


# --- freshness ----------------------------------------------------------------------------------
# raw_prices' freshness is judged outside its runs too: the raw_prices_freshness sensor
# (trading_assets.sensors) runs this check once each session has closed, so a missed daily run
# shows in the UI even though no run happened.

RAW_PRICES_FRESH = "fresh_for_last_closed_session"
LAST_CLOSED_SESSION = "last_closed_session"  # check metadata: the session the verdict is about


def last_closed_session(
    now: pd.Timestamp, delay_minutes: float = DEFAULT_CLOSE_DELAY_MINUTES
) -> dt.date | None:
    """The latest session whose close + ``delay_minutes`` is at or before ``now`` (its bar is final;
    market_hours.require_closed); None before the calendar's first such session."""
    cal = trading_calendar(CALENDAR_CODE, START_DATE)
    local = now.tz_convert(cal.tz)
    day = pd.Timestamp(local.date())
    if day < cal.first_session:
        return None
    session = cal.date_to_session(min(day, cal.last_session), direction="previous")
    while cal.session_close(session) + pd.Timedelta(minutes=delay_minutes) > now:
        if session <= cal.first_session:
            return None
        session = cal.previous_session(session)
    return session.date()


def latest_materialized_session(instance: dg.DagsterInstance, asset: str) -> str | None:
    """The newest partition key of ``asset`` the instance holds a materialisation of."""
    keys = instance.get_materialized_partitions(dg.AssetKey(asset))
    return max(keys) if keys else None


@dg.asset_check(
    asset="raw_prices",
    name=RAW_PRICES_FRESH,
    description="raw_prices has been materialised for the last closed session (the latest whose "
    "close + the close delay has passed). Run by the raw_prices_freshness sensor after each "
    "close (not by the jobs: a backfill of an old range is not late).",
)
def raw_prices_fresh(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    now = market_hours.now_utc()
    expected = last_closed_session(now)
    latest = latest_materialized_session(context.instance, "raw_prices")
    expected_key = expected.isoformat() if expected else None
    done = expected_key is None or bool(
        context.instance.fetch_materializations(
            dg.AssetRecordsFilter(dg.AssetKey("raw_prices"), asset_partitions=[expected_key]),
            limit=1,
        ).records
    )
    behind = (
        len(market_hours.sessions_from_to(dt.date.fromisoformat(latest), expected)) - 1
        if latest and expected and not done
        else None
    )
    return dg.AssetCheckResult(
        passed=done,
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if done
        else f"raw_prices has no materialisation of session {expected_key} (closed); the latest "
        f"is {latest or 'none'}. Did the daily run fail or not run?",
        metadata={
            LAST_CLOSED_SESSION: expected_key or "",
            "latest_materialized_session": latest or "",
            "sessions_behind": behind if behind is not None else (0 if done else -1),
            "evaluated_at": now.isoformat(),
        },
    )
