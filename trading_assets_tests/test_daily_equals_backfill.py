"""A daily run equals a backfill: across a split, a dividend, a bad print on the newest session and a
re-run over stored rows, the stored tables after daily runs equal one backfill over the same dates
from the same source data (to 1e-9). Every run goes through Dagster into a real DuckDB file; the
yahoo source talks to the local Yahoo-format server."""

from __future__ import annotations

import contextlib
import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from trading_assets import checks, market_hours
from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.resources import FundamentalsResource, PriceSourceResource, UniverseResource
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices
from trading_assets_tests.test_assets_ingest import range_tags
from trading_assets_tests.yahoo_server import isolated_yfinance_cache, serve_yahoo

ALL = [symbols, raw_prices, fundamentals, indicators, market_environment, watchlist]
# Ten stocks, so the top of the RS ranking reaches the screen's 80 and the watchlist has rows.
STOCKS = ["AAPL", "MSFT", "NVDA", "JPM", "LLY", "XOM", "COST", "CAT", "NEE", "AMZN"]
UNIVERSE = ",".join(STOCKS)
TICKERS = [*STOCKS, "SPY", "QQQ", "^VIX"]
# A year of history before the events, so SMA 200 and the 756-session lookback are exercised.
FIRST, LAST_STORED, EVENT, AFTER = "2023-01-03", "2024-03-26", "2024-03-27", "2024-03-28"
TABLES = {
    "raw_prices": ["symbol", "date"],
    "indicators": ["symbol", "date"],
    "market_environment": ["date"],
    "watchlist": ["symbol", "date"],
}


def materialize(
    db,
    source: dict,
    start: str,
    end: str | None = None,
    config=None,
    selection=None,
    all_fetched=True,
):
    end = end or start
    tags = {} if start == end else range_tags(start, end)
    result = dg.materialize(
        ALL,
        selection=selection,
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(**source),
            "universe": UniverseResource(spec=UNIVERSE, price_source_kind=source["kind"]),
            "fundamentals_source": FundamentalsResource(),
        },
        tags=tags,
        partition_key=start if start == end else None,
        run_config={"ops": {"raw_prices": {"config": config}}} if config else None,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    # Every comparison here assumes the source delivered every symbol: a fetch failure (a
    # symbol's history missing from one store) must fail here, saying why, not as a row count.
    for evaluation in result.get_asset_check_evaluations() if all_fetched else []:
        if evaluation.check_name == checks.RAW_PRICES_ALL_FETCHED:
            failed = evaluation.metadata.get("failed_symbols_listed")
            assert evaluation.passed, f"{start}..{end}: symbols not fetched: {failed}"
    return result


def stored(db, table: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute(f"SELECT * FROM main.{table}").df()
    return frame.drop(columns=["fetched_at"], errors="ignore").sort_values(
        TABLES[table], ignore_index=True
    )


def assert_tables_equal(daily_db, backfill_db, tables=TABLES):
    for table in tables:
        a, b = stored(daily_db, table), stored(backfill_db, table)
        assert len(a) == len(b), (
            f"{table}: {len(a)} rows after daily runs, {len(b)} after the backfill"
        )
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-9, obj=table)


def write_parquet(path, frame):
    frame = frame.copy()
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(path)
    return str(path)


# --- sources that serve one version of history, then another --------------------------------------


@contextlib.contextmanager
def files_source(tmp_path, frame, name, log=None):
    yield {"kind": "files", "path": write_parquet(tmp_path / f"{name}.parquet", frame)}


@contextlib.contextmanager
def yahoo_source(tmp_path, frame, name, log=None):
    with isolated_yfinance_cache(str(tmp_path / "yf")), serve_yahoo(frame) as server:
        yield {"kind": "yahoo", "yahoo_base_url": server.base_url, "max_retries": 1}
        if log is not None:
            log[name] = server.chart_requests(kind="history")


def real_prices():
    return shared_prices(TICKERS, FIRST, AFTER)


