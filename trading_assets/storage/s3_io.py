"""The prod storage: each asset a Parquet table in S3, replaced atomically through its manifest.

Same contract as the DuckDB IO manager (:mod:`trading_assets.storage.contract`), so an asset cannot
tell them apart; layout and manifest: :mod:`trading_assets.storage.s3_layout`. One write:

    read the manifest (and its ETag); check and normalise the output (output_frames);
    work out the new contents of every partition it touches (s3_write.plan_write: whole partitions
    are dropped unread, partial ones read, filtered and rewritten); check unique_key over them;
    PUT the new objects under a fresh write id, in parallel;
    SWITCH: PUT the new manifest If-Match the ETag read (If-None-Match for a first write);
    DELETE the objects it replaced.

Until the switch nothing a reader reads has changed; after it the new version is whole. A write
that fails before the switch deletes what it put (or leaves it: unlisted objects are never read,
and :meth:`S3ParquetIOManager.sweep` removes them). If another writer switched the table in
between, the conditional PUT is refused (412): the write starts over from the new manifest, so
neither write is lost, and after ``switch_attempts`` refusals it fails with ConcurrentWriteError.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from trading_assets.storage.contract import (
    ConcurrentWriteError,
    DatabaseWriteError,
    DateBounds,
    InputSpec,
    KeyPartitions,
    MissingTableError,
    OutputSpec,
    Restatement,
    StorageMetadataError,
    TableStore,
    context_origin,
    covered_partitions,
    table_name_for,
)
from trading_assets.storage.output_frames import (
    frame_from_arrow,
    prepare_output,
)
from trading_assets.storage.s3_layout import (
    MAX_PARALLEL_REQUESTS,
    Manifest,
    ManifestObject,
    TableLocation,
    error_code,
    new_write_id,
    read_manifest,
    s3_client,
    unlisted_objects,
)
from trading_assets.storage.s3_load import RowFilter, load_rows
from trading_assets.storage.s3_read import fetch_objects
from trading_assets.storage.s3_write import WritePlan, check_unique, layout_for, plan_write

# S3 answers a refused conditional PUT with 412, or 409 when two conditional PUTs race.
_REFUSED = ("PreconditionFailed", "ConditionalRequestConflict")
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


@lru_cache(maxsize=8)
def _cached_client(region: str | None, endpoint: str | None, attempts: int, pool: int,
                   pid: int, chain: tuple[tuple[str, str], ...]) -> Any:  # fmt: skip
    # One client per configuration, process and AWS environment (a test points the chain
    # elsewhere): building one costs ~0.1 s (measured 0.14 s), and clients are thread-safe.
    return s3_client(
        region_name=region, endpoint_url=endpoint, max_pool_connections=pool, max_attempts=attempts
    )


class _Refused(Exception):
    """The conditional manifest PUT was refused: another writer switched first."""


class S3ParquetIOManager(TableStore):
    """Stores each asset as Parquet objects in S3 under a manifest, replacing partitions atomically.

    Credentials, region and endpoint come from the standard AWS chain (environment, profile, SSO,
    instance/task role; AWS_ENDPOINT_URL for a local endpoint such as moto or MinIO) unless
    ``region_name`` / ``endpoint_url`` are set. Asset and input metadata as for
    :class:`~trading_assets.storage.duckdb_io.DuckDBIOManager`.
    """

    bucket: str = Field(description="The bucket that holds the tables.")
    prefix: str = Field(default="", description="Key prefix of every table (no leading slash).")
    region_name: str | None = Field(default=None, description="Region; default: the AWS chain.")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; default: the AWS chain (AWS_ENDPOINT_URL)."
    )
    switch_attempts: int = Field(
        default=3,
        description="How often a write whose switch another writer beat starts over from the "
        "new manifest before failing with ConcurrentWriteError.",
    )
    request_attempts: int = Field(
        default=5, description="Attempts per S3 request (boto3's standard retry mode)."
    )
    max_parallel_requests: int = Field(
        default=MAX_PARALLEL_REQUESTS, description="Objects fetched or put at once."
    )

    # --- plumbing ----------------------------------------------------------------------------------

    def _client(self) -> Any:
        chain = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        return _cached_client(
            self.region_name, self.endpoint_url, self.request_attempts,
            self.max_parallel_requests, os.getpid(), chain,
        )  # fmt: skip

    def _location(self, table: str) -> TableLocation:
        if not self.bucket:
            raise StorageMetadataError("S3ParquetIOManager needs a bucket")
        return TableLocation.of(self.bucket, self.prefix, table)

    @staticmethod
    def _display(location: TableLocation) -> str:
        return location.url().rstrip("/")

    # --- output ------------------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not context.has_asset_key:
            raise NotImplementedError(
                "S3ParquetIOManager stores asset outputs only (no op outputs)"
            )
        out = prepare_output(context, obj, "S3ParquetIOManager")
        origin, spec, bounds, keys = out.origin, out.spec, out.bounds, out.keys
        restatement, date_column, incoming = out.restatement, out.date_column, out.incoming
        location = self._location(table_name_for(context.asset_key.path))

        started = time.perf_counter()
        result = self._write(
            context, location, incoming, spec, bounds, keys, restatement, date_column, origin
        )
        if result is None:
            context.log.info(f"{origin}: nothing to store (an empty output without typed columns)")
            return
        manifest, plan = result
        context.log.info(
            f"{origin}: wrote {incoming.num_rows} row(s) to {self._display(location)} "
            f"(version {manifest.version}, {len(plan.contents)} object(s)), "
            f"replaced {plan.rows_deleted}"
        )
        restated = restatement.earliest()
        single = not (context.has_asset_partitions and len(context.asset_partition_keys) > 1)
        context.add_output_metadata(
            {
                **({"restated_rows_from": str(restated)} if restated else {}),
                "row_count": incoming.num_rows,
                "rows_deleted": plan.rows_deleted,
                "write_seconds": round(time.perf_counter() - started, 3),
                "table_row_count": manifest.row_count,
                "dagster/table_name": self._display(location),
                "manifest_version": manifest.version,
                "objects_written": len(plan.contents),
                # As the DuckDB IO manager: the schema only where it is not copied per partition.
                **(
                    {
                        "dagster/column_schema": dg.TableSchema(
                            columns=[
                                dg.TableColumn(name, type=t) for name, t in manifest.columns.items()
                            ]
                        )
                    }
                    if single
                    else {}
                ),
                "s3_uri": dg.MetadataValue.url(location.url()),
            }
        )

    def _write(
        self,
        context: Any,
        location: TableLocation,
        incoming: pa.Table,
        spec: OutputSpec,
        bounds: DateBounds | None,
        keys: KeyPartitions | None,
        restatement: Restatement,
        date_column: str | None,
        origin: str,
    ) -> tuple[Manifest, WritePlan] | None:
        """Plan, check, put and switch; start over when another writer switched first."""
        client = self._client()
        display = self._display(location)
        kind, column = layout_for(bounds, keys, spec)
        for attempt in range(1, max(1, self.switch_attempts) + 1):
            stored, etag = read_manifest(client, location)
            if stored is not None and (stored.partition_kind, stored.partition_column) != (
                kind, column
            ):  # fmt: skip
                raise StorageMetadataError(
                    f"{origin}: {display} is laid out by {stored.partition_kind} "
                    f"({stored.partition_column}) but this output is by {kind} ({column}); "
                    "an asset whose partitioning changed needs a new table (or the old one "
                    "removed)"
                )
            base = stored or Manifest.empty(location.table, kind, column)
            plan = plan_write(
                client, location, base, incoming, spec, bounds, keys, restatement,
                date_column=date_column, display=display, origin=origin,
                max_workers=self.max_parallel_requests,
            )  # fmt: skip
            if stored is None and not plan.schema.names:
                return None  # an allowed empty output without typed columns creates nothing
            check_unique(plan, self._untouched_keys(client, location, base, plan, spec),
                         spec, display, origin)  # fmt: skip
            write_id = new_write_id()
            objects = self._put_objects(client, location, base, plan, write_id, origin)
            kept = [o for o in base.objects if o.partition not in plan.contents
                    and o.partition not in plan.dropped]  # fmt: skip
            manifest = base.switched([*kept, *objects], plan.schema, write_id, spec.unique_key)
            self._before_switch(location)
            try:
                self._switch(client, location, manifest, etag, objects, origin)
            except _Refused:
                if attempt >= self.switch_attempts:
                    raise ConcurrentWriteError(
                        f"{origin}: another writer switched {display} while this write was "
                        f"being prepared, {attempt} time(s) in a row; this write was not "
                        "applied and the other writes are intact. Re-run it."
                    ) from None
                context.log.warning(
                    f"{origin}: another writer switched {display} first; starting over from "
                    f"its version (attempt {attempt + 1} of {self.switch_attempts})"
                )
                continue
            replaced = [o.path for o in plan.replaced(base)]
            self._delete(client, location, replaced, context, "replaced")
            return manifest, plan
        raise AssertionError("unreachable")

    def _before_switch(self, location: TableLocation) -> None:
        """Called between putting the objects and switching (a test runs a rival writer here)."""

    def _untouched_keys(
        self, client: Any, location: TableLocation, base: Manifest, plan: WritePlan,
        spec: OutputSpec,
    ) -> pa.Table | None:  # fmt: skip
        """The unique_key columns of partitions this write leaves alone, when a duplicate could
        span partitions (the key lacks the partition column); else None (no read)."""
        column = base.partition_column
        if not spec.unique_key or column is None or not plan.contents:
            return None
        if column.lower() in {k.lower() for k in spec.unique_key}:
            return None
        names = {n.lower(): n for n in base.schema.names}
        wanted = [names[k.lower()] for k in spec.unique_key if k.lower() in names]
        if len(wanted) < len(spec.unique_key):
            return None  # a new key column: no stored row has a value in it
        gone = set(plan.contents) | plan.dropped
        others = [o for o in base.objects if o.partition not in gone]
        parts = fetch_objects(client, location, others, base.schema, wanted,
                              max_workers=self.max_parallel_requests)  # fmt: skip
        return pa.concat_tables(parts) if parts else None

    def _put_objects(
        self, client: Any, location: TableLocation, base: Manifest, plan: WritePlan,
        write_id: str, origin: str,
    ) -> list[ManifestObject]:  # fmt: skip
        """PUT every new partition object in parallel; on any failure delete the ones that
        made it and raise DatabaseWriteError (the manifest, so the table, is untouched)."""

        def put(partition: str | None, table: pa.Table) -> ManifestObject:
            path = location.object_path(
                base.partition_kind, base.partition_column, partition, write_id
            )
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="snappy")
            body = sink.getvalue().to_pybytes()
            client.put_object(Bucket=location.bucket, Key=location.key(path), Body=body,
                              ContentType="application/vnd.apache.parquet")  # fmt: skip
            return ManifestObject(partition, path, table.num_rows, len(body))

        if not plan.contents:
            return []
        workers = min(self.max_parallel_requests, len(plan.contents))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(put, p, t) for p, t in plan.contents.items()]
            done, failure = [], None
            for future in futures:
                try:
                    done.append(future.result())
                except Exception as exc:  # noqa: BLE001 - every failure ends the write the same way
                    failure = failure or exc
        if failure is None:
            return done
        self._delete(client, location, [o.path for o in done], None, "own")
        raise DatabaseWriteError(
            f"{origin}: writing {len(plan.contents)} object(s) to {self._display(location)} "
            f"failed ({failure}); the manifest was not switched, so the stored rows are "
            "unchanged"
        ) from failure

    def _switch(
        self, client: Any, location: TableLocation, manifest: Manifest, etag: str | None,
        objects: list[ManifestObject], origin: str,
    ) -> None:  # fmt: skip
        """PUT the manifest conditionally. A lost answer (the PUT applied, the reply never came;
        a retry then refused by our own new ETag) is told apart from a rival by re-reading it."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            client.put_object(
                Bucket=location.bucket, Key=location.manifest_key, Body=manifest.to_bytes(),
                ContentType="application/json", **condition,
            )  # fmt: skip
            return
        except Exception as exc:  # noqa: BLE001 - re-read to learn what happened
            failure = exc
        try:
            now, _ = read_manifest(client, location)
        except Exception:  # noqa: BLE001 - cannot tell: leave our objects (unlisted = harmless)
            raise DatabaseWriteError(
                f"{origin}: switching {self._display(location)} to its new version failed "
                f"({failure}), and re-reading the manifest to see whether it took effect failed "
                "too; the table is whole either way (the previous version or this one)"
            ) from failure
        if now is not None and now.write_id == manifest.write_id:
            return  # it took effect; only the answer was lost
        if error_code(failure) in _REFUSED:
            # The manifest moved on from the ETag every attempt of ours was conditional on, so
            # none of them can still land: our objects are garbage.
            self._delete(client, location, [o.path for o in objects], None, "own")
            raise _Refused() from failure
        # Any other failure (5xx, a dropped connection) leaves our objects: a PUT still in
        # flight might yet land and list them. Unlisted until then, they are harmless; sweep.
        raise DatabaseWriteError(
            f"{origin}: switching {self._display(location)} to its new version failed "
            f"({failure}); the table keeps its previous version whole (unless a request still "
            "in flight lands, making it this write's, whole); this write's "
            f"{len(objects)} unlisted object(s) are left for S3ParquetIOManager.sweep"
        ) from failure

    def _delete(self, client: Any, location: TableLocation, paths: Sequence[str], context: Any,
                what: str) -> None:  # fmt: skip
        """Best effort: an object left behind is unlisted, so harmless (sweep removes it)."""
        for i in range(0, len(paths), _DELETE_BATCH):
            batch = [{"Key": location.key(p)} for p in paths[i : i + _DELETE_BATCH]]
            try:
                answer = client.delete_objects(
                    Bucket=location.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = answer.get("Errors", [])
            except Exception as exc:  # noqa: BLE001
                errors = [{"Message": str(exc)}] * len(batch)
            if errors:
                (context.log if context else dg.get_dagster_logger()).warning(
                    f"could not delete {len(errors)} {what} object(s) under "
                    f"{self._display(location)} ({errors[0].get('Message')}); they are not in "
                    "the manifest, so no reader sees them; S3ParquetIOManager.sweep removes them"
                )

    # --- direct reads (TableStore) and inputs ------------------------------------------------------

    def read_rows(
        self,
        asset: str,
        *,
        columns: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        location = self._location(table_name_for(asset.split("/")))
        empty = pd.DataFrame(columns=list(columns or ()))
        if symbols is not None and not symbols:
            return empty
        _, loaded = load_rows(
            self._client(),
            location,
            columns=columns,
            rows=RowFilter(
                date_column="date" if (start or end) else None,
                start=start,
                end=end,
                symbols=tuple(symbols) if symbols is not None else None,
            ),  # fmt: skip
            order=[("symbol", "date"), ("date",)],
            unknown=f"read of {self._display(location)}: no column(s)",
            max_workers=self.max_parallel_requests,
        )
        return empty if loaded is None else frame_from_arrow(loaded)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        """The upstream table: rows of the upstream partition window (lookbacks included) or all,
        as the DuckDB IO manager loads them (dates as ``datetime.date``, ordered by unique_key)."""
        if not context.has_asset_key:
            raise NotImplementedError("S3ParquetIOManager loads asset inputs only (no op outputs)")
        origin = f"input {context.name!r} from {context_origin(context)}"
        upstream = context.upstream_output
        spec = OutputSpec.from_metadata(
            upstream.definition_metadata if upstream is not None else None, origin=origin
        )
        wanted = InputSpec.from_metadata(context.definition_metadata, origin=origin)
        location = self._location(table_name_for(context.asset_key.path))
        display = self._display(location)
        covered = covered_partitions(context, spec, origin, "S3ParquetIOManager")
        dates = covered if isinstance(covered, DateBounds) else None
        keys = covered if isinstance(covered, KeyPartitions) else None
        _, loaded = load_rows(
            self._client(),
            location,
            columns=wanted.columns,
            rows=RowFilter(
                date_column=spec.partition_expr if dates else None,
                start=dates.start if dates else None,
                end=dates.end if dates else None,
                key_column=keys.column if keys else None,
                keys=keys.keys if keys else None,
                # e.g. the partition before a self-dependent asset's first
                nothing=context.has_asset_partitions and not context.asset_partition_keys,
            ),
            order=[spec.unique_key or (spec.partition_expr,)],
            unknown=f"{origin}: metadata 'columns' names columns {display} does not have:",
            max_workers=self.max_parallel_requests,
        )
        if loaded is None:
            if wanted.allow_missing or (
                context.has_asset_partitions and not context.asset_partition_keys
            ):
                return pd.DataFrame(columns=list(wanted.columns or ()))
            raise MissingTableError(
                f"{origin}: table {display} does not exist yet; materialise the upstream asset "
                "first, or set metadata {'allow_missing': True} on the input if it may be absent"
            )
        context.log.debug(f"{origin}: loaded {loaded.num_rows} row(s) from {display}")
        return frame_from_arrow(loaded)

    # --- maintenance -------------------------------------------------------------------------------

    def sweep(self, asset: str, older_than: dt.timedelta = dt.timedelta(hours=1)) -> list[str]:
        """Delete the objects of ``asset``'s table that its manifest does not list and that are
        older than ``older_than`` (left by failed writes); returns their keys. The age keeps it
        clear of a write in flight, whose objects are unlisted until its switch."""
        client = self._client()
        location = self._location(table_name_for(asset.split("/")))
        manifest, _ = read_manifest(client, location)
        keys = unlisted_objects(client, location, manifest, older_than)
        root = location.root
        self._delete(client, location, [k[len(root) :] for k in keys], None, "unlisted")
        return keys
