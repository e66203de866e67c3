"""The one Definitions object: assets, checks, jobs, schedules, sensors and resources per deployment.

TRADING_ASSETS_DEPLOYMENT picks the resource set: ``local`` (DuckDB file, default) or ``prod``.
"""

from __future__ import annotations

import dagster as dg

from trading_assets import settings
from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.backtests import backtests, threshold_multipliers
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.performance import performance_metrics, performance_report, trade_journal
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.jobs import ALL_JOBS
from trading_assets.resources import (
    FundamentalsResource,
    PriceSourceResource,
    ReportStoreResource,
    TradeJournalResource,
    UniverseResource,
)
from trading_assets.runs import dead_runs_sensor
from trading_assets.schedules import ALL_SCHEDULES
from trading_assets.sensors import portfolio_after_daily
from trading_assets.storage.duckdb_io import DuckDBIOManager


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    """dg.EnvVar when the variable is set (the UI then shows where a value came from), else the default."""
    return dg.EnvVar(name) if settings.env(name) is not None else default


def local_resources() -> dict[str, object]:
    source = settings.choice(
        settings.PRICE_SOURCE, settings.DEFAULT_PRICE_SOURCE, settings.PRICE_SOURCES
    )
    return {
        "io_manager": DuckDBIOManager(
            database=_env_or(settings.DUCKDB_PATH, settings.DEFAULT_DUCKDB_PATH)
        ),
        "price_source": PriceSourceResource(
            kind=source,
            path=_env_or(settings.PRICES_PATH, None),
            yahoo_base_url=_env_or(settings.YAHOO_BASE_URL, None),
        ),
        "universe": UniverseResource(
            spec=_env_or(settings.UNIVERSE, None), price_source_kind=source
        ),
        "fundamentals_source": FundamentalsResource(
            path=_env_or(settings.FUNDAMENTALS_PATH, None),
            price_source_kind=source,
            yahoo_base_url=_env_or(settings.YAHOO_BASE_URL, None),
        ),
        "trade_file": TradeJournalResource(path=_env_or(settings.TRADES_PATH, None)),
        "report_store": ReportStoreResource(
            directory=_env_or(settings.REPORTS_DIR, settings.DEFAULT_REPORTS_DIR)
        ),
    }


def resources_for(deployment: str) -> dict[str, object]:
    if deployment == "local":
        return local_resources()
    raise settings.ConfigurationError(
        f"{settings.DEPLOYMENT}={deployment!r}: the prod deployment (Parquet on S3) is not built yet; use 'local'"
    )


DEPLOYMENT = settings.choice(settings.DEPLOYMENT, settings.DEFAULT_DEPLOYMENT, settings.DEPLOYMENTS)

defs = dg.Definitions(
    assets=[
        symbols,
        raw_prices,
        fundamentals,
        indicators,
        market_environment,
        watchlist,
        threshold_multipliers,
        backtests,
        trade_journal,
        performance_metrics,
        performance_report,
    ],
    jobs=ALL_JOBS,
    schedules=ALL_SCHEDULES,
    sensors=[dead_runs_sensor, portfolio_after_daily],
    resources=resources_for(DEPLOYMENT),
)
