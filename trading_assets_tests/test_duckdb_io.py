"""DuckDBIOManager through real Dagster runs on a throwaway DuckDB file.

Each test states one property of the storage contract and fails without it: atomic replace,
insert by name, schema evolution, empty-output safety, idempotent re-runs, DATE partition column,
range backfills, replace_keys, unique_key, partition bounds, the file lock, and bounded loads.
"""

import datetime as dt
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets.storage import duckdb_io
from trading_assets.storage.column_types import is_safe_cast
from trading_assets.storage.contract import (
    DatabaseLockedError,
    DateBounds,
    DuplicateKeyError,
    EmptyOutputError,
    InvalidIdentifierError,
    MissingTableError,
    OutputFrameError,
    OutputSpec,
    PartitionBoundsError,
    Restatement,
    SchemaMismatchError,
    StorageMetadataError,
    date_bounds_for_window,
    table_name_for,
)
from trading_assets.storage.duckdb_connection import MAX_LOCK_BACKOFF_SECONDS
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets.storage.output_frames import midnight_timestamps

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


def run(
    assets,
    io: DuckDBIOManager,
    *,
    key: str | None = None,
    keys: tuple[str, str] | None = None,
    **kw,
):
    tags = {RANGE_START: keys[0], RANGE_END: keys[1]} if keys else None
    return dg.materialize(
        assets if isinstance(assets, list) else [assets],
        resources={"io_manager": io},
        partition_key=key,
        tags=tags,
        **kw,
    )


def stored(path: Path, table: str = PRICES, order: str = "symbol, date") -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT * FROM main.{table} ORDER BY {order}").df()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # A nested path: the IO manager creates the parent directories.
    return tmp_path / "warehouse" / "trading.duckdb"


@pytest.fixture
def io(db_path: Path) -> DuckDBIOManager:
    return DuckDBIOManager(
        database=str(db_path), lock_timeout_seconds=0.03, lock_retry_base_seconds=0.01
    )


@pytest.fixture
def seeded(io: DuckDBIOManager, db_path: Path) -> pd.DataFrame:
    """Every session stored (version 1) through one single-run backfill; returns the rows."""
    run(versioned_prices(1.0), io, keys=(ALL_SESSIONS[0], ALL_SESSIONS[-1]))
    return stored(db_path)


# --- dates, idempotence, output metadata --------------------------------------------------------


def test_partition_column_is_stored_as_date_and_rerun_is_idempotent(io, db_path):
    key = "2024-01-10"
    as_date_objects = versioned_prices(1.0)
    # Same rows, but dates as midnight datetime64 (what pd.to_datetime gives): must land on the
    # same DATE values, so the second run replaces rather than duplicates.
    as_timestamps = price_asset(
        lambda c: price_rows([key], version=1.0).assign(date=lambda f: pd.to_datetime(f["date"]))
    )
    first = run(as_date_objects, io, key=key)
    once = stored(db_path)
    second = run(as_timestamps, io, key=key)
    twice = stored(db_path)

    pd.testing.assert_frame_equal(once, twice)
    assert len(twice) == len(SYMBOLS)
    with duckdb.connect(str(db_path), read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'raw_prices'"
            ).fetchall()
        )
        (typeof_date,) = con.execute("SELECT DISTINCT typeof(date) FROM raw_prices").fetchone()
    assert types["date"] == "DATE" and typeof_date == "DATE"
    assert types["fetched_at"] == "TIMESTAMP"  # a real timestamp stays a timestamp

    meta = second.asset_materializations_for_node(PRICES)[0].metadata
    assert meta["row_count"].value == len(SYMBOLS)
    assert meta["rows_deleted"].value == len(SYMBOLS)
    assert meta["dagster/table_name"].value == "main.raw_prices"
    assert meta["duckdb_path"].value == str(db_path)
    columns = {c.name: c.type for c in meta["dagster/column_schema"].value.columns}
    assert columns == {
        "symbol": "VARCHAR",
        "date": "DATE",
        "close": "DOUBLE",
        "volume": "DOUBLE",
        "fetched_at": "TIMESTAMP",
    }
    assert first.asset_materializations_for_node(PRICES)[0].metadata["rows_deleted"].value == 0