def store_history(db, tmp_path, frame, name="stored"):
    """The store as a backfill FIRST..LAST_STORED from ``frame`` (through the files source) left it."""
    src = {"kind": "files", "path": write_parquet(tmp_path / f"{name}.parquet", frame)}
    assert materialize(db, src, FIRST, LAST_STORED).success


def before_event(
    frame: pd.DataFrame, symbol: str, price_factor: float, volume_factor: float
) -> pd.DataFrame:
    """The history as it was served before the event: bars before EVENT not yet adjusted for it."""
    out = frame.copy()
    hit = (out.symbol == symbol) & (out.date < dt.date.fromisoformat(EVENT))
    out.loc[hit, ["open", "high", "low", "close"]] *= price_factor
    out.loc[hit, "volume"] *= volume_factor
    return out


EVENTS = {
    # A 4:1 split on EVENT: before it, AAPL traded (and was served) at 4x the adjusted price.
    "split": ("AAPL", 4.0, 0.25, 0.25),
    # A 1 % dividend going ex on EVENT: before it, MSFT's earlier bars were served 1/0.99 higher.
    "dividend": ("MSFT", 1 / 0.99, 1.0, 0.99),
}


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("kind", ["files", "yahoo"])
def test_daily_runs_across_a_corporate_action_equal_a_fresh_backfill(tmp_path, kind, event):
    symbol, price_factor, volume_factor, factor = EVENTS[event]
    after = real_prices()  # what the source serves once the event happened (adjusted)
    before = before_event(after, symbol, price_factor, volume_factor)
    before = before[before.date <= dt.date.fromisoformat(LAST_STORED)]
    source = files_source if kind == "files" else yahoo_source
    daily = tmp_path / "daily.duckdb"
    log: dict = {}
    with source(tmp_path, before, "before") as src:
        assert materialize(daily, src, FIRST, LAST_STORED).success
    with source(tmp_path, after, "after", log) as src:
        event_run = materialize(daily, src, EVENT)
        assert event_run.success
        assert materialize(daily, src, AFTER).success
    backfill = tmp_path / "backfill.duckdb"
    with source(tmp_path, after, "fresh") as src:
        assert materialize(backfill, src, FIRST, AFTER).success
    assert_tables_equal(daily, backfill)

    # The event is visible: a warning naming the symbol and its factor, and a revision row.
    evals = {e.check_name: e for e in event_run.get_asset_check_evaluations()}
    changed = evals[checks.RAW_PRICES_HISTORY_UNCHANGED]
    assert not changed.passed and changed.severity == dg.AssetCheckSeverity.WARN
    assert symbol in changed.metadata["symbols_changed_listed"].value
    revisions = stored_revisions(daily)
    assert revisions[["symbol", "kind"]].values.tolist() == [[symbol, "adjustment"]]
    assert np.isclose(revisions.factor.item(), factor)
    if kind == "yahoo":
        # Only the affected symbol's whole history was fetched again: every other request of the
        # event's run starts at the 5-session overlap.
        starts = {}
        for r in log["after"]:
            starts.setdefault(r.symbol, []).append(int(r.query["period1"]))
        overlap_start = pd.Timestamp("2024-03-20").timestamp()
        assert min(starts[symbol]) < pd.Timestamp(FIRST).timestamp()
        for other in set(TICKERS) - {symbol}:
            assert min(starts[other]) >= overlap_start, other


