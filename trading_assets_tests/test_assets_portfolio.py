"""The portfolio end of the graph, materialised on the bundled sample: threshold_multipliers,
backtests (a partition per strategy), trade_journal, performance_metrics, performance_report,
the job that runs them, the sensor that starts it and `trading-assets main` end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.backtests import backtests, threshold_multipliers
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.performance import (
    BENCHMARK_ROW,
    USER,
    performance_metrics,
    performance_report,
    trade_journal,
)
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.core.backtest import run_backtest
from trading_assets.core.backtest.multipliers import MultiplierError
from trading_assets.core.backtest.result import STRATEGIES, TRADE_COLUMNS
from trading_assets.core.metrics import performance_summary, returns_from_equity
from trading_assets.jobs import MAIN_JOB, PORTFOLIO_JOB
from trading_assets.resources import (
    FundamentalsResource,
    PriceSourceResource,
    ReportStoreResource,
    TradeJournalResource,
    UniverseResource,
)
from trading_assets.sensors import every_strategy_tags, portfolio_after_daily
from trading_assets.storage.duckdb_io import DuckDBIOManager

UNIVERSE = "AAPL,MSFT,NVDA,XOM,JPM,LLY,PG,CAT,NEE,AMZN,KO,HD,BRK-B"  # BRK-B: in the example trades
START, END = "2021-01-04", "2024-12-31"  # a year of warm-up, then three of trading
DAILY = [
    symbols,
    raw_prices,
    fundamentals,
    indicators,
    market_environment,
    watchlist,
    threshold_multipliers,
]
PORTFOLIO = [backtests, trade_journal, performance_metrics, performance_report]
EXAMPLE_TRADES = Path(__file__).parents[1] / "trading_assets/sources/data/example_trades.csv"


def resources(db: Path, reports: Path, trades: Path | None = None) -> dict[str, object]:
    return {
        "io_manager": DuckDBIOManager(database=str(db)),
        "price_source": PriceSourceResource(kind="sample"),
        "universe": UniverseResource(spec=UNIVERSE, price_source_kind="sample"),
        "fundamentals_source": FundamentalsResource(),
        "trade_file": TradeJournalResource(path=str(trades) if trades else None),
        "report_store": ReportStoreResource(directory=str(reports)),
    }


def run_daily(db: Path, reports: Path, start: str = START, end: str = END, **kw):
    return dg.materialize(
        DAILY,
        resources=resources(db, reports),
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kw,
    )


def run_portfolio(db: Path, reports: Path, trades: Path | None = None, tags=None, selection=None):
    return dg.materialize(
        [*DAILY, *PORTFOLIO],
        selection=selection or PORTFOLIO,
        resources=resources(db, reports, trades),
        tags=tags or every_strategy_tags(),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def query(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).df()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The daily graph over START..END, then every strategy in one portfolio run."""
    root = tmp_path_factory.mktemp("portfolio")
    db, reports = root / "portfolio.duckdb", root / "reports"
    assert run_daily(db, reports).success
    result = run_portfolio(db, reports, trades=EXAMPLE_TRADES)
    assert result.success
    return db, reports, result


def bars_from(db: Path) -> pd.DataFrame:
    return query(
        db,
        "SELECT p.symbol, p.date, p.open, p.high, p.low, p.close, p.volume, i.* EXCLUDE (symbol, date) "
        "FROM raw_prices p JOIN indicators i USING (symbol, date) "
        "WHERE p.quarantine IS NULL AND p.symbol NOT IN ('SPY', 'QQQ', '^VIX') ORDER BY symbol, date",
    ).assign(date=lambda f: f["date"].dt.date)


