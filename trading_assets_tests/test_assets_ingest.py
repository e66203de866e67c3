"""symbols + raw_prices materialised in-process into a throwaway DuckDB file, then read back."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from trading_assets import checks
from trading_assets.assets.prices import NoPricesFetchedError, UnknownSymbolsError, raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices

RANGE = ("2024-03-25", "2024-04-05")  # includes Good Friday 2024-03-29 (no partition)


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def run(
    db,
    *,
    universe=None,
    kind="sample",
    path=None,
    start=RANGE[0],
    end=RANGE[1],
    config=None,
    instance=None,
    selection=None,
):
    return dg.materialize(
        [symbols, raw_prices],
        selection=selection,
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(kind=kind, path=path),
            "universe": UniverseResource(spec=universe, price_source_kind=kind),
        },
        tags=range_tags(start, end),
        run_config={"ops": {"raw_prices": {"config": config}}} if config else None,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def table(db, sql="SELECT * FROM raw_prices ORDER BY symbol, date"):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).df()


def step_error(result):
    """The user exception behind the first failed step (Dagster wraps it in its own error)."""
    err = result.get_step_failure_events()[0].event_specific_data.error
    while err.cls_name.startswith("Dagster") and err.cause is not None:
        err = err.cause
    return err


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_sample_range_is_stored_once_per_symbol_session_and_rerun_is_identical(tmp_path):
    db = tmp_path / "t.duckdb"
    first = run(db, universe="AAPL,MSFT")
    assert first.success
    stored = table(db)
    sessions = [
        "2024-03-25",
        "2024-03-26",
        "2024-03-27",
        "2024-03-28",
        "2024-04-01",
        "2024-04-02",
        "2024-04-03",
        "2024-04-04",
        "2024-04-05",
    ]
    assert sorted(stored.symbol.unique()) == ["AAPL", "MSFT", "QQQ", "SPY", "^VIX"]
    assert sorted(stored.date.astype(str).unique()) == sessions  # no Good Friday, no weekend
    assert len(stored) == 5 * len(sessions)
    assert table(db, "SELECT typeof(date) t FROM raw_prices LIMIT 1").t[0] == "DATE"
    real = shared_prices(["AAPL"], RANGE[0], RANGE[1])
    pd.testing.assert_series_equal(
        stored.loc[stored.symbol == "AAPL", "close"].reset_index(drop=True),
        real["close"].reset_index(drop=True),
    )
    assert all(check_results(first).values()), check_results(first)
    again = run(db, universe="AAPL,MSFT")
    assert again.success
    pd.testing.assert_frame_equal(
        table(db).drop(columns="fetched_at"), stored.drop(columns="fetched_at")
    )


def test_symbols_metadata_lists_added_and_removed_between_materialisations(tmp_path):
    db, instance = tmp_path / "t.duckdb", dg.DagsterInstance.ephemeral()
    sel = [symbols.key]
    run(db, universe="AAPL,MSFT", instance=instance, selection=sel)
    result = run(db, universe="MSFT,NVDA", instance=instance, selection=sel)
    md = result.asset_materializations_for_node("symbols")[0].metadata
    assert md["added"].value == ["NVDA"] and md["removed"].value == ["AAPL"]
    stored = table(db, "SELECT symbol, is_benchmark FROM symbols ORDER BY symbol")
    assert stored.symbol.tolist() == ["MSFT", "NVDA", "QQQ", "SPY", "^VIX"]


def test_refetch_of_a_subset_replaces_only_those_symbols(tmp_path):
    db = tmp_path / "t.duckdb"
    assert run(db, universe="AAPL,MSFT").success
    with duckdb.connect(str(db)) as con:  # tamper, to see what a re-fetch replaces
        con.execute("UPDATE raw_prices SET close = -1")
    assert run(db, universe="AAPL,MSFT", config={"symbols": ["msft"]}).success
    stored = table(db)
    assert (stored.loc[stored.symbol == "MSFT", "close"] > 0).all()
    assert (stored.loc[stored.symbol != "MSFT", "close"] == -1).all()


def test_refetch_of_unknown_symbol_fails_clearly_and_stores_nothing(tmp_path):
    db = tmp_path / "t.duckdb"
    result = run(db, universe="AAPL", config={"symbols": ["TSLA"]})
    assert not result.success
    err = step_error(result)
    assert UnknownSymbolsError.__name__ in err.cls_name and "TSLA" in err.message


def write_prices(path, frame):
    frame = frame.copy()
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(path)


def bad_data(tmp_path):
    real = shared_prices(["AAPL", "MSFT", "SPY", "QQQ", "^VIX"], RANGE[0], RANGE[1])
    real = real[
        ~((real.symbol == "MSFT") & (real.date.astype(str) == "2024-04-03"))
    ]  # one missing session
    i = real.index[(real.symbol == "AAPL") & (real.date.astype(str) == "2024-04-02")][0]
    real.loc[i, ["open", "high", "low", "close"]] *= 6  # a bad tick that reverts the next day
    j = real.index[(real.symbol == "MSFT") & (real.date.astype(str) == "2024-03-26")][0]
    real.loc[j, "low"] = real.loc[j, "high"] * 1.01  # low above high
    # a second, different bar for one session (the last one served is kept)
    dup = real[(real.symbol == "SPY") & (real.date.astype(str) == "2024-03-27")]
    dup = dup.assign(volume=dup.volume + 1)
    write_prices(tmp_path / "p.parquet", pd.concat([real, dup]))
    return str(tmp_path / "p.parquet")


def test_bad_bars_are_quarantined_listed_as_warnings_and_the_run_goes_on(tmp_path):
    path = bad_data(tmp_path)
    result = run(
        tmp_path / "t.duckdb",
        universe="AAPL,MSFT",
        kind="files",
        path=path,
        config={"max_quarantined_share": 0.1},
    )
    assert result.success
    verdicts = check_results(result)
    assert verdicts == {
        checks.RAW_PRICES_NO_DUPLICATES: False,
        checks.RAW_PRICES_OHLC_CONSISTENT: False,
        checks.RAW_PRICES_NO_BAD_TICKS: False,
        checks.RAW_PRICES_COMPLETE: False,
        checks.RAW_PRICES_ALL_FETCHED: True,
        checks.RAW_PRICES_HISTORY_UNCHANGED: True,
        checks.RAW_PRICES_QUARANTINE_LIMITS: True,  # 2 of 45 bars, under the 10 % set here
    }
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in (
        checks.RAW_PRICES_NO_DUPLICATES,
        checks.RAW_PRICES_OHLC_CONSISTENT,
        checks.RAW_PRICES_NO_BAD_TICKS,
        checks.RAW_PRICES_COMPLETE,
    ):
        assert evals[name].severity == dg.AssetCheckSeverity.WARN
    assert "2024-04-03" in evals[checks.RAW_PRICES_COMPLETE].metadata["missing_pairs_listed"].value
    assert "AAPL" in evals[checks.RAW_PRICES_NO_BAD_TICKS].metadata["quarantined_bars_listed"].value
    stored = table(tmp_path / "t.duckdb")
    assert not stored.duplicated(["symbol", "date"]).any()  # the duplicate never reaches the table
    bad = stored[stored.quarantine.notna()]
    flagged = dict(
        zip(zip(bad.symbol, bad.date.astype(str), strict=True), bad.quarantine, strict=True)
    )
    assert flagged[("AAPL", "2024-04-02")] == "bad_tick"
    assert "low>high" in flagged[("MSFT", "2024-03-26")]
    assert len(flagged) == 2
    # stored as delivered: the x6 bar is kept, only flagged
    aapl = stored[(stored.symbol == "AAPL") & (stored.date.astype(str) == "2024-04-02")]
    assert aapl.close.item() > 5 * stored[(stored.symbol == "AAPL")].close.median()


def test_too_many_quarantined_bars_fail_the_blocking_check_before_anything_is_written(tmp_path):
    from trading_assets.assets.prices import QuarantineLimitError

    db = tmp_path / "t.duckdb"
    assert run(db, universe="AAPL,MSFT", start="2024-03-25", end="2024-03-25").success
    before = table(db)
    result = run(db, universe="AAPL,MSFT", kind="files", path=bad_data(tmp_path))
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    limit = evals[checks.RAW_PRICES_QUARANTINE_LIMITS]
    assert not limit.passed and limit.severity == dg.AssetCheckSeverity.ERROR
    assert limit.metadata["quarantined_in_window"].value == 2
    err = step_error(result)
    assert err.cls_name == QuarantineLimitError.__name__ and "nothing was written" in err.message
    pd.testing.assert_frame_equal(table(db), before)  # the blocked run wrote nothing


def test_a_quarantined_benchmark_bar_fails_the_blocking_check(tmp_path):
    real = shared_prices(["AAPL", "MSFT", "SPY", "QQQ", "^VIX"], RANGE[0], RANGE[1])
    i = real.index[(real.symbol == "SPY") & (real.date.astype(str) == "2024-03-27")][0]
    real.loc[i, "high"] = real.loc[i, "low"] * 0.5
    write_prices(tmp_path / "p.parquet", real)
    result = run(
        tmp_path / "t.duckdb", universe="AAPL,MSFT", kind="files", path=str(tmp_path / "p.parquet")
    )
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evals[checks.RAW_PRICES_QUARANTINE_LIMITS].passed
    assert "SPY" in evals[checks.RAW_PRICES_QUARANTINE_LIMITS].metadata["offending_listed"].value


def test_failed_symbol_keeps_its_stored_rows(tmp_path):
    db = tmp_path / "t.duckdb"
    assert run(db, universe="AAPL,MSFT").success
    before = table(db)
    real = shared_prices(
        ["AAPL", "SPY", "QQQ", "^VIX"], RANGE[0], RANGE[1]
    )  # MSFT now missing at the source
    write_prices(tmp_path / "p.parquet", real)
    result = run(db, universe="AAPL,MSFT", kind="files", path=str(tmp_path / "p.parquet"))
    assert result.success
    assert check_results(result)[checks.RAW_PRICES_ALL_FETCHED] is False
    after = table(db)
    pd.testing.assert_frame_equal(
        after.loc[after.symbol == "MSFT"].drop(columns="fetched_at").reset_index(drop=True),
        before.loc[before.symbol == "MSFT"].drop(columns="fetched_at").reset_index(drop=True),
    )
    assert set(after.loc[after.symbol == "AAPL", "source"]) == {"files"}


def test_nothing_fetched_is_a_named_error_and_stored_rows_survive(tmp_path):
    db = tmp_path / "t.duckdb"
    assert run(db, universe="AAPL,MSFT").success
    before = table(db)
    elsewhere = shared_prices(
        ["AAPL", "MSFT"], "2023-01-03", "2023-01-31"
    )  # valid file, no row in range
    write_prices(tmp_path / "p.parquet", elsewhere)
    result = run(db, universe="AAPL,MSFT", kind="files", path=str(tmp_path / "p.parquet"))
    assert not result.success
    assert step_error(result).cls_name == NoPricesFetchedError.__name__
    pd.testing.assert_frame_equal(table(db), before)
    # an empty file without column types is malformed, and says so
    write_prices(tmp_path / "empty.parquet", pd.DataFrame({c: [] for c in before.columns[:7]}))
    result = run(db, universe="AAPL,MSFT", kind="files", path=str(tmp_path / "empty.parquet"))
    assert step_error(result).cls_name == "PriceDataError"
    pd.testing.assert_frame_equal(table(db), before)


def test_single_partition_key_run(tmp_path):
    db = tmp_path / "t.duckdb"
    result = dg.materialize(
        [symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(kind="sample"),
            "universe": UniverseResource(spec="AAPL"),
        },
        partition_key="2024-03-28",
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert table(db).date.astype(str).unique().tolist() == ["2024-03-28"]


@pytest.mark.parametrize("weekend", ["2024-03-30", "2024-03-29"])
def test_no_partition_on_closed_days(weekend):
    assert weekend not in raw_prices.partitions_def.get_partition_keys(
        current_time=dt.datetime(2024, 4, 10)
    )


def test_yahoo_source_through_the_asset_with_a_failing_symbol(tmp_path):
    """TRADING_ASSETS_PRICE_SOURCE=yahoo end to end: real yfinance, a local Yahoo-format server."""
    from trading_assets_tests.yahoo_server import Fault, isolated_yfinance_cache, serve_yahoo

    served = shared_prices(["AAPL", "MSFT", "SPY", "QQQ", "^VIX"], "2024-03-01", "2024-04-30")
    db = tmp_path / "t.duckdb"
    with (
        isolated_yfinance_cache(str(tmp_path / "yf")),
        serve_yahoo(served, faults={"MSFT": Fault.server_error()}) as server,
    ):
        result = dg.materialize(
            [symbols, raw_prices],
            resources={
                "io_manager": DuckDBIOManager(database=str(db)),
                "price_source": PriceSourceResource(
                    kind="yahoo", yahoo_base_url=server.base_url, max_retries=1
                ),
                "universe": UniverseResource(spec="AAPL,MSFT", price_source_kind="yahoo"),
            },
            tags=range_tags(*RANGE),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    assert result.success
    verdicts = check_results(result)
    assert (
        verdicts[checks.RAW_PRICES_ALL_FETCHED] is False
        and verdicts[checks.RAW_PRICES_OHLC_CONSISTENT]
    )
    stored = table(db)
    assert sorted(stored.symbol.unique()) == ["AAPL", "QQQ", "SPY", "^VIX"]
    assert set(stored.source) == {"yahoo"}
    aapl = stored[stored.symbol == "AAPL"].reset_index(drop=True)
    real = shared_prices(["AAPL"], RANGE[0], RANGE[1]).reset_index(drop=True)
    assert len(aapl) == len(real) == 9
    pd.testing.assert_series_equal(aapl["close"], real["close"], check_exact=False, rtol=1e-9)


def test_restating_history_without_price_revisions_selected_fails_and_writes_nothing(tmp_path):
    """`--select raw_prices` alone works, except when the run would restate stored history: then the
    downstream assets could not learn about it, so it stops with a named error."""
    from trading_assets.assets.prices import RevisionsNotSelectedError

    db = tmp_path / "t.duckdb"
    real = shared_prices(["AAPL", "MSFT", "SPY", "QQQ", "^VIX"], "2024-03-01", RANGE[1])
    write_prices(tmp_path / "a.parquet", real)
    only_prices = dg.AssetSelection.assets("symbols", "raw_prices")
    files = {"kind": "files", "universe": "AAPL,MSFT"}
    assert run(
        db,
        **files,
        path=str(tmp_path / "a.parquet"),
        start="2024-03-01",
        end=RANGE[0],
        selection=only_prices,
    ).success
    before = table(db)
    split = real.copy()
    split.loc[split.symbol == "AAPL", ["open", "high", "low", "close"]] /= 4
    write_prices(tmp_path / "b.parquet", split)
    result = run(db, **files, path=str(tmp_path / "b.parquet"), selection=only_prices)
    assert not result.success
    err = step_error(result)
    assert err.cls_name == RevisionsNotSelectedError.__name__ and "AAPL (adjustment)" in err.message
    pd.testing.assert_frame_equal(table(db), before)
    # with price_revisions selected the same run restates AAPL's history
    assert run(db, **files, path=str(tmp_path / "b.parquet")).success
    aapl = table(db).query("symbol == 'AAPL'")
    real_aapl = real[real.symbol == "AAPL"].reset_index(drop=True)
    np.testing.assert_allclose(aapl.close.to_numpy(), real_aapl.close.to_numpy() / 4)


class HistoryFailsFor:
    """A price source (the PriceSource protocol) over real rows whose whole-history requests fail
    for some symbols, as a network error during the re-fetch after a split would."""

    name = "flaky"

    def __init__(self, prices, failing):
        self.prices, self.failing = prices, set(failing)

    def fetch(self, symbols, start, end):
        from trading_assets.sources.base import FetchResult

        rows = self.prices[self.prices.symbol.isin(symbols) & self.prices.date.between(start, end)]
        failed = {s: "HTTP 500" for s in symbols if s in self.failing}
        return FetchResult(rows[~rows.symbol.isin(failed)].reset_index(drop=True), failed)


def test_a_failed_history_refetch_drops_that_symbol_for_the_run_and_says_why():
    from trading_assets.assets.prices import _with_full_history

    real = shared_prices(["AAPL", "MSFT"], "2024-03-01", RANGE[1])
    fresh = real[real.date >= dt.date(2024, 3, 20)]
    merged, lost = _with_full_history(
        HistoryFailsFor(real, ["AAPL"]), fresh, ["AAPL", "MSFT"], dt.date(2024, 4, 5)
    )
    assert set(merged.symbol) == {"MSFT"}  # AAPL: nothing written rather than a mix of two scales
    assert merged.date.min() == dt.date(2024, 3, 1)  # MSFT's whole (served) history
    assert lost == {"AAPL": "history changed, but re-fetching it failed: HTTP 500"}
