"""Asset jobs. ``main_job`` materialises the whole graph over a partition range in one run."""

import dagster as dg

from trading_assets.partitions import trading_days

MAIN_JOB = "main_job"
INGEST_JOB = "ingest_job"
WEEKLY_ENVIRONMENT_JOB = "weekly_environment_job"

main_job = dg.define_asset_job(
    MAIN_JOB,
    selection=dg.AssetSelection.all(),
    partitions_def=trading_days,
    description="Everything: universe, prices and all analytics, for a session or a range of sessions.",
)
ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets("symbols", "raw_prices", "price_revisions"),
    partitions_def=trading_days,
    description="Universe and raw prices only: re-fetch a range from the configured source.",
)
weekly_environment_job = dg.define_asset_job(
    WEEKLY_ENVIRONMENT_JOB,
    selection=dg.AssetSelection.assets("market_environment").upstream(),
    partitions_def=trading_days,
    description="The market environment of a session, with the prices and indicators it needs.",
)

ALL_JOBS = [main_job, ingest_job, weekly_environment_job]
