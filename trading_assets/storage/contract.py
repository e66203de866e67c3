"""The storage contract every trading_assets IO manager honours (DuckDB locally, Parquet on S3 in prod).

One asset is one table. What an IO manager needs to know about a table comes from the asset's
definition metadata (``@dg.asset(metadata={...})``), read by :meth:`OutputSpec.from_metadata`:

``partition_expr`` (str, default ``"date"``)
    The DATE column that partitions a time-partitioned asset. Its values are session dates in the
    exchange time zone, stored as DATE (never a timestamp), so a re-run never stores one session
    twice.
``replace_keys`` (list of column names, optional, e.g. ``["symbol"]``)
    Within the partition window (the whole table if unpartitioned), only stored rows whose
    replace-key values appear in the output are replaced; all other rows are kept. This is how
    raw_prices re-fetches a few symbols over a range, and how a symbol whose download failed keeps
    its stored rows. Without replace_keys the whole window is replaced.
``unique_key`` (list of column names, optional, e.g. ``["symbol", "date"]``)
    No two stored rows may share these values; a write that would break that is rolled back
    (:class:`DuplicateKeyError`). Loads are ordered by it.
``allow_empty`` (bool, default False)
    An empty output never silently wipes stored rows: it raises :class:`EmptyOutputError` unless
    allow_empty is True. Then an empty output replaces the window with nothing, or, with
    replace_keys, deletes nothing (no key appears in it).

An input (``dg.AssetIn(metadata={...})``) may say ``columns`` (load only these) and
``allow_missing`` (a table that was never written loads as an empty frame instead of raising
:class:`MissingTableError`; for inputs whose upstream may legitimately not exist yet).

Table names: the asset key path joined by ``"__"`` (``["market", "raw_prices"]`` ->
``market__raw_prices``), each part a plain identifier (:data:`IDENTIFIER_PATTERN`).

Partition windows: a time-partition window (or a range of them, for a single-run backfill) maps to
the half-open date interval ``[window.start.date(), window.end.date())`` in the partitions'
time zone. Trading-day windows run from one session to the next, so Friday's window ends on
Monday; taking the window's own end date (not start + 1 day) keeps the two in step.

Static partitions (e.g. one partition per strategy): ``partition_expr`` then names the TEXT column
that holds the partition key (``"strategy"``). A run of partitions ``[k1, k2]`` replaces exactly the
stored rows whose column holds k1 or k2 (an empty output, where allowed, deletes them), an output
row with another key is refused (:class:`PartitionBoundsError`), and an input loads the rows of
its partitions, or all of them for an unpartitioned downstream.

Restatements: an output may also rewrite rows *before* its partition window, when the asset says
so in the output's runtime metadata (``dg.Output(frame, metadata=Restatement(...).to_metadata())``,
key ``restated_from``). This is how a re-adjusted price history (a split or dividend) or a bar
re-judged by the next session's run replaces stored rows in the same transaction as the window.
Only the rows the restatement names may lie before the window; rows after the window never may.

Output frames: :mod:`trading_assets.storage.output_frames` checks and normalises what an asset
returns against this contract. Column types: see
:func:`trading_assets.storage.column_types.is_safe_cast` for when a new output may be written into a
stored column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

# Definition-metadata keys of an asset (output side).
PARTITION_EXPR = "partition_expr"
REPLACE_KEYS = "replace_keys"
UNIQUE_KEY = "unique_key"
ALLOW_EMPTY = "allow_empty"
DEFAULT_PARTITION_EXPR = "date"

# Runtime metadata key of an output (dg.Output(metadata=...)) that restates rows before the window.
RESTATED_FROM = "restated_from"

# Metadata keys of an asset input (dg.AssetIn(metadata=...)).
COLUMNS = "columns"
ALLOW_MISSING = "allow_missing"

# Letters, digits and underscores, not starting with a digit. 63 characters is PostgreSQL's limit,
# so a name valid here is valid as a DuckDB table, a Parquet prefix and a Postgres table alike.
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
TABLE_PATH_SEPARATOR = "__"

# A trading-day window is at least 23 hours long (a day that loses an hour to DST); anything shorter
# is a sub-daily partition that a DATE column cannot express.
MIN_WINDOW = dt.timedelta(hours=23)


class StorageError(Exception):
    """Base class of every error an IO manager of this project raises on purpose."""


class StorageMetadataError(StorageError, ValueError):
    """The asset's or input's storage metadata is malformed or names a column that does not exist."""


class InvalidIdentifierError(StorageMetadataError):
    """A table, schema or key-column name is not a plain identifier (IDENTIFIER_PATTERN)."""


class OutputFrameError(StorageError, ValueError):
    """The asset returned something that cannot be stored: not a DataFrame, bad dates, null keys."""


class PartitionBoundsError(OutputFrameError):
    """Output rows whose partition date lies outside the run's partition window."""


