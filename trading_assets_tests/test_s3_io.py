"""S3ParquetIOManager: what only the S3 store has, against moto's server on 127.0.0.1.

The storage contract is asserted for both stores in test_storage_contract*.py. Here: the layout and
the manifest (objects readable alone, by pyarrow, pandas and DuckDB), failed writes made to fail for
real (a proxy in front of moto fails the N-th PUT, loses the answer to the switch, drops the
connection or refuses the deletes), concurrent writers (conditional PUT on the manifest's ETag),
a reader racing a switch, orphan sweeps and configuration.

Concurrency, as tested: two writers of one table each read the manifest and its ETag, put their
objects, then PUT the manifest If-Match that ETag. S3 (and moto 5.2.5) refuses the second with 412,
so it never overwrites the first writer's switch: it starts over from the new manifest (its rows
merged onto the first writer's, as if the two had run one after the other), up to switch_attempts
times, then fails with ConcurrentWriteError with nothing of it applied.
"""

import datetime as dt
import io as bytes_io
import json
import re

import boto3
import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import EndpointConnectionError

from trading_assets.storage.contract import (
    ConcurrentWriteError,
    DatabaseWriteError,
    MissingTableError,
    StorageMetadataError,
)
from trading_assets.storage.s3_io import S3ParquetIOManager
from trading_assets.storage.s3_layout import (
    Manifest,
    ManifestError,
    TableLocation,
    read_manifest,
    s3_client,
)
from trading_assets.storage.s3_read import read_table
from trading_assets_tests.s3_fault_proxy import (
    FaultProxy,
    anything,
    batch_delete,
    get,
    manifest_put,
    parquet_put,
)
from trading_assets_tests.storage_stores import (
    ALL_SESSIONS,
    PRICES,
    S3_PREFIX,
    SYMBOLS,
    new_bucket,
    price_asset,
    price_rows,
    run,
    s3_read_arrow,
    strategy_asset,
    strategy_rows,
    versioned_prices,
)

WRITE_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{12}")


@pytest.fixture
def bucket(aws_env) -> str:
    name = new_bucket()
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def direct(moto_endpoint):
    """A client straight to moto (never through the proxy), for the independent reads."""
    return boto3.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def proxy(moto_endpoint, aws_env, monkeypatch):
    """The standard chain pointed at a fault proxy in front of moto."""
    faults = FaultProxy(moto_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", faults.endpoint)
    yield faults
    faults.stop()


def manager(bucket: str, **kw) -> S3ParquetIOManager:
    # One attempt per request: an injected failure fails at once (boto3 would otherwise retry
    # with backoff, which only adds time here).
    return S3ParquetIOManager(bucket=bucket, prefix=S3_PREFIX, **{"request_attempts": 1, **kw})


def stored(direct, bucket: str, table: str = PRICES) -> pd.DataFrame:
    frame = s3_read_arrow(direct, bucket, S3_PREFIX, table).to_pandas()
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def manifest_of(direct, bucket: str, table: str = PRICES) -> dict:
    key = f"{S3_PREFIX}/{table}/_manifest.json"
    return json.loads(direct.get_object(Bucket=bucket, Key=key)["Body"].read())


def keys_of(direct, bucket: str, table: str = PRICES) -> list[str]:
    listed = direct.list_objects_v2(Bucket=bucket, Prefix=f"{S3_PREFIX}/{table}/")
    return sorted(item["Key"] for item in listed.get("Contents", ()))


def unlisted(direct, bucket: str, table: str = PRICES) -> list[str]:
    root = f"{S3_PREFIX}/{table}/"
    listed = {root + o["path"] for o in manifest_of(direct, bucket, table)["objects"]}
    return [
        k for k in keys_of(direct, bucket, table) if k not in listed | {root + "_manifest.json"}
    ]


def seed(io: S3ParquetIOManager) -> None:
    run(versioned_prices(1.0), io, keys=(ALL_SESSIONS[0], ALL_SESSIONS[-1]))


# --- layout and manifest --------------------------------------------------------------------------


def test_layout_manifest_and_objects_readable_alone(bucket, direct, tmp_path):
    io = manager(bucket)
    seed(io)
    run(strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0)), io, keys=("alpha", "beta"))
    universe = price_asset(
        lambda c: pd.DataFrame({"symbol": ["AAA", "BBB"], "weight": [0.5, 0.5]}),
        metadata={"unique_key": ["symbol"]},
        partitions_def=None,
        name="universe",
    )
    run(universe, io)

    def objects(table: str) -> list[str]:
        root = f"{S3_PREFIX}/{table}/"
        keys = keys_of(direct, bucket, table)
        assert root + "_manifest.json" in keys
        return [k[len(root) :] for k in keys if k != root + "_manifest.json"]

    prices = objects(PRICES)
    dated = [re.fullmatch(r"date=(\d{4}-\d\d-\d\d)/(.+)\.parquet", k) for k in prices]
    assert all(dated) and [m.group(1) for m in dated] == ALL_SESSIONS  # one object per session
    assert all(WRITE_ID.fullmatch(m.group(2)) for m in dated)
    assert [k.split("/")[0] for k in objects("trades")] == ["strategy=alpha", "strategy=beta"]
    (single,) = objects("universe")
    assert WRITE_ID.fullmatch(single.removesuffix(".parquet"))

    manifest = manifest_of(direct, bucket)
    assert manifest["format"] == 1 and manifest["version"] == 1
    assert (manifest["partition_kind"], manifest["partition_column"]) == ("date", "date")
    assert manifest["unique_key"] == ["symbol", "date"]
    assert manifest["columns"] == [
        {"name": "symbol", "type": "VARCHAR"},
        {"name": "date", "type": "DATE"},
        {"name": "close", "type": "DOUBLE"},
        {"name": "volume", "type": "DOUBLE"},
        {"name": "fetched_at", "type": "TIMESTAMP"},
    ]
    first = manifest["objects"][0]
    assert first["partition"] == ALL_SESSIONS[0] and first["rows"] == len(SYMBOLS)
    assert first["path"] == prices[0]

    # One object, read alone, is complete: the partition column is inside it, as DATE.
    key = f"{S3_PREFIX}/{PRICES}/{prices[0]}"
    body = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    alone = pq.read_table(bytes_io.BytesIO(body))
    assert alone.schema.field("date").type == pa.date32()
    assert alone.column_names == ["symbol", "date", "close", "volume", "fetched_at"]
    assert pd.read_parquet(bytes_io.BytesIO(body))["symbol"].tolist() == list(SYMBOLS)
    path = tmp_path / "one.parquet"
    path.write_bytes(body)
    with duckdb.connect() as con:
        described = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}
    assert described["date"] == "DATE" and described["fetched_at"] == "TIMESTAMP"


