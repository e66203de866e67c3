"""The storage contract, asserted once and run against both IO managers (DuckDB and S3).

Each test states one property of :mod:`trading_assets.storage.contract` through real Dagster runs and
reads the stored table back independently of the IO manager (storage_stores.py): idempotent
re-runs, the DATE partition column, range backfills, insert by name, schema evolution and refused
type changes, empty outputs, replace_keys, unique_key, partition bounds, unpartitioned tables.
Static partitions, restatements and loads: test_storage_contract_reads.py. Pure helpers of the
contract (names, dates, the type rule) are tested at the end, once.
"""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from trading_assets.storage.column_types import is_safe_cast
from trading_assets.storage.contract import (
    DateBounds,
    DuplicateKeyError,
    EmptyOutputError,
    InvalidIdentifierError,
    OutputFrameError,
    OutputSpec,
    PartitionBoundsError,
    SchemaMismatchError,
    StorageMetadataError,
    date_bounds_for_window,
    table_name_for,
)
from trading_assets.storage.output_frames import midnight_timestamps
from trading_assets_tests.storage_stores import (
    ALL_SESSIONS,
    PRICE_METADATA,
    PRICES,
    SESSIONS,
    SYMBOLS,
    day,
    price_asset,
    price_rows,
    run,
    seeded_fixture,
    store_fixture,
    versioned_prices,
)

# pytest finds the fixtures as attributes of this module: "store" (duckdb and s3) and "seeded".
FIXTURES = (store_fixture, seeded_fixture)

# --- dates, idempotence, output metadata --------------------------------------------------------


def test_partition_column_is_stored_as_date_and_rerun_is_idempotent(store):
    key = "2024-01-10"
    as_date_objects = versioned_prices(1.0)
    # Same rows, but dates as midnight datetime64 (what pd.to_datetime gives): must land on the
    # same DATE values, so the second run replaces rather than duplicates.
    as_timestamps = price_asset(
        lambda c: price_rows([key], version=1.0).assign(date=lambda f: pd.to_datetime(f["date"]))
    )
    first = run(as_date_objects, store.io, key=key)
    once = store.stored()
    second = run(as_timestamps, store.io, key=key)
    twice = store.stored()

    pd.testing.assert_frame_equal(once, twice)
    assert len(twice) == len(SYMBOLS)
    types = store.column_types()
    assert types["date"] == "DATE"
    assert types["fetched_at"] == "TIMESTAMP"  # a real timestamp stays a timestamp

    meta = second.asset_materializations_for_node(PRICES)[0].metadata
    assert meta["row_count"].value == len(SYMBOLS)
    assert meta["rows_deleted"].value == len(SYMBOLS)
    assert meta["table_row_count"].value == len(SYMBOLS)
    assert meta["dagster/table_name"].value == store.table_name(PRICES)
    columns = {c.name: c.type for c in meta["dagster/column_schema"].value.columns}
    assert columns == {
        "symbol": "VARCHAR",
        "date": "DATE",
        "close": "DOUBLE",
        "volume": "DOUBLE",
        "fetched_at": "TIMESTAMP",
    }
    assert first.asset_materializations_for_node(PRICES)[0].metadata["rows_deleted"].value == 0


def test_non_midnight_timestamp_in_partition_column_is_rejected(store):
    intraday = price_asset(
        lambda c: price_rows(["2024-01-10"], version=1.0).assign(
            date=pd.Timestamp("2024-01-10 15:59")
        )
    )
    with pytest.raises(OutputFrameError, match="time of day"):
        run(intraday, store.io, key="2024-01-10")
    assert not store.exists(PRICES)


# --- partition windows and ranges ---------------------------------------------------------------


def test_single_run_range_backfill_replaces_exactly_the_range(store, seeded):
    # Thursday 01-11 .. Tuesday 01-16: spans a weekend and the excluded Monday holiday.
    result = run(versioned_prices(100.0), store.io, keys=("2024-01-11", "2024-01-16"))
    after = store.stored()

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


