"""What the daily analytics assets share: their decorator arguments, the partition window, overrides."""

import dataclasses
import datetime as dt
from collections.abc import Collection

import dagster as dg
import pandas as pd

from trading_assets.core.adjustments import restatement_plan
from trading_assets.market_hours import first_session
from trading_assets.partitions import sessions_in_window, trading_days

# Every daily analytics asset: trading-session partitions, one run per range.
DAILY = dict(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="analytics",
    kinds={"pandas", "duckdb"},
)


def previous_sessions(n: int) -> dg.TimeWindowPartitionMapping:
    """The n partitions before the ones being materialised (a self-dependency), missing ones allowed."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-n, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def window_sessions(context: dg.AssetExecutionContext) -> list[dt.date]:
    return sessions_in_window(context.partition_time_window)


def day_after(day: dt.date) -> dt.date:
    """The exclusive ``end`` of a stored-rows read (TableStore.read_rows) that includes ``day``."""
    return day + dt.timedelta(days=1)


def recompute_start(
    revisions: pd.DataFrame | None,
    window_start: dt.date,
    whole_history_for: Collection[str] | None,
) -> dt.date:
    """The first session an asset recomputes, given its window's price_revisions: the calendar's
    first session when a symbol of ``whole_history_for`` (None: any symbol) was re-adjusted, else
    the earliest revised or re-judged bar before the window, else the window's start."""
    adjusted, revised_from = restatement_plan(revisions, window_start)
    if adjusted and (whole_history_for is None or set(adjusted) & set(whole_history_for)):
        return first_session()
    return revised_from or window_start


def from_date(frame: pd.DataFrame, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Rows with first <= date <= last."""
    keep = (frame["date"] >= first) & (frame["date"] <= last)
    return frame[keep].reset_index(drop=True)


class ParamOverrides(dg.Config):
    overrides: dict[str, float] = {}
    """Named constants to override for this run, e.g. {"a_vix_max": 22}. Names as in trading_assets.core."""


def params(defaults, overrides: dict[str, float]):
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(defaults, **overrides)
