"""The local default storage: one DuckDB file, one table per asset, written atomically.

Why not dagster-duckdb's IO manager: measured, it deletes then inserts without a transaction (a
failed insert loses the partition), inserts by column position (a reordered frame scrambles
columns) and lets an empty frame wipe a partition. This one follows the storage contract
(:mod:`trading_assets.storage.contract`) and writes each output in ONE transaction
(:mod:`trading_assets.storage.duckdb_write`):

    BEGIN; CREATE SCHEMA/TABLE IF NOT EXISTS; ALTER TABLE ADD COLUMN (new columns);
    DELETE the partition window (or only its replace_keys rows) and any restated rows before it;
    INSERT ... BY NAME;
    unique_key check; COMMIT

Any failure rolls the whole thing back, so the stored rows are exactly those of before.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from trading_assets.storage.contract import (
    DatabaseWriteError,
    InputSpec,
    KeyPartitions,
    MissingTableError,
    OutputSpec,
    StorageMetadataError,
    TableStore,
    context_origin,
    covered_partitions,
    quote_identifier,
    table_name_for,
)
from trading_assets.storage.duckdb_connection import (
    connect_with_retries,
    display_name,
    open_duckdb,
    qualified_name,
    stored_columns,
)
from trading_assets.storage.duckdb_write import (
    INCOMING_VIEW,
    RESTATED_VIEW,
    check_unique,
    replace_rows,
    restated_keys,
)
from trading_assets.storage.output_frames import (
    frame_from_arrow,
    prepare_output,
)


def _sleep(seconds: float) -> None:
    # Indirection so a test can record the backoff without waiting for it.
    time.sleep(seconds)


class DuckDBIOManager(TableStore):
    """Stores each asset as a table in a local DuckDB file, replacing partitions atomically.

    Table: the asset key path joined by ``"__"``, in ``schema_name``. Asset metadata
    (``partition_expr``, ``replace_keys``, ``unique_key``, ``allow_empty``) and input metadata
    (``columns``, ``allow_missing``) follow :mod:`trading_assets.storage.contract`.

    Concurrency: DuckDB lets one process at a time open a file for writing, and the operating
    system frees that lock when the process dies. Runs and steps that write the same file take
    turns on that lock: opening waits patiently (backoff from ``lock_retry_base_seconds``, capped
    at MAX_LOCK_BACKOFF_SECONDS), says at INFO in the run's log whom it waits for, and gives up
    with DatabaseLockedError after ``lock_timeout_seconds``. No Dagster concurrency slot is
    involved, so a killed run can never keep later runs waiting.

    Crash safety: a file the previous process did not close is verified before use
    (:mod:`trading_assets.storage.duckdb_integrity`); every table written with a ``unique_key``
    records it in its table comment for that check.
    """

    database: str = Field(description="Path of the DuckDB file; parent directories are created.")
    schema_name: str = Field(default="main", description="Schema that holds the asset tables.")
    lock_timeout_seconds: float = Field(
        default=3600.0,
        description="How long to wait for a file another process holds (another run writing) "
        "before failing with DatabaseLockedError.",
    )
    lock_retry_base_seconds: float = Field(
        default=0.2, description="First wait between lock retries; doubles up to 5 s."
    )

    # --- connection ------------------------------------------------------------------------------

    def _path(self) -> Path:
        if not self.database or self.database.strip() == ":memory:":
            raise StorageMetadataError(
                "DuckDBIOManager needs a file path as database: an in-memory database would "
                "vanish between steps"
            )
        return Path(self.database).expanduser()

    @contextmanager
    def _connect(self, *, read_only: bool, log: Any = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting while another process holds its lock; always closes it.

        ``log``: the run's logger (``context.log``) that hears about a wait; by default Dagster's
        logger, which a step captures into the run's log as well.
        """
        if self.lock_timeout_seconds < 0 or self.lock_retry_base_seconds <= 0:
            raise StorageMetadataError(
                "lock_timeout_seconds must be >= 0 and lock_retry_base_seconds > 0"
            )
        with connect_with_retries(
            self._path(),
            read_only=read_only,
            timeout_seconds=self.lock_timeout_seconds,
            base_seconds=self.lock_retry_base_seconds,
            open_file=self._open,
            sleep=_sleep,  # looked up here, at call time, so a test can replace it
            report=(log or dg.get_dagster_logger()).info,
        ) as con:
            yield con

    # Opens the file once; a class attribute, looked up per call (a test simulates a held lock).
    _open = staticmethod(open_duckdb)

    # --- catalog helpers -------------------------------------------------------------------------

    def _qualified(self, table: str) -> str:
        return qualified_name(self.schema_name, table)

    def _display(self, table: str) -> str:
        return display_name(self.schema_name, table)

    def _stored_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
        return stored_columns(con, self.schema_name, table)

    # --- output ----------------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not context.has_asset_key:
            raise NotImplementedError("DuckDBIOManager stores asset outputs only (no op outputs)")
        out = prepare_output(context, obj, "DuckDBIOManager")
        origin, spec, bounds, keys = out.origin, out.spec, out.bounds, out.keys
        restatement, date_column, incoming = out.restatement, out.date_column, out.incoming
        table = table_name_for(context.asset_key.path)

        started = time.perf_counter()
        with self._connect(read_only=False, log=context.log) as con:
            # DuckDB cannot register a frame without columns; an (allowed) empty output may be one.
            if incoming.num_columns:
                con.register(INCOMING_VIEW, incoming)
            if restatement.key_from:
                con.register(RESTATED_VIEW, restated_keys(restatement))
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    written = replace_rows(
                        con,
                        self.schema_name,
                        table,
                        incoming,
                        spec,
                        bounds,
                        date_column,
                        origin,
                        restatement,
                        check_unique=self._check_unique,
                        keys=keys,
                    )
                    con.execute("COMMIT")
                except BaseException as exc:
                    # If the transaction never began, ROLLBACK fails too; the first error is the
                    # one to report (closing the connection discards anything uncommitted).
                    with suppress(duckdb.Error):
                        con.execute("ROLLBACK")
                    if isinstance(exc, duckdb.IOException):  # disk full, file size limit, EIO
                        raise DatabaseWriteError(
                            f"{origin}: writing DuckDB file {self._path()} failed; the write "
                            f"was rolled back and the stored rows are unchanged (disk full?). "
                            f"DuckDB said: {exc}"
                        ) from exc
                    raise
            finally:
                if incoming.num_columns:
                    con.unregister(INCOMING_VIEW)
                if restatement.key_from:
                    con.unregister(RESTATED_VIEW)

        rows_deleted, columns, table_rows = written
        seconds = time.perf_counter() - started
        qualified = self._display(table)
        context.log.info(
            f"{origin}: wrote {incoming.num_rows} row(s) to {qualified}, replaced {rows_deleted}"
        )
        restated = restatement.earliest()
        context.add_output_metadata(
            {
                **({"restated_rows_from": str(restated)} if restated else {}),
                "row_count": incoming.num_rows,
                "rows_deleted": rows_deleted,
                # open + one transaction (create, type checks, delete, insert, unique check, commit)
                "write_seconds": round(seconds, 3),
                "table_row_count": table_rows,
                "dagster/table_name": qualified,
                # Dagster copies output metadata onto every partition of a range (5 KB x sessions):
                # the schema goes on single-partition and unpartitioned materialisations only.
                **(
                    {}
                    if context.has_asset_partitions and len(context.asset_partition_keys) > 1
                    else {
                        "dagster/column_schema": dg.TableSchema(
                            columns=[dg.TableColumn(name, type=t) for name, t in columns.items()]
                        )
                    }
                ),
                "duckdb_path": dg.MetadataValue.path(str(self._path())),
            }
        )

    def _check_unique(self, con: duckdb.DuckDBPyConnection, table: str, *rest: Any) -> None:
        """The transaction's last step, :func:`check_unique` (a test overrides it to fail there);
        ``rest`` is (qualified, incoming, spec, origin)."""
        check_unique(con, self.schema_name, table, *rest)

    # --- direct reads (TableStore) ----------------------------------------------------------------

    def read_rows(
        self,
        asset: str,
        *,
        columns: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        table = table_name_for(asset.split("/"))
        qualified, shown = self._qualified(table), self._display(table)
        empty = pd.DataFrame(columns=list(columns or ()))
        if not self._path().exists():
            return empty
        with self._connect(read_only=True) as con:
            stored = self._stored_columns(con, table)
            if stored is None:
                return empty
            by_lower = {name.lower(): name for name in stored}
            wanted = list(columns or stored)
            unknown = [c for c in wanted if c.lower() not in by_lower]
            if unknown:
                raise StorageMetadataError(f"read of {shown}: no column(s) {unknown}")
            conditions: list[str] = []
            params: list[Any] = []
            if symbols is not None:
                if not symbols:
                    return empty
                conditions.append("symbol IN (SELECT unnest(?))")
                params.append(list(symbols))
            if start is not None:
                conditions.append("date >= ?")
                params.append(start)
            if end is not None:
                conditions.append("date < ?")
                params.append(end)
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            order = (
                " ORDER BY "
                + ", ".join(quote_identifier(c) for c in ("symbol", "date") if c in by_lower)
                if ("date" in by_lower)
                else ""
            )
            select = ", ".join(quote_identifier(c) for c in wanted)
            # con.sql (a relation), not con.execute: duckdb 2 copies a DB-API result once more
            loaded = con.sql(f"SELECT {select} FROM {qualified}{where}{order}", params=params)
            return frame_from_arrow(loaded.to_arrow_table())

    # --- input -----------------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The upstream table: rows of the upstream partition window (lookbacks included) or all.

        The partition column comes back as ``datetime.date`` objects, as assets produce it; rows
        are ordered by the upstream unique_key (else its partition column). A self-dependent
        asset's first partition (no upstream partition) gets an empty frame.
        """
        if not context.has_asset_key:
            raise NotImplementedError("DuckDBIOManager loads asset inputs only (no op outputs)")
        origin = f"input {context.name!r} from {context_origin(context)}"
        upstream = context.upstream_output
        spec = OutputSpec.from_metadata(
            upstream.definition_metadata if upstream is not None else None, origin=origin
        )
        wanted = InputSpec.from_metadata(context.definition_metadata, origin=origin)
        table = table_name_for(context.asset_key.path)
        qualified, shown = self._qualified(table), self._display(table)

        covered = covered_partitions(context, spec, origin, "DuckDBIOManager")
        # e.g. the partition before a self-dependent asset's first
        no_partitions = context.has_asset_partitions and not context.asset_partition_keys

        if not self._path().exists():
            return self._missing(wanted, shown, origin, no_partitions)
        with self._connect(read_only=True, log=context.log) as con:
            stored = self._stored_columns(con, table)
            if stored is None:
                return self._missing(wanted, shown, origin, no_partitions)
            by_lower = {name.lower(): name for name in stored}
            if wanted.columns is not None:
                unknown = [c for c in wanted.columns if c.lower() not in by_lower]
                if unknown:
                    raise StorageMetadataError(
                        f"{origin}: metadata 'columns' names {unknown}, which {shown} does "
                        f"not have; it has {list(stored)}"
                    )
            select = ", ".join(quote_identifier(c) for c in wanted.columns or stored)
            conditions: list[str] = []
            params: list[Any] = []
            if no_partitions:
                conditions.append("FALSE")
            elif covered is not None:
                if spec.partition_expr.lower() not in by_lower:
                    raise StorageMetadataError(
                        f"{origin}: {shown} has no partition column {spec.partition_expr!r}; "
                        f"it has {list(stored)}"
                    )
                column = quote_identifier(spec.partition_expr)
                if isinstance(covered, KeyPartitions):
                    conditions.append(f"CAST({column} AS VARCHAR) IN (SELECT unnest(?))")
                    params.append(list(covered.keys))
                else:
                    conditions.append(f"{column} >= ? AND {column} < ?")
                    params += [covered.start, covered.end]
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            order = self._order(spec, by_lower)
            result = con.sql(f"SELECT {select} FROM {qualified}{where}{order}", params=params)
            loaded = result.to_arrow_table()
        context.log.debug(f"{origin}: loaded {loaded.num_rows} row(s) from {shown}")
        return frame_from_arrow(loaded)

    @staticmethod
    def _order(spec: OutputSpec, by_lower: dict[str, str]) -> str:
        candidates: Sequence[str] = spec.unique_key or (spec.partition_expr,)
        if all(c.lower() in by_lower for c in candidates):
            return " ORDER BY " + ", ".join(quote_identifier(c) for c in candidates)
        return ""

    @staticmethod
    def _missing(wanted: InputSpec, shown: str, origin: str, no_partitions: bool) -> pd.DataFrame:
        if wanted.allow_missing or no_partitions:
            return pd.DataFrame(columns=list(wanted.columns or ()))
        raise MissingTableError(
            f"{origin}: table {shown} does not exist yet; materialise the upstream asset "
            "first, or set metadata {'allow_missing': True} on the input if it may be absent"
        )
