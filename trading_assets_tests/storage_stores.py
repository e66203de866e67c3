"""The two stores the storage contract suite runs against, and the assets it writes with them.

``store`` (a fixture parametrized over ``duckdb`` and ``s3``) yields a :class:`Store`: the IO manager
plus an independent way to read what it stored. DuckDB: ``duckdb.connect`` on the file. S3 (moto's
server on 127.0.0.1, a bucket per test): the manifest and the Parquet objects it lists, fetched
with a plain boto3 client and read by pyarrow, then handed to an in-memory DuckDB so both stores
come back as the same pandas frame. Neither reader uses the IO manager's own read path.
"""

import base64
import datetime as dt
import io as bytes_io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trading_assets.storage.contract import Restatement, TableStore
from trading_assets.storage.duckdb_io import DuckDBIOManager

# Weekday sessions 2024-01-08 .. 2024-01-22 in the exchange's zone, with Martin Luther King Day
# (Monday 2024-01-15) excluded, as a trading calendar would: Friday 01-12's window ends on 01-15.
SESSIONS = dg.TimeWindowPartitionsDefinition(
    start="2024-01-08",
    end="2024-01-23",
    fmt="%Y-%m-%d",
    cron_schedule="0 0 * * 1-5",
    timezone="America/New_York",
    exclusions=[dt.datetime(2024, 1, 15)],
)
ALL_SESSIONS = SESSIONS.get_partition_keys()
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

PRICES = "raw_prices"
PRICE_METADATA = {"unique_key": ["symbol", "date"]}
SYMBOLS = ("AAA", "BBB")
FETCHED_AT = pd.Timestamp("2024-02-01 21:30:00")
PRICE_COLUMNS = ["symbol", "date", "close", "volume", "fetched_at"]
S3_PREFIX = "warehouse/prod"


def day(key: str) -> dt.date:
    return dt.date.fromisoformat(key)


def price_rows(
    keys: list[str], *, version: float, symbols: tuple[str, ...] = SYMBOLS
) -> pd.DataFrame:
    """One row per (symbol, session); close = version + session index, so versions are told apart."""
    rows = [
        {
            "symbol": symbol,
            "date": day(key),
            "close": version + ALL_SESSIONS.index(key),
            "volume": 1000.0 * (i + 1),
            "fetched_at": FETCHED_AT,
        }
        for i, symbol in enumerate(symbols)
        for key in keys
    ]
    return pd.DataFrame(rows, columns=PRICE_COLUMNS)


def price_asset(
    produce: Callable[[dg.AssetExecutionContext], pd.DataFrame],
    *,
    metadata: dict | None = None,
    partitions_def: dg.PartitionsDefinition | None = SESSIONS,
    name: str = PRICES,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        metadata=PRICE_METADATA if metadata is None else metadata,
    )
    def _asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return produce(context)

    return _asset


def versioned_prices(version: float, symbols: tuple[str, ...] = SYMBOLS, **kwargs):
    """An asset returning price_rows for exactly the partition keys of its run."""
    return price_asset(
        lambda context: price_rows(list(context.partition_keys), version=version, symbols=symbols),
        **kwargs,
    )


def run(assets, io: TableStore, *, key: str | None = None, keys: tuple[str, str] | None = None,
        **kw):  # fmt: skip
    tags = {RANGE_START: keys[0], RANGE_END: keys[1]} if keys else None
    return dg.materialize(
        assets if isinstance(assets, list) else [assets],
        resources={"io_manager": io},
        partition_key=key,
        tags=tags,
        **kw,
    )


STRATEGIES = dg.StaticPartitionsDefinition(["alpha", "beta", "gamma"])
STRATEGY_METADATA = {
    "partition_expr": "strategy",
    "unique_key": ["strategy", "trade"],
    "allow_empty": True,
}


def strategy_rows(keys, version: float, trades: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"strategy": k, "trade": i, "pnl": version + i, "entry_date": day(ALL_SESSIONS[i])}
            for k in keys
            for i in range(trades)
        ]
    )