def test_backtests_store_what_the_engine_computes_on_the_stored_bars(stored):
    db, _, _ = stored
    trades = query(db, "SELECT * FROM backtest_trades ORDER BY strategy, trade_id")
    equity = query(db, "SELECT * FROM backtest_equity ORDER BY strategy, date")
    assert sorted(set(equity["strategy"])) == sorted(STRATEGIES)
    bars = bars_from(db)
    sessions = sorted(set(bars["date"]))
    env = query(db, "SELECT * FROM market_environment").assign(date=lambda f: f["date"].dt.date)
    wl = query(db, "SELECT * FROM watchlist").assign(date=lambda f: f["date"].dt.date)
    for strategy in ("ma_crossover", "stdev", "watchlist_momentum"):
        expected = run_backtest(bars, strategy, market_environment=env, watchlist=wl)
        mine = equity[equity["strategy"] == strategy]
        assert [d.date() for d in mine["date"]] == sessions
        np.testing.assert_allclose(
            mine["equity"].to_numpy(), expected.equity.to_numpy(), rtol=1e-12
        )
        got = trades[trades["strategy"] == strategy]
        assert len(got) == len(expected.trades) > 0, strategy
        np.testing.assert_allclose(
            got["pnl"].to_numpy(), expected.trades["pnl"].to_numpy(), rtol=1e-12
        )
    assert list(trades.columns) == ["strategy", "trade_id", *TRADE_COLUMNS[1:]]
    assert set(trades.loc[trades["strategy"] == "stdev", "side"]) <= {"long", "short"}


def test_rerunning_one_strategy_replaces_only_its_partition(stored, tmp_path):
    db, reports, _ = stored
    before = query(
        db, "SELECT strategy, count(*) AS n FROM backtest_trades GROUP BY ALL ORDER BY 1"
    )
    result = dg.materialize(
        [*DAILY, *PORTFOLIO],
        selection=[backtests],
        resources=resources(db, reports),
        partition_key="rsi_mean_reversion",
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"backtests": {"config": {"commission_bps": 50.0}}}},
    )
    assert result.success
    after = query(db, "SELECT strategy, count(*) AS n FROM backtest_trades GROUP BY ALL ORDER BY 1")
    assert before.equals(after)  # same trades (higher fees only), no partition lost or doubled
    fees = query(db, "SELECT strategy, sum(fees) AS f FROM backtest_trades GROUP BY ALL").set_index(
        "strategy"
    )["f"]
    trades = query(
        db,
        "SELECT strategy, sum(shares * (entry_price + coalesce(exit_price, 0))) AS notional FROM backtest_trades GROUP BY ALL",
    ).set_index("strategy")["notional"]
    # 50 bps instead of 1 bp of the traded notional
    assert fees["rsi_mean_reversion"] == pytest.approx(
        50e-4 * trades["rsi_mean_reversion"], rel=0.05
    )
    # put it back for the other tests
    assert dg.materialize(
        [*DAILY, *PORTFOLIO],
        selection=[backtests],
        resources=resources(db, reports),
        partition_key="rsi_mean_reversion",
        instance=dg.DagsterInstance.ephemeral(),
    ).success


def test_trade_journal_is_the_backtests_plus_the_users_round_trips(stored):
    db, _, _ = stored
    journal = query(db, "SELECT * FROM trade_journal ORDER BY strategy, trade_id")
    backtest = query(db, "SELECT * FROM backtest_trades ORDER BY strategy, trade_id")
    assert len(journal) == len(backtest) + int((journal["strategy"] == USER).sum())
    user = journal[journal["strategy"] == USER]
    fills = pd.read_csv(EXAMPLE_TRADES)
    # FIFO conserves shares and fees: bought = sold + still open, fees add up to the file's
    bought = fills.loc[fills["side"].str.lower() == "buy", "quantity"].sum()
    assert user["shares"].sum() == pytest.approx(bought)
    assert user["fees"].sum() == pytest.approx(fills["fees"].fillna(0).sum())
    assert user["exit_date"].isna().any()  # the example leaves lots open, marked at the last close
    assert user.loc[user["exit_date"].isna(), "pnl"].notna().all()


def test_a_bad_trades_file_is_refused_whole_and_the_stored_journal_stays(stored, tmp_path):
    db, reports, _ = stored
    before = query(db, "SELECT * FROM trade_journal ORDER BY strategy, trade_id")
    bad = tmp_path / "trades.csv"
    bad.write_text(
        "date,symbol,side,quantity,price,fees\n"
        "2024-03-04,AAPL,buy,10,170.0,1\n"
        "2024-03-09,AAPL,sell,5,171.0,1\n"  # a Saturday
        "2024-03-11,ZZZZ,buy,1,10.0,0\n"  # not in the universe
        "2024-03-12,AAPL,sell,50,172.0,1\n"  # beyond the open position
    )
    result = run_portfolio(db, reports, trades=bad, selection=[trade_journal])
    assert not result.success
    error = result.failure_data_for_node("trade_journal").error
    text = str(error.cause or error)
    for line in ("line 3", "line 4", "line 5"):
        assert line in text, text
    after = query(db, "SELECT * FROM trade_journal ORDER BY strategy, trade_id")
    pd.testing.assert_frame_equal(before, after)