def test_objects_the_manifest_does_not_list_are_never_read(bucket, direct):
    io = manager(bucket)
    seed(io)
    before = stored(direct, bucket)
    # What a failed write leaves: an object with other rows beside a listed one.
    stray = pa.table({"symbol": ["ZZZ"], "date": pa.array([dt.date(2024, 1, 10)]), "close": [9.0]})
    sink = pa.BufferOutputStream()
    pq.write_table(stray, sink)
    key = f"{S3_PREFIX}/{PRICES}/date=2024-01-10/20240101T000000000000Z-000000000000.parquet"
    direct.put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
    assert "ZZZ" not in set(io.read_rows(PRICES)["symbol"])
    assert len(io.read_rows(PRICES, start=dt.date(2024, 1, 10), end=dt.date(2024, 1, 11))) == 2
    # A sweep removes it (old enough by its write id's time and its own age).
    assert io.sweep(PRICES, older_than=dt.timedelta(0)) == [key]
    assert keys_of(direct, bucket).count(key) == 0
    pd.testing.assert_frame_equal(stored(direct, bucket), before)


def test_a_table_whose_partitioning_changed_is_refused(bucket):
    io = manager(bucket)
    snapshot = price_asset(
        lambda c: price_rows(["2024-01-10"], version=1.0), partitions_def=None, metadata={}
    )
    run(snapshot, io)
    with pytest.raises(StorageMetadataError, match="laid out by none"):
        run(versioned_prices(1.0), io, key="2024-01-10")


def test_a_foreign_manifest_is_a_clear_error(bucket, direct):
    key = f"{S3_PREFIX}/{PRICES}/_manifest.json"
    direct.put_object(Bucket=bucket, Key=key, Body=b'{"format": 99}')
    with pytest.raises(ManifestError, match="format 99"):
        manager(bucket).read_rows(PRICES)


# --- failed writes, made to fail for real ---------------------------------------------------------


def assert_previous_rows(io, direct, bucket, before, version):
    """The table is exactly what it was: same rows (independently and through the IO manager),
    no key twice, the same manifest version."""
    after = stored(direct, bucket)
    pd.testing.assert_frame_equal(after, before)
    assert not after.duplicated(["symbol", "date"]).any()
    loaded = io.read_rows(PRICES)
    assert len(loaded) == len(before) and not loaded.duplicated(["symbol", "date"]).any()
    assert (loaded["close"] < 100).all()
    assert manifest_of(direct, bucket)["version"] == version


