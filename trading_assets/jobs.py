"""Asset jobs. ``main_job`` materialises the whole graph over a partition range in one run."""

from __future__ import annotations

import dagster as dg

from trading_assets.partitions import trading_days

MAIN_JOB = "main_job"
INGEST_JOB = "ingest_job"

main_job = dg.define_asset_job(
    MAIN_JOB,
    selection=dg.AssetSelection.all(),
    partitions_def=trading_days,
    description="Everything: universe, prices and all analytics, for a session or a range of sessions.",
)
ingest_job = dg.define_asset_job(
    INGEST_JOB,
    selection=dg.AssetSelection.assets("symbols", "raw_prices"),
    partitions_def=trading_days,
    description="Universe and raw prices only: re-fetch a range from the configured source.",
)

ALL_JOBS = [main_job, ingest_job]
