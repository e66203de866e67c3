"""A real writer for the crash tests: one Dagster run that writes a large price table.

``python -m trading_assets_tests.crash_writer DB VERSION FIRST LAST`` materialises ``raw_prices``
(SYMBOLS symbols x every day FIRST..LAST, close = VERSION * 1e6 + row number) into the DuckDB
file DB through the project's DuckDBIOManager, as one single-run range backfill. It prints
``RUN <run id>``, then ``WRITING`` just before handing the frame to the IO manager and ``DONE``
after the run, so a test can SIGKILL it at a chosen moment of the write. With ``CRASH_WRITER_HOME``
set, the run is recorded in the Dagster instance of that directory (else an ephemeral one).
"""

import os
import sys
import warnings

import dagster as dg
import numpy as np
import pandas as pd

from trading_assets.storage.duckdb_io import DuckDBIOManager

SYMBOLS = 2500
DAYS = dg.DailyPartitionsDefinition(start_date="2000-01-01", end_date="2003-01-01")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def prices(version: int, first: str, last: str) -> pd.DataFrame:
    days = pd.date_range(first, last, freq="D")
    symbols = np.array([f"S{i:03d}" for i in range(SYMBOLS)])
    n = len(days) * SYMBOLS
    return pd.DataFrame(
        {
            "symbol": np.repeat(symbols, len(days)),
            "date": np.tile(days.values, SYMBOLS),
            "close": version * 1e6 + np.arange(n, dtype="float64"),
            "version": np.full(n, version, dtype="int64"),
        }
    )


@dg.asset(
    name="raw_prices",
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"unique_key": ["symbol", "date"]},
    config_schema={"version": int},
)
def raw_prices(context: dg.AssetExecutionContext) -> pd.DataFrame:
    window = context.partition_time_window
    last = (window.end - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    frame = prices(context.op_config["version"], window.start.strftime("%Y-%m-%d"), last)
    print(f"RUN {context.run_id}", flush=True)
    print("WRITING", flush=True)
    return frame


def write(
    database: str, version: int, first: str, last: str, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_prices],
        instance=instance,
        resources={"io_manager": DuckDBIOManager(database=database)},
        tags={RANGE_START: first, RANGE_END: last},
        run_config={"ops": {"raw_prices": {"config": {"version": version}}}},
        raise_on_error=False,
    )


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    db, version, first, last = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    home = os.environ.get("CRASH_WRITER_HOME")
    instance = dg.DagsterInstance.from_config(home) if home else None
    result = write(db, version, first, last, instance)
    print("DONE" if result.success else "FAILED", flush=True)
