"""Where the prod storage keeps a table in S3, and the manifest that says which objects hold it.

Layout, under ``s3://<bucket>/<prefix>/`` (prefix optional)::

    <table>/_manifest.json                         which objects make up the table, and its schema
    <table>/date=2024-01-10/<write_id>.parquet     time-partitioned: one object per session date
    <table>/strategy=momentum/<write_id>.parquet   statically partitioned: one object per key
    <table>/<write_id>.parquet                     unpartitioned: one object

``<table>`` is :func:`trading_assets.storage.contract.table_name_for` of the asset key; the
directory name uses the table's partition column (``partition_expr``), Hive style, with the value
percent-encoded, so Athena, DuckDB and pyarrow discover the partitions the same way. Every object is
a complete Parquet file: the partition column is inside it too (DATE as date32).

The manifest is the table. An object not listed in it is not part of the table, whatever its name:
a reader lists no directory, it reads the manifest and then exactly the objects the manifest names.
A writer puts its new objects under fresh names (its ``write_id``), then switches the table by
writing a new manifest (conditionally on the ETag of the one it read), then deletes the objects it
replaced. So a reader sees the old table or the new one, never a mix; a failed write leaves objects
nobody lists, which :func:`unlisted_objects` finds for a sweep.

A reader that read a manifest just before a writer switched may find one of its objects already
deleted (NoSuchKey): it reads the manifest again and starts over (see
:func:`trading_assets.storage.s3_read.read_table`).

Manifest (JSON, ``FORMAT`` 1)::

    {"format": 1, "table": "raw_prices", "version": 7,
     "write_id": "20240110T213000123456Z-3f2a9c1d5e7b", "written_at": "2024-01-10T21:30:00+00:00",
     "partition_kind": "date", "partition_column": "date",        # or "key" / "none" and null
     "unique_key": ["symbol", "date"],
     "columns": [{"name": "symbol", "type": "VARCHAR"}, {"name": "date", "type": "DATE"}, ...],
     "arrow_schema": "<base64 of the Arrow IPC schema>",
     "objects": [{"partition": "2024-01-10", "path": "date=2024-01-10/<write_id>.parquet",
                  "rows": 503, "bytes": 81234}, ...]}

``columns`` gives each column's type in DuckDB's names (as the DuckDB IO manager stores it, and as
:func:`trading_assets.storage.column_types.is_safe_cast` compares them); ``arrow_schema`` is the
exact type the objects are read as (an object written before a column was added lacks it: it reads
as NULL). ``path`` is relative to the table's directory, so a bucket or prefix can be copied
elsewhere whole. ``version`` counts switches, from 1.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, unquote

import pyarrow as pa

from trading_assets.storage.contract import StorageError

MANIFEST_NAME = "_manifest.json"
FORMAT = 1
PARQUET_SUFFIX = ".parquet"

PartitionKind = Literal["date", "key", "none"]
PARTITION_KINDS: tuple[str, ...] = ("date", "key", "none")


class ManifestError(StorageError, ValueError):
    """A manifest that is not one this code wrote (a newer format, a broken or foreign file)."""


def new_write_id(now: dt.datetime | None = None) -> str:
    """A fresh, sortable name for one write's objects: UTC time to the microsecond plus 48 random
    bits, so two writers never pick the same name and a sweep can tell an object's age by name."""
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{uuid.uuid4().hex[:12]}"