def stored_revisions(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM main.price_revisions ORDER BY date, symbol").df()


@pytest.mark.parametrize("holds", [False, True], ids=["reverts", "holds"])
def test_a_x5_print_on_the_newest_session_is_excluded_and_judged_by_the_next_run(tmp_path, holds):
    real = real_prices()
    bad = real.copy()
    spike = (bad.symbol == "NVDA") & (bad.date >= dt.date.fromisoformat(EVENT))
    if not holds:
        spike &= bad.date == dt.date.fromisoformat(EVENT)
    bad.loc[spike, ["open", "high", "low", "close"]] *= 5
    daily, backfill = tmp_path / "daily.duckdb", tmp_path / "backfill.duckdb"
    path = write_parquet(tmp_path / "p.parquet", bad)
    src = {"kind": "files", "path": path}
    assert materialize(daily, src, FIRST, LAST_STORED).success
    first = materialize(daily, src, EVENT)
    assert first.success  # one bad bar never stops the universe
    on_event = stored(daily, "raw_prices").query("symbol == 'NVDA'").iloc[-1]
    assert on_event.quarantine == "spike_unconfirmed"  # excluded while unconfirmed
    assert pd.isna(stored(daily, "indicators").query("symbol == 'NVDA'").iloc[-1].sma_20)
    assert materialize(daily, src, AFTER).success
    assert materialize(backfill, src, FIRST, AFTER).success
    assert_tables_equal(daily, backfill)
    verdict = (
        stored(daily, "raw_prices")
        .set_index(["symbol", "date"])
        .loc[("NVDA", pd.Timestamp(EVENT)), "quarantine"]
    )
    assert pd.isna(verdict) if holds else verdict == "bad_tick"


def test_rerunning_a_range_with_changed_volumes_carries_obv_from_before_the_range(tmp_path):
    real = real_prices()
    changed = real.copy()
    late = changed.date >= dt.date(2024, 3, 1)
    changed.loc[late, "volume"] = changed.loc[late, "volume"] * 1.5 + 1_000
    db, backfill = tmp_path / "rerun.duckdb", tmp_path / "backfill.duckdb"
    assert materialize(
        db, {"kind": "files", "path": write_parquet(tmp_path / "a.parquet", real)}, FIRST, AFTER
    ).success
    src = {"kind": "files", "path": write_parquet(tmp_path / "b.parquet", changed)}
    # the volumes inside the re-run range changed: a revision of bars, not a re-adjusted history
    assert materialize(db, src, "2024-03-01", AFTER).success
    assert materialize(backfill, src, FIRST, AFTER).success
    assert_tables_equal(db, backfill, ["raw_prices", "indicators"])


def test_a_one_session_environment_run_with_a_missing_spy_sma_fails_its_blocking_check(tmp_path):
    db = tmp_path / "t.duckdb"
    src = {"kind": "files", "path": write_parquet(tmp_path / "p.parquet", real_prices())}
    assert materialize(db, src, FIRST, AFTER).success
    with duckdb.connect(str(db)) as con:
        con.execute(
            f"UPDATE indicators SET sma_50 = NULL WHERE symbol = 'SPY' AND date = DATE '{AFTER}'"
        )
    result = materialize(db, src, AFTER, selection=[market_environment])
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == checks.ENVIRONMENT_INPUTS_PRESENT and not check.passed
    assert "SPY sma_50" in check.metadata["listed"].value
    # ... while the same session with the SMA in place passes, warm-up counted from stored closes
    with duckdb.connect(str(db)) as con:
        con.execute(f"DELETE FROM market_environment WHERE date = DATE '{AFTER}'")
    assert materialize(db, src, AFTER).success


def test_a_session_cannot_be_materialised_before_its_bar_is_final(tmp_path, monkeypatch):
    db = tmp_path / "t.duckdb"
    src = {"kind": "files", "path": write_parquet(tmp_path / "p.parquet", real_prices())}
    # 2024-03-28 closes 16:00 New York = 20:00 UTC; the bar is final 30 minutes later.
    monkeypatch.setattr(market_hours, "now_utc", lambda: pd.Timestamp("2024-03-28 20:15", tz="UTC"))
    result = materialize(db, src, AFTER, selection=[symbols, raw_prices])
    assert not result.success
    err = result.get_step_failure_events()[0].event_specific_data.error
    while err.cause is not None and err.cls_name.startswith("Dagster"):
        err = err.cause
    assert err.cls_name == "SessionNotClosedError" and "16:30" in err.message
    monkeypatch.setattr(market_hours, "now_utc", lambda: pd.Timestamp("2024-03-28 20:31", tz="UTC"))
    assert materialize(db, src, AFTER, selection=[symbols, raw_prices]).success


@pytest.mark.parametrize(
    ("symbol", "start", "end", "bad_dates"),
    [
        ("HUBB", "2021-01-04", "2021-07-30", ["2021-05-05"]),
        ("^VIX", "2004-08-02", "2004-12-31", ["2004-10-26", "2004-11-08"]),
    ],
)
def test_real_bad_bars_are_quarantined_and_indicators_around_them_equal_talib_without_them(
    tmp_path, symbol, start, end, bad_dates
):
    """The shared data's real bad bars (a HUBB low above its open, ^VIX opens outside the range):
    the run completes, they are listed and flagged, and every indicator is TA-Lib's on the rows
    without them."""
    from trading_assets_tests.conftest import SHARED_PRICES
    from trading_assets_tests.test_indicators import assert_same, talib_reference

    db = tmp_path / "t.duckdb"
    src = {"kind": "files", "path": str(SHARED_PRICES)}
    result = dg.materialize(
        [symbols, raw_prices, indicators],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(**src),
            "universe": UniverseResource(spec="HUBB", price_source_kind="files"),
        },
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    listed = evals[checks.RAW_PRICES_OHLC_CONSISTENT].metadata["quarantined_bars_listed"].value
    assert all(d in listed for d in bad_dates)
    ours = stored(db, "indicators").query("symbol == @symbol").reset_index(drop=True)
    flagged = ours.date.dt.strftime("%Y-%m-%d").isin(bad_dates)
    assert (
        ours.loc[flagged, "quarantine"].notna().all()
        and ours.loc[~flagged, "quarantine"].isna().all()
    )
    assert ours.loc[flagged, ["sma_20", "atr_14", "rsi_14"]].isna().all().all()
    if symbol == "^VIX":  # a bad open leaves the close usable: the environment still gets it
        assert ours.loc[flagged, "close"].notna().all()
    raw = shared_prices([symbol], start, end)
    clean = raw[~raw.date.astype(str).isin(bad_dates)].reset_index(drop=True)
    expected = talib_reference(clean)
    for name, values in expected.items():
        if symbol == "^VIX" and name == "obv":
            continue  # no volume: OBV is null for ^VIX (see test_indicators)
        assert_same(ours.loc[~flagged, name].to_numpy(), values, f"{symbol} {name}")


def test_a_source_with_less_history_than_stored_never_restates_it(tmp_path):
    """A file of recent bars only, in which a symbol's adjustment changed: its stored history cannot
    be restated from that file, so the symbol is left as stored and listed as failed; the others
    flow on."""
    daily = tmp_path / "daily.duckdb"
    real = real_prices()
    store_history(daily, tmp_path, real)
    before = stored(daily, "raw_prices").query("symbol == 'AAPL'")
    recent = real[real.date >= dt.date(2024, 3, 1)].copy()
    recent.loc[recent.symbol == "AAPL", ["open", "high", "low", "close"]] /= 4
    result = materialize(
        daily,
        {"kind": "files", "path": write_parquet(tmp_path / "b.parquet", recent)},
        EVENT,
        all_fetched=False,
    )
    assert result.success
    after = stored(daily, "raw_prices")
    pd.testing.assert_frame_equal(after.query("symbol == 'AAPL'"), before)
    assert (after.query("symbol == 'MSFT'").date == pd.Timestamp(EVENT)).any()
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    listed = evals[checks.RAW_PRICES_ALL_FETCHED].metadata["failed_symbols_listed"].value
    assert "AAPL" in listed and "serves it only from 2024-03-01" in listed


def test_a_restatement_whose_downstream_did_not_run_is_recomputed_when_the_window_is_rerun(
    tmp_path,
):
    """The split's run stores the restated prices, but its downstream steps do not run (here: only
    the prices are selected; in life a crash). Re-running the window finds the history already
    restated, yet still recomputes the indicators, because the window's price_revisions stay."""
    symbol, price_factor, volume_factor, _ = EVENTS["split"]
    after = real_prices()
    before = before_event(after, symbol, price_factor, volume_factor)
    before = before[before.date <= dt.date.fromisoformat(LAST_STORED)]
    daily, backfill = tmp_path / "daily.duckdb", tmp_path / "backfill.duckdb"
    store_history(daily, tmp_path, before)
    src = {"kind": "files", "path": write_parquet(tmp_path / "b.parquet", after)}
    prices_only = dg.AssetSelection.assets("symbols", "raw_prices", "price_revisions")
    assert materialize(daily, src, EVENT, selection=prices_only).success
    assert materialize(daily, src, EVENT).success  # nothing changed any more at the source
    assert stored_revisions(daily)[["symbol", "kind"]].values.tolist() == [[symbol, "adjustment"]]
    assert materialize(backfill, src, FIRST, EVENT).success
    assert_tables_equal(daily, backfill)


def test_a_fortnight_of_daily_runs_with_every_kind_of_event_equals_one_backfill(tmp_path):
    """Eight daily runs after a stored history, each reading the source as it stood that evening: a
    4:1 split (AAPL), a x6 print that reverts (NVDA), a dividend (MSFT) and a preliminary volume
    revised the next morning (JPM, every day). The store then equals one backfill from the last
    evening's source."""
    days = ["2024-03-27", "2024-03-28", "2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04",
            "2024-04-05", "2024-04-08"]  # fmt: skip
    truth = shared_prices(TICKERS, FIRST, days[-1])
    truth.loc[
        (truth.symbol == "NVDA") & (truth.date == dt.date(2024, 4, 3)),
        ["open", "high", "low", "close"],
    ] *= 6

    def as_of(k: int) -> pd.DataFrame:
        """The source on the evening of days[k]."""
        today = dt.date.fromisoformat(days[k])
        frame = truth[truth.date <= today].copy()
        split, dividend = dt.date(2024, 4, 1), dt.date(2024, 4, 4)
        if today < split:  # AAPL still trades (and is served) at 4x, with a quarter of the volume
            hit = (frame.symbol == "AAPL") & (frame.date < split)
            frame.loc[hit, ["open", "high", "low", "close"]] *= 4
            frame.loc[hit, "volume"] /= 4
        if today < dividend:
            hit = (frame.symbol == "MSFT") & (frame.date < dividend)
            frame.loc[hit, ["open", "high", "low", "close"]] /= 0.99
        frame.loc[(frame.symbol == "JPM") & (frame.date == today), "volume"] *= 0.9
        return frame

    daily, backfill = tmp_path / "daily.duckdb", tmp_path / "backfill.duckdb"
    first = as_of(0)
    store_history(daily, tmp_path, first[first.date <= dt.date.fromisoformat(LAST_STORED)])
    for k, day in enumerate(days):
        src = {"kind": "files", "path": write_parquet(tmp_path / f"evening{k}.parquet", as_of(k))}
        assert materialize(daily, src, day).success, day
    last = {"kind": "files", "path": str(tmp_path / f"evening{len(days) - 1}.parquet")}
    assert materialize(backfill, last, FIRST, days[-1]).success
    assert_tables_equal(daily, backfill)
    kinds = stored_revisions(daily).groupby("symbol")["kind"].apply(set).to_dict()
    assert kinds["AAPL"] == {"adjustment"} and kinds["MSFT"] == {"adjustment"}
    assert kinds["JPM"] == {"revision"}  # each morning's volume differs from the evening's
    assert kinds["NVDA"] == {"verdict"}  # the print, re-judged the next evening: a bad tick
    nvda = stored(daily, "raw_prices").query("symbol == 'NVDA' and date == '2024-04-03'")
    assert nvda.quarantine.item() == "bad_tick"
