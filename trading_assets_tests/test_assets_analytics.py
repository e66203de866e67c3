"""indicators → market_environment → watchlist materialised in-process on the bundled sample."""

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from trading_assets import checks
from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.core.indicators import INDICATOR_COLUMNS, INDICATOR_LOOKBACK_SESSIONS
from trading_assets.partitions import CALENDAR_CODE, START_DATE, sessions_between
from trading_assets.resources import FundamentalsResource, PriceSourceResource, UniverseResource
from trading_assets.sources.sample import SAMPLE_END, SAMPLE_START
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices

UNIVERSE = "AAPL,MSFT,NVDA,XOM,JPM,LLY,PG,CAT,NEE,AMZN,GEV,KO"
ALL = [symbols, raw_prices, fundamentals, indicators, market_environment, watchlist]
SESSIONS = sessions_between(
    CALENDAR_CODE,
    START_DATE,
    dt.date.fromisoformat(SAMPLE_START),
    dt.date.fromisoformat(SAMPLE_END),
)


def resources(db, kind="sample", path=None):
    return {
        "io_manager": DuckDBIOManager(database=str(db)),
        "price_source": PriceSourceResource(kind=kind, path=path),
        "universe": UniverseResource(spec=UNIVERSE, price_source_kind=kind),
        "fundamentals_source": FundamentalsResource(),
    }


def materialize(db, assets, start, end=None, instance=None, selection=None, **kw):
    end = end or start
    tags = (
        {}
        if start == end
        else {
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        }
    )
    return dg.materialize(
        assets,
        selection=selection,
        resources=resources(db, **kw),
        tags=tags,
        partition_key=start if start == end else None,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def query(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).df()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The whole graph over the sample's full range, in one run (like the README's main job)."""
    db = tmp_path_factory.mktemp("full") / "full.duckdb"
    result = materialize(db, ALL, SAMPLE_START, SAMPLE_END)
    assert result.success
    return db, result


def test_indicators_cover_every_price_row_and_rate_only_stocks(full):
    db, _ = full
    counts = query(
        db, "SELECT (SELECT count(*) FROM raw_prices) p, (SELECT count(*) FROM indicators) i"
    )
    assert counts.p[0] == counts.i[0] > 12 * 1000
    ind = query(db, "SELECT * FROM indicators")
    assert set(INDICATOR_COLUMNS) <= set(ind.columns) and {"close", "volume"} <= set(ind.columns)
    bench = ind.symbol.isin(["SPY", "QQQ", "^VIX"])
    assert ind.loc[bench, "rs_rating"].isna().all()
    rated = ind.loc[~bench, "rs_rating"].dropna()
    assert rated.between(1, 99).all() and rated.max() >= 90 and rated.min() <= 10
    # GEV listed 2024-03-27: no 200-day SMA before its 200th session
    gev = ind[ind.symbol == "GEV"].sort_values("date")
    assert gev.sma_200.iloc[:199].isna().all() and gev.sma_200.iloc[199:].notna().all()


def test_environment_one_row_per_session_with_plot(full):
    db, result = full
    env = query(db, "SELECT * FROM market_environment ORDER BY date")
    assert [d.date() for d in env.date] == SESSIONS
    assert set(env.environment.dropna()) <= {"A", "B", "C", "D"}
    assert env.environment.iloc[250:].notna().all()  # classified once SMAs exist
    sizing = {
        "A": (0.10, 0.005, 0.025),
        "B": (0.08, 0.004, 0.020),
        "C": (0.05, 0.0025, 0.010),
        "D": (0.03, 0.002, 0.015),
    }
    for e, row in env.dropna(subset=["environment"]).groupby("environment").first().iterrows():
        assert (row.base_size, row.risk_pct, row.heat_limit) == sizing[e]
    evals = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evals[checks.ENVIRONMENT_INPUTS_PRESENT] is True
    observed = [
        e
        for e in result.get_asset_observation_events()
        if e.asset_key == dg.AssetKey("market_environment")
    ]
    assert observed and observed[0].event_specific_data.asset_observation.partition == SAMPLE_END
    md = observed[0].event_specific_data.asset_observation.metadata
    assert md["plot"].value.startswith(
        "![market environment vs SPY](data:image/png;base64,iVBORw0KGgo"
    )
    assert "Environment" in md["report"].value or "environment" in md["report"].value


def test_watchlist_respects_screen_and_heat(full):
    db, _ = full
    wl = query(db, "SELECT * FROM watchlist")
    ind = query(
        db, "SELECT symbol, date, rs_rating, vol_avg_50, close, sma_50, sma_200 FROM indicators"
    )
    assert len(wl) > 0
    merged = wl.merge(ind, on=["symbol", "date"], suffixes=("", "_ind"))
    assert len(merged) == len(wl)
    assert (merged.rs_rating_ind >= 80).all() and (merged.vol_avg_50 >= 500_000).all()
    assert ((merged.close_ind > merged.sma_50) & (merged.close_ind > merged.sma_200)).all()
    sized = wl[wl.shares.fillna(0) > 0]
    heat = sized.groupby("date").risk_dollars.sum()
    limit = wl.groupby("date").heat_limit.first() * 100_000
    assert (heat <= limit.reindex(heat.index) + 1e-6).all()
    assert (sized.stop < sized.entry).all() and (sized.edges.between(3, 10)).all()
    assert (wl.loc[wl.heat_exceeded.fillna(False).astype(bool), "shares"].fillna(0) == 0).all()


def test_watchlist_market_caps_are_point_in_time(full):
    """The sample's only snapshot is of 2025-02-01: earlier sessions have no known cap (no look-ahead)."""
    db, result = full
    wl = query(
        db, "SELECT date, symbol, market_cap, market_cap_as_of, crit_market_cap FROM watchlist"
    )
    snapshot = dt.date(2025, 2, 1)
    before = wl[wl.date.dt.date < snapshot]
    after = wl[wl.date.dt.date >= snapshot]
    assert len(before) and len(after)
    assert (before.crit_market_cap == "unknown").all() and before.market_cap.isna().all()
    assert before.market_cap_as_of.isna().all()
    known = after[after.symbol != "BRK-B"]  # no cap for BRK-B in the snapshot
    assert (known.crit_market_cap == "pass").all()
    assert set(known.market_cap_as_of.dt.date) == {snapshot}
    md = result.asset_materializations_for_node("fundamentals")[0].metadata
    assert md["newest_as_of"].value == "2025-02-01" and md["snapshots_stored"].value == 1


