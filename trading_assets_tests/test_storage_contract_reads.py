"""The storage contract, part two, against both IO managers: static partitions, restatements, inputs
(lookback windows, columns, allow_missing, missing tables) and TableStore.read_rows.

Part one (writes, types, keys): test_storage_contract.py; the stores: storage_stores.py.
"""

import dagster as dg
import pandas as pd
import pytest

from trading_assets.storage.contract import (
    EmptyOutputError,
    MissingTableError,
    PartitionBoundsError,
    Restatement,
    StorageMetadataError,
)
from trading_assets_tests.storage_stores import (
    ALL_SESSIONS,
    PRICES,
    SESSIONS,
    STRATEGIES,
    STRATEGY_METADATA,
    day,
    price_asset,
    price_rows,
    restating_asset,
    run,
    seeded_fixture,
    store_fixture,
    strategy_asset,
    strategy_rows,
    versioned_prices,
)

# pytest finds the fixtures as attributes of this module: "store" (duckdb and s3) and "seeded".
FIXTURES = (store_fixture, seeded_fixture)

# --- static partitions --------------------------------------------------------------------------


def test_a_static_partition_replaces_only_its_own_rows(store):
    first = strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0))
    run(first, store.io, keys=("alpha", "gamma"))
    run(
        strategy_asset(lambda c: strategy_rows(c.partition_keys, 2.0, trades=1)),
        store.io,
        key="beta",
    )
    table = store.stored("trades", "strategy, trade")
    assert table[["strategy", "trade", "pnl"]].values.tolist() == [
        ["alpha", 0, 1.0], ["alpha", 1, 2.0], ["beta", 0, 2.0], ["gamma", 0, 1.0], ["gamma", 1, 2.0],
    ]  # fmt: skip
    # the partition column stays text and other date columns stay dates
    assert table["entry_date"].dt.date.tolist()[0] == day(ALL_SESSIONS[0])
    assert store.column_types("trades")["strategy"] == "VARCHAR"


def test_an_empty_static_partition_deletes_its_rows_only_when_allowed(store):
    run(
        strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0)),
        store.io,
        keys=("alpha", "gamma"),
    )
    empty = lambda c: strategy_rows([], 0.0)  # noqa: E731
    run(strategy_asset(empty), store.io, key="beta")
    run(strategy_asset(empty), store.io, key="alpha")
    assert sorted(set(store.stored("trades", "strategy")["strategy"])) == ["gamma"]
    strict = {**STRATEGY_METADATA, "allow_empty": False}
    with pytest.raises(EmptyOutputError):
        run(strategy_asset(empty, strict), store.io, key="gamma")
    assert len(store.stored("trades", "strategy")) == 2


def test_rows_of_another_static_partition_are_refused(store):
    run(strategy_asset(lambda c: strategy_rows(["alpha"], 1.0)), store.io, key="alpha")
    with pytest.raises(PartitionBoundsError, match="'strategy' outside the run's partitions"):
        run(strategy_asset(lambda c: strategy_rows(["alpha", "beta"], 2.0)), store.io, key="alpha")
    assert store.stored("trades", "trade")["pnl"].tolist() == [1.0, 2.0]


def test_inputs_load_their_static_partitions_or_all_of_them(store):
    upstream = strategy_asset(lambda c: strategy_rows(c.partition_keys, 1.0))
    run(upstream, store.io, keys=("alpha", "beta"))
    seen = {}

    @dg.asset(partitions_def=STRATEGIES, ins={"trades": dg.AssetIn()})
    def per_strategy(trades: pd.DataFrame) -> None:
        seen["per_strategy"] = sorted(set(trades["strategy"]))

    @dg.asset(ins={"trades": dg.AssetIn()})
    def summary(trades: pd.DataFrame) -> None:
        seen["summary"] = sorted(set(trades["strategy"]))

    io_managers = {"io_manager": store.io, "none": dg.mem_io_manager}
    dg.materialize(
        [upstream, per_strategy],
        resources=io_managers,
        selection=[per_strategy],
        partition_key="beta",
    )
    dg.materialize([upstream, summary], resources=io_managers, selection=[summary])
    assert seen == {"per_strategy": ["beta"], "summary": ["alpha", "beta"]}


