"""The read API over the prod store: the graph materialised into moto's S3 (Parquet and manifests,
the reports beside them), read through S3Store and the S3 report store; the answers compared with
the objects fetched with a plain boto3 client and read by pyarrow."""

from __future__ import annotations

import io
import json

import boto3
import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from trading_assets.api.app import app_from_settings, create_app
from trading_assets.api.store import S3Store
from trading_assets.resources import (
    FundamentalsResource,
    PriceSourceResource,
    TradeJournalResource,
    UniverseResource,
)
from trading_assets.sensors import every_strategy_tags
from trading_assets.storage.s3_io import S3ParquetIOManager
from trading_assets.storage.s3_reports import S3ReportStoreResource
from trading_assets_tests.test_assets_portfolio import DAILY, PORTFOLIO, UNIVERSE

BUCKET, PREFIX = "api-prod-test", "warehouse"
START, END = "2024-10-01", "2025-03-31"


def prod_resources() -> dict[str, object]:
    return {
        "io_manager": S3ParquetIOManager(bucket=BUCKET, prefix=PREFIX),
        "price_source": PriceSourceResource(kind="sample"),
        "universe": UniverseResource(spec=UNIVERSE, price_source_kind="sample"),
        "fundamentals_source": FundamentalsResource(),
        "trade_file": TradeJournalResource(path=None),
        "report_store": S3ReportStoreResource(bucket=BUCKET, prefix=PREFIX),
    }


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    """The daily graph and every strategy stored in the bucket (module-wide: the AWS variables
    are set by hand here, aws_env is per test)."""
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        daily = dg.materialize(
            DAILY,
            resources=prod_resources(),
            tags={
                "dagster/asset_partition_range_start": START,
                "dagster/asset_partition_range_end": END,
            },
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert daily.success
        portfolio = dg.materialize(
            [*DAILY, *PORTFOLIO],
            selection=PORTFOLIO,
            resources=prod_resources(),
            tags=every_strategy_tags(),
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert portfolio.success
    return BUCKET


def read_table(table: str) -> pd.DataFrame:
    """The table as any Parquet reader gets it: the manifest, then the objects it lists."""
    s3 = boto3.client("s3")
    root = f"{PREFIX}/{table}/"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=root + "_manifest.json")["Body"].read())
    return pd.concat(
        [
            pq.read_table(
                io.BytesIO(s3.get_object(Bucket=BUCKET, Key=root + o["path"])["Body"].read())
            ).to_pandas()
            for o in manifest["objects"]
        ],
        ignore_index=True,
    )


@pytest.fixture
def api(bucket, aws_env) -> TestClient:
    return TestClient(
        create_app(S3Store(BUCKET, PREFIX), S3ReportStoreResource(bucket=BUCKET, prefix=PREFIX))
    )


def test_health_over_the_bucket(api):
    body = api.get("/health").json()
    assert body["storage"] == {
        "kind": "s3",
        "location": f"s3://{BUCKET}/{PREFIX}/",
        "snapshot_taken_at": None,
    }
    prices = read_table("raw_prices")
    assert body["assets"]["raw_prices"] == {
        "rows": len(prices),
        "latest": max(prices["date"]).isoformat(),
    }
    assert body["assets"]["raw_prices"]["latest"] == END
    assert body["assets"]["backtest_equity"]["latest"] == END
    assert body["assets"]["price_revisions"]["rows"] == 0


def test_prices_over_the_bucket(api):
    answer = api.get("/prices/BRK-B", params={"start": "2025-01-02", "limit": 20})
    assert answer.status_code == 200
    prices = read_table("raw_prices")
    expected = prices[
        (prices["symbol"] == "BRK-B") & (prices["date"] >= pd.Timestamp("2025-01-02").date())
    ]
    expected = expected.sort_values("date")
    rows, url = answer.json()["data"], answer.json()["next"]
    while url:  # every page over the bucket too
        page = api.get(url).json()
        rows, url = rows + page["data"], page["next"]
    assert [r["date"] for r in rows] == [d.isoformat() for d in expected["date"]]
    assert [r["close"] for r in rows] == expected["close"].tolist()
    assert api.get("/prices/ZZZZ").status_code == 404
    assert api.get("/prices/BRK;B").status_code == 422


def test_other_endpoints_over_the_bucket(api):
    positions = pd.DataFrame(api.get("/journal/positions").json()["data"])
    journal = read_table("trade_journal")
    open_rows = journal[journal["exit_date"].isna()].sort_values(["strategy", "trade_id"])
    assert positions["unrealised_pnl"].to_numpy() == pytest.approx(open_rows["pnl"].to_numpy())
    metrics = api.get("/performance").json()["data"]
    assert {m["strategy"] for m in metrics} == set(read_table("performance_metrics")["strategy"])
    assert api.get("/environment").json()["data"][0]["date"] == END


def test_reports_from_the_bucket(api):
    s3 = boto3.client("s3")
    for name in ("stdev", "ma_crossover"):
        answer = api.get(f"/reports/{name}")
        assert answer.status_code == 200
        stored = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/reports/{name}.html")["Body"].read()
        assert answer.text == stored.decode("utf-8")
    # no trades file: no user report in the bucket
    answer = api.get("/reports/user")
    assert (answer.status_code, answer.json()["detail"]) == (
        404,
        "no report for user yet: run performance_report",
    )


def test_an_empty_or_missing_bucket(aws_env):
    boto3.client("s3").create_bucket(Bucket="api-empty")
    empty = TestClient(create_app(S3Store("api-empty"), S3ReportStoreResource(bucket="api-empty")))
    answer = empty.get("/prices/AAPL")
    assert (answer.status_code, answer.json()["detail"]) == (
        404,
        "raw_prices has not been materialised yet",
    )
    assert empty.get("/health").json()["assets"]["raw_prices"] is None
    assert empty.get("/reports/stdev").status_code == 404
    missing = TestClient(
        create_app(S3Store("no-such-bucket"), S3ReportStoreResource(bucket="no-such-bucket"))
    )
    answer = missing.get("/symbols")
    assert answer.status_code == 503 and "NoSuchBucket" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "5"
    assert missing.get("/reports/stdev").status_code == 503


def test_the_prod_deployment_reads_the_bucket(bucket, aws_env, monkeypatch):
    monkeypatch.setenv("TRADING_ASSETS_DEPLOYMENT", "prod")
    monkeypatch.setenv("TRADING_ASSETS_S3_BUCKET", BUCKET)
    monkeypatch.setenv("TRADING_ASSETS_S3_PREFIX", PREFIX)
    api = TestClient(app_from_settings())
    assert api.get("/health").json()["storage"]["kind"] == "s3"
    assert api.get("/reports/stdev").status_code == 200
    monkeypatch.delenv("TRADING_ASSETS_S3_BUCKET")
    from trading_assets.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match="TRADING_ASSETS_S3_BUCKET"):
        app_from_settings()
