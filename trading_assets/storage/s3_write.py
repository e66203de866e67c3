"""What one output changes in an S3 table: the new schema, and the objects it replaces.

:func:`plan_write` works out, from the manifest the writer read and the output, every partition the
write touches and its complete new contents, the same rows the DuckDB IO manager's DELETE + INSERT
leave (:mod:`trading_assets.storage.duckdb_write`):

* the partition window (reaching back to ``Restatement.all_from``), or the run's static keys, or the
  whole unpartitioned table, loses all its rows, or with ``replace_keys`` only the rows whose key
  values appear in the output;
* a per-key restatement (``Restatement.key_from``) also removes those keys' rows from their first
  restated date, in the dates before the window;
* the output's rows are added to their partitions.

A partition whose rows all go is dropped without being read; one that keeps some rows is read,
filtered and rewritten whole (read-modify-write). Nothing is written here: the caller checks
unique_key over the new contents, writes them under fresh names and switches the manifest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trading_assets.storage.column_types import is_safe_cast
from trading_assets.storage.contract import (
    DateBounds,
    DuplicateKeyError,
    KeyPartitions,
    OutputFrameError,
    OutputSpec,
    Restatement,
    SchemaMismatchError,
    StorageMetadataError,
)
from trading_assets.storage.output_frames import untyped_columns
from trading_assets.storage.s3_layout import (
    Manifest,
    ManifestObject,
    PartitionKind,
    TableLocation,
    sql_type_name,
)
from trading_assets.storage.s3_read import conform, fetch_objects

# How many duplicated keys a DuplicateKeyError quotes (as the DuckDB IO manager).
DUPLICATES_IN_MESSAGE = 5
_ROW = "__trading_assets_row"


@dataclass
class WritePlan:
    """The table after one write, before anything is written."""

    schema: pa.Schema
    # Partition value -> its complete new contents (None: the unpartitioned table's one object).
    contents: dict[str | None, pa.Table] = field(default_factory=dict)
    # Partitions whose stored object goes without a successor (every row replaced by nothing).
    dropped: set[str | None] = field(default_factory=set)
    rows_deleted: int = 0

    def replaced(self, manifest: Manifest | None) -> list[ManifestObject]:
        """The stored objects this write makes obsolete (deleted after the switch)."""
        gone = set(self.contents) | self.dropped
        return [o for o in (manifest.objects if manifest else ()) if o.partition in gone]


def storage_type(t: pa.DataType) -> pa.DataType:
    """The type a new column is stored as: timestamps in microseconds (as DuckDB's TIMESTAMP),
    a categorical as its values, 32-bit dates, plain (not large) strings."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", t.tz)
    if pa.types.is_dictionary(t):
        return storage_type(t.value_type)
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def evolve_schema(
    stored: pa.Schema | None, incoming: pa.Table, date_column: str | None, display: str
) -> pa.Schema:
    """The table's schema after this output: stored columns keep their types (an output column
    must cast safely into them, else SchemaMismatchError), new typed columns are appended.
    Column names match case-insensitively, as in SQL."""
    fields = list(stored or ())
    by_lower = {f.name.lower(): f for f in fields}
    if date_column and date_column.lower() in by_lower:
        stored_field = by_lower[date_column.lower()]
        if stored_field.type != pa.date32():
            raise SchemaMismatchError(
                display, date_column, sql_type_name(stored_field.type), "DATE",
                " (the partition column must be DATE)",
            )  # fmt: skip
    untyped = set(untyped_columns(incoming))
    for new in incoming.schema:
        if new.name in untyped:
            continue  # no values, no type: NULL in a stored column, never a new column
        existing = by_lower.get(new.name.lower())
        if existing is None:
            added = pa.field(new.name, storage_type(new.type))
            fields.append(added)
            by_lower[new.name.lower()] = added
        elif not is_safe_cast(sql_type_name(new.type), sql_type_name(existing.type)):
            raise SchemaMismatchError(
                display, existing.name, sql_type_name(existing.type), sql_type_name(new.type)
            )
    return pa.schema(fields)


def conform_output(incoming: pa.Table, schema: pa.Schema) -> pa.Table:
    """The output with the table's columns, names and types (absent columns as NULL)."""
    by_lower = {name.lower(): name for name in schema.names}
    renamed = incoming.rename_columns(
        [by_lower.get(name.lower(), name) for name in incoming.column_names]
    )
    kept = [name for name in renamed.column_names if name in schema.names]
    return conform(renamed.select(kept), schema)


