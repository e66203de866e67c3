"""IO managers: DuckDB (local default) and Parquet on S3 (prod), sharing one contract."""

from trading_assets.storage.contract import (
    ALLOW_EMPTY,
    ALLOW_MISSING,
    COLUMNS,
    PARTITION_EXPR,
    REPLACE_KEYS,
    UNIQUE_KEY,
    ConcurrentWriteError,
    DatabaseLockedError,
    DatabaseWriteError,
    DuplicateKeyError,
    EmptyOutputError,
    InvalidIdentifierError,
    MissingTableError,
    OutputFrameError,
    PartitionBoundsError,
    SchemaMismatchError,
    StorageError,
    StorageMetadataError,
    StoredDuplicatesError,
)
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets.storage.s3_io import S3ParquetIOManager

__all__ = [
    "ALLOW_EMPTY",
    "ALLOW_MISSING",
    "COLUMNS",
    "PARTITION_EXPR",
    "REPLACE_KEYS",
    "UNIQUE_KEY",
    "ConcurrentWriteError",
    "DatabaseLockedError",
    "DatabaseWriteError",
    "DuckDBIOManager",
    "DuplicateKeyError",
    "EmptyOutputError",
    "InvalidIdentifierError",
    "MissingTableError",
    "OutputFrameError",
    "PartitionBoundsError",
    "S3ParquetIOManager",
    "SchemaMismatchError",
    "StorageError",
    "StorageMetadataError",
    "StoredDuplicatesError",
]
