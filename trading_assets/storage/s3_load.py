"""Loading rows of an S3 table: the IO manager's inputs and TableStore.read_rows.

The manifest picks the objects: a date window reads only its sessions' objects, static keys only
theirs. Rows are then filtered where the table's layout cannot (a date-partitioned input read from a
table laid out otherwise, ``symbols``), ordered as the DuckDB IO manager orders them, and cut to the
columns asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from trading_assets.storage.contract import StorageMetadataError
from trading_assets.storage.s3_layout import Manifest, ManifestObject, TableLocation
from trading_assets.storage.s3_read import read_table


@dataclass(frozen=True)
class RowFilter:
    """What a load keeps: ``start <= date_column < end``, ``key_column`` in ``keys``,
    ``symbol`` in ``symbols``; ``nothing`` for a partition before the first (self-dependency)."""

    date_column: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    key_column: str | None = None
    keys: tuple[str, ...] | None = None
    symbols: tuple[str, ...] | None = None
    nothing: bool = False


def _names(manifest: Manifest) -> dict[str, str]:
    return {name.lower(): name for name in manifest.schema.names}


def _stored(manifest: Manifest, column: str, what: str) -> str:
    names = _names(manifest)
    if column.lower() not in names:
        raise StorageMetadataError(f"{what} {column!r}; it has {manifest.schema.names}")
    return names[column.lower()]


def _choose(manifest: Manifest, rows: RowFilter) -> list[ManifestObject]:
    if rows.nothing:
        return []
    chosen = list(manifest.objects)
    column = (manifest.partition_column or "").lower()
    if manifest.partition_kind == "date" and (rows.date_column or "").lower() == column:
        chosen = manifest.select(start=rows.start, end=rows.end)
    if manifest.partition_kind == "key" and (rows.key_column or "").lower() == column:
        chosen = [o for o in chosen if o.partition in set(rows.keys or ())]
    return chosen


def load_rows(
    client: Any,
    location: TableLocation,
    *,
    columns: Sequence[str] | None,
    rows: RowFilter,
    order: Sequence[Sequence[str]],
    unknown: str,
    max_workers: int,
) -> tuple[Manifest | None, pa.Table | None]:
    """(manifest, rows) of one version of the table, or (None, None) if it was never written.

    ``columns``: the columns to return (all by default), named as stored; an unknown one raises
    StorageMetadataError with ``unknown`` as the start of its message. ``order``: candidate sort
    keys, the first whose columns the table has all of is used.
    """
    plan: dict[str, Any] = {}

    def wanted(manifest: Manifest) -> list[str]:
        names = _names(manifest)
        missing = [c for c in columns or () if c.lower() not in names]
        if missing:
            raise StorageMetadataError(f"{unknown} {missing}; it has {manifest.schema.names}")
        chosen = (
            [names[c.lower()] for c in columns] if columns is not None else list(names.values())
        )
        sort = next((keys for keys in order if all(k.lower() in names for k in keys)), ())
        plan["sort"] = [names[k.lower()] for k in sort]
        plan["filters"] = _filters(manifest, rows)
        plan["columns"] = chosen
        needed = [*chosen, *plan["sort"], *(c for c, _ in plan["filters"])]
        return list(dict.fromkeys(needed))

    manifest, table = read_table(
        client, location, lambda m: _choose(m, rows), wanted, max_workers=max_workers
    )
    if manifest is None or table is None:
        return None, None
    for column, keep in plan["filters"]:
        table = table.filter(keep(table.column(column)))
    if plan["sort"] and table.num_rows > 1:
        table = table.sort_by([(c, "ascending") for c in plan["sort"]])
    return manifest, table.select(plan["columns"])


def _filters(manifest: Manifest, rows: RowFilter) -> list[tuple[str, Any]]:
    """(column, predicate) pairs for what the chosen objects do not settle by themselves."""
    filters: list[tuple[str, Any]] = []
    column = (manifest.partition_column or "").lower()
    by_date = manifest.partition_kind == "date" and (rows.date_column or "").lower() == column
    if rows.date_column and (rows.start or rows.end) and not by_date:
        stored = _stored(manifest, rows.date_column, f"{location_hint(manifest)} has no column")
        start, end = rows.start, rows.end

        def in_dates(values: pa.ChunkedArray) -> pa.ChunkedArray:
            keep = pc.is_valid(values)
            if start is not None:
                keep = pc.and_(keep, pc.greater_equal(values, pa.scalar(start, values.type)))
            if end is not None:
                keep = pc.and_(keep, pc.less(values, pa.scalar(end, values.type)))
            return keep

        filters.append((stored, in_dates))
    by_key = manifest.partition_kind == "key" and (rows.key_column or "").lower() == column
    if rows.key_column and rows.keys is not None and not by_key:
        stored = _stored(manifest, rows.key_column, f"{location_hint(manifest)} has no column")
        keys = pa.array(list(rows.keys), pa.string())
        filters.append((stored, lambda v: pc.is_in(pc.cast(v, pa.string()), value_set=keys)))
    if rows.symbols is not None:
        stored = _stored(manifest, "symbol", f"{location_hint(manifest)} has no column")
        symbols = pa.array(list(rows.symbols), pa.string())
        filters.append((stored, lambda v: pc.is_in(pc.cast(v, pa.string()), value_set=symbols)))
    return filters


def location_hint(manifest: Manifest) -> str:
    return f"table {manifest.table}"
