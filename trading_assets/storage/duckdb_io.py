"""The local default storage: one DuckDB file, one table per asset, written atomically.

Why not dagster-duckdb's IO manager: measured, it deletes then inserts without a transaction (a
failed insert loses the partition), inserts by column position (a reordered frame scrambles
columns) and lets an empty frame wipe a partition. This one follows the storage contract
(:mod:`trading_assets.storage.contract`) and writes each output in ONE transaction:

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
import pyarrow as pa
from pydantic import Field

from trading_assets.storage.contract import (
    DatabaseLockedError,
    DateBounds,
    DuplicateKeyError,
    InputSpec,
    MissingTableError,
    OutputFrameError,
    OutputSpec,
    Restatement,
    SchemaMismatchError,
    StorageMetadataError,
    TableStore,
    canonical_type,
    date_bounds_for_window,
    frame_from_arrow,
    is_safe_cast,
    prepare_output_frame,
    quote_identifier,
    table_name_for,
    to_arrow,
    untyped_columns,
    validate_identifier,
)

# DuckDB's message when another process holds the file (duckdb 1.x: 'IO Error: Could not set lock
# on file "...": Conflicting lock is held in ...').
LOCK_ERROR_TEXT = "Could not set lock on file"
# No single wait between lock retries exceeds this, however many retries are configured.
MAX_LOCK_BACKOFF_SECONDS = 5.0
# Name under which the output is registered with the connection for the INSERT.
INCOMING_VIEW = "__trading_assets_incoming"
# ... and the (key, first date) pairs of a per-key restatement.
RESTATED_VIEW = "__trading_assets_restated"
# How many duplicated keys a DuplicateKeyError quotes.
DUPLICATES_IN_MESSAGE = 5


def _sleep(seconds: float) -> None:
    # Indirection so a test can record the backoff without waiting for it.
    time.sleep(seconds)


def _origin(context: dg.OutputContext | dg.InputContext) -> str:
    """'asset raw_prices partition 2024-01-02' (or 'partitions A...B'), for error messages."""
    label = f"asset {context.asset_key.to_user_string()}"
    if context.has_asset_partitions and context.asset_partition_keys:
        keys = context.asset_partition_keys
        label += (
            f" partition {keys[0]}" if len(keys) == 1 else f" partitions {keys[0]}...{keys[-1]}"
        )
    return label


def _require_time_partitions(context: dg.OutputContext | dg.InputContext, origin: str) -> None:
    if not isinstance(context.asset_partitions_def, dg.TimeWindowPartitionsDefinition):
        raise NotImplementedError(
            f"{origin}: DuckDBIOManager stores time-partitioned (or unpartitioned) assets only; "
            f"got {type(context.asset_partitions_def).__name__}"
        )


class DuckDBIOManager(TableStore):
    """Stores each asset as a table in a local DuckDB file, replacing partitions atomically.

    Table: the asset key path joined by ``"__"``, in ``schema_name``. Asset metadata
    (``partition_expr``, ``replace_keys``, ``unique_key``, ``allow_empty``) and input metadata
    (``columns``, ``allow_missing``) follow :mod:`trading_assets.storage.contract`.

    Concurrency: DuckDB lets one process at a time open a file for writing. Dagster runs that
    write to the same file are serialised by the concurrency pool ``"duckdb"`` (assets set
    ``pool="duckdb"``, and ``dagster.yaml`` limits the pool to 1). Anything else holding the file
    (a notebook, the DuckDB CLI) makes opening retry with bounded exponential backoff
    (``lock_retries`` waits of ``lock_retry_base_seconds * 2**n``, each at most
    MAX_LOCK_BACKOFF_SECONDS), then fail with DatabaseLockedError; it never hangs.
    """

    database: str = Field(description="Path of the DuckDB file; parent directories are created.")
    schema_name: str = Field(default="main", description="Schema that holds the asset tables.")
    lock_retries: int = Field(
        default=5, description="How many times to retry opening a file another process holds."
    )
    lock_retry_base_seconds: float = Field(
        default=0.2, description="First wait between lock retries; doubles on each retry."
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
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, retrying while another process holds its lock; always closes it."""
        if self.lock_retries < 0 or self.lock_retry_base_seconds < 0:
            raise StorageMetadataError("lock_retries and lock_retry_base_seconds must be >= 0")
        path = self._path()
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        waited = 0.0
        for attempt in range(self.lock_retries + 1):
            try:
                con = self._open(path, read_only=read_only)
                break
            except duckdb.IOException as exc:
                if LOCK_ERROR_TEXT not in str(exc):
                    raise
                if attempt == self.lock_retries:
                    raise DatabaseLockedError(
                        f"DuckDB file {path} is locked by another process (DuckDB allows one "
                        f"writing process per file); gave up after {attempt + 1} attempt(s) over "
                        f"{waited:.1f}s. Close the other process (a notebook, the DuckDB CLI, a "
                        "run outside the 'duckdb' concurrency pool) or raise lock_retries. "
                        f"DuckDB said: {exc}"
                    ) from exc
                delay = min(self.lock_retry_base_seconds * 2**attempt, MAX_LOCK_BACKOFF_SECONDS)
                _sleep(delay)
                waited += delay
        try:
            yield con
        finally:
            con.close()

    @staticmethod
    def _open(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        if not read_only:
            return duckdb.connect(str(path))
        try:
            # Read-only lets several reading processes share the file.
            return duckdb.connect(str(path), read_only=True)
        except duckdb.ConnectionException:
            # This process already has the file open read-write (DuckDB shares one instance per
            # file per process and refuses a second configuration): join that instance instead.
            return duckdb.connect(str(path))

    # --- catalog helpers -------------------------------------------------------------------------

    def _qualified(self, table: str) -> str:
        """The table as SQL: quoted schema and table."""
        schema = validate_identifier(self.schema_name, "schema_name")
        return f"{quote_identifier(schema)}.{quote_identifier(table)}"

    def _display(self, table: str) -> str:
        """The table as people read it, in messages and metadata: ``main.raw_prices``."""
        return f"{self.schema_name}.{table}"

    def _stored_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
        """The table's columns {name: type} in order, or None if the table does not exist."""
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
            "ORDER BY ordinal_position",
            [self.schema_name, table],
        ).fetchall()
        return {name: data_type for name, data_type in rows} or None

    # --- output ----------------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not context.has_asset_key:
            raise NotImplementedError("DuckDBIOManager stores asset outputs only (no op outputs)")
        origin = _origin(context)
        spec = OutputSpec.from_metadata(context.definition_metadata, origin=origin)
        table = table_name_for(context.asset_key.path)
        bounds: DateBounds | None = None
        if context.has_asset_partitions:
            _require_time_partitions(context, origin)
            bounds = date_bounds_for_window(context.asset_partitions_time_window)
        restatement = Restatement.from_metadata(context.output_metadata, origin=origin)
        if restatement and bounds is None:
            raise StorageMetadataError(f"{origin}: only a partitioned output can restate rows")
        frame = prepare_output_frame(
            obj, spec, bounds=bounds, origin=origin, restatement=restatement
        )
        date_column = spec.partition_expr if (bounds or spec.partition_expr_explicit) else None
        incoming = to_arrow(frame, date_column=date_column, origin=origin)

        started = time.perf_counter()
        with self._connect(read_only=False) as con:
            # DuckDB cannot register a frame without columns; an (allowed) empty output may be one.
            if incoming.num_columns:
                con.register(INCOMING_VIEW, incoming)
            if restatement.key_from:
                con.register(RESTATED_VIEW, _restated_keys(restatement))
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    written = self._replace(
                        con, table, incoming, spec, bounds, date_column, origin, restatement
                    )
                    con.execute("COMMIT")
                except BaseException:
                    # If the transaction never began, ROLLBACK fails too; the first error is the
                    # one to report (closing the connection discards anything uncommitted).
                    with suppress(duckdb.Error):
                        con.execute("ROLLBACK")
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

    def _replace(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        incoming: pa.Table,
        spec: OutputSpec,
        bounds: DateBounds | None,
        date_column: str | None,
        origin: str,
        restatement: Restatement,
    ) -> tuple[int, dict[str, str], int]:
        """Everything between BEGIN and COMMIT. Returns (rows deleted, columns, rows in table)."""
        qualified = self._qualified(table)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(self.schema_name)}")
        untyped = set(untyped_columns(incoming))
        described = (
            con.execute(f"DESCRIBE SELECT * FROM {INCOMING_VIEW}").fetchall()
            if incoming.num_columns
            else []
        )
        incoming_types = {name: t for name, t, *_ in described if name not in untyped}
        stored = self._stored_columns(con, table)
        if stored is None:
            if not incoming_types:
                if incoming.num_rows:
                    raise OutputFrameError(
                        f"{origin}: no output column holds a typed value (all are None), so "
                        f"{self._display(table)} cannot be created from it"
                    )
                return 0, {}, 0  # an empty output without typed columns: nothing to create
            definition = ", ".join(
                f"{quote_identifier(name)} {canonical_type(t)}"
                for name, t in incoming_types.items()
            )
            con.execute(f"CREATE TABLE {qualified} ({definition})")
        else:
            self._evolve(con, table, stored, incoming_types, date_column)
        stored = self._stored_columns(con, table) or {}
        stored_lower = {name.lower() for name in stored}

        rows_deleted = self._delete(con, qualified, incoming, spec, bounds, origin, restatement)
        # Untyped (all-null) output columns the table lacks are left out; the others go BY NAME,
        # so column order never matters and stored columns the output lacks become NULL.
        insert_columns = [
            name
            for name in incoming.column_names
            if name not in untyped or name.lower() in stored_lower
        ]
        if incoming.num_rows and insert_columns:
            select = ", ".join(quote_identifier(c) for c in insert_columns)
            con.execute(f"INSERT INTO {qualified} BY NAME SELECT {select} FROM {INCOMING_VIEW}")
        self._check_unique(con, table, qualified, incoming, spec, origin)
        (table_rows,) = con.execute(f"SELECT count(*) FROM {qualified}").fetchone()
        return rows_deleted, stored, table_rows

    def _evolve(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        stored: dict[str, str],
        incoming_types: dict[str, str],
        date_column: str | None,
    ) -> None:
        """Check every output column against the stored one; add the new ones (nullable)."""
        qualified = self._qualified(table)
        by_lower = {name.lower(): name for name in stored}
        if date_column and date_column.lower() in by_lower:
            stored_type = stored[by_lower[date_column.lower()]]
            if canonical_type(stored_type) != "DATE":
                raise SchemaMismatchError(
                    self._display(table),
                    date_column,
                    stored_type,
                    "DATE",
                    " (the partition column must be DATE)",
                )
        for name, new_type in incoming_types.items():
            existing = by_lower.get(name.lower())
            if existing is None:
                con.execute(
                    f"ALTER TABLE {qualified} ADD COLUMN {quote_identifier(name)} "
                    f"{canonical_type(new_type)}"
                )
            elif not is_safe_cast(new_type, stored[existing]):
                raise SchemaMismatchError(
                    self._display(table), existing, stored[existing], new_type
                )

    def _delete(
        self,
        con: duckdb.DuckDBPyConnection,
        qualified: str,
        incoming: pa.Table,
        spec: OutputSpec,
        bounds: DateBounds | None,
        origin: str,
        restatement: Restatement,
    ) -> int:
        """Delete the rows this output replaces (the window, and restated rows before it)."""
        conditions: list[str] = []
        params: list[Any] = []
        if bounds is not None:
            column = quote_identifier(spec.partition_expr)
            # The window, reaching back to a restatement's first date for every row or per key.
            start = min(bounds.start, restatement.all_from or bounds.start)
            span = f"{column} >= ? AND {column} < ?"
            params += [start, bounds.end]
            if restatement.key_from:
                key = quote_identifier(restatement.column or "")
                span = (
                    f"({span} OR EXISTS (SELECT 1 FROM {RESTATED_VIEW} AS r WHERE "
                    f"r.key = CAST(t.{key} AS VARCHAR) AND t.{column} >= r.first AND t.{column} < ?))"
                )
                params.append(bounds.end)
            conditions.append(span)
        if spec.replace_keys:
            if incoming.num_rows == 0:
                return 0  # no replace-key value appears in an empty output: nothing is replaced
            match = " AND ".join(
                f"i.{quote_identifier(k)} = t.{quote_identifier(k)}" for k in spec.replace_keys
            )
            conditions.append(f"EXISTS (SELECT 1 FROM {INCOMING_VIEW} AS i WHERE {match})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        try:
            (deleted,) = con.execute(f"DELETE FROM {qualified} AS t{where}", params).fetchone()
        except duckdb.BinderException as exc:
            raise StorageMetadataError(
                f"{origin}: cannot select the rows to replace in {qualified} (does the table have "
                f"the partition_expr/replace_keys columns?): {exc}"
            ) from exc
        return int(deleted)

    def _check_unique(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        qualified: str,
        incoming: pa.Table,
        spec: OutputSpec,
        origin: str,
    ) -> None:
        """Raise DuplicateKeyError if a key the output wrote now occurs more than once."""
        if not spec.unique_key or incoming.num_rows == 0:
            return
        keys = ", ".join(f"t.{quote_identifier(k)}" for k in spec.unique_key)
        match = " AND ".join(
            f"i.{quote_identifier(k)} = t.{quote_identifier(k)}" for k in spec.unique_key
        )
        # Only keys the output touched can have become duplicated, as every earlier write was
        # checked the same way; checking just those keeps a one-day write cheap on a long table.
        duplicates = con.execute(
            f"SELECT {keys}, count(*) AS n, count(*) OVER () AS keys_duplicated "
            f"FROM {qualified} AS t WHERE EXISTS (SELECT 1 FROM {INCOMING_VIEW} AS i WHERE {match}) "
            f"GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC, {keys} LIMIT {DUPLICATES_IN_MESSAGE}"
        ).fetchall()
        if duplicates:
            total = duplicates[0][-1]
            shown = "; ".join(
                f"{dict(zip(spec.unique_key, row[:-2], strict=True))} x{row[-2]}"
                for row in duplicates
            )
            raise DuplicateKeyError(
                f"{origin}: {total} value(s) of unique_key {list(spec.unique_key)} would occur more "
                f"than once in {self._display(table)} (e.g. {shown}); the write was rolled "
                "back and the stored rows are unchanged"
            )

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
            loaded = con.execute(f"SELECT {select} FROM {qualified}{where}{order}", params)
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
        origin = f"input {context.name!r} from {_origin(context)}"
        upstream = context.upstream_output
        spec = OutputSpec.from_metadata(
            upstream.definition_metadata if upstream is not None else None, origin=origin
        )
        wanted = InputSpec.from_metadata(context.definition_metadata, origin=origin)
        table = table_name_for(context.asset_key.path)
        qualified, shown = self._qualified(table), self._display(table)

        bounds: DateBounds | None = None
        no_partitions = False
        if context.has_asset_partitions:
            _require_time_partitions(context, origin)
            if context.asset_partition_keys:
                bounds = date_bounds_for_window(context.asset_partitions_time_window)
            else:
                no_partitions = True  # e.g. the partition before a self-dependent asset's first

        if not self._path().exists():
            return self._missing(wanted, shown, origin, no_partitions)
        with self._connect(read_only=True) as con:
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
            elif bounds is not None:
                if spec.partition_expr.lower() not in by_lower:
                    raise StorageMetadataError(
                        f"{origin}: {shown} has no partition column {spec.partition_expr!r}; "
                        f"it has {list(stored)}"
                    )
                column = quote_identifier(spec.partition_expr)
                conditions.append(f"{column} >= ? AND {column} < ?")
                params += [bounds.start, bounds.end]
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            order = self._order(spec, by_lower)
            result = con.execute(f"SELECT {select} FROM {qualified}{where}{order}", params)
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


def _restated_keys(restatement: Restatement) -> pa.Table:
    """The per-key restatement as a two-column table the DELETE joins: key (text), first (DATE)."""
    keys = sorted(restatement.key_from)
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "first": pa.array([restatement.key_from[k] for k in keys], pa.date32()),
        }
    )