def test_non_midnight_timestamp_in_partition_column_is_rejected(io, db_path):
    intraday = price_asset(
        lambda c: price_rows(["2024-01-10"], version=1.0).assign(
            date=pd.Timestamp("2024-01-10 15:59")
        )
    )
    with pytest.raises(OutputFrameError, match="time of day"):
        run(intraday, io, key="2024-01-10")
    assert not db_path.exists() or "raw_prices" not in _tables(db_path)


def _tables(path: Path) -> set[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }


# --- partition windows and ranges ---------------------------------------------------------------


def test_single_run_range_backfill_replaces_exactly_the_range(io, db_path, seeded):
    # Thursday 01-11 .. Tuesday 01-16: spans a weekend and the excluded Monday holiday.
    result = run(versioned_prices(100.0), io, keys=("2024-01-11", "2024-01-16"))
    after = stored(db_path)

    replaced = {day(k) for k in ("2024-01-11", "2024-01-12", "2024-01-16")}
    in_range = after["date"].dt.date.isin(replaced)
    assert (after.loc[in_range, "close"] >= 100).all()
    assert (after.loc[~in_range, "close"] < 100).all()
    # Nothing outside the range was touched, nothing duplicated.
    pd.testing.assert_frame_equal(
        after[~in_range].reset_index(drop=True),
        seeded[~seeded["date"].dt.date.isin(replaced)].reset_index(drop=True),
    )
    assert len(after) == len(seeded) == len(SYMBOLS) * len(ALL_SESSIONS)
    meta = result.asset_materializations_for_node(PRICES)[0].metadata
    assert meta["rows_deleted"].value == len(SYMBOLS) * len(replaced)


def test_friday_window_ends_on_monday(io, db_path):
    """Rows dated Saturday belong to Friday's window (the window's end date, not start + 1 day)."""
    friday, saturday = dt.date(2024, 1, 12), dt.date(2024, 1, 13)

    def with_saturday(version: float):
        return price_asset(
            lambda c: pd.DataFrame(
                {"symbol": "AAA", "date": [friday, saturday], "close": [version, version]}
            )
        )

    run(with_saturday(1.0), io, key="2024-01-12")
    run(with_saturday(2.0), io, key="2024-01-12")
    after = stored(db_path)
    assert after["close"].tolist() == [2.0, 2.0]
    bounds = date_bounds_for_window(SESSIONS.time_window_for_partition_key("2024-01-12"))
    assert bounds == DateBounds(friday, dt.date(2024, 1, 15))


