"""Sensors: the portfolio recomputed after every successful daily run.

(The dead-runs sensor lives with the rest of the dead-run logic in trading_assets.runs.)
"""

import dagster as dg

from trading_assets.assets.backtests import strategy_partitions
from trading_assets.jobs import main_job, portfolio_job

PORTFOLIO_AFTER_DAILY = "portfolio_after_daily"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags of one run over the partitions first..last (a single-run backfill of the range)."""
    return {RANGE_START: first, RANGE_END: last}


def every_strategy_tags() -> dict[str, str]:
    keys = strategy_partitions.get_partition_keys()
    return range_tags(keys[0], keys[-1])


@dg.run_status_sensor(
    name=PORTFOLIO_AFTER_DAILY,
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[main_job],
    request_job=portfolio_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful main_job run: backtest every strategy over the stored "
    "history and refresh the journal, metrics and reports, in one run.",
)
def portfolio_after_daily(context: dg.RunStatusSensorContext):
    run_id = context.dagster_run.run_id
    return dg.RunRequest(run_key=f"portfolio-after-{run_id}", tags=every_strategy_tags())