def test_a_put_failing_midway_keeps_the_previous_rows(bucket, direct, proxy):
    io = manager(bucket, max_parallel_requests=1)  # one PUT at a time: the third one fails
    seed(io)
    before, version = stored(direct, bucket), manifest_of(direct, bucket)["version"]
    rule = proxy.fail(parquet_put, "error", after=2)
    with pytest.raises(DatabaseWriteError, match="manifest was not switched"):
        run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-18"))
    assert rule.seen == 6 and rule.fired == 4  # six sessions: two objects made it, four did not
    assert_previous_rows(io, direct, bucket, before, version)
    assert unlisted(direct, bucket) == []  # the two that made it were deleted again
    proxy.clear()
    run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-18"))  # a re-run goes through
    assert stored(direct, bucket)["close"].between(100, 200).sum() == 6 * len(SYMBOLS)


def test_a_refused_switch_keeps_the_previous_rows_and_leaves_only_unlisted_objects(
    bucket, direct, proxy
):
    io = manager(bucket)
    seed(io)
    before, version = stored(direct, bucket), manifest_of(direct, bucket)["version"]
    proxy.fail(manifest_put, "error")
    with pytest.raises(DatabaseWriteError, match="keeps its previous version"):
        run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-12"))
    assert_previous_rows(io, direct, bucket, before, version)
    # Its three objects stay (a PUT in flight might still have listed them), unlisted: harmless.
    assert len(unlisted(direct, bucket)) == 3
    proxy.clear()
    assert len(io.sweep(PRICES, older_than=dt.timedelta(0))) == 3
    assert unlisted(direct, bucket) == []
    assert_previous_rows(io, direct, bucket, before, version)


def test_a_switch_whose_answer_was_lost_is_a_success(bucket, direct, proxy):
    io = manager(bucket)
    seed(io)
    proxy.fail(manifest_put, "lose_answer")  # moto applies the PUT, the client hears nothing
    run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-12"))
    after = stored(direct, bucket)
    window = after["date"].between(dt.date(2024, 1, 10), dt.date(2024, 1, 12))
    assert (after.loc[window, "close"] >= 100).all() and (after.loc[~window, "close"] < 100).all()
    assert len(after) == len(SYMBOLS) * len(ALL_SESSIONS)
    assert unlisted(direct, bucket) == []  # and the replaced objects were deleted


def test_a_retried_switch_refused_by_its_own_first_attempt_is_a_success(bucket, direct, proxy):
    # The first PUT lands but its answer is lost; boto3 retries it, and S3 refuses the retry with
    # 412, because the manifest's ETag is now that of the write's own first attempt.
    io = manager(bucket, request_attempts=2)
    seed(io)
    proxy.fail(manifest_put, "lose_answer", times=1)
    run(versioned_prices(100.0), io, key="2024-01-10")
    puts = [r for r in proxy.requests if manifest_put(*r)]
    assert len(puts) == 3  # the seed's, the lost one, the refused retry
    assert manifest_of(direct, bucket)["version"] == 2
    assert (stored(direct, bucket).query("close >= 100")["date"] == dt.date(2024, 1, 10)).all()


def test_an_endpoint_gone_during_the_switch_keeps_the_table_whole(bucket, direct, proxy):
    io = manager(bucket)
    seed(io)
    before, version = stored(direct, bucket), manifest_of(direct, bucket)["version"]
    # The manifest GET and three object PUTs go through; then the endpoint is gone: the
    # manifest PUT and the re-read that would tell whether it landed get no answer.
    proxy.fail(anything, "drop", after=4)
    with pytest.raises(DatabaseWriteError, match="re-reading the manifest"):
        run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-12"))
    proxy.clear()
    assert_previous_rows(io, direct, bucket, before, version)


def test_deletes_that_fail_after_the_switch_leave_harmless_objects(bucket, direct, proxy, caplog):
    io = manager(bucket)
    seed(io)
    proxy.fail(batch_delete, "error")
    run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-12"))
    after = stored(direct, bucket)
    assert len(after) == len(SYMBOLS) * len(ALL_SESSIONS)
    assert not after.duplicated(["symbol", "date"]).any()
    assert len(io.read_rows(PRICES)) == len(after)
    assert len(unlisted(direct, bucket)) == 3  # the replaced objects, no longer listed
    proxy.clear()
    assert len(io.sweep(PRICES, older_than=dt.timedelta(0))) == 3
    assert unlisted(direct, bucket) == []


# --- concurrent writers and readers ---------------------------------------------------------------