def test_performance_metrics_has_a_row_per_strategy_the_journal_and_spy(stored):
    db, _, _ = stored
    metrics = query(db, "SELECT * FROM performance_metrics").set_index("strategy")
    assert set(metrics.index) == {*STRATEGIES, USER, BENCHMARK_ROW}
    equity = query(db, "SELECT * FROM backtest_equity WHERE strategy = 'stdev' ORDER BY date")
    expected = performance_summary(returns_from_equity(equity.set_index("date")["equity"]))
    for key, value in expected.items():
        assert metrics.loc["stdev", key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    spy = query(db, "SELECT date, close FROM raw_prices WHERE symbol = 'SPY' ORDER BY date")
    spy = spy[(spy["date"] >= equity["date"].min()) & (spy["date"] <= equity["date"].max())]
    bh = metrics.loc[BENCHMARK_ROW]
    assert bh["total_return"] == pytest.approx(
        spy["close"].iloc[-1] / spy["close"].iloc[0] - 1, rel=1e-12
    )
    assert bh["exposure_pct"] == 100.0 and bh["trade_count"] == 0
    assert metrics.loc["stdev", "trade_count"] > 0
    assert 0 < metrics.loc["watchlist_momentum", "exposure_pct"] <= 100


def test_performance_report_writes_a_self_contained_file_per_strategy(stored):
    _, reports, result = stored
    written = sorted(p.name for p in reports.glob("*.html"))
    assert written == sorted(f"{name}.html" for name in (*STRATEGIES, USER))
    html = (reports / "stdev.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org", "")
    meta = result.asset_materializations_for_node("performance_report")[0].metadata
    assert meta["path_stdev"].value == str(reports / "stdev.html")
    assert meta["equity_stdev"].value.startswith("![equity stdev](data:image/png;base64,")
    assert "drawdown_watchlist_momentum" in meta


def test_threshold_multipliers_default_config_and_file(tmp_path, monkeypatch):
    db, reports = tmp_path / "m.duckdb", tmp_path / "reports"
    day = dict(start="2024-03-04", end="2024-03-08", selection=[threshold_multipliers])
    assert run_daily(db, reports, **day).success
    stored = query(db, "SELECT * FROM threshold_multipliers ORDER BY date")
    assert (
        len(stored) == 5
        and (stored[["mr_arm", "mr_trigger", "tc_arm", "tc_trigger"]] == 1.0).all().all()
    )
    assert set(stored["source"]) == {"default"}

    path = tmp_path / "multipliers.csv"
    path.write_text(
        "date,mr_arm,mr_trigger,tc_arm,tc_trigger,confidence,reasoning,source\n"
        "2024-03-05,1.5,1.0,0.8,1.0,0.7,high volatility week,analyst\n"
        "2024-03-20,2.0,2.0,2.0,2.0,1.0,outside the run,analyst\n"
    )
    monkeypatch.setenv("TRADING_ASSETS_MULTIPLIERS_PATH", str(path))
    assert run_daily(db, reports, **day).success
    stored = query(db, "SELECT * FROM threshold_multipliers ORDER BY date").set_index("date")
    row = stored.loc[pd.Timestamp("2024-03-05")]
    assert (row["mr_arm"], row["tc_arm"], row["source"]) == (1.5, 0.8, "file:multipliers.csv")
    assert set(stored.drop(index=pd.Timestamp("2024-03-05"))["source"]) == {"default"}
    assert len(stored) == 5

    path.write_text(
        "date,mr_arm,mr_trigger,tc_arm,tc_trigger,confidence,reasoning,source\n"
        "2024-03-06,2.5,1.0,1.0,1.0,0.5,too far,analyst\n"
    )
    result = run_daily(db, reports, **day)
    assert not result.success
    error = result.failure_data_for_node("threshold_multipliers").error
    assert error.cls_name == MultiplierError.__name__ or MultiplierError.__name__ in str(error)
    assert "line 2" in str(error)
    assert query(db, "SELECT count(*) AS n FROM threshold_multipliers")["n"][0] == 5


def test_the_sensor_starts_every_strategy_after_a_successful_daily_run():
    instance = dg.DagsterInstance.ephemeral()
    from trading_assets.definitions import defs

    run = instance.create_run_for_job(
        defs.resolve_job_def(MAIN_JOB), run_id="a" * 8 + "-0000-0000-0000-000000000000"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="portfolio_after_daily",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=MAIN_JOB),
        repository_def=defs.get_repository_def(),
    )
    request = portfolio_after_daily(context)
    assert request.tags == {
        "dagster/asset_partition_range_start": STRATEGIES[0],
        "dagster/asset_partition_range_end": STRATEGIES[-1],
    }
    assert request.run_key == f"portfolio-after-{run.run_id}"
    assert defs.resolve_job_def(PORTFOLIO_JOB).partitions_def.get_partition_keys() == list(
        STRATEGIES
    )