def test_friday_window_ends_on_monday(store):
    """Rows dated Saturday belong to Friday's window (the window's end date, not start + 1 day)."""
    friday, saturday = dt.date(2024, 1, 12), dt.date(2024, 1, 13)

    def with_saturday(version: float):
        return price_asset(
            lambda c: pd.DataFrame(
                {"symbol": "AAA", "date": [friday, saturday], "close": [version, version]}
            )
        )

    run(with_saturday(1.0), store.io, key="2024-01-12")
    run(with_saturday(2.0), store.io, key="2024-01-12")
    assert store.stored()["close"].tolist() == [2.0, 2.0]
    bounds = date_bounds_for_window(SESSIONS.time_window_for_partition_key("2024-01-12"))
    assert bounds == DateBounds(friday, dt.date(2024, 1, 15))


def test_rows_outside_the_window_are_rejected_and_nothing_written(store, seeded):
    # A source that ignores the requested dates and returns the previous session as well.
    leaky = price_asset(lambda c: price_rows(["2024-01-09", "2024-01-10"], version=100.0))
    with pytest.raises(PartitionBoundsError, match="2024-01-09"):
        run(leaky, store.io, key="2024-01-10")
    pd.testing.assert_frame_equal(store.stored(), seeded)


# --- columns and types --------------------------------------------------------------------------


def test_insert_is_by_name_not_position(store):
    run(versioned_prices(1.0), store.io, key="2024-01-10")
    # Same columns, reversed order; close and volume are both DOUBLE, so a positional insert
    # would silently swap them.
    reordered = price_asset(lambda c: price_rows(["2024-01-11"], version=1.0).iloc[:, ::-1])
    run(reordered, store.io, key="2024-01-11")
    after = store.stored()
    row = after[(after["symbol"] == "AAA") & (after["date"] == pd.Timestamp("2024-01-11"))].iloc[0]
    assert row["close"] == 1.0 + ALL_SESSIONS.index("2024-01-11")
    assert row["volume"] == 1000.0
    assert list(after.columns) == ["symbol", "date", "close", "volume", "fetched_at"]


def test_new_column_is_added_and_missing_column_stored_as_null(store):
    run(versioned_prices(1.0), store.io, key="2024-01-10")
    with_source = price_asset(
        lambda c: (
            price_rows(["2024-01-11"], version=1.0).assign(source="yahoo").drop(columns="volume")
        )
    )
    run(with_source, store.io, key="2024-01-11")
    after = store.stored().set_index("date")
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
    store, seeded, column, new_values, stored_type, new_type
):
    changed = price_asset(
        lambda c: price_rows(["2024-01-10"], version=100.0).assign(**{column: new_values})
    )
    with pytest.raises(SchemaMismatchError) as excinfo:
        run(changed, store.io, key="2024-01-10")
    message = str(excinfo.value)
    for part in (store.table_name(PRICES), repr(column), stored_type, new_type):
        assert part in message
    pd.testing.assert_frame_equal(store.stored(), seeded)


def test_date_column_of_unpartitioned_table_refuses_text(store):
    def listings(value, metadata):
        return price_asset(
            lambda c: pd.DataFrame({"symbol": ["AAA"], "listed": [value]}),
            metadata=metadata,
            partitions_def=None,
            name="listings",
        )

    run(listings(dt.date(2001, 5, 1), {}), store.io)
    with pytest.raises(SchemaMismatchError, match="DATE"):
        run(listings("2001-05-01", {}), store.io)
    # With partition_expr naming it, the column must hold dates, and a string is refused upfront.
    with pytest.raises(OutputFrameError, match="must hold dates"):
        run(listings("2001-05-01", {"partition_expr": "listed"}), store.io)
    listed = store.stored("listings", "symbol")["listed"].tolist()
    assert listed == [pd.Timestamp("2001-05-01")]


