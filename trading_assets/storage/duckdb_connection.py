"""The DuckDB file: opening it (retrying a held lock) and naming and looking up its tables.

DuckDB lets one process at a time open a file for writing. :func:`connect_with_retries` retries
while another process holds the lock (``retries`` waits of ``base_seconds * 2**n``, each at most
MAX_LOCK_BACKOFF_SECONDS), then fails with DatabaseLockedError; it never hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from trading_assets.storage.contract import (
    DatabaseLockedError,
    quote_identifier,
    validate_identifier,
)

# DuckDB's message when another process holds the file (duckdb 1.x: 'IO Error: Could not set lock
# on file "...": Conflicting lock is held in ...').
LOCK_ERROR_TEXT = "Could not set lock on file"
# No single wait between lock retries exceeds this, however many retries are configured.
MAX_LOCK_BACKOFF_SECONDS = 5.0


def open_duckdb(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file once (no retry); read-only joins this process's read-write instance."""
    if not read_only:
        return duckdb.connect(str(path))
    try:
        # Read-only lets several reading processes share the file.
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        # This process already has the file open read-write (DuckDB shares one instance per
        # file per process and refuses a second configuration): join that instance instead.
        return duckdb.connect(str(path))


@contextmanager
def connect_with_retries(
    path: Path,
    *,
    read_only: bool,
    retries: int,
    base_seconds: float,
    open_file: Callable[..., duckdb.DuckDBPyConnection] = open_duckdb,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the file, retrying while another process holds its lock; always closes it.

    ``open_file(path, read_only=...)`` opens it once; ``sleep`` waits between attempts.
    """
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    waited = 0.0
    for attempt in range(retries + 1):
        try:
            con = open_file(path, read_only=read_only)
            break
        except duckdb.IOException as exc:
            if LOCK_ERROR_TEXT not in str(exc):
                raise
            if attempt == retries:
                raise DatabaseLockedError(
                    f"DuckDB file {path} is locked by another process (DuckDB allows one "
                    f"writing process per file); gave up after {attempt + 1} attempt(s) over "
                    f"{waited:.1f}s. Close the other process (a notebook, the DuckDB CLI, a "
                    "run outside the 'duckdb' concurrency pool) or raise lock_retries. "
                    f"DuckDB said: {exc}"
                ) from exc
            delay = min(base_seconds * 2**attempt, MAX_LOCK_BACKOFF_SECONDS)
            sleep(delay)
            waited += delay
    try:
        yield con
    finally:
        con.close()


def qualified_name(schema: str, table: str) -> str:
    """The table as SQL: quoted schema and table."""
    schema = validate_identifier(schema, "schema_name")
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"


def display_name(schema: str, table: str) -> str:
    """The table as people read it, in messages and metadata: ``main.raw_prices``."""
    return f"{schema}.{table}"


def stored_columns(
    con: duckdb.DuckDBPyConnection, schema: str, table: str
) -> dict[str, str] | None:
    """The table's columns {name: type} in order, or None if the table does not exist."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: data_type for name, data_type in rows} or None