@pytest.mark.slow
def test_trading_assets_main_runs_the_daily_graph_then_the_portfolio(tmp_path):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "TRADING_ASSETS_DUCKDB_PATH": str(tmp_path / "t.duckdb"),
        "TRADING_ASSETS_REPORTS_DIR": str(tmp_path / "reports"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trading_assets.cli",
            "main",
            "--start",
            "2023-01-03",
            "--end",
            "2024-06-28",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "portfolio_job: strategies ma_crossover..watchlist_momentum" in done.stdout
    assert "succeeded" in done.stdout and "Reports:" in done.stdout
    # Only each job's own checks: raw_prices' freshness belongs to its sensor (this old range
    # would warn stale), and the walk-forward search runs only when named.
    assert "fresh_for_last_closed_session" not in done.stdout
    assert len(list((tmp_path / "reports").glob("*.html"))) == len(STRATEGIES)
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        tables = {
            row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    assert {"market_analysis", "multiplier_effect", "backtest_trades"} <= tables
    assert not tables & {"optimization_trials", "strategy_optimization"}
    runs = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    assert len(runs.get_runs()) == 2

    # trading-assets backtest: one strategy again, with other constants, over the stored tables
    def trades(strategy):
        with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
            return con.execute(
                "SELECT * FROM backtest_trades WHERE strategy = ? ORDER BY trade_id", [strategy]
            ).df()

    stdev, momentum = trades("stdev"), trades("watchlist_momentum")
    # trading-assets sql reads the same file
    counted = subprocess.run(
        [sys.executable, "-m", "trading_assets.cli", "sql", "select count(*) as n from backtest_trades where strategy = 'stdev'", "--csv"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert counted.returncode == 0 and counted.stdout.split() == ["n", str(len(stdev))], counted
    bad_sql = subprocess.run(
        [sys.executable, "-m", "trading_assets.cli", "sql", "select * from nowhere"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert bad_sql.returncode == 1 and "nowhere" in bad_sql.stderr
    cli = [sys.executable, "-m", "trading_assets.cli", "backtest"]
    again = subprocess.run(
        [*cli, "stdev", "--params", '{"mr_arm_z": 2.5, "tc_arm_z": 2.5}'],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "strategies stdev..stdev" in again.stdout
    assert len(trades("stdev")) < len(stdev)  # stricter arming: fewer trades
    pd.testing.assert_frame_equal(trades("watchlist_momentum"), momentum)  # other partitions kept
    for bad, message in (
        (["nonsense"], "unknown strategy 'nonsense'"),
        (["stdev", "--params", "{oops"], "--params is not JSON"),
        (["all", "--params", '{"mr_arm_z": 2}'], "--params needs one strategy"),
    ):
        refused = subprocess.run(
            [*cli, *bad], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    unknown = subprocess.run(
        [*cli, "stdev", "--params", '{"mr_arm": 2}'],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 1 and "mr_arm" in unknown.stdout
