"""Definitions load: every asset, check, job, schedule and sensor resolves, per configuration."""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import pytest

from trading_assets import settings


def load_defs(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for mod in [
        m for m in sys.modules if m.startswith("trading_assets.") and m != "trading_assets.settings"
    ]:
        # monkeypatch puts the original modules back afterwards: later tests keep the classes they
        # imported (an error class imported before a reload is not the one a reloaded module raises)
        monkeypatch.delitem(sys.modules, mod)
    return importlib.import_module("trading_assets.definitions").defs


def test_definitions_resolve(monkeypatch, tmp_path):
    defs = load_defs(monkeypatch, TRADING_ASSETS_DUCKDB_PATH=str(tmp_path / "x.duckdb"))
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"symbols", "raw_prices"} <= keys
    for job in repo.get_all_jobs():
        assert job.name
    check_keys = {c.name for c in repo.asset_graph.asset_check_keys}
    assert {
        "no_duplicate_symbol_date",
        "ohlc_consistent",
        "no_bad_ticks",
        "complete_for_universe_and_calendar",
        "all_symbols_fetched",
    } <= check_keys
    dg.Definitions.validate_loadable(defs)
    for name in ("main_job", "ingest_job"):
        assert defs.resolve_job_def(name).partitions_def is not None


def test_env_vars_select_source_and_universe(monkeypatch, tmp_path):
    defs = load_defs(
        monkeypatch,
        TRADING_ASSETS_PRICE_SOURCE="files",
        TRADING_ASSETS_PRICES_PATH=str(tmp_path),
        TRADING_ASSETS_UNIVERSE="AAPL,MSFT",
        TRADING_ASSETS_CALENDAR="XASX",
        TRADING_ASSETS_START_DATE="2024-01-02",
    )
    resources = defs.resources
    assert resources["price_source"].kind == "files"
    # set variables stay dg.EnvVar, so the UI shows where the value came from
    assert resources["price_source"].path == dg.EnvVar("TRADING_ASSETS_PRICES_PATH")
    assert resources["universe"].spec == dg.EnvVar("TRADING_ASSETS_UNIVERSE")
    keys = defs.get_assets_def("raw_prices").partitions_def.get_partition_keys()
    assert keys[0] == "2024-01-02" and "2024-01-26" not in keys  # ASX: Australia Day closed


@pytest.mark.parametrize(
    "var,value",
    [
        ("TRADING_ASSETS_PRICE_SOURCE", "bloomberg"),
        ("TRADING_ASSETS_DEPLOYMENT", "staging"),
        ("TRADING_ASSETS_DEPLOYMENT", "prod"),
    ],
)
def test_bad_configuration_is_a_named_error(monkeypatch, var, value):
    with pytest.raises(settings.ConfigurationError, match=var):
        load_defs(monkeypatch, **{var: value})


def test_the_daily_and_portfolio_jobs_split_the_graph(monkeypatch, tmp_path):
    defs = load_defs(monkeypatch, TRADING_ASSETS_DUCKDB_PATH=str(tmp_path / "x.duckdb"))
    from trading_assets.jobs import (
        DAILY_SELECTION,
        OPTIMIZATION_SELECTION,
        PORTFOLIO_SELECTION,
        PORTFOLIO_SELECTION_NAMES,
    )

    graph = defs.get_repository_def().asset_graph
    portfolio = {k.to_user_string() for k in PORTFOLIO_SELECTION.resolve(graph)}
    daily = {k.to_user_string() for k in DAILY_SELECTION.resolve(graph)}
    assert portfolio == set(PORTFOLIO_SELECTION_NAMES)  # the CLI's names match the selection
    assert portfolio == {"backtest_trades", "backtest_equity", "trade_journal",
                         "performance_metrics", "performance_report", "multiplier_effect",
                         "stdev_trade_reviews"}  # fmt: skip
    optimization = {k.to_user_string() for k in OPTIMIZATION_SELECTION.resolve(graph)}
    assert optimization == {"optimization_trials", "strategy_optimization"}
    assert {"threshold_multipliers", "market_analysis", "watchlist", "raw_prices"} <= daily
    assert not daily & portfolio and not (daily | portfolio) & optimization
    assert daily | portfolio | optimization == {
        k.to_user_string() for k in graph.get_all_asset_keys()
    }
    assert defs.resolve_job_def("portfolio_job").partitions_def.get_partition_keys() == [
        "ma_crossover", "rsi_mean_reversion", "stdev", "watchlist_momentum",
    ]  # fmt: skip
    assert {s.name for s in defs.sensors} == {
        "dead_runs", "portfolio_after_daily", "price_alerts", "backfill_new_symbols",
        "notify_run_failure", "raw_prices_freshness",
    }  # fmt: skip


def test_every_writing_job_carries_the_writer_tag_the_prod_queue_limits(monkeypatch, tmp_path):
    import yaml

    defs = load_defs(monkeypatch, TRADING_ASSETS_DUCKDB_PATH=str(tmp_path / "x.duckdb"))
    tags = {name: defs.resolve_job_def(name).tags.get("trading_assets/writer")
            for name in ("main_job", "ingest_job", "weekly_environment_job", "portfolio_job",
                         "optimization_job")}  # fmt: skip
    assert tags == {"main_job": "daily", "ingest_job": "daily",
                    "weekly_environment_job": "daily", "portfolio_job": "portfolio",
                    "optimization_job": "optimization"}  # fmt: skip
    from trading_assets_tests.conftest import PROJECT_ROOT

    prod = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())
    limits = prod["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {
        "key": "trading_assets/writer",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits
