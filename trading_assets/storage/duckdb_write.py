"""Writing one output into its DuckDB table: everything between BEGIN and COMMIT.

:func:`replace_rows` creates the schema and table (or checks and adds columns), deletes the rows
the output replaces (the partition window, only its replace_keys rows, and restated rows before
it), inserts the output BY NAME and checks unique_key. The caller owns the transaction, so any
failure rolls all of it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from trading_assets.storage.column_types import canonical_type, is_safe_cast
from trading_assets.storage.contract import (
    DateBounds,
    DuplicateKeyError,
    KeyPartitions,
    OutputFrameError,
    OutputSpec,
    Restatement,
    SchemaMismatchError,
    StorageMetadataError,
    quote_identifier,
)
from trading_assets.storage.duckdb_connection import display_name, qualified_name, stored_columns
from trading_assets.storage.duckdb_integrity import record_key
from trading_assets.storage.output_frames import untyped_columns

# Name under which the output is registered with the connection for the INSERT.
INCOMING_VIEW = "__trading_assets_incoming"
# ... and the (key, first date) pairs of a per-key restatement.
RESTATED_VIEW = "__trading_assets_restated"
# How many duplicated keys a DuplicateKeyError quotes.
DUPLICATES_IN_MESSAGE = 5

# The unique_key check replace_rows runs last: (con, table, qualified, incoming, spec, origin).
# DuckDBIOManager passes its _check_unique method, which calls check_unique (a test overrides it).
UniqueCheck = Callable[[duckdb.DuckDBPyConnection, str, str, pa.Table, OutputSpec, str], None]


def replace_rows(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    incoming: pa.Table,
    spec: OutputSpec,
    bounds: DateBounds | None,
    date_column: str | None,
    origin: str,
    restatement: Restatement,
    *,
    check_unique: UniqueCheck,
    keys: KeyPartitions | None = None,
) -> tuple[int, dict[str, str], int]:
    """Everything between BEGIN and COMMIT. Returns (rows deleted, columns, rows in table)."""
    qualified = qualified_name(schema, table)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
    untyped = set(untyped_columns(incoming))
    described = (
        con.execute(f"DESCRIBE SELECT * FROM {INCOMING_VIEW}").fetchall()
        if incoming.num_columns
        else []
    )
    incoming_types = {name: t for name, t, *_ in described if name not in untyped}
    stored = stored_columns(con, schema, table)
    if stored is None:
        if not incoming_types:
            if incoming.num_rows:
                raise OutputFrameError(
                    f"{origin}: no output column holds a typed value (all are None), so "
                    f"{display_name(schema, table)} cannot be created from it"
                )
            return 0, {}, 0  # an empty output without typed columns: nothing to create
        definition = ", ".join(
            f"{quote_identifier(name)} {canonical_type(t)}" for name, t in incoming_types.items()
        )
        con.execute(f"CREATE TABLE {qualified} ({definition})")
    else:
        _evolve(con, schema, table, stored, incoming_types, date_column)
    if spec.unique_key:
        # The file records what must be unique, for the check after an unclean shutdown.
        record_key(con, qualified, schema, table, tuple(spec.unique_key))
    stored = stored_columns(con, schema, table) or {}
    stored_lower = {name.lower() for name in stored}

    rows_deleted = _delete(con, qualified, incoming, spec, bounds, origin, restatement, keys)
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
    check_unique(con, table, qualified, incoming, spec, origin)
    (table_rows,) = con.execute(f"SELECT count(*) FROM {qualified}").fetchall()[0]
    return rows_deleted, stored, table_rows


def _evolve(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    stored: dict[str, str],
    incoming_types: dict[str, str],
    date_column: str | None,
) -> None:
    """Check every output column against the stored one; add the new ones (nullable)."""
    qualified = qualified_name(schema, table)
    by_lower = {name.lower(): name for name in stored}
    if date_column and date_column.lower() in by_lower:
        stored_type = stored[by_lower[date_column.lower()]]
        if canonical_type(stored_type) != "DATE":
            raise SchemaMismatchError(
                display_name(schema, table),
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
                display_name(schema, table), existing, stored[existing], new_type
            )


def _delete(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    incoming: pa.Table,
    spec: OutputSpec,
    bounds: DateBounds | None,
    origin: str,
    restatement: Restatement,
    keys: KeyPartitions | None = None,
) -> int:
    """Delete the rows this output replaces (the window, and restated rows before it; or the
    static partitions' rows)."""
    conditions: list[str] = []
    params: list[Any] = []
    if keys is not None:
        conditions.append(f"CAST({quote_identifier(keys.column)} AS VARCHAR) IN (SELECT unnest(?))")
        params.append(list(keys.keys))
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
        (deleted,) = con.execute(f"DELETE FROM {qualified} AS t{where}", params).fetchall()[0]
    except duckdb.BinderException as exc:
        raise StorageMetadataError(
            f"{origin}: cannot select the rows to replace in {qualified} (does the table have "
            f"the partition_expr/replace_keys columns?): {exc}"
        ) from exc
    return int(deleted)


def check_unique(
    con: duckdb.DuckDBPyConnection,
    schema: str,
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
            f"{dict(zip(spec.unique_key, row[:-2], strict=True))} x{row[-2]}" for row in duplicates
        )
        raise DuplicateKeyError(
            f"{origin}: {total} value(s) of unique_key {list(spec.unique_key)} would occur more "
            f"than once in {display_name(schema, table)} (e.g. {shown}); the write was rolled "
            "back and the stored rows are unchanged"
        )


def restated_keys(restatement: Restatement) -> pa.Table:
    """The per-key restatement as a two-column table the DELETE joins: key (text), first (DATE)."""
    keys = sorted(restatement.key_from)
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "first": pa.array([restatement.key_from[k] for k in keys], pa.date32()),
        }
    )
