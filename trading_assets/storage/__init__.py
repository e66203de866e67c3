"""IO managers: DuckDB (local default) and, later, Parquet on S3 (prod), sharing one contract."""

from trading_assets.storage.contract import (
    ALLOW_EMPTY,
    ALLOW_MISSING,
    COLUMNS,
    PARTITION_EXPR,
    REPLACE_KEYS,
    UNIQUE_KEY,
    DatabaseLockedError,
    DuplicateKeyError,
    EmptyOutputError,
    InvalidIdentifierError,
    MissingTableError,
    OutputFrameError,
    PartitionBoundsError,
    SchemaMismatchError,
    StorageError,
    StorageMetadataError,
)
from trading_assets.storage.duckdb_io import DuckDBIOManager

__all__ = [
    "ALLOW_EMPTY",
    "ALLOW_MISSING",
    "COLUMNS",
    "PARTITION_EXPR",
    "REPLACE_KEYS",
    "UNIQUE_KEY",
    "DatabaseLockedError",
    "DuckDBIOManager",
    "DuplicateKeyError",
    "EmptyOutputError",
    "InvalidIdentifierError",
    "MissingTableError",
    "OutputFrameError",
    "PartitionBoundsError",
    "SchemaMismatchError",
    "StorageError",
    "StorageMetadataError",
]