def test_multi_partitions_are_not_supported(store):
    grid = dg.MultiPartitionsDefinition({"a": STRATEGIES, "b": STRATEGIES})
    multi = price_asset(lambda c: pd.DataFrame({"x": [1]}), metadata={}, partitions_def=grid)
    with pytest.raises(NotImplementedError, match="statically partitioned"):
        run(multi, store.io, key="alpha|beta")


# --- restatements: rows before the window, named by the output ----------------------------------


def test_a_per_key_restatement_replaces_that_key_from_its_date_and_nothing_else(store, seeded):
    # AAA's history from 01-09 was re-adjusted (one row fewer: the source dropped 01-11).
    history = ["2024-01-09", "2024-01-10", "2024-01-12", "2024-01-16"]
    produce = lambda c: pd.concat(  # noqa: E731
        [
            price_rows(history, version=500.0, symbols=("AAA",)),
            price_rows(["2024-01-16"], version=500.0, symbols=("BBB",)),
        ]
    )
    restated = Restatement(column="symbol", key_from={"AAA": day("2024-01-09")})
    result = run(restating_asset(produce, restated), store.io, key="2024-01-16")
    after = store.stored()
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
    meta = result.asset_materializations_for_node(PRICES)[0].metadata
    # AAA 01-09 .. 01-16 (5 sessions: 01-11 was dropped by the source) and BBB's 01-16
    assert meta["rows_deleted"].value == 6
    assert meta["restated_rows_from"].value == "2024-01-09"


def test_an_all_rows_restatement_moves_the_window_start(store, seeded):
    produce = lambda c: price_rows(["2024-01-12", "2024-01-16"], version=700.0)  # noqa: E731
    restated = Restatement(all_from=day("2024-01-12"))
    run(restating_asset(produce, restated), store.io, key="2024-01-16")
    after = store.stored()
    assert (after.loc[after.date.between("2024-01-12", "2024-01-16"), "close"] >= 700).all()
    assert (after.loc[after.date < "2024-01-12", "close"] < 700).all()
    assert len(after) == len(seeded)


def test_rows_before_the_window_not_named_by_the_restatement_are_rejected(store, seeded):
    # BBB rows before the window, but only AAA is restated: nothing is written.
    produce = lambda c: price_rows(["2024-01-12", "2024-01-16"], version=900.0)  # noqa: E731
    restated = Restatement(column="symbol", key_from={"AAA": day("2024-01-12")})
    with pytest.raises(PartitionBoundsError, match="2024-01-12"):
        run(restating_asset(produce, restated), store.io, key="2024-01-16")
    pd.testing.assert_frame_equal(store.stored(), seeded)


def test_malformed_restatement_metadata_is_a_named_error_and_nothing_written(store, seeded):
    produce = lambda c: price_rows(["2024-01-16"], version=900.0)  # noqa: E731
    bad = {"restated_from": dg.MetadataValue.json({"all_from": "not a date"})}
    with pytest.raises(StorageMetadataError, match="restated_from"):
        run(restating_asset(produce, bad), store.io, key="2024-01-16")
    pd.testing.assert_frame_equal(store.stored(), seeded)


# --- loading ------------------------------------------------------------------------------------

LOOKBACK = dg.TimeWindowPartitionMapping(start_offset=-2)