def strategy_asset(produce, metadata=STRATEGY_METADATA) -> dg.AssetsDefinition:
    @dg.asset(
        name="trades",
        partitions_def=STRATEGIES,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata=metadata,
    )
    def trades(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return produce(context)

    return trades


def restating_asset(rows: Callable[[dg.AssetExecutionContext], pd.DataFrame], restatement):
    """An asset whose output names a restatement (a Restatement, or raw metadata for bad input)."""

    @dg.asset(
        name=PRICES,
        partitions_def=SESSIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata=PRICE_METADATA,
    )
    def _asset(context: dg.AssetExecutionContext):
        meta = restatement.to_metadata() if isinstance(restatement, Restatement) else restatement
        return dg.Output(rows(context), metadata=meta)

    return _asset


# --- the stores -----------------------------------------------------------------------------------


class MissingStoredTable(LookupError):
    """The independent reader found no such table."""


@dataclass
class Store:
    """An IO manager under test and an independent reader of what it stored."""

    kind: str
    io: TableStore
    read_arrow: Callable[[str], pa.Table]  # table -> its rows (MissingStoredTable if none)
    table_name: Callable[[str], str]  # table -> how messages and metadata name it

    def stored(self, table: str = PRICES, order: str = "symbol, date") -> pd.DataFrame:
        """The stored rows as DuckDB gives them (DATE and TIMESTAMP as datetime64)."""
        with duckdb.connect() as con:
            con.register("stored_rows", self.read_arrow(table))
            return con.sql(f"SELECT * FROM stored_rows ORDER BY {order}").df()

    def column_types(self, table: str = PRICES) -> dict[str, str]:
        """Column -> DuckDB type of the stored values (what a SQL reader of the table sees)."""
        with duckdb.connect() as con:
            con.register("stored_rows", self.read_arrow(table))
            return {r[0]: r[1] for r in con.sql("DESCRIBE stored_rows").fetchall()}

    def exists(self, table: str) -> bool:
        try:
            self.read_arrow(table)
        except MissingStoredTable:
            return False
        return True


def duckdb_store(path: Path) -> Store:
    io = DuckDBIOManager(
        database=str(path), lock_timeout_seconds=0.03, lock_retry_base_seconds=0.01
    )

    def read_arrow(table: str) -> pa.Table:
        if not path.exists():
            raise MissingStoredTable(table)
        with duckdb.connect(str(path), read_only=True) as con:
            try:
                return con.sql(f"SELECT * FROM main.{table}").to_arrow_table()
            except duckdb.CatalogException as exc:
                raise MissingStoredTable(table) from exc

    return Store("duckdb", io, read_arrow, lambda table: f"main.{table}")


def s3_read_arrow(client, bucket: str, prefix: str, table: str) -> pa.Table:
    """A table as its manifest lists it: plain boto3 GETs and pyarrow, no IO manager code."""
    root = f"{prefix}/{table}/" if prefix else f"{table}/"
    try:
        body = client.get_object(Bucket=bucket, Key=root + "_manifest.json")["Body"].read()
    except client.exceptions.NoSuchKey as exc:
        raise MissingStoredTable(table) from exc
    manifest = json.loads(body)
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(manifest["arrow_schema"])))
    parts = [
        pq.read_table(bytes_io.BytesIO(client.get_object(Bucket=bucket, Key=root + o["path"])[
            "Body"].read()))
        for o in manifest["objects"]
    ]  # fmt: skip
    if not parts:
        return schema.empty_table()
    # Objects written before a column was added lack it: NULL there, as the manifest's schema says.
    return pa.concat_tables(parts, promote_options="default").select(schema.names)


def s3_store(bucket: str) -> Store:
    import boto3

    from trading_assets.storage.s3_io import S3ParquetIOManager

    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    io = S3ParquetIOManager(bucket=bucket, prefix=S3_PREFIX)
    return Store(
        "s3",
        io,
        lambda table: s3_read_arrow(client, bucket, S3_PREFIX, table),
        lambda table: f"s3://{bucket}/{S3_PREFIX}/{table}",
    )


def new_bucket() -> str:
    return f"contract-{uuid.uuid4().hex[:20]}"


@pytest.fixture(name="store", params=["duckdb", "s3"])
def store_fixture(request, tmp_path: Path) -> Store:
    if request.param == "duckdb":
        # A nested path: the IO manager creates the parent directories.
        return duckdb_store(tmp_path / "warehouse" / "trading.duckdb")
    request.getfixturevalue("aws_env")
    return s3_store(new_bucket())


@pytest.fixture(name="seeded")
def seeded_fixture(store: Store) -> pd.DataFrame:
    """Every session stored (version 1) through one single-run backfill; returns the rows."""
    run(versioned_prices(1.0), store.io, keys=(ALL_SESSIONS[0], ALL_SESSIONS[-1]))
    return store.stored()
