"""Asset jobs.

``main_job`` materialises the daily graph (session partitions) over a range in one run;
``portfolio_job`` the portfolio end of it (one partition per strategy: backtests, then the journal,
metrics and reports), which the portfolio_after_daily sensor starts after each successful main run.
"""

import dagster as dg

from trading_assets.assets.backtests import STRATEGY_ASSETS, strategy_partitions
from trading_assets.assets.optimization import OPTIMIZATION_ASSETS
from trading_assets.checks import RAW_PRICES_FRESH
from trading_assets.partitions import trading_days

MAIN_JOB = "main_job"
PORTFOLIO_JOB = "portfolio_job"
INGEST_JOB = "ingest_job"
OPTIMIZATION_JOB = "optimization_job"
WEEKLY_ENVIRONMENT_JOB = "weekly_environment_job"

# deploy/dagster.yaml's QueuedRunCoordinator runs one run per value at a time: the daily tables'
# writers queue behind each other, and so do the portfolio's (S3 has no file lock to take turns on).
WRITER_TAG = "trading_assets/writer"
DAILY_WRITER = {WRITER_TAG: "daily"}
PORTFOLIO_WRITER = {WRITER_TAG: "portfolio"}
OPTIMIZATION_WRITER = {WRITER_TAG: "optimization"}

# The backtests and everything after them are partitioned by strategy, not by session.
PORTFOLIO_SELECTION = dg.AssetSelection.assets(*STRATEGY_ASSETS).downstream()
# ... by name, for the CLI's --select
PORTFOLIO_SELECTION_NAMES = (
    *STRATEGY_ASSETS,
    "trade_journal",
    "performance_metrics",
    "performance_report",
    "multiplier_effect",
    "stdev_trade_reviews",
)
# raw_prices' freshness check is the raw_prices_freshness sensor's to run: in a job it would call
# every backfill of an old range late.
FRESHNESS_CHECK = dg.AssetSelection.checks(
    dg.AssetCheckKey(dg.AssetKey("raw_prices"), RAW_PRICES_FRESH)
)
# The walk-forward search: on demand, per strategy, in neither the daily nor the portfolio job.
OPTIMIZATION_SELECTION = dg.AssetSelection.assets(*OPTIMIZATION_ASSETS)
DAILY_SELECTION = (
    dg.AssetSelection.all() - PORTFOLIO_SELECTION - OPTIMIZATION_SELECTION - FRESHNESS_CHECK
)

main_job = dg.define_asset_job(
    MAIN_JOB,
    selection=DAILY_SELECTION,
    partitions_def=trading_days,
    tags=DAILY_WRITER,
    description="The daily graph: universe, prices, analytics and threshold multipliers, for a "
    "session or a range of sessions. A successful run starts portfolio_job.",
)
portfolio_job = dg.define_asset_job(
    PORTFOLIO_JOB,
    selection=PORTFOLIO_SELECTION,
    partitions_def=strategy_partitions,
    tags=PORTFOLIO_WRITER,
    description="Backtests (a partition per strategy) over the stored history, then the trade "
    "journal, performance metrics and the HTML reports.",
)
ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets("symbols", "raw_prices", "price_revisions")
    - FRESHNESS_CHECK,
    partitions_def=trading_days,
    tags=DAILY_WRITER,
    description="Universe and raw prices only: re-fetch a range from the configured source.",
)
weekly_environment_job = dg.define_asset_job(
    WEEKLY_ENVIRONMENT_JOB,
    selection=dg.AssetSelection.assets("market_environment").upstream() - FRESHNESS_CHECK,
    partitions_def=trading_days,
    tags=DAILY_WRITER,
    description="The market environment of a session, with the prices and indicators it needs.",
)

optimization_job = dg.define_asset_job(
    OPTIMIZATION_JOB,
    selection=OPTIMIZATION_SELECTION,
    partitions_def=strategy_partitions,
    tags=OPTIMIZATION_WRITER,
    description="Walk-forward parameter search per strategy (Optuna TPE): every trial, and per "
    "fold the best parameters with in-sample vs out-of-sample Sharpe, CAGR and max drawdown.",
)

ALL_JOBS = [main_job, ingest_job, weekly_environment_job, portfolio_job, optimization_job]