def test_rows_outside_the_window_are_rejected_and_nothing_written(io, db_path, seeded):
    # A source that ignores the requested dates and returns the previous session as well.
    leaky = price_asset(lambda c: price_rows(["2024-01-09", "2024-01-10"], version=100.0))
    with pytest.raises(PartitionBoundsError, match="2024-01-09"):
        run(leaky, io, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


# --- atomicity ----------------------------------------------------------------------------------


class FailAfterDelete(DuckDBIOManager):
    """Fails at the last step inside the transaction, after DELETE and INSERT have run."""

    def _check_unique(self, con, table, qualified, incoming, spec, origin):
        # Prove the transaction really changed the table before the failure.
        (closes,) = con.execute(
            f"SELECT min(close) FROM {qualified} WHERE date = '2024-01-10'"
        ).fetchone()
        raise RuntimeError(f"injected failure; min close inside the transaction {closes}")


def test_failure_after_delete_rolls_back_to_previous_rows(db_path, seeded):
    failing = FailAfterDelete(database=str(db_path))
    changed_close = 100.0 + ALL_SESSIONS.index("2024-01-10")
    with pytest.raises(RuntimeError, match=f"inside the transaction {changed_close}"):
        run(versioned_prices(100.0), failing, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_insert_that_fails_midway_rolls_back_the_delete(io, db_path):
    # The table carries a constraint the asset does not know about: the INSERT (after the DELETE)
    # fails on a negative close, and the partition must keep its previous rows.
    db_path.parent.mkdir(parents=True)
    with duckdb.connect(str(db_path)) as con:
        con.execute(
            "CREATE TABLE raw_prices (symbol VARCHAR, date DATE, close DOUBLE CHECK (close > 0), "
            "volume DOUBLE, fetched_at TIMESTAMP)"
        )
    run(versioned_prices(1.0), io, key="2024-01-10")
    before = stored(db_path)
    negative = price_asset(lambda c: price_rows(["2024-01-10"], version=-100.0))
    with pytest.raises(duckdb.ConstraintException):
        run(negative, io, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), before)


# --- columns and types --------------------------------------------------------------------------


def test_insert_is_by_name_not_position(io, db_path):
    run(versioned_prices(1.0), io, key="2024-01-10")
    # Same columns, reversed order; close and volume are both DOUBLE, so a positional insert
    # would silently swap them.
    reordered = price_asset(lambda c: price_rows(["2024-01-11"], version=1.0).iloc[:, ::-1])
    run(reordered, io, key="2024-01-11")
    row = stored(db_path).query("symbol == 'AAA' and date == '2024-01-11'").iloc[0]
    assert row["close"] == 1.0 + ALL_SESSIONS.index("2024-01-11")
    assert row["volume"] == 1000.0


def test_new_column_is_added_and_missing_column_stored_as_null(io, db_path):
    run(versioned_prices(1.0), io, key="2024-01-10")
    with_source = price_asset(
        lambda c: (
            price_rows(["2024-01-11"], version=1.0).assign(source="yahoo").drop(columns="volume")
        )
    )
    run(with_source, io, key="2024-01-11")
    after = stored(db_path).set_index("date")
    assert after.loc[pd.Timestamp("2024-01-10"), "source"].isna().all()  # old rows: NULL
    assert (after.loc[pd.Timestamp("2024-01-11"), "source"] == "yahoo").all()
    assert after.loc[pd.Timestamp("2024-01-11"), "volume"].isna().all()  # not in output: NULL
    assert after.loc[pd.Timestamp("2024-01-10"), "volume"].notna().all()


@pytest.mark.parametrize(
    ("column", "new_values", "stored_type", "new_type"),
    [
        ("close", "12.5", "DOUBLE", "VARCHAR"),  # a price that became text
        ("fetched_at", dt.date(2024, 2, 1), "TIMESTAMP", "DATE"),
        ("volume", True, "DOUBLE", "BOOLEAN"),
    ],
)
def test_incompatible_type_change_is_refused_and_rows_kept(
    io, db_path, seeded, column, new_values, stored_type, new_type
):
    changed = price_asset(
        lambda c: price_rows(["2024-01-10"], version=100.0).assign(**{column: new_values})
    )
    with pytest.raises(SchemaMismatchError) as excinfo:
        run(changed, io, key="2024-01-10")
    message = str(excinfo.value)
    for part in ("main.raw_prices", repr(column), stored_type, new_type):
        assert part in message
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_date_column_of_unpartitioned_table_refuses_text(io, db_path):
    listing = {"partition_expr": "listed"}
    run(
        price_asset(
            lambda c: pd.DataFrame({"symbol": ["AAA"], "listed": [dt.date(2001, 5, 1)]}),
            metadata={},
            partitions_def=None,
            name="listings",
        ),
        io,
    )
    as_text = price_asset(
        lambda c: pd.DataFrame({"symbol": ["AAA"], "listed": ["2001-05-01"]}),
        metadata={},
        partitions_def=None,
        name="listings",
    )
    with pytest.raises(SchemaMismatchError, match="DATE"):
        run(as_text, io)
    # With partition_expr naming it, the column must hold dates, and a string is refused upfront.
    declared = price_asset(
        lambda c: pd.DataFrame({"symbol": ["AAA"], "listed": ["2001-05-01"]}),
        metadata=listing,
        partitions_def=None,
        name="listings",
    )
    with pytest.raises(OutputFrameError, match="must hold dates"):
        run(declared, io)
    assert stored(db_path, "listings", "symbol")["listed"].tolist() == [pd.Timestamp("2001-05-01")]


def test_safe_widening_is_accepted(io, db_path, seeded):
    # Integer prices and int32 volumes into DOUBLE columns: no loss, no error.
    integers = price_asset(
        lambda c: price_rows(["2024-01-10"], version=100.0).astype(
            {"close": "int64", "volume": "int32"}
        )
    )
    run(integers, io, key="2024-01-10")
    after = stored(db_path)
    assert after.loc[after["date"] == "2024-01-10", "close"].tolist() == [102.0, 102.0]
    assert after["close"].dtype == "float64"


def test_type_compatibility_rule():
    assert is_safe_cast("INTEGER", "BIGINT")
    assert is_safe_cast("BIGINT", "DOUBLE")
    assert is_safe_cast("UTINYINT", "SMALLINT")
    assert is_safe_cast("TIMESTAMP_NS", "TIMESTAMP")
    assert is_safe_cast("FLOAT", "DOUBLE")
    assert not is_safe_cast("BIGINT", "INTEGER")
    assert not is_safe_cast("DOUBLE", "BIGINT")
    assert not is_safe_cast("UBIGINT", "BIGINT")
    assert not is_safe_cast("VARCHAR", "DOUBLE")
    assert not is_safe_cast("VARCHAR", "DATE")
    assert not is_safe_cast("DATE", "VARCHAR")
    assert not is_safe_cast("TIMESTAMP", "DATE")
    assert not is_safe_cast("TIMESTAMP WITH TIME ZONE", "TIMESTAMP")
    assert not is_safe_cast("BOOLEAN", "INTEGER")


# --- empty output -------------------------------------------------------------------------------


def _empty(context) -> pd.DataFrame:
    """An empty result with the dtypes a price source gives (as core.prices.empty_prices)."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "date": pd.Series([], dtype=object),
            "close": pd.Series([], dtype="float64"),
            "volume": pd.Series([], dtype="float64"),
            "fetched_at": pd.Series([], dtype="datetime64[us]"),
        }
    )


def test_empty_output_raises_and_keeps_rows(io, db_path, seeded):
    with pytest.raises(EmptyOutputError, match=r"raw_prices partition 2024-01-10.*allow_empty"):
        run(price_asset(_empty), io, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


@pytest.mark.parametrize("produce", [_empty, lambda c: pd.DataFrame()], ids=["typed", "no-columns"])
def test_allow_empty_replaces_the_window_with_nothing(io, db_path, seeded, produce):
    allowed = price_asset(produce, metadata={**PRICE_METADATA, "allow_empty": True})
    run(allowed, io, key="2024-01-10")
    after = stored(db_path)
    assert dt.date(2024, 1, 10) not in set(after["date"].dt.date)
    assert len(after) == len(seeded) - len(SYMBOLS)


def test_allow_empty_with_replace_keys_deletes_nothing(io, db_path, seeded):
    allowed = price_asset(
        _empty, metadata={**PRICE_METADATA, "allow_empty": True, "replace_keys": ["symbol"]}
    )
    run(allowed, io, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_allow_empty_first_write_creates_the_table(io, db_path):
    allowed = price_asset(_empty, metadata={**PRICE_METADATA, "allow_empty": True})
    run(allowed, io, key="2024-01-10")
    assert stored(db_path, order="date").empty
    with duckdb.connect(str(db_path), read_only=True) as con:
        columns = {r[0]: r[1] for r in con.execute("DESCRIBE raw_prices").fetchall()}
    # A column with no values has no type: it is created when a value first arrives, rather than
    # fixed now to a guessed type that would refuse the real data later.
    assert columns == {
        "date": "DATE",
        "close": "DOUBLE",
        "volume": "DOUBLE",
        "fetched_at": "TIMESTAMP",
    }
    run(versioned_prices(1.0), io, key="2024-01-11")
    assert len(stored(db_path)) == len(SYMBOLS)


# --- replace_keys and unique_key ----------------------------------------------------------------


@pytest.mark.parametrize(("replace_keys", "bbb_kept"), [(["symbol"], True), (None, False)])
def test_replace_keys_keep_other_symbols(io, db_path, seeded, replace_keys, bbb_kept):
    # BBB failed to download: the re-fetch over Wed..Fri returns AAA only.
    metadata = {**PRICE_METADATA, **({"replace_keys": replace_keys} if replace_keys else {})}
    run(versioned_prices(100.0, ("AAA",), metadata=metadata), io, keys=("2024-01-10", "2024-01-12"))
    after = stored(db_path)
    window = after["date"].between("2024-01-10", "2024-01-12")
    assert (after.loc[window & (after["symbol"] == "AAA"), "close"] >= 100).all()
    bbb_window = after[window & (after["symbol"] == "BBB")]
    if bbb_kept:
        expected = seeded[
            seeded["date"].between("2024-01-10", "2024-01-12") & (seeded["symbol"] == "BBB")
        ]
        pd.testing.assert_frame_equal(bbb_window, expected)
    else:
        assert bbb_window.empty
    # Outside the window both symbols are untouched either way.
    pd.testing.assert_frame_equal(
        after[~window].reset_index(drop=True),
        seeded[~seeded["date"].between("2024-01-10", "2024-01-12")].reset_index(drop=True),
    )


def test_duplicate_unique_key_rolls_back(io, db_path, seeded):
    doubled = price_asset(
        lambda c: pd.concat([price_rows(["2024-01-10"], version=100.0)] * 2, ignore_index=True)
    )
    with pytest.raises(
        DuplicateKeyError, match=r"2 value\(s\) of unique_key \['symbol', 'date'\].*AAA"
    ):
        run(doubled, io, key="2024-01-10")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_null_key_is_rejected(io, db_path):
    nulls = price_asset(lambda c: price_rows(["2024-01-10"], version=1.0).assign(symbol=None))
    with pytest.raises(OutputFrameError, match="'symbol' has 2 null"):
        run(nulls, io, key="2024-01-10")


def test_unpartitioned_asset_replaces_the_whole_table(io, db_path):
    def universe(symbols):
        return price_asset(
            lambda c: pd.DataFrame({"symbol": list(symbols), "weight": 1.0 / len(symbols)}),
            metadata={"unique_key": ["symbol"]},
            partitions_def=None,
            name="universe",
        )

    run(universe(["AAA", "BBB", "CCC"]), io)
    result = run(universe(["BBB", "DDD"]), io)
    assert stored(db_path, "universe", "symbol")["symbol"].tolist() == ["BBB", "DDD"]
    meta = result.asset_materializations_for_node("universe")[0].metadata
    assert (meta["rows_deleted"].value, meta["row_count"].value) == (3, 2)


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


def test_a_static_partition_replaces_only_its_own_rows(io, db_path):
    run(strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0)), io, keys=("alpha", "gamma"))
    run(strategy_asset(lambda c: strategy_rows(c.partition_keys, 2.0, trades=1)), io, key="beta")
    table = stored(db_path, "trades", "strategy, trade")
    assert table[["strategy", "trade", "pnl"]].values.tolist() == [
        ["alpha", 0, 1.0], ["alpha", 1, 2.0], ["beta", 0, 2.0], ["gamma", 0, 1.0], ["gamma", 1, 2.0],
    ]  # fmt: skip
    # the partition column stays text and other date columns stay dates
    assert table["entry_date"].dt.date.tolist()[0] == day(ALL_SESSIONS[0])


def test_an_empty_static_partition_deletes_its_rows_only_when_allowed(io, db_path):
    run(strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0)), io, keys=("alpha", "gamma"))
    empty = lambda c: strategy_rows([], 0.0)  # noqa: E731
    run(strategy_asset(empty), io, key="beta")
    run(strategy_asset(empty), io, key="alpha")
    assert sorted(set(stored(db_path, "trades", "strategy")["strategy"])) == ["gamma"]
    strict = {**STRATEGY_METADATA, "allow_empty": False}
    with pytest.raises(EmptyOutputError):
        run(strategy_asset(empty, strict), io, key="gamma")
    assert len(stored(db_path, "trades", "strategy")) == 2


def test_rows_of_another_static_partition_are_refused(io, db_path):
    run(strategy_asset(lambda c: strategy_rows(["alpha"], 1.0)), io, key="alpha")
    with pytest.raises(PartitionBoundsError, match="'strategy' outside the run's partitions"):
        run(strategy_asset(lambda c: strategy_rows(["alpha", "beta"], 2.0)), io, key="alpha")
    assert stored(db_path, "trades", "trade")["pnl"].tolist() == [1.0, 2.0]


def test_inputs_load_their_static_partitions_or_all_of_them(io):
    upstream = strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0))
    run(upstream, io, keys=("alpha", "beta"))
    seen = {}

    @dg.asset(partitions_def=STRATEGIES, ins={"trades": dg.AssetIn()})
    def per_strategy(trades: pd.DataFrame) -> None:
        seen["per_strategy"] = sorted(set(trades["strategy"]))

    @dg.asset(ins={"trades": dg.AssetIn()})
    def summary(trades: pd.DataFrame) -> None:
        seen["summary"] = sorted(set(trades["strategy"]))

    io_managers = {"io_manager": io, "none": dg.mem_io_manager}
    dg.materialize(
        [upstream, per_strategy],
        resources=io_managers,
        selection=[per_strategy],
        partition_key="beta",
    )
    dg.materialize([upstream, summary], resources=io_managers, selection=[summary])
    assert seen == {"per_strategy": ["beta"], "summary": ["alpha", "beta"]}


def test_multi_partitions_are_not_supported(io):
    grid = dg.MultiPartitionsDefinition({"a": STRATEGIES, "b": STRATEGIES})
    multi = price_asset(lambda c: pd.DataFrame({"x": [1]}), metadata={}, partitions_def=grid)
    with pytest.raises(NotImplementedError, match="statically partitioned"):
        run(multi, io, key="alpha|beta")


# --- the file lock ------------------------------------------------------------------------------

HOLD_LOCK = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    """
)


