"""DuckDBIOManager: what only the DuckDB store has, through real Dagster runs on a throwaway file.

The storage contract itself (atomic replace, insert by name, schema evolution, empty outputs,
replace_keys, unique_key, partition bounds, restatements, static partitions, loads) is asserted once
for both IO managers in test_storage_contract*.py. Here: the transaction rolling back a failure
after its DELETE, the file lock, reading while another connection holds the file, the configured
schema, and the DuckDB-specific output metadata.
"""

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets.storage import duckdb_io
from trading_assets.storage.contract import (
    DatabaseLockedError,
    InvalidIdentifierError,
    Restatement,
)
from trading_assets.storage.duckdb_connection import MAX_LOCK_BACKOFF_SECONDS
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.storage_stores import (
    ALL_SESSIONS,
    PRICES,
    SYMBOLS,
    day,
    price_asset,
    price_rows,
    restating_asset,
    run,
    versioned_prices,
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


def test_output_metadata_names_the_file_and_table(io, db_path):
    result = run(versioned_prices(1.0), io, key="2024-01-10")
    meta = result.asset_materializations_for_node(PRICES)[0].metadata
    assert meta["dagster/table_name"].value == "main.raw_prices"
    assert meta["duckdb_path"].value == str(db_path)
    assert meta["row_count"].value == len(SYMBOLS)


# --- atomicity: one transaction -----------------------------------------------------------------


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


def test_table_lives_in_the_configured_schema(db_path):
    io = DuckDBIOManager(database=str(db_path), schema_name="market")
    run(versioned_prices(1.0), io, key="2024-01-10")
    with duckdb.connect(str(db_path), read_only=True) as con:
        (count,) = con.execute("SELECT count(*) FROM market.raw_prices").fetchone()
    assert count == len(SYMBOLS)
    bad_schema = DuckDBIOManager(database=str(db_path), schema_name="prod; DROP")
    with pytest.raises(InvalidIdentifierError, match="schema_name"):
        run(versioned_prices(1.0), bad_schema, key="2024-01-10")


def test_load_input_reads_while_this_process_holds_the_file_open(io, db_path, seeded):
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