def test_load_input_reads_the_lookback_window(store, seeded):
    seen: dict[str, pd.DataFrame] = {}

    @dg.asset(partitions_def=SESSIONS, ins={PRICES: dg.AssetIn(partition_mapping=LOOKBACK)})
    def momentum(context, raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["prices"] = raw_prices
        today = raw_prices[raw_prices["date"] == day(context.partition_key)]
        return today[["symbol", "date", "close"]]

    # Tuesday after the holiday: two sessions back is Thursday 01-11 (the weekend and the
    # excluded Monday are no sessions).
    run([versioned_prices(1.0), momentum], store.io, key="2024-01-16", selection=[momentum])
    loaded = seen["prices"]
    assert sorted(set(loaded["date"])) == [day("2024-01-11"), day("2024-01-12"), day("2024-01-16")]
    assert all(type(d).__name__ == "date" for d in loaded["date"])  # as assets produce them
    assert list(loaded.columns) == list(seeded.columns)
    assert list(zip(loaded["symbol"], loaded["date"], strict=True)) == sorted(
        zip(loaded["symbol"], loaded["date"], strict=True)
    )  # ordered by the upstream unique_key
    # the same values as stored (timestamps included), not just the same keys
    expected = seeded[seeded["date"].dt.date.isin(set(loaded["date"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        loaded.assign(date=pd.to_datetime(loaded["date"]).astype(expected["date"].dtype)),
        expected,
    )


def test_load_input_selects_columns(store, seeded):
    seen = {}

    @dg.asset(ins={PRICES: dg.AssetIn(metadata={"columns": ["symbol", "close"]})})
    def latest_close(raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["prices"] = raw_prices
        return raw_prices.groupby("symbol", as_index=False)["close"].last()

    run([versioned_prices(1.0), latest_close], store.io, selection=[latest_close])
    assert list(seen["prices"].columns) == ["symbol", "close"]
    assert len(seen["prices"]) == len(seeded)  # unpartitioned downstream: every partition

    @dg.asset(ins={PRICES: dg.AssetIn(metadata={"columns": ["symbol", "nope"]})})
    def wrong(raw_prices: pd.DataFrame) -> None:
        pass

    with pytest.raises(StorageMetadataError, match="nope"):
        run([versioned_prices(1.0), wrong], store.io, selection=[wrong])


def test_self_dependency_first_partition_gets_an_empty_frame(store):
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
        run(equity, store.io, key=key)
    assert seen == [0, 1, 1]
    assert store.stored("equity", "date")["value"].tolist() == [101.0, 102.0, 103.0]


def test_missing_upstream_table(store):
    @dg.asset(ins={PRICES: dg.AssetIn()})
    def strict(raw_prices: pd.DataFrame) -> pd.DataFrame:
        return raw_prices

    upstream = versioned_prices(1.0, partitions_def=None, metadata={})
    with pytest.raises(MissingTableError, match=f"{store.table_name(PRICES)} does not exist"):
        run([upstream, strict], store.io, selection=[strict])
    seen = {}

    @dg.asset(ins={PRICES: dg.AssetIn(metadata={"allow_missing": True, "columns": ["symbol"]})})
    def observed(raw_prices: pd.DataFrame) -> pd.DataFrame:
        seen["frame"] = raw_prices
        return pd.DataFrame({"n": [len(raw_prices)]})

    run([upstream, observed], store.io, selection=[observed])
    assert seen["frame"].empty and list(seen["frame"].columns) == ["symbol"]


def test_read_rows_filters_symbols_and_dates_and_tolerates_a_missing_table(store, seeded):
    got = store.io.read_rows(
        PRICES,
        columns=["symbol", "date", "close"],
        symbols=["BBB"],
        start=day("2024-01-10"),
        end=day("2024-01-12"),
    )
    assert got.symbol.unique().tolist() == ["BBB"]
    assert [d.isoformat() for d in got.date] == ["2024-01-10", "2024-01-11"]
    assert list(got.columns) == ["symbol", "date", "close"]
    everything = store.io.read_rows(PRICES)
    assert len(everything) == len(seeded) and list(everything.columns) == list(seeded.columns)
    assert list(zip(everything.symbol, everything.date, strict=True)) == sorted(
        zip(everything.symbol, everything.date, strict=True)
    )
    assert store.io.read_rows(PRICES, symbols=[]).empty
    missing = store.io.read_rows("never_written", columns=["symbol", "date"])
    assert missing.empty and list(missing.columns) == ["symbol", "date"]
    with pytest.raises(StorageMetadataError, match="no column"):
        store.io.read_rows(PRICES, columns=["nope"])