def write_time(write_id: str) -> dt.datetime | None:
    """When a write id was made (None for a name that is not one)."""
    try:
        return dt.datetime.strptime(write_id.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(
            tzinfo=dt.UTC
        )
    except ValueError:
        return None


def partition_value(value: object) -> str:
    """A partition's value as the manifest and the object path spell it: ISO date or the key."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class TableLocation:
    """One table's place in the bucket: every key this storage reads or writes comes from here."""

    bucket: str
    prefix: str
    table: str

    @classmethod
    def of(cls, bucket: str, prefix: str | None, table: str) -> TableLocation:
        return cls(bucket=bucket, prefix=(prefix or "").strip("/"), table=table)

    @property
    def root(self) -> str:
        """The table's directory key, with a trailing slash (``prefix/raw_prices/``)."""
        return f"{self.prefix}/{self.table}/" if self.prefix else f"{self.table}/"

    @property
    def manifest_key(self) -> str:
        return self.root + MANIFEST_NAME

    def key(self, path: str) -> str:
        """The object key of a manifest path (relative to the table's directory)."""
        return self.root + path

    def url(self, path: str = "") -> str:
        """``s3://bucket/prefix/table/<path>``, for messages, metadata and SQL readers."""
        return f"s3://{self.bucket}/{self.key(path)}"

    def object_path(self, kind: PartitionKind, column: str | None, value: str | None,
                    write_id: str) -> str:  # fmt: skip
        """Where one write puts one partition's object, relative to the table's directory."""
        name = write_id + PARQUET_SUFFIX
        if kind == "none":
            return name
        if column is None or value is None:
            raise ValueError(f"a {kind}-partitioned object needs a partition column and value")
        return f"{column}={quote(value, safe='')}/{name}"


def path_partition(path: str) -> tuple[str | None, str | None]:
    """(column, value) of an object path written by :meth:`TableLocation.object_path`."""
    directory, _, _ = path.rpartition("/")
    if not directory:
        return None, None
    column, _, value = directory.partition("=")
    return column, unquote(value)


# --- column types ---------------------------------------------------------------------------------


def sql_type_name(arrow_type: pa.DataType) -> str:
    """An Arrow type in DuckDB's names, as the DuckDB IO manager would store the column.

    Nested types are spelled the DuckDB way (``VARCHAR[]``, ``STRUCT(a BIGINT)``); a dictionary
    (a pandas categorical) is its value type. These names only feed is_safe_cast and messages:
    the objects keep their exact Arrow types.
    """
    t = arrow_type
    if pa.types.is_dictionary(t):
        return sql_type_name(t.value_type)
    simple = {
        pa.bool_(): "BOOLEAN",
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float16(): "FLOAT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.date32(): "DATE",
        pa.date64(): "DATE",
        pa.null(): "NULL",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_duration(t):
        return "INTERVAL"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return f"{sql_type_name(t.value_type)}[]"
    if pa.types.is_struct(t):
        fields = ", ".join(f"{f.name} {sql_type_name(f.type)}" for f in t)
        return f"STRUCT({fields})"
    if pa.types.is_map(t):
        return f"MAP({sql_type_name(t.key_type)}, {sql_type_name(t.item_type)})"
    return str(t).upper()


def schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.remove_metadata().serialize().to_pybytes()).decode("ascii")


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


# --- the manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestObject:
    """One object of the table: the partition value it holds (None when unpartitioned)."""

    partition: str | None
    path: str
    rows: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "path": self.path, "rows": self.rows,
                "bytes": self.bytes}  # fmt: skip


