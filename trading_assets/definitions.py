"""The one Definitions object: assets, checks, jobs, schedules, sensors and resources per deployment.

TRADING_ASSETS_DEPLOYMENT picks the resource set: ``local`` (DuckDB file, default) or ``prod``.
"""

from __future__ import annotations

import dagster as dg

from trading_assets import settings
from trading_assets.assets.analysis import market_analysis
from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.backtests import backtests, threshold_multipliers
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.multiplier_effect import multiplier_effect
from trading_assets.assets.optimization import strategy_optimization
from trading_assets.assets.performance import performance_metrics, performance_report, trade_journal
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.trade_review import stdev_trade_reviews
from trading_assets.assets.universe import symbols
from trading_assets.checks import raw_prices_fresh
from trading_assets.jobs import ALL_JOBS
from trading_assets.llm.resource import LLMResource
from trading_assets.notify import NotifierResource
from trading_assets.resources import (
    FundamentalsResource,
    PriceSourceResource,
    ReportStoreResource,
    TradeJournalResource,
    UniverseResource,
)
from trading_assets.runs import dead_runs_sensor
from trading_assets.schedules import ALL_SCHEDULES
from trading_assets.sensors import (
    backfill_new_symbols,
    notify_run_failure,
    portfolio_after_daily,
    price_alerts,
    raw_prices_freshness,
)
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets.storage.s3_io import S3ParquetIOManager
from trading_assets.storage.s3_reports import S3ReportStoreResource


def _env_or(name: str, default: str | None) -> str | dg.EnvVar | None:
    """dg.EnvVar when the variable is set (the UI then shows where a value came from), else the default."""
    return dg.EnvVar(name) if settings.env(name) is not None else default


def common_resources(default_source: str) -> dict[str, object]:
    """What both deployments share: sources, the user's trades file, the notifier and the LLM."""
    source = settings.choice(settings.PRICE_SOURCE, default_source, settings.PRICE_SOURCES)
    return {
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
        "notifier": NotifierResource(
            kind=settings.choice(settings.NOTIFIER, settings.DEFAULT_NOTIFIER, settings.NOTIFIERS),
            sns_topic_arn=_env_or(settings.SNS_TOPIC_ARN, None),
            ses_sender=_env_or(settings.SES_SENDER, None),
            ses_recipients=_env_or(settings.SES_RECIPIENTS, None),
            secret_id=_env_or(settings.SECRET_ID, None),
        ),
        "llm": LLMResource.from_env(),
    }


def local_resources() -> dict[str, object]:
    """local: the DuckDB file and reports/ on this machine; the bundled sample by default."""
    return {
        **common_resources(settings.DEFAULT_PRICE_SOURCE),
        "io_manager": DuckDBIOManager(
            database=_env_or(settings.DUCKDB_PATH, settings.DEFAULT_DUCKDB_PATH)
        ),
        "report_store": ReportStoreResource(
            directory=_env_or(settings.REPORTS_DIR, settings.DEFAULT_REPORTS_DIR)
        ),
    }


def prod_resources() -> dict[str, object]:
    """prod: Parquet on S3 and the reports in the same bucket; Yahoo by default. The endpoint and
    credentials come from the standard AWS chain (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""
    if settings.env(settings.S3_BUCKET) is None:
        raise settings.ConfigurationError(
            f"{settings.DEPLOYMENT}=prod needs {settings.S3_BUCKET} (the bucket that holds the "
            f"tables and reports); {settings.S3_PREFIX} is optional"
        )
    bucket = dg.EnvVar(settings.S3_BUCKET)
    prefix = _env_or(settings.S3_PREFIX, "")
    return {
        **common_resources(settings.DEFAULT_PROD_PRICE_SOURCE),
        "io_manager": S3ParquetIOManager(bucket=bucket, prefix=prefix),
        "report_store": S3ReportStoreResource(bucket=bucket, prefix=prefix),
    }


def resources_for(deployment: str) -> dict[str, object]:
    return local_resources() if deployment == "local" else prod_resources()


DEPLOYMENT = settings.choice(settings.DEPLOYMENT, settings.DEFAULT_DEPLOYMENT, settings.DEPLOYMENTS)

defs = dg.Definitions(
    assets=[
        symbols,
        raw_prices,
        fundamentals,
        indicators,
        market_environment,
        watchlist,
        market_analysis,
        threshold_multipliers,
        backtests,
        strategy_optimization,
        trade_journal,
        performance_metrics,
        performance_report,
        multiplier_effect,
        stdev_trade_reviews,
    ],
    jobs=ALL_JOBS,
    schedules=ALL_SCHEDULES,
    asset_checks=[raw_prices_fresh],
    sensors=[
        dead_runs_sensor,
        portfolio_after_daily,
        price_alerts,
        backfill_new_symbols,
        notify_run_failure,
        raw_prices_freshness,
    ],
    resources=resources_for(DEPLOYMENT),
)