def split_by(table: pa.Table, column: str) -> dict[str, pa.Table]:
    """The rows of ``table`` per value of ``column`` (as text: ISO dates, keys), in first-seen
    order of rows within each part. One sort, not one scan per value: a 25-year backfill has
    ~6,300 dates."""
    if table.num_rows == 0:
        return {}
    text = pc.cast(table.column(column), pa.string()).combine_chunks()
    encoded = pc.dictionary_encode(text)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(ordered)]
    taken = table.take(pa.array(order))
    names = encoded.dictionary.to_pylist()
    return {names[ordered[s]]: taken.slice(s, e - s) for s, e in zip(starts, ends, strict=True)}


def _matching_rows(part: pa.Table, wanted: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask: rows of ``part`` whose ``columns`` values occur in ``wanted``."""
    mask = np.zeros(part.num_rows, dtype=bool)
    if part.num_rows == 0 or wanted.num_rows == 0:
        return mask
    rows = part.select(list(columns)).append_column(_ROW, pa.array(np.arange(part.num_rows)))
    matched = rows.join(wanted.select(list(columns)), keys=list(columns), join_type="left semi")
    mask[matched.column(_ROW).to_numpy()] = True
    return mask


@dataclass(frozen=True)
class _Rule:
    """Which stored rows of one partition go: all of them, or those of some restated keys."""

    restated_keys: frozenset[str] | None = None  # None: every row is in the span


def _rules(
    manifest: Manifest,
    bounds: DateBounds | None,
    keys: KeyPartitions | None,
    restatement: Restatement,
) -> dict[str | None, _Rule]:
    """The stored partitions this write may remove rows from, and by which rule."""
    rules: dict[str | None, _Rule] = {}
    for item in manifest.objects:
        if keys is not None:
            if item.partition in keys.keys:
                rules[item.partition] = _Rule()
        elif bounds is not None:
            day = dt.date.fromisoformat(item.partition or "")
            span_start = min(bounds.start, restatement.all_from or bounds.start)
            if span_start <= day < bounds.end:
                rules[item.partition] = _Rule()
            elif restatement.key_from and day < bounds.end:
                restated = frozenset(k for k, first in restatement.key_from.items() if first <= day)
                if restated:
                    rules[item.partition] = _Rule(restated)
        else:
            rules[item.partition] = _Rule()
    return rules


def plan_write(
    client: Any,
    location: TableLocation,
    manifest: Manifest,
    incoming: pa.Table,
    spec: OutputSpec,
    bounds: DateBounds | None,
    keys: KeyPartitions | None,
    restatement: Restatement,
    *,
    date_column: str | None,
    display: str,
    origin: str,
    max_workers: int,
) -> WritePlan:
    """The table's new schema and the new contents of every partition the output touches."""
    schema = evolve_schema(
        manifest.schema if manifest.version else None, incoming, date_column, display
    )
    if not schema.names and incoming.num_rows:
        raise OutputFrameError(
            f"{origin}: no output column holds a typed value (all are None), so {display} "
            "cannot be created from it"
        )
    rows = conform_output(incoming, schema)
    column = manifest.partition_column
    if column is not None and rows.num_rows and column not in rows.column_names:
        raise StorageMetadataError(f"{origin}: the output has no partition column {column!r}")
    incoming_parts = split_by(rows, column) if column else ({None: rows} if rows.num_rows else {})

    plan = WritePlan(schema=schema)
    rules = _rules(manifest, bounds, keys, restatement)
    stored = manifest.by_partition()
    replace_keys = [schema.field(n).name for n in _stored_names(spec.replace_keys, schema)]
    if spec.replace_keys and len(replace_keys) < len(spec.replace_keys) and rows.num_rows:
        raise StorageMetadataError(
            f"{origin}: cannot select the rows to replace in {display}: it lacks replace_keys "
            f"column(s) of {list(spec.replace_keys)}"
        )
    to_read = [stored[p] for p, rule in rules.items() if spec.replace_keys or rule.restated_keys]
    if spec.replace_keys and rows.num_rows == 0:
        to_read = []  # no replace-key value appears in an empty output: nothing is replaced
        rules = {}
    read = dict(
        zip(
            [o.partition for o in to_read],
            fetch_objects(client, location, to_read, schema, max_workers=max_workers),
            strict=True,
        )
    )
    restated_column = _stored_names((restatement.column,), schema) if restatement.key_from else []
    for partition, rule in rules.items():
        if partition not in read:
            plan.rows_deleted += stored[partition].rows  # every row goes: no need to read it
            kept = None
        else:
            part = read[partition]
            mask = np.ones(part.num_rows, dtype=bool)
            if rule.restated_keys is not None:
                if not restated_column:
                    raise StorageMetadataError(
                        f"{origin}: restatement by column {restatement.column!r}, which "
                        f"{display} does not have"
                    )
                values = pc.cast(part.column(restated_column[0]), pa.string())
                restated = pa.array(sorted(rule.restated_keys), pa.string())
                mask &= pc.is_in(values, value_set=restated).to_numpy(zero_copy_only=False)
            if replace_keys:
                mask &= _matching_rows(part, rows, replace_keys)
            if not mask.any() and partition not in incoming_parts:
                continue  # nothing of this partition is replaced or added: it stays as it is
            plan.rows_deleted += int(mask.sum())
            kept = part.filter(pa.array(~mask))
        new = incoming_parts.pop(partition, None)
        pieces = [t for t in (kept, new) if t is not None and t.num_rows]
        if pieces:
            plan.contents[partition] = pa.concat_tables(pieces)
        else:
            plan.dropped.add(partition)
    for partition, new in incoming_parts.items():
        # A partition the window does not cover already holds rows (a restated row outside the
        # span that the bounds check let through cannot happen; an input table of another
        # layout can): keep them beside the new ones rather than lose either.
        if partition in stored:
            (old,) = fetch_objects(
                client, location, [stored[partition]], schema, max_workers=max_workers
            )
            new = pa.concat_tables([old, new])
        plan.contents[partition] = new
    return plan


def _stored_names(columns: Sequence[str | None], schema: pa.Schema) -> list[str]:
    by_lower = {name.lower(): name for name in schema.names}
    return [by_lower[c.lower()] for c in columns if c and c.lower() in by_lower]


def check_unique(
    plan: WritePlan,
    untouched_keys: pa.Table | None,
    spec: OutputSpec,
    display: str,
    origin: str,
) -> None:
    """Raise DuplicateKeyError if unique_key occurs twice among the rows the touched partitions
    will hold (plus ``untouched_keys``, the other partitions' keys, when the key does not include
    the partition column and a duplicate could span partitions)."""
    if not spec.unique_key or not plan.contents:
        return
    columns = _stored_names(spec.unique_key, plan.schema)
    if len(columns) < len(spec.unique_key):
        missing = [c for c in spec.unique_key if c.lower() not in {n.lower() for n in columns}]
        raise StorageMetadataError(f"{origin}: {display} has no unique_key column(s) {missing}")
    parts = [t.select(columns) for t in plan.contents.values()]
    if untouched_keys is not None and untouched_keys.num_rows:
        parts.append(conform(untouched_keys, plan.schema, columns))
    keys = pa.concat_tables(parts)
    counts = keys.group_by(columns, use_threads=False).aggregate([([], "count_all")])
    duplicated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if duplicated.num_rows == 0:
        return
    shown_rows = duplicated.sort_by(
        [("count_all", "descending"), *[(c, "ascending") for c in columns]]
    ).slice(0, DUPLICATES_IN_MESSAGE)
    shown = "; ".join(
        f"{dict((c, row[c]) for c in columns)} x{row['count_all']}"
        for row in shown_rows.to_pylist()
    )
    raise DuplicateKeyError(
        f"{origin}: {duplicated.num_rows} value(s) of unique_key {list(spec.unique_key)} would "
        f"occur more than once in {display} (e.g. {shown}); nothing was written and the stored "
        "rows are unchanged"
    )


def layout_for(
    bounds: DateBounds | None, keys: KeyPartitions | None, spec: OutputSpec
) -> tuple[PartitionKind, str | None]:
    """How a write lays its table out: by date, by static key, or as one object."""
    if keys is not None:
        return "key", keys.column
    if bounds is not None:
        return "date", spec.partition_expr
    return "none", None
