"""Reading a table from S3: exactly the objects its manifest lists, in parallel.

:func:`read_table` reads the manifest, picks the objects a load needs (a lookback of 756 sessions is
757 objects), fetches and decodes them on a thread pool (boto3 clients are thread-safe; pyarrow
decodes outside the GIL) and returns one Arrow table with the manifest's schema: a column added
after an object was written reads as NULL there. If a writer switched the table and deleted an
object between the manifest read and the fetch, the read starts over from the new manifest, so a
reader always sees one version whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trading_assets.storage.s3_layout import (
    MAX_PARALLEL_REQUESTS,
    Manifest,
    ManifestObject,
    TableLocation,
    is_missing,
    read_manifest,
)

# How often a read starts over when a writer deletes an object it was about to fetch.
READ_ATTEMPTS = 5


class VanishedObjectError(Exception):
    """An object the manifest listed was gone: a writer switched the table meanwhile."""


def conform(table: pa.Table, schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """``table`` with exactly the fields of ``schema`` (or its ``columns``), in that order: a
    missing column as NULLs of its type, a present one cast to its type (a no-op for objects this
    storage wrote, whose types are the table's)."""
    names = list(columns) if columns is not None else schema.names
    arrays = []
    for name in names:
        target = schema.field(name).type
        if name in table.column_names:
            column = table.column(name)
            arrays.append(column if column.type == target else column.cast(target, safe=False))
        else:
            arrays.append(pa.nulls(table.num_rows, target))
    return pa.table(arrays, schema=pa.schema([schema.field(n) for n in names]))


def fetch_object(
    client: Any, location: TableLocation, item: ManifestObject, schema: pa.Schema,
    columns: Sequence[str] | None,
) -> pa.Table:  # fmt: skip
    """One listed object, decoded and conformed to the table's schema."""
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.key(item.path))
    except Exception as exc:
        if is_missing(client, location.bucket, location.key(item.path), exc):
            raise VanishedObjectError(location.url(item.path)) from exc
        raise
    body = response["Body"].read()
    parquet = pq.ParquetFile(pa.BufferReader(body))
    present = set(parquet.schema_arrow.names)
    wanted = [c for c in (columns if columns is not None else schema.names) if c in present]
    # use_threads=False: the objects are decoded in parallel already, one per thread.
    return conform(parquet.read(columns=wanted, use_threads=False), schema, columns)


def fetch_objects(
    client: Any,
    location: TableLocation,
    items: Sequence[ManifestObject],
    schema: pa.Schema,
    columns: Sequence[str] | None = None,
    *,
    max_workers: int = MAX_PARALLEL_REQUESTS,
) -> list[pa.Table]:
    """The listed objects (in the order given), fetched in parallel."""
    if not items:
        return []
    if len(items) == 1:
        return [fetch_object(client, location, items[0], schema, columns)]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        futures = [
            pool.submit(fetch_object, client, location, item, schema, columns) for item in items
        ]
        return [future.result() for future in futures]


def empty_table(schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    names = list(columns) if columns is not None else schema.names
    return pa.schema([schema.field(n) for n in names]).empty_table()


def read_table(
    client: Any,
    location: TableLocation,
    choose: Callable[[Manifest], Sequence[ManifestObject]],
    columns: Callable[[Manifest], Sequence[str] | None] | None = None,
    *,
    max_workers: int = MAX_PARALLEL_REQUESTS,
) -> tuple[Manifest | None, pa.Table | None]:
    """(manifest, rows of the objects ``choose`` picks from it) of one table version, or (None,
    None) for a table never written. ``columns`` picks the columns from the manifest (checked by
    the caller), all by default. Starts over from the new manifest when a writer's switch deleted
    an object meanwhile."""
    for attempt in range(READ_ATTEMPTS):
        manifest, _ = read_manifest(client, location)
        if manifest is None:
            return None, None
        wanted = columns(manifest) if columns is not None else None
        items = choose(manifest)
        try:
            parts = fetch_objects(
                client, location, items, manifest.schema, wanted, max_workers=max_workers
            )
        except VanishedObjectError:
            if attempt + 1 == READ_ATTEMPTS:
                raise
            continue
        if not parts:
            return manifest, empty_table(manifest.schema, wanted)
        return manifest, pa.concat_tables(parts)
    raise AssertionError("unreachable")