class EmptyOutputError(StorageError):
    """An empty output for an asset that does not allow it; nothing stored was touched."""


class SchemaMismatchError(StorageError):
    """An output column's type cannot be written into the stored column without loss."""

    def __init__(self, table: str, column: str, stored_type: str, new_type: str, detail: str = ""):
        self.table = table
        self.column = column
        self.stored_type = stored_type
        self.new_type = new_type
        super().__init__(
            f"table {table}: column {column!r} is stored as {stored_type} but the output has "
            f"{new_type}{detail}; this would lose or garble data, so nothing was written. "
            "Fix the asset's dtype, or migrate the table (ALTER TABLE ... ALTER COLUMN ... TYPE) "
            "if the new type is intended."
        )


class DuplicateKeyError(StorageError):
    """The write would leave two rows with the same unique_key; it was rolled back."""


class MissingTableError(StorageError):
    """An input's table was never written (and the input does not set allow_missing)."""


class DatabaseLockedError(StorageError):
    """Another process still held the database file's lock when lock_timeout_seconds ran out."""


class DatabaseWriteError(StorageError):
    """The file could not be opened for writing or written (read-only path, disk full); the
    write was rolled back and the stored rows are unchanged."""


class StoredDuplicatesError(StorageError):
    """A file opened after an unclean shutdown holds a duplicated unique_key; repair it first."""


class ConcurrentWriteError(StorageError):
    """Another writer switched the table between this write's read and its own switch (S3: the
    manifest's ETag changed), more often than the IO manager retries; this write was not applied
    and the other writer's rows are intact. Re-run it."""


def validate_identifier(name: object, what: str) -> str:
    """Return ``name`` if it is a plain identifier, else raise InvalidIdentifierError."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.fullmatch(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a valid identifier: use letters, digits and underscores, "
            "not starting with a digit, at most 63 characters"
        )
    return name


def quote_identifier(name: str) -> str:
    """Double-quote an SQL identifier (doubling embedded quotes), so any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def table_name_for(asset_key_path: Sequence[str]) -> str:
    """The table an asset is stored in: its key path joined by ``"__"``."""
    if not asset_key_path:
        raise InvalidIdentifierError("an asset key needs at least one part to name a table")
    for part in asset_key_path:
        validate_identifier(part, "asset key part")
    return validate_identifier(TABLE_PATH_SEPARATOR.join(asset_key_path), "table name")


def _raw(value: Any) -> Any:
    # Dagster may hand metadata back wrapped in a MetadataValue (e.g. after a round trip through
    # the instance); the contract is about the plain value.
    return value.value if isinstance(value, dg.MetadataValue) else value


def _column_list(metadata: Mapping[str, Any], key: str, origin: str) -> tuple[str, ...]:
    value = _raw(metadata.get(key))
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise StorageMetadataError(
            f"{origin}: metadata {key!r} must be a non-empty list of column names, got {value!r}"
        )
    columns = tuple(validate_identifier(c, f"{origin}: metadata {key!r} column") for c in value)
    if len({c.lower() for c in columns}) != len(columns):
        raise StorageMetadataError(f"{origin}: metadata {key!r} repeats a column: {list(columns)}")
    return columns