def test_locked_file_waits_visibly_then_raises_after_the_timeout(io, db_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(duckdb_io, "_sleep", waits.append)
    db_path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    instance = dg.DagsterInstance.ephemeral()
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run(
            versioned_prices(1.0), io, key="2024-01-10", instance=instance, raise_on_error=False
        )
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error.cause
    assert failure.cls_name == "DatabaseLockedError"
    assert f"locked by PID {holder.pid}" in failure.message and "3 attempt(s)" in failure.message
    assert waits == pytest.approx(
        [0.01, 0.02]
    )  # doubling from lock_retry_base_seconds until 0.03 s are spent
    # The run's own log says, at INFO, what it waits for and who holds it.
    said = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.dagster_event is None and e.level == logging.INFO
    ]
    assert any(
        f"waiting for the lock on DuckDB file {db_path}: PID {holder.pid}" in m for m in said
    ), said
    run(versioned_prices(1.0), io, key="2024-01-10")  # the lock released, the write goes through
    assert len(stored(db_path)) == len(SYMBOLS)


def test_lock_backoff_is_capped(db_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(duckdb_io, "_sleep", waits.append)

    def always_locked(path, *, read_only):
        raise duckdb.IOException(f'IO Error: Could not set lock on file "{path}"')

    monkeypatch.setattr(DuckDBIOManager, "_open", staticmethod(always_locked))
    io = DuckDBIOManager(
        database=str(db_path), lock_timeout_seconds=21.0, lock_retry_base_seconds=2.0
    )
    with pytest.raises(DatabaseLockedError, match="another process"):
        run(versioned_prices(1.0), io, key="2024-01-10")
    assert waits == [2.0, 4.0, MAX_LOCK_BACKOFF_SECONDS, MAX_LOCK_BACKOFF_SECONDS, 5.0]


# --- loading ------------------------------------------------------------------------------------

LOOKBACK = dg.TimeWindowPartitionMapping(start_offset=-2)


def test_load_input_reads_the_lookback_window(io, db_path, seeded):
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=SESSIONS, ins={PRICES: dg.AssetIn(partition_mapping=LOOKBACK)})
    def momentum(context, raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["prices"] = raw_prices
        today = raw_prices[raw_prices["date"] == day(context.partition_key)]
        return today[["symbol", "date", "close"]]

    # Tuesday after the holiday: two sessions back is Thursday 01-11 (the weekend and the
    # excluded Monday are no sessions).
    run([versioned_prices(1.0), momentum], io, key="2024-01-16", selection=[momentum])
    loaded = seen["prices"]
    assert sorted(set(loaded["date"])) == [day("2024-01-11"), day("2024-01-12"), day("2024-01-16")]
    assert all(type(d) is dt.date for d in loaded["date"])  # as assets produce them
    assert list(loaded.columns) == list(seeded.columns)
    assert list(zip(loaded["symbol"], loaded["date"], strict=True)) == sorted(
        zip(loaded["symbol"], loaded["date"], strict=True)
    )  # ordered by the upstream unique_key


def test_load_input_selects_columns_and_reads_while_file_open(io, db_path, seeded):
    seen = {}

    @dg.asset(ins={PRICES: dg.AssetIn(metadata={"columns": ["symbol", "close"]})})
    def latest_close(raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["prices"] = raw_prices
        return raw_prices.groupby("symbol", as_index=False)["close"].last()

    # This process holds a read-write connection: the read-only load must join it, not fail.
    holder = duckdb.connect(str(db_path))
    try:
        run([versioned_prices(1.0), latest_close], io, selection=[latest_close])
    finally:
        holder.close()
    assert list(seen["prices"].columns) == ["symbol", "close"]
    assert len(seen["prices"]) == len(seeded)  # unpartitioned downstream: every partition


def test_self_dependency_first_partition_gets_an_empty_frame(io, db_path):
    seen: list[int] = []

    @dg.asset(
        partitions_def=SESSIONS,
        ins={
            "previous": dg.AssetIn(
                key="equity",
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
            )
        },
    )
    def equity(context, previous: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(previous))
        start = 100.0 if previous.empty else float(previous["value"].iloc[-1])
        return pd.DataFrame({"date": [day(context.partition_key)], "value": [start + 1]})

    for key in ALL_SESSIONS[:3]:
        run(equity, io, key=key)
    assert seen == [0, 1, 1]
    assert stored(db_path, "equity", "date")["value"].tolist() == [101.0, 102.0, 103.0]


def test_missing_upstream_table(io, db_path):
    @dg.asset(ins={PRICES: dg.AssetIn()})
    def strict(raw_prices: pd.DataFrame) -> pd.DataFrame:
        return raw_prices

    upstream = versioned_prices(1.0, partitions_def=None, metadata={})
    with pytest.raises(MissingTableError, match="main.raw_prices does not exist"):
        run([upstream, strict], io, selection=[strict])
    seen = {}

    @dg.asset(ins={PRICES: dg.AssetIn(metadata={"allow_missing": True, "columns": ["symbol"]})})
    def observed(raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["frame"] = raw_prices
        return pd.DataFrame({"n": [len(raw_prices)]})

    run([upstream, observed], io, selection=[observed])
    assert seen["frame"].empty and list(seen["frame"].columns) == ["symbol"]


# --- contract helpers ---------------------------------------------------------------------------


def test_table_names_and_identifiers(io):
    assert table_name_for(["raw_prices"]) == "raw_prices"
    assert table_name_for(["market", "raw_prices"]) == "market__raw_prices"
    for bad in (["raw-prices"], ["1day"], ['x"; DROP TABLE y; --'], []):
        with pytest.raises(InvalidIdentifierError):
            table_name_for(bad)
    with pytest.raises(InvalidIdentifierError, match="replace_keys"):
        OutputSpec.from_metadata({"replace_keys": ["sym bol"]}, origin="asset x")
    with pytest.raises(StorageMetadataError, match="list of column names"):
        OutputSpec.from_metadata({"unique_key": "symbol"}, origin="asset x")
    bad_schema = DuckDBIOManager(database=io.database, schema_name="prod; DROP")
    with pytest.raises(InvalidIdentifierError, match="schema_name"):
        run(versioned_prices(1.0), bad_schema, key="2024-01-10")


def test_table_lives_in_the_configured_schema(db_path):
    io = DuckDBIOManager(database=str(db_path), schema_name="market")
    run(versioned_prices(1.0), io, key="2024-01-10")
    with duckdb.connect(str(db_path), read_only=True) as con:
        (count,) = con.execute("SELECT count(*) FROM market.raw_prices").fetchone()
    assert count == len(SYMBOLS)


def test_date_column_accepts_dates_and_midnights_only():
    expected = [dt.date(2024, 1, 10), dt.date(2024, 1, 11)]
    tz_midnights = pd.Series(
        pd.to_datetime(["2024-01-10", "2024-01-11"]).tz_localize("America/New_York")
    )
    for values in (
        pd.Series(expected, dtype=object),
        pd.Series(pd.to_datetime(["2024-01-10", "2024-01-11"])),
        tz_midnights,
        pd.Series([dt.datetime(2024, 1, 10), dt.datetime(2024, 1, 11)], dtype=object),
    ):
        stamps = midnight_timestamps(values, "date", "test")
        assert stamps.dtype.kind == "M" and stamps.dt.date.tolist() == expected
    for values, message in (
        (pd.Series(["2024-01-10"]), "must hold dates"),
        (pd.Series([20240110]), "must hold dates"),
        (pd.Series([dt.date(2024, 1, 10), None], dtype=object), "1 row"),
        (
            pd.Series([dt.date(2024, 1, 10), dt.datetime(2024, 1, 11, 9, 30)], dtype=object),
            "time of day",
        ),
    ):
        with pytest.raises(OutputFrameError, match=message):
            midnight_timestamps(values, "date", "test")


def test_non_dataframe_and_named_index_outputs_are_rejected(io):
    @dg.asset(partitions_def=SESSIONS)
    def untyped(context):  # no return annotation, so Dagster's own type check does not step in
        return [1, 2]

    with pytest.raises(OutputFrameError, match="expected a pandas DataFrame, got list"):
        run(untyped, io, key="2024-01-10")
    indexed = price_asset(lambda c: price_rows(["2024-01-10"], version=1.0).set_index("symbol"))
    with pytest.raises(OutputFrameError, match="reset_index"):
        run(indexed, io, key="2024-01-10")


# --- restatements: rows before the window, named by the output ----------------------------------


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


def test_a_per_key_restatement_replaces_that_key_from_its_date_and_nothing_else(
    io, db_path, seeded
):
    # AAA's history from 01-09 was re-adjusted (one row fewer: the source dropped 01-11).
    history = ["2024-01-09", "2024-01-10", "2024-01-12", "2024-01-16"]
    produce = lambda c: pd.concat(  # noqa: E731
        [
            price_rows(history, version=500.0, symbols=("AAA",)),
            price_rows(["2024-01-16"], version=500.0, symbols=("BBB",)),
        ]
    )
    restated = Restatement(column="symbol", key_from={"AAA": day("2024-01-09")})
    run(restating_asset(produce, restated), io, key="2024-01-16")
    after = stored(db_path)
    aaa = after[
        (after.symbol == "AAA") & (after.date >= "2024-01-09") & (after.date <= "2024-01-16")
    ]
    assert aaa.date.dt.strftime("%Y-%m-%d").tolist() == history and (aaa.close >= 500).all()
    untouched = ((after.symbol == "AAA") & (after.date < "2024-01-09")) | (
        (after.symbol == "BBB") & (after.date != "2024-01-16")
    )
    expected = ((seeded.symbol == "AAA") & (seeded.date < "2024-01-09")) | (
        (seeded.symbol == "BBB") & (seeded.date != "2024-01-16")
    )
    pd.testing.assert_frame_equal(
        after[untouched].reset_index(drop=True), seeded[expected].reset_index(drop=True)
    )
    assert not after.duplicated(["symbol", "date"]).any()


def test_an_all_rows_restatement_moves_the_window_start(io, db_path, seeded):
    produce = lambda c: price_rows(["2024-01-12", "2024-01-16"], version=700.0)  # noqa: E731
    run(restating_asset(produce, Restatement(all_from=day("2024-01-12"))), io, key="2024-01-16")
    after = stored(db_path)
    assert (after.loc[after.date.between("2024-01-12", "2024-01-16"), "close"] >= 700).all()
    assert (after.loc[after.date < "2024-01-12", "close"] < 700).all()


def test_rows_before_the_window_not_named_by_the_restatement_are_rejected(io, db_path, seeded):
    # BBB rows before the window, but only AAA is restated: nothing is written.
    produce = lambda c: price_rows(["2024-01-12", "2024-01-16"], version=900.0)  # noqa: E731
    restated = Restatement(column="symbol", key_from={"AAA": day("2024-01-12")})
    with pytest.raises(PartitionBoundsError, match="2024-01-12"):
        run(restating_asset(produce, restated), io, key="2024-01-16")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_malformed_restatement_metadata_is_a_named_error_and_nothing_written(io, db_path, seeded):
    produce = lambda c: price_rows(["2024-01-16"], version=900.0)  # noqa: E731
    bad = {"restated_from": dg.MetadataValue.json({"all_from": "not a date"})}
    with pytest.raises(StorageMetadataError, match="restated_from"):
        run(restating_asset(produce, bad), io, key="2024-01-16")
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_a_failed_restating_write_keeps_every_previous_row(db_path, seeded):
    failing = FailAfterDelete(database=str(db_path))
    produce = lambda c: price_rows(["2024-01-09", "2024-01-10"], version=100.0)  # noqa: E731
    with pytest.raises(RuntimeError, match="injected failure"):
        run(
            restating_asset(produce, Restatement(all_from=day("2024-01-09"))),
            failing,
            key="2024-01-10",
        )
    pd.testing.assert_frame_equal(stored(db_path), seeded)


def test_read_rows_filters_symbols_and_dates_and_tolerates_a_missing_table(io, db_path, seeded):
    got = io.read_rows(
        PRICES,
        columns=["symbol", "date", "close"],
        symbols=["BBB"],
        start=day("2024-01-10"),
        end=day("2024-01-12"),
    )
    assert got.symbol.unique().tolist() == ["BBB"]
    assert [d.isoformat() for d in got.date] == ["2024-01-10", "2024-01-11"]
    assert io.read_rows(PRICES, symbols=[]).empty
    missing = io.read_rows("never_written", columns=["symbol", "date"])
    assert missing.empty and list(missing.columns) == ["symbol", "date"]
    with pytest.raises(StorageMetadataError, match="no column"):
        io.read_rows(PRICES, columns=["nope"])