def test_incremental_session_equals_full_backfill_and_reads_a_bounded_lookback(full, tmp_path):
    full_db, _ = full
    db = tmp_path / "inc.duckdb"
    assert materialize(db, [symbols, raw_prices], SAMPLE_START, SAMPLE_END).success
    *history, d1, d2 = SESSIONS
    graph, only = [symbols, raw_prices, indicators], [indicators.key]  # upstream read from storage
    assert materialize(db, graph, SAMPLE_START, history[-1].isoformat(), selection=only).success
    for day in (d1, d2):  # two daily runs, as the schedule would do them
        result = materialize(db, graph, day.isoformat(), selection=only)
        assert result.success
        md = result.asset_materializations_for_node("indicators")[0].metadata
        # the run read INDICATOR_LOOKBACK_SESSIONS sessions before the new one, not the 6.5-year history
        assert (
            md["lookback_first_date"].value
            == SESSIONS[SESSIONS.index(day) - INDICATOR_LOOKBACK_SESSIONS].isoformat()
        )
    cols = ", ".join(c for c in INDICATOR_COLUMNS if c != "hh_ll_20")
    sql = f"SELECT symbol, date, hh_ll_20, {cols} FROM indicators WHERE date >= '{d1}' ORDER BY symbol, date"
    inc, ref = query(db, sql), query(full_db, sql)
    assert len(inc) == len(ref) == 2 * 15
    pd.testing.assert_frame_equal(
        inc[["symbol", "date", "hh_ll_20"]], ref[["symbol", "date", "hh_ll_20"]]
    )
    numeric = [c for c in inc.columns if c not in ("symbol", "date", "hh_ll_20")]
    np.testing.assert_allclose(
        inc[numeric].astype(float), ref[numeric].astype(float), rtol=0, atol=1e-9, equal_nan=True
    )


def test_missing_vix_fails_the_blocking_check_and_stops_the_watchlist(tmp_path):
    prices = shared_prices(UNIVERSE.split(",") + ["SPY", "QQQ", "^VIX"], "2024-01-02", "2024-03-28")
    prices = prices[
        ~((prices.symbol == "^VIX") & (prices.date.astype(str).isin(["2024-02-07", "2024-02-08"])))
    ]
    prices["date"] = pd.to_datetime(prices["date"])
    prices.to_parquet(tmp_path / "p.parquet")
    result = materialize(
        tmp_path / "t.duckdb",
        ALL,
        "2024-01-02",
        "2024-03-28",
        kind="files",
        path=str(tmp_path / "p.parquet"),
    )
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals[checks.ENVIRONMENT_INPUTS_PRESENT].passed is False
    assert "2024-02-07" in evals[checks.ENVIRONMENT_INPUTS_PRESENT].metadata["listed"].value
    env = query(
        tmp_path / "t.duckdb",
        "SELECT * FROM market_environment WHERE date IN ('2024-02-07','2024-02-08')",
    )
    assert env.environment.isna().all()  # never a silent D
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert (
        "market_environment" in materialized and "watchlist" not in materialized
    )  # blocked downstream


def test_first_ever_run_of_one_session_stores_a_typed_environment_and_explains_the_screen(tmp_path):
    """A fresh store, one session: every environment input is still warming up, so the session is
    unclassified; the column must still be created (typed text) for the watchlist to read it, and
    the watchlist's metadata shows why each stock passed or not."""
    db = tmp_path / "fresh.duckdb"
    result = materialize(db, ALL, "2024-06-03")
    assert result.success
    env = query(db, "SELECT environment, typeof(environment) t FROM market_environment")
    assert env.environment.isna().all() and env.t.tolist() == ["VARCHAR"]
    (event,) = [
        m for m in result.get_asset_materialization_events() if m.asset_key.path == ["watchlist"]
    ]
    table = event.materialization.metadata["criteria_last_session"].value
    assert "crit_rs_rating" in table and "2024-06-03" in table