def _flag(metadata: Mapping[str, Any], key: str, origin: str) -> bool:
    value = _raw(metadata.get(key, False))
    if not isinstance(value, bool):
        raise StorageMetadataError(
            f"{origin}: metadata {key!r} must be True or False, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class OutputSpec:
    """How an asset's table is written, from the asset's definition metadata."""

    partition_expr: str = DEFAULT_PARTITION_EXPR
    # True when the metadata names partition_expr itself: then an unpartitioned asset's column of
    # that name is normalised to DATE too (a snapshot table keyed by date, say).
    partition_expr_explicit: bool = False
    replace_keys: tuple[str, ...] = ()
    unique_key: tuple[str, ...] = ()
    allow_empty: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, *, origin: str) -> OutputSpec:
        metadata = metadata or {}
        explicit = metadata.get(PARTITION_EXPR) is not None
        partition_expr = _raw(metadata.get(PARTITION_EXPR)) if explicit else DEFAULT_PARTITION_EXPR
        return cls(
            partition_expr=validate_identifier(
                partition_expr,
                f"{origin}: metadata {PARTITION_EXPR!r} (a column name, not an expression)",
            ),
            partition_expr_explicit=explicit,
            replace_keys=_column_list(metadata, REPLACE_KEYS, origin),
            unique_key=_column_list(metadata, UNIQUE_KEY, origin),
            allow_empty=_flag(metadata, ALLOW_EMPTY, origin),
        )


@dataclass(frozen=True)
class InputSpec:
    """What an input asks for, from its ``dg.AssetIn(metadata=...)``."""

    columns: tuple[str, ...] | None = None
    allow_missing: bool = False

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, *, origin: str) -> InputSpec:
        metadata = metadata or {}
        columns = _column_list(metadata, COLUMNS, origin)
        return cls(columns=columns or None, allow_missing=_flag(metadata, ALLOW_MISSING, origin))


@dataclass(frozen=True)
class DateBounds:
    """The session dates a partition window covers: ``start <= date < end``."""

    start: dt.date
    end: dt.date

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class KeyPartitions:
    """The static partition keys a run covers: rows whose TEXT ``column`` holds one of ``keys``."""

    column: str
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.column} in {list(self.keys)}"