@dataclass(frozen=True)
class Manifest:
    """A table as of one switch: its objects, schema and keys (see the module docstring)."""

    table: str
    version: int
    write_id: str
    written_at: str
    partition_kind: PartitionKind
    partition_column: str | None
    unique_key: tuple[str, ...]
    schema: pa.Schema
    objects: tuple[ManifestObject, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> dict[str, str]:
        """Column name -> type in DuckDB's names (``{"close": "DOUBLE", ...}``)."""
        return {f.name: sql_type_name(f.type) for f in self.schema}

    @property
    def row_count(self) -> int:
        return sum(o.rows for o in self.objects)

    def by_partition(self) -> dict[str | None, ManifestObject]:
        return {o.partition: o for o in self.objects}

    def select(
        self,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[ManifestObject]:
        """The objects that can hold rows with ``start <= date < end`` (a date-partitioned table)
        or whose key is one of ``keys`` (a key-partitioned one). Filters that do not apply to the
        table's partitioning select every object (the caller filters rows)."""
        chosen = list(self.objects)
        if self.partition_kind == "date" and (start is not None or end is not None):
            low = start.isoformat() if start else ""
            high = end.isoformat() if end else "\uffff"
            chosen = [o for o in chosen if o.partition and low <= o.partition < high]
        if self.partition_kind == "key" and keys is not None:
            wanted = set(keys)
            chosen = [o for o in chosen if o.partition in wanted]
        return chosen

    def switched(
        self, objects: Sequence[ManifestObject], schema: pa.Schema, write_id: str,
        unique_key: Sequence[str],
    ) -> Manifest:  # fmt: skip
        """The next version: these objects and schema, written by ``write_id``."""
        return replace(
            self,
            version=self.version + 1,
            write_id=write_id,
            written_at=dt.datetime.now(dt.UTC).isoformat(),
            unique_key=tuple(unique_key),
            schema=schema,
            objects=tuple(sorted(objects, key=lambda o: (o.partition or "", o.path))),
        )

    @classmethod
    def empty(
        cls, table: str, kind: PartitionKind, column: str | None, schema: pa.Schema | None = None
    ) -> Manifest:
        """Version 0 of a table never written (what a first write switches from)."""
        return cls(
            table=table,
            version=0,
            write_id="",
            written_at="",
            partition_kind=kind,
            partition_column=column,
            unique_key=(),
            schema=schema if schema is not None else pa.schema([]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "table": self.table,
            "version": self.version,
            "write_id": self.write_id,
            "written_at": self.written_at,
            "partition_kind": self.partition_kind,
            "partition_column": self.partition_column,
            "unique_key": list(self.unique_key),
            "columns": [{"name": n, "type": t} for n, t in self.columns.items()],
            "arrow_schema": schema_to_text(self.schema),
            "objects": [o.to_json() for o in self.objects],
        }

    def to_bytes(self) -> bytes:
        # Compact: 25 years of sessions is ~6,300 objects, read before every load.
        return json.dumps(self.to_json(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, origin: str) -> Manifest:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ManifestError(
                f"{origin}: not a format-{FORMAT} table manifest (format {found!r}); was it "
                "written by a newer trading_assets, or by something else?"
            )
        try:
            kind = data["partition_kind"]
            if kind not in PARTITION_KINDS:
                raise ValueError(f"partition_kind {kind!r}")
            return cls(
                table=str(data["table"]),
                version=int(data["version"]),
                write_id=str(data["write_id"]),
                written_at=str(data["written_at"]),
                partition_kind=kind,
                partition_column=data["partition_column"],
                unique_key=tuple(data.get("unique_key") or ()),
                schema=schema_from_text(data["arrow_schema"]),
                objects=tuple(
                    ManifestObject(
                        partition=o["partition"],
                        path=str(o["path"]),
                        rows=int(o["rows"]),
                        bytes=int(o["bytes"]),
                    )
                    for o in data["objects"]
                ),
            )
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise ManifestError(f"{origin}: malformed table manifest: {exc!r}") from exc

    @classmethod
    def from_bytes(cls, body: bytes, *, origin: str) -> Manifest:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ManifestError(f"{origin}: the table manifest is not JSON: {exc}") from exc
        return cls.from_json(data, origin=origin)


# --- talking to S3 ----------------------------------------------------------------------------------

# Parallel object reads and writes share one client; its connection pool must be as large.
MAX_PARALLEL_REQUESTS = 32


def s3_client(
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    max_pool_connections: int = MAX_PARALLEL_REQUESTS,
    max_attempts: int = 5,
) -> Any:
    """A boto3 S3 client from the standard AWS chain.

    Credentials, region and endpoint come from wherever boto3 finds them (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws, SSO, an instance or task
    role; AWS_REGION / AWS_DEFAULT_REGION; AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3), so the same
    code talks to AWS or to a local endpoint. ``region_name``/``endpoint_url`` override the chain.
    Each request is tried up to ``max_attempts`` times in all (boto3's standard retry mode:
    throttling, 5xx and connection errors). Clients are thread-safe; one serves a whole read or
    write.
    """
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        region_name=region_name or None,
        endpoint_url=endpoint_url or None,
        config=Config(
            max_pool_connections=max_pool_connections,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        ),
    )


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("NoSuchKey", "PreconditionFailed"), else ""."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if not code and status == 404:
        return "NoSuchKey"  # a HEAD's 404 has no body to name it
    return code


def is_missing(client: Any, bucket: str, key: str, exc: BaseException) -> bool:
    """Whether a failed GET of ``key`` means the object does not exist.

    S3 answers a GET of a missing key with 404 only to a caller allowed to list the bucket; to
    one whose s3:ListBucket is limited by an ``s3:prefix`` condition (as the deploy policy's), it
    answers 403 AccessDenied. Then a listing of exactly that key, which the prefix allows, tells.
    """
    code = error_code(exc)
    if code in ("NoSuchKey", "404"):
        return True
    if code not in ("AccessDenied", "403"):
        return False
    listed = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return not any(item["Key"] == key for item in listed.get("Contents", ()))


def read_manifest(client: Any, location: TableLocation) -> tuple[Manifest | None, str | None]:
    """The table's manifest and its ETag, or (None, None) for a table never written."""
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.manifest_key)
    except Exception as exc:
        if is_missing(client, location.bucket, location.manifest_key, exc):
            return None, None
        raise
    body = response["Body"].read()
    return Manifest.from_bytes(body, origin=location.url(MANIFEST_NAME)), response["ETag"]


def list_keys(client: Any, location: TableLocation) -> Iterator[tuple[str, dt.datetime]]:
    """(key, last modified) of every object under the table's directory, manifest included."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.root):
        for item in page.get("Contents", ()):
            yield item["Key"], item["LastModified"]


def unlisted_objects(
    client: Any, location: TableLocation, manifest: Manifest | None, older_than: dt.timedelta
) -> list[str]:
    """Keys under the table that its manifest does not list and that are older than
    ``older_than``: left by failed or refused writes (harmless, as no reader reads them). The age
    keeps a sweep away from a concurrent writer's objects before its switch."""
    listed = {location.key(o.path) for o in (manifest.objects if manifest else ())}
    listed.add(location.manifest_key)
    cutoff = dt.datetime.now(dt.UTC) - older_than
    return sorted(
        key
        for key, modified in list_keys(client, location)
        if key not in listed and key.endswith(PARQUET_SUFFIX) and modified < cutoff
    )
