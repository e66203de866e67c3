"""raw_prices' freshness: the check fresh_for_last_closed_session and the raw_prices_freshness
sensor that runs it, in real runs on an ephemeral instance, fresh, stale and fresh again.

The clock is ``market_hours.now_utc``, moved by each test; the check and raw_prices read it alike.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from trading_assets import market_hours
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.checks import (
    LAST_CLOSED_SESSION,
    RAW_PRICES_FRESH,
    last_closed_session,
    raw_prices_fresh,
)
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.sensors import raw_prices_freshness
from trading_assets.storage.duckdb_io import DuckDBIOManager

D = dt.date
NY = "America/New_York"


@pytest.fixture
def clock(monkeypatch):
    def move_to(new_york_time: str) -> None:
        now = pd.Timestamp(new_york_time, tz=NY).tz_convert("UTC")
        monkeypatch.setattr(market_hours, "now_utc", lambda: now)

    return move_to


@pytest.mark.parametrize(
    "new_york_time, session",
    [
        ("2024-07-03 13:29", D(2024, 7, 2)),  # early close 13:00: final at 13:30
        ("2024-07-03 13:30", D(2024, 7, 3)),
        ("2024-07-04 23:00", D(2024, 7, 3)),  # a holiday
        ("2024-07-07 12:00", D(2024, 7, 5)),  # a Sunday
        ("2024-07-08 16:29", D(2024, 7, 5)),
        ("2024-07-08 16:30", D(2024, 7, 8)),
    ],
)
def test_last_closed_session(new_york_time, session):
    assert last_closed_session(pd.Timestamp(new_york_time, tz=NY)) == session


def freshness_resources(db) -> dict:
    return {
        "io_manager": DuckDBIOManager(database=str(db)),
        "price_source": PriceSourceResource(),
        "universe": UniverseResource(spec="AAPL,MSFT"),
    }


def freshness_run(instance, db, session, *, check_only=False):
    """A run of raw_prices for ``session`` with the check (as main_job's), or of the check alone
    (as the sensor's request)."""
    check = dg.AssetSelection.checks(raw_prices_fresh)
    return dg.materialize(
        [symbols, raw_prices, raw_prices_fresh],
        selection=check
        if check_only
        else dg.AssetSelection.assets("symbols", "raw_prices") | check,
        resources=freshness_resources(db),
        partition_key=None if check_only else session,
        instance=instance,
    )


def freshness_tick(instance, db):
    # The sensor's asset selection (the check) resolves against the definitions it is part of.
    defs = dg.Definitions(
        assets=[symbols, raw_prices],
        asset_checks=[raw_prices_fresh],
        sensors=[raw_prices_freshness],
        resources=freshness_resources(db),
    )
    context = dg.build_sensor_context(instance, repository_def=defs.get_repository_def())
    return raw_prices_freshness.evaluate_tick(context)


def verdict(result) -> tuple[bool, dict]:
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == RAW_PRICES_FRESH
    ]
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def test_freshness_check_fresh_stale_and_fresh_again(tmp_path, clock):
    instance, db = dg.DagsterInstance.ephemeral(), tmp_path / "t.duckdb"
    clock("2024-07-03 20:00")  # the early close (13:00) + 4 h
    passed, metadata = verdict(freshness_run(instance, db, "2024-07-03"))  # the daily run
    assert passed and metadata[LAST_CLOSED_SESSION] == "2024-07-03"
    assert freshness_tick(instance, db).skip_message == "raw_prices is fresh for 2024-07-03"

    clock("2024-07-05 21:00")  # Friday's close + 5 h, and no daily run since Wednesday
    [request] = freshness_tick(instance, db).run_requests
    assert request.asset_check_keys == [raw_prices_fresh.check_key]
    passed, metadata = verdict(freshness_run(instance, db, None, check_only=True))
    assert not passed
    assert metadata[LAST_CLOSED_SESSION] == "2024-07-05"
    assert metadata["latest_materialized_session"] == "2024-07-03"
    assert metadata["sessions_behind"] == 1
    tick = freshness_tick(instance, db)  # judged stale: not asked again until raw_prices changes
    assert not tick.run_requests and "stale for 2024-07-05" in tick.skip_message

    passed, metadata = verdict(freshness_run(instance, db, "2024-07-05"))  # caught up
    assert passed and metadata["latest_materialized_session"] == "2024-07-05"
    assert freshness_tick(instance, db).skip_message == "raw_prices is fresh for 2024-07-05"
    clock("2024-07-08 18:00")  # Monday after the close, before the daily run had its time
    assert not freshness_tick(instance, db).run_requests
    clock("2024-07-08 20:01")
    assert freshness_tick(instance, db).run_requests
    passed, metadata = verdict(freshness_run(instance, db, None, check_only=True))
    assert not passed and metadata[LAST_CLOSED_SESSION] == "2024-07-08"
