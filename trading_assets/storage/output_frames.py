"""Output frames: check what an asset returned against the storage contract, and normalise it.

Shared by every IO manager (:mod:`trading_assets.storage.contract` says what the checks enforce):
:func:`prepare_output_frame` validates and normalises the frame, :func:`to_arrow` turns it into the
table that is written, and :func:`frame_from_arrow` turns a loaded table back into pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from trading_assets.storage.contract import (
    ALLOW_EMPTY,
    DateBounds,
    EmptyOutputError,
    KeyPartitions,
    OutputFrameError,
    OutputSpec,
    PartitionBoundsError,
    Restatement,
    StorageMetadataError,
    context_origin,
    covered_partitions,
)

# How many offending values an error message quotes.
EXAMPLES_IN_MESSAGE = 5


def _examples(values: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in list(values)[:EXAMPLES_IN_MESSAGE])
    return shown + (", ..." if len(values) > EXAMPLES_IN_MESSAGE else "")


def midnight_timestamps(values: pd.Series, column: str, origin: str) -> pd.Series:
    """Check a partition column holds session dates; return them as naive midnight datetime64.

    Accepts ``datetime.date`` objects and timestamps (datetime64, pd.Timestamp, datetime) that fall
    on midnight; a tz-aware timestamp is read in its own time zone. A non-midnight timestamp, a
    string, a number or a missing date raises OutputFrameError: a DATE column that silently dropped
    a time of day, or guessed a string's format, would file rows under the wrong session.
    (datetime64 rather than date objects because it is vectorised: seconds saved on a full
    history; :func:`to_arrow` stores it as DATE.)
    """
    if values.empty:
        return pd.Series([], index=values.index, dtype="datetime64[ns]", name=values.name)
    missing = int(values.isna().sum())
    if missing:
        raise OutputFrameError(
            f"{origin}: {missing} row(s) have no value in date column {column!r}"
        )
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        kind = pd.api.types.infer_dtype(values, skipna=False)
        if kind not in ("date", "datetime", "datetime64"):
            raise OutputFrameError(
                f"{origin}: date column {column!r} must hold dates (datetime.date or datetime64), "
                f"found {kind} values such as {values.iloc[0]!r}"
            )
        try:
            values = pd.to_datetime(values, errors="raise")
        except (ValueError, TypeError, OverflowError) as exc:
            raise OutputFrameError(f"{origin}: date column {column!r}: {exc}") from exc
    if values.dt.tz is not None:
        values = values.dt.tz_localize(None)  # keep the wall-clock time in the value's own zone
    off_midnight = values[values != values.dt.normalize()]
    if not off_midnight.empty:
        raise OutputFrameError(
            f"{origin}: date column {column!r} holds {len(off_midnight)} timestamp(s) with a time of "
            f"day (e.g. {_examples(off_midnight.astype(str).tolist())}); a DATE partition column "
            "needs session dates"
        )
    return values


def check_within_bounds(
    dates: pd.Series,
    bounds: DateBounds,
    column: str,
    origin: str,
    lower: pd.Series | None = None,
) -> None:
    """Raise PartitionBoundsError if a date (date objects or midnight datetime64) lies outside.

    ``lower`` (per row, from :meth:`Restatement.lower_bounds`) lets restated rows lie before the window.
    """
    if dates.empty:
        return
    stamps = dates if pd.api.types.is_datetime64_any_dtype(dates.dtype) else pd.to_datetime(dates)
    start = lower if lower is not None else pd.Timestamp(bounds.start)
    outside = (stamps < start) | (stamps >= pd.Timestamp(bounds.end))
    if outside.any():
        bad = sorted(set(stamps[outside].dt.date))
        raise PartitionBoundsError(
            f"{origin}: {int(outside.sum())} row(s) have {column!r} outside the partition window "
            f"{bounds} (e.g. {_examples(bad)}); an asset must return only the dates it was asked "
            "for, so nothing was written"
        )


def check_within_keys(values: pd.Series, keys: KeyPartitions, origin: str) -> None:
    """Raise PartitionBoundsError if a row's partition key is null or not one of the run's keys."""
    outside = ~values.isin(keys.keys)
    if outside.any():
        bad = sorted({str(v) for v in values[outside]})
        raise PartitionBoundsError(
            f"{origin}: {int(outside.sum())} row(s) have {keys.column!r} outside the run's "
            f"partitions {list(keys.keys)} (e.g. {_examples(bad)}); an asset must return only "
            "the partitions it was asked for, so nothing was written"
        )


def prepare_output_frame(
    obj: object,
    spec: OutputSpec,
    *,
    bounds: DateBounds | None,
    origin: str,
    restatement: Restatement | None = None,
    keys: KeyPartitions | None = None,
) -> pd.DataFrame:
    """Validate an asset's output against the contract and return a normalised copy.

    ``bounds`` is the partition window's dates for a time-partitioned output, None otherwise;
    ``keys`` the partition keys of a statically partitioned one (its column is text, not a date).
    The partition column comes back as midnight datetime64; :func:`to_arrow` makes it DATE.
    Raises OutputFrameError (not a DataFrame, a named index, clashing column names, a missing or
    null partition/key column, bad dates), PartitionBoundsError, or EmptyOutputError.
    """
    if not isinstance(obj, pd.DataFrame):
        raise OutputFrameError(f"{origin}: expected a pandas DataFrame, got {type(obj).__name__}")
    frame = obj
    if any(name is not None for name in frame.index.names):
        # A named index is almost always a groupby/set_index result whose key columns would be
        # silently dropped; make the caller say what it means.
        raise OutputFrameError(
            f"{origin}: the frame has a named index {list(frame.index.names)}; call "
            ".reset_index() (or .reset_index(drop=True)) before returning it"
        )
    bad_names = [c for c in frame.columns if not isinstance(c, str) or not c]
    if bad_names:
        raise OutputFrameError(f"{origin}: column names must be non-empty strings, got {bad_names}")
    lowered = [c.lower() for c in frame.columns]
    clashes = sorted({c for c in frame.columns if lowered.count(c.lower()) > 1})
    if clashes:
        # SQL (DuckDB included) matches column names case-insensitively.
        raise OutputFrameError(f"{origin}: column names clash when case is ignored: {clashes}")

    if frame.empty:
        if not spec.allow_empty:
            raise EmptyOutputError(
                f"{origin}: the output is empty, and an empty output never silently wipes stored "
                f"rows. If empty is a legitimate result, set metadata {ALLOW_EMPTY!r}: True on the "
                "asset; otherwise find out why nothing was produced. Stored rows are untouched."
            )

    date_column = (
        spec.partition_expr
        if keys is None and (bounds is not None or spec.partition_expr_explicit)
        else None
    )
    required = [
        *((date_column,) if date_column else ()),
        *((keys.column,) if keys else ()),
        *spec.replace_keys,
        *spec.unique_key,
    ]
    missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
    if missing and not frame.empty:
        raise OutputFrameError(
            f"{origin}: the output lacks column(s) {missing} named by the asset's storage "
            f"metadata; it has {list(frame.columns)}"
        )

    frame = frame.reset_index(drop=True)
    if date_column and date_column in frame.columns:
        frame[date_column] = midnight_timestamps(frame[date_column], date_column, origin)
        if bounds is not None:
            lower = restatement.lower_bounds(frame, bounds.start) if restatement else None
            check_within_bounds(frame[date_column], bounds, date_column, origin, lower)
    if keys is not None and not frame.empty:
        check_within_keys(frame[keys.column], keys, origin)
    for column in dict.fromkeys((*spec.replace_keys, *spec.unique_key)):
        if column in frame.columns and frame[column].isna().any():
            raise OutputFrameError(
                f"{origin}: key column {column!r} has {int(frame[column].isna().sum())} null "
                "value(s); replace_keys and unique_key columns must always be set"
            )
    return frame


def to_arrow(frame: pd.DataFrame, *, date_column: str | None, origin: str) -> pa.Table:
    """The output as an Arrow table (exact types, no sampling), the partition column as date32."""
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        # e.g. an object column mixing strings and numbers; Arrow names the column.
        raise OutputFrameError(f"{origin}: cannot convert the output to a table: {exc}") from exc
    if date_column and date_column in table.column_names:
        i = table.column_names.index(date_column)
        # Midnight timestamps (prepare_output_frame) or an empty frame's untyped column: DATE always.
        table = table.set_column(i, date_column, table.column(i).cast(pa.date32()))
    return table.replace_schema_metadata(None)


def untyped_columns(table: pa.Table) -> list[str]:
    """Columns with no values and so no type (all-None object columns, or an empty frame's).

    They are written as NULL into a stored column of that name, but never create a column: a type
    guessed from nothing would later reject the real values.
    """
    return [f.name for f in table.schema if pa.types.is_null(f.type)]


def frame_from_arrow(table: pa.Table) -> pd.DataFrame:
    """A loaded table as pandas: DATE columns as ``datetime.date`` objects, as assets produce them."""
    return table.to_pandas(date_as_object=True)


@dataclass(frozen=True)
class PreparedOutput:
    """One asset output checked against the contract and ready to write (both IO managers)."""

    origin: str
    spec: OutputSpec
    bounds: DateBounds | None  # the time-partition window's dates
    keys: KeyPartitions | None  # or the static partition keys
    restatement: Restatement
    date_column: str | None  # the column stored as DATE
    incoming: pa.Table


def prepare_output(context: Any, obj: object, manager: str) -> PreparedOutput:
    """Read the output's storage metadata and partitions from ``context`` (a dg.OutputContext),
    validate ``obj`` (prepare_output_frame) and convert it to Arrow (to_arrow)."""
    origin = context_origin(context)
    spec = OutputSpec.from_metadata(context.definition_metadata, origin=origin)
    covered = covered_partitions(context, spec, origin, manager)
    bounds = covered if isinstance(covered, DateBounds) else None
    keys = covered if isinstance(covered, KeyPartitions) else None
    restatement = Restatement.from_metadata(context.output_metadata, origin=origin)
    if restatement and bounds is None:
        raise StorageMetadataError(f"{origin}: only a time-partitioned output can restate rows")
    frame = prepare_output_frame(
        obj, spec, bounds=bounds, origin=origin, restatement=restatement, keys=keys
    )
    date_column = (
        spec.partition_expr if keys is None and (bounds or spec.partition_expr_explicit) else None
    )
    incoming = to_arrow(frame, date_column=date_column, origin=origin)
    return PreparedOutput(origin, spec, bounds, keys, restatement, date_column, incoming)