def test_safe_widening_is_accepted(store, seeded):
    # Integer prices and int32 volumes into DOUBLE columns: no loss, no error.
    integers = price_asset(
        lambda c: price_rows(["2024-01-10"], version=100.0).astype(
            {"close": "int64", "volume": "int32"}
        )
    )
    run(integers, store.io, key="2024-01-10")
    after = store.stored()
    assert after.loc[after["date"] == "2024-01-10", "close"].tolist() == [102.0, 102.0]
    assert after["close"].dtype == "float64"
    assert store.column_types()["close"] == "DOUBLE"


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


def test_empty_output_raises_and_keeps_rows(store, seeded):
    with pytest.raises(EmptyOutputError, match=r"raw_prices partition 2024-01-10.*allow_empty"):
        run(price_asset(_empty), store.io, key="2024-01-10")
    pd.testing.assert_frame_equal(store.stored(), seeded)


@pytest.mark.parametrize("produce", [_empty, lambda c: pd.DataFrame()], ids=["typed", "no-columns"])
def test_allow_empty_replaces_the_window_with_nothing(store, seeded, produce):
    allowed = price_asset(produce, metadata={**PRICE_METADATA, "allow_empty": True})
    run(allowed, store.io, key="2024-01-10")
    after = store.stored()
    assert dt.date(2024, 1, 10) not in set(after["date"].dt.date)
    assert len(after) == len(seeded) - len(SYMBOLS)


def test_allow_empty_with_replace_keys_deletes_nothing(store, seeded):
    allowed = price_asset(
        _empty, metadata={**PRICE_METADATA, "allow_empty": True, "replace_keys": ["symbol"]}
    )
    run(allowed, store.io, key="2024-01-10")
    pd.testing.assert_frame_equal(store.stored(), seeded)


def test_allow_empty_first_write_creates_the_table(store):
    allowed = price_asset(_empty, metadata={**PRICE_METADATA, "allow_empty": True})
    run(allowed, store.io, key="2024-01-10")
    assert store.stored(order="date").empty
    # A column with no values has no type: it is created when a value first arrives, rather than
    # fixed now to a guessed type that would refuse the real data later.
    assert store.column_types() == {
        "date": "DATE",
        "close": "DOUBLE",
        "volume": "DOUBLE",
        "fetched_at": "TIMESTAMP",
    }
    run(versioned_prices(1.0), store.io, key="2024-01-11")
    assert len(store.stored()) == len(SYMBOLS)


# --- replace_keys and unique_key ----------------------------------------------------------------


@pytest.mark.parametrize(("replace_keys", "bbb_kept"), [(["symbol"], True), (None, False)])
def test_replace_keys_keep_other_symbols(store, seeded, replace_keys, bbb_kept):
    # BBB failed to download: the re-fetch over Wed..Fri returns AAA only.
    metadata = {**PRICE_METADATA, **({"replace_keys": replace_keys} if replace_keys else {})}
    aaa_only = versioned_prices(100.0, ("AAA",), metadata=metadata)
    run(aaa_only, store.io, keys=("2024-01-10", "2024-01-12"))
    after = store.stored()
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


def test_replace_keys_replace_a_symbol_on_dates_it_no_longer_has(store, seeded):
    # AAA re-fetched over Wed..Fri comes back without Thursday: its stored Thursday row goes too
    # (the output names AAA), BBB's Thursday stays.
    metadata = {**PRICE_METADATA, "replace_keys": ["symbol"]}
    gap = price_asset(
        lambda c: price_rows(["2024-01-10", "2024-01-12"], version=100.0, symbols=("AAA",)),
        metadata=metadata,
    )
    result = run(gap, store.io, keys=("2024-01-10", "2024-01-12"))
    after = store.stored()
    thursday = after[after["date"] == pd.Timestamp("2024-01-11")]
    assert thursday["symbol"].tolist() == ["BBB"]
    assert result.asset_materializations_for_node(PRICES)[0].metadata["rows_deleted"].value == 3