@dataclass(frozen=True)
class Restatement:
    """Rows before the partition window that one output rewrites, in the same transaction.

    ``all_from``: every row from this date up to the window is replaced (e.g. every symbol's
    indicators from a re-judged session). ``key_from``: for each value of ``column`` (e.g. symbol
    ``AAPL``), its rows from that date up to the window are replaced (e.g. a re-adjusted history);
    with replace_keys, as in the window, only keys that appear in the output are touched. A row
    before the window is accepted only when one of the two covers it.
    """

    all_from: dt.date | None = None
    column: str | None = None
    key_from: Mapping[str, dt.date] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.all_from is not None or bool(self.key_from)

    def earliest(self) -> dt.date | None:
        dates = [d for d in (self.all_from, *self.key_from.values()) if d is not None]
        return min(dates) if dates else None

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        """The output metadata that carries it (empty when nothing is restated)."""
        if not self:
            return {}
        value = {
            "all_from": self.all_from.isoformat() if self.all_from else None,
            "column": self.column,
            "key_from": {k: d.isoformat() for k, d in sorted(self.key_from.items())},
        }
        return {RESTATED_FROM: dg.MetadataValue.json(value)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, *, origin: str) -> Restatement:
        value = _raw((metadata or {}).get(RESTATED_FROM))
        if value is None:
            return cls()
        try:
            all_from = value.get("all_from")
            key_from = {
                str(k): dt.date.fromisoformat(v) for k, v in (value.get("key_from") or {}).items()
            }
            column = value.get("column")
            restatement = cls(
                all_from=dt.date.fromisoformat(all_from) if all_from else None,
                column=validate_identifier(column, f"{origin}: restated column")
                if key_from
                else column,
                key_from=key_from,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise StorageMetadataError(
                f"{origin}: output metadata {RESTATED_FROM!r} must be "
                "{'all_from': date|None, 'column': name, 'key_from': {value: date}}, "
                f"got {value!r} ({exc})"
            ) from exc
        return restatement

    def lower_bounds(self, frame: pd.DataFrame, window_start: dt.date) -> pd.Series:
        """Per row, the earliest date it may have: the window start unless a restatement covers it."""
        low = pd.Series(pd.Timestamp(window_start), index=frame.index)
        if self.all_from is not None:
            low = low.clip(upper=pd.Timestamp(self.all_from))
        if self.key_from:
            if self.column not in frame.columns:
                raise StorageMetadataError(
                    f"restatement by column {self.column!r}, which the output does not have"
                )
            by_key = (
                frame[self.column]
                .astype(str)
                .map({k: pd.Timestamp(d) for k, d in self.key_from.items()})
            )
            low = low.where(by_key.isna() | (by_key >= low), by_key)
        return low


def date_bounds_for_window(window: dg.TimeWindow) -> DateBounds:
    """Map a partition time window (or range of windows) to its session dates.

    The window's datetimes are in the partitions' time zone (the exchange's), so ``.date()`` is the
    session date; the end is exclusive. A window shorter than a day has no DATE equivalent.
    """
    if window.end - window.start < MIN_WINDOW or window.end.date() <= window.start.date():
        raise NotImplementedError(
            f"partition window {window.start.isoformat()} .. {window.end.isoformat()} is shorter "
            "than a day; only daily (or longer) time partitions map onto a DATE column"
        )
    return DateBounds(start=window.start.date(), end=window.end.date())


def context_origin(context: dg.OutputContext | dg.InputContext) -> str:
    """'asset raw_prices partition 2024-01-02' (or 'partitions A...B'), for error messages."""
    label = f"asset {context.asset_key.to_user_string()}"
    if context.has_asset_partitions and context.asset_partition_keys:
        keys = context.asset_partition_keys
        label += (
            f" partition {keys[0]}" if len(keys) == 1 else f" partitions {keys[0]}...{keys[-1]}"
        )
    return label


def covered_partitions(
    context: dg.OutputContext | dg.InputContext, spec: OutputSpec, origin: str, manager: str
) -> DateBounds | KeyPartitions | None:
    """The rows the context's partitions cover: a date window (time partitions) or partition keys
    (static partitions); None when the asset is unpartitioned or no partition is asked for.
    ``manager`` names the IO manager in the error for any other partitioning."""
    if not context.has_asset_partitions or not context.asset_partition_keys:
        return None
    partitions_def = context.asset_partitions_def
    if isinstance(partitions_def, dg.StaticPartitionsDefinition):
        return KeyPartitions(spec.partition_expr, tuple(context.asset_partition_keys))
    if not isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        raise NotImplementedError(
            f"{origin}: {manager} stores time-partitioned, statically partitioned or "
            f"unpartitioned assets only; got {type(partitions_def).__name__}"
        )
    return date_bounds_for_window(context.asset_partitions_time_window)


class TableStore(dg.ConfigurableIOManager):
    """An IO manager whose tables assets may also read directly, for what a partition mapping cannot
    say: a few symbols' whole history after a corporate action, the stored bars just before a
    window that a check judges new bars against. Assets take it as ``io_manager:
    dg.ResourceParam[TableStore]``."""

    def read_rows(
        self,
        asset: str,
        *,
        columns: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> pd.DataFrame:
        """Stored rows of ``asset``'s table with ``start <= date < end`` (either may be None) and,
        if given, ``symbol`` in ``symbols``; ordered by the table's key. A table never written
        gives an empty frame with ``columns``."""
        raise NotImplementedError
