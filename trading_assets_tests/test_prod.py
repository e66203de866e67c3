"""The prod deployment end to end against moto's S3 server: `trading-assets main` with
TRADING_ASSETS_DEPLOYMENT=prod stores the whole graph as Parquet in the bucket; pandas/pyarrow and
`trading-assets sql` read it back; a re-materialised session replaces only itself; the reports
land in the bucket. (Failed writes: test_s3_io.py, through a proxy that breaks PUTs for real.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trading_assets_tests.test_definitions import load_defs

UNIVERSE = "AAPL,MSFT,NVDA,JPM,XOM,LLY"
START, END = "2024-01-02", "2024-03-28"
BUCKET, PREFIX = "trading-prod-test", "warehouse"


def test_prod_needs_a_bucket_and_defaults_to_yahoo(monkeypatch, aws_env):
    from trading_assets import settings

    with pytest.raises(settings.ConfigurationError, match="TRADING_ASSETS_S3_BUCKET"):
        load_defs(monkeypatch, TRADING_ASSETS_DEPLOYMENT="prod")
    defs = load_defs(monkeypatch, TRADING_ASSETS_DEPLOYMENT="prod", TRADING_ASSETS_S3_BUCKET=BUCKET)
    resources = defs.resources
    assert type(resources["io_manager"]).__name__ == "S3ParquetIOManager"
    assert type(resources["report_store"]).__name__ == "S3ReportStoreResource"
    assert resources["price_source"].kind == "yahoo"


def cli(env, *args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "trading_assets.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def read_table(s3, table: str) -> pd.DataFrame:
    """A table as pandas, read the way any Parquet reader would: the manifest, then its objects."""
    root = f"{PREFIX}/{table}/"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=root + "_manifest.json")["Body"].read())
    frames = [
        pq.read_table(
            io.BytesIO(s3.get_object(Bucket=BUCKET, Key=root + o["path"])["Body"].read())
        ).to_pandas()
        for o in manifest["objects"]
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_the_whole_graph_runs_in_prod_into_the_bucket(aws_env, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "TRADING_ASSETS_DEPLOYMENT": "prod",
        "TRADING_ASSETS_S3_BUCKET": BUCKET,
        "TRADING_ASSETS_S3_PREFIX": PREFIX,
        "TRADING_ASSETS_PRICE_SOURCE": "sample",  # offline; prod's default is yahoo
        "TRADING_ASSETS_UNIVERSE": UNIVERSE,
    }
    done = cli(env, "main", "--start", START, "--end", END)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (tmp_path / "data").exists() and "Reports: " in done.stdout

    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", ())}  # fmt: skip
    tables = {k.split("/")[1] for k in keys if k.endswith("_manifest.json")}
    assert {"symbols", "raw_prices", "indicators", "market_environment", "watchlist",
            "threshold_multipliers", "backtest_trades", "backtest_equity", "trade_journal",
            "performance_metrics"} <= tables  # fmt: skip
    assert f"{PREFIX}/raw_prices/date=2024-01-02/" in {k.rsplit("/", 1)[0] + "/" for k in keys}
    assert any(k.startswith(f"{PREFIX}/backtest_equity/strategy=stdev/") for k in keys)
    assert {f"{PREFIX}/reports/{s}.html" for s in ("stdev", "ma_crossover")} <= keys

    prices = read_table(s3, "raw_prices")
    sessions = (
        pd.bdate_range(START, END).size - 2
    )  # MLK day and Presidents' Day; Good Friday is 03-29
    assert len(prices) == (len(UNIVERSE.split(",")) + 3) * sessions
    assert not prices.duplicated(["symbol", "date"]).any()
    metrics = read_table(s3, "performance_metrics")
    assert "SPY buy-and-hold" in set(metrics["strategy"])

    query = "select symbol, count(*) as n, max(date) as last from indicators where symbol = 'AAPL' group by 1"
    answer = cli(env, "sql", query, "--csv")
    assert answer.returncode == 0, answer.stderr
    row = pd.read_csv(io.StringIO(answer.stdout)).iloc[0]
    assert (row["symbol"], row["n"], row["last"]) == ("AAPL", sessions, END)

    # one session again: replaced in place, nothing else touched, no key twice
    before = read_table(s3, "raw_prices")
    again = cli(
        env,
        "main",
        "--start",
        "2024-02-15",
        "--end",
        "2024-02-15",
        "--select",
        "symbols,raw_prices,price_revisions",
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = read_table(s3, "raw_prices")
    assert len(after) == len(before) and not after.duplicated(["symbol", "date"]).any()
    changed = after.set_index(["symbol", "date"])["fetched_at"] != before.set_index(
        ["symbol", "date"]
    )["fetched_at"].reindex(after.set_index(["symbol", "date"]).index)
    assert {d.isoformat() for d in changed[changed].index.get_level_values("date")} == {
        "2024-02-15"
    }