def test_duplicate_unique_key_rolls_back(store, seeded):
    doubled = price_asset(
        lambda c: pd.concat([price_rows(["2024-01-10"], version=100.0)] * 2, ignore_index=True)
    )
    with pytest.raises(
        DuplicateKeyError, match=r"2 value\(s\) of unique_key \['symbol', 'date'\].*AAA"
    ):
        run(doubled, store.io, key="2024-01-10")
    pd.testing.assert_frame_equal(store.stored(), seeded)


def test_unique_key_without_the_partition_column_is_checked_across_partitions(store):
    # Fills keyed by an id that must be unique over the whole table, not per session.
    metadata = {"unique_key": ["fill_id"]}

    def fills(ids):
        return price_asset(
            lambda c: pd.DataFrame({"fill_id": ids, "date": day(c.partition_key), "qty": 1}),
            metadata=metadata,
            name="fills",
        )

    run(fills([1, 2]), store.io, key="2024-01-10")
    run(fills([3]), store.io, key="2024-01-11")
    with pytest.raises(DuplicateKeyError, match=r"unique_key \['fill_id'\].*'fill_id': 2"):
        run(fills([2, 4]), store.io, key="2024-01-12")
    run(fills([1, 2]), store.io, key="2024-01-10")  # replacing its own partition is no clash
    assert store.stored("fills", "fill_id")["fill_id"].tolist() == [1, 2, 3]


def test_null_key_is_rejected(store):
    nulls = price_asset(lambda c: price_rows(["2024-01-10"], version=1.0).assign(symbol=None))
    with pytest.raises(OutputFrameError, match="'symbol' has 2 null"):
        run(nulls, store.io, key="2024-01-10")


def test_unpartitioned_asset_replaces_the_whole_table(store):
    def universe(symbols):
        return price_asset(
            lambda c: pd.DataFrame({"symbol": list(symbols), "weight": 1.0 / len(symbols)}),
            metadata={"unique_key": ["symbol"]},
            partitions_def=None,
            name="universe",
        )

    run(universe(["AAA", "BBB", "CCC"]), store.io)
    result = run(universe(["BBB", "DDD"]), store.io)
    assert store.stored("universe", "symbol")["symbol"].tolist() == ["BBB", "DDD"]
    meta = result.asset_materializations_for_node("universe")[0].metadata
    assert (meta["rows_deleted"].value, meta["row_count"].value) == (3, 2)


def test_non_dataframe_and_named_index_outputs_are_rejected(store):
    @dg.asset(partitions_def=SESSIONS)
    def untyped(context):  # no return annotation, so Dagster's own type check does not step in
        return [1, 2]

    with pytest.raises(OutputFrameError, match="expected a pandas DataFrame, got list"):
        run(untyped, store.io, key="2024-01-10")
    indexed = price_asset(lambda c: price_rows(["2024-01-10"], version=1.0).set_index("symbol"))
    with pytest.raises(OutputFrameError, match="reset_index"):
        run(indexed, store.io, key="2024-01-10")
    assert not store.exists(PRICES)


# --- contract helpers (no store) ------------------------------------------------------------------


def test_table_names_and_identifiers():
    assert table_name_for(["raw_prices"]) == "raw_prices"
    assert table_name_for(["market", "raw_prices"]) == "market__raw_prices"
    for bad in (["raw-prices"], ["1day"], ['x"; DROP TABLE y; --'], []):
        with pytest.raises(InvalidIdentifierError):
            table_name_for(bad)
    with pytest.raises(InvalidIdentifierError, match="replace_keys"):
        OutputSpec.from_metadata({"replace_keys": ["sym bol"]}, origin="asset x")
    with pytest.raises(StorageMetadataError, match="list of column names"):
        OutputSpec.from_metadata({"unique_key": "symbol"}, origin="asset x")


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
