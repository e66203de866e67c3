"""What the daily analytics assets share: their decorator arguments, the partition window, overrides."""

import dataclasses
import datetime as dt

import dagster as dg
import pandas as pd

from trading_assets.partitions import sessions_in_window, trading_days

# Every daily analytics asset: trading-session partitions, one run per range, the DuckDB writers' pool.
DAILY = dict(
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="analytics",
    kinds={"pandas", "duckdb"},
    pool="duckdb",
)


def previous_sessions(n: int) -> dg.TimeWindowPartitionMapping:
    """The n partitions before the ones being materialised (a self-dependency), missing ones allowed."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-n, end_offset=-1, allow_nonexistent_upstream_partitions=True
    )


def window_sessions(context: dg.AssetExecutionContext) -> list[dt.date]:
    return sessions_in_window(context.partition_time_window)


def in_window(frame: pd.DataFrame, context: dg.AssetExecutionContext) -> pd.DataFrame:
    sessions = set(window_sessions(context))
    return frame[frame["date"].isin(sessions)].reset_index(drop=True)


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
