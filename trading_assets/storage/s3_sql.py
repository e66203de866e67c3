"""DuckDB over the bucket: every table of the prod storage as a DuckDB view, for ad-hoc SQL.

``attach_bucket(con, bucket, prefix)`` reads each table's manifest and registers a pyarrow dataset
of exactly the objects it lists (never a glob: a failed write's leftovers and objects a switch
is about to delete are not part of the table), under the table's name, so

    select * from indicators where symbol = 'AAPL'

works on S3 as it does on the local DuckDB file; DuckDB pushes filters and projections into the
Parquet scan. The objects are read through pyarrow's S3 filesystem with the standard AWS chain
(credentials, region, and AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 for a local endpoint).

Online, DuckDB's httpfs extension can read the same objects directly (``INSTALL httpfs; LOAD
httpfs;`` then ``read_parquet([...])`` over the manifest's paths). It is not used here: httpfs for
DuckDB 2.0.x is not on PyPI, and this project runs offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from trading_assets.storage.contract import StorageError
from trading_assets.storage.s3_layout import (
    MANIFEST_NAME,
    Manifest,
    TableLocation,
    read_manifest,
    s3_client,
)


class UnknownTableError(StorageError, ValueError):
    """A table asked for by name is not in the bucket (no manifest)."""


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem from the standard AWS chain, honouring AWS_ENDPOINT_URL(_S3)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**options)


def bucket_tables(bucket: str, prefix: str = "", client: Any = None) -> list[str]:
    """The tables stored under ``s3://bucket/prefix/``: the directories holding a manifest."""
    client = client or s3_client()
    root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    tables = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=root, Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", ()):
            name = common["Prefix"][len(root) :].strip("/")
            location = TableLocation.of(bucket, prefix, name)
            listed = client.list_objects_v2(Bucket=bucket, Prefix=location.manifest_key, MaxKeys=1)
            if listed.get("KeyCount", 0):
                tables.append(name)
    return sorted(tables)


def manifest_dataset(
    manifest: Manifest, location: TableLocation, filesystem: pafs.FileSystem
) -> ds.Dataset:
    """A pyarrow dataset of exactly the objects ``manifest`` lists (never a glob)."""
    paths = [f"{location.bucket}/{location.key(o.path)}" for o in manifest.objects]
    return ds.dataset(paths, schema=manifest.schema, format="parquet", filesystem=filesystem)


def attach_bucket(
    con: duckdb.DuckDBPyConnection,
    bucket: str,
    prefix: str = "",
    tables: Sequence[str] | None = None,
) -> dict[str, int]:
    """Register the bucket's tables (or ``tables``) as views of ``con``; table -> rows listed."""
    client = s3_client()
    filesystem = s3_filesystem()
    names = list(tables) if tables is not None else bucket_tables(bucket, prefix, client)
    attached = {}
    for name in names:
        location = TableLocation.of(bucket, prefix, name)
        manifest, _ = read_manifest(client, location)
        if manifest is None:
            raise UnknownTableError(
                f"no table {name!r} in s3://{bucket}/{location.root} (no {MANIFEST_NAME})"
            )
        con.register(name, manifest_dataset(manifest, location, filesystem))
        attached[name] = manifest.row_count
    return attached