RIVALS: dict[str, object] = {}


class RivalBeforeSwitch(S3ParquetIOManager):
    """Lets a rival writer switch the table once, between this write's PUTs and its switch."""

    def _before_switch(self, location: TableLocation) -> None:
        rival = RIVALS.pop(location.table, None)
        if rival is not None:
            rival()


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_concurrent_writer_is_never_lost(bucket, direct, attempts):
    seed(manager(bucket))
    RIVALS[PRICES] = lambda: run(versioned_prices(500.0), manager(bucket), key="2024-01-10")
    ours = RivalBeforeSwitch(bucket=bucket, prefix=S3_PREFIX, switch_attempts=attempts)
    if attempts == 1:
        with pytest.raises(ConcurrentWriteError, match="another writer switched"):
            run(versioned_prices(100.0), ours, key="2024-01-11")
    else:
        run(versioned_prices(100.0), ours, key="2024-01-11")
    after = stored(direct, bucket)
    closes = dict(zip(after["date"].astype(str), after["close"], strict=False))
    assert closes["2024-01-10"] >= 500  # the rival's switch stands either way
    assert (closes["2024-01-11"] >= 100) == (attempts > 1)  # ours only when it started over
    assert len(after) == len(SYMBOLS) * len(ALL_SESSIONS)
    assert unlisted(direct, bucket) == []
    assert manifest_of(direct, bucket)["version"] == (2 if attempts == 1 else 3)


def test_a_reader_racing_a_switch_starts_over_and_sees_one_version(bucket, direct):
    io = manager(bucket)
    seed(io)
    location = TableLocation.of(bucket, S3_PREFIX, PRICES)
    calls: list[int] = []

    def choose(manifest: Manifest):
        calls.append(manifest.version)
        if len(calls) == 1:  # the writer switches and deletes after this reader read the manifest
            run(versioned_prices(100.0), io, keys=("2024-01-10", "2024-01-12"))
        return manifest.select(start=dt.date(2024, 1, 8), end=dt.date(2024, 1, 13))

    manifest, table = read_table(s3_client(), location, choose)
    assert calls == [1, 2] and manifest.version == 2
    closes = table.to_pandas().set_index("date")["close"]
    assert (closes.loc[[dt.date(2024, 1, 10), dt.date(2024, 1, 12)]] >= 100).all()
    assert (closes.loc[[dt.date(2024, 1, 8), dt.date(2024, 1, 9)]] < 100).all()


def test_without_list_permission_a_missing_key_still_reads_as_missing(bucket, direct, proxy):
    # S3 answers 403, not 404, for a missing key to a role whose s3:ListBucket carries an
    # s3:prefix condition (deploy/iam-policy.json): a never-written table, a first write and a
    # reader racing a switch must still tell "missing" from "forbidden".
    rule = proxy.fail(get, "deny_missing")
    io = manager(bucket)
    assert io.read_rows(PRICES, columns=["symbol"]).empty

    @dg.asset(ins={PRICES: dg.AssetIn()})
    def strict(raw_prices: pd.DataFrame) -> None:
        pass

    with pytest.raises(MissingTableError):
        run([versioned_prices(1.0, partitions_def=None, metadata={}), strict], io,
            selection=[strict])  # fmt: skip
    seed(io)  # the first write: its manifest GET is denied, the listing says there is none
    location = TableLocation.of(bucket, S3_PREFIX, PRICES)
    calls: list[int] = []

    def choose(manifest: Manifest):
        calls.append(manifest.version)
        if len(calls) == 1:
            run(versioned_prices(100.0), io, key="2024-01-10")
        return manifest.objects

    manifest, table = read_table(s3_client(), location, choose)
    assert calls == [1, 2] and table.num_rows == len(SYMBOLS) * len(ALL_SESSIONS)
    assert rule.fired >= 3  # the table's, the first manifest's and a replaced object's 404s


# --- configuration --------------------------------------------------------------------------------


def test_endpoint_and_region_overrides_beat_the_chain(bucket, direct, moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    io = manager(bucket, endpoint_url=moto_endpoint, region_name="us-east-1")
    run(versioned_prices(1.0), io, key="2024-01-10")
    assert len(io.read_rows(PRICES)) == len(SYMBOLS)
    manifest, etag = read_manifest(direct, TableLocation.of(bucket, S3_PREFIX, PRICES))
    assert manifest.version == 1 and etag
    with pytest.raises(EndpointConnectionError, match="127.0.0.1:9"):
        run(versioned_prices(1.0), manager(bucket), key="2024-01-11")  # the chain's endpoint
