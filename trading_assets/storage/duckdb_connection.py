"""The DuckDB file: opening it (waiting patiently for a held lock, verifying it after a crash)
and naming and looking up its tables.

DuckDB lets one process at a time open a file for writing, and the operating system frees that
lock when the process ends, however it ends (a SIGKILLed run included). So writers take turns on
the lock itself, not on a Dagster concurrency slot, which only the daemon's run monitoring could
take back from a dead run: :func:`connect_with_retries` retries while another process holds the
lock, with waits of ``base_seconds * 2**n`` capped at MAX_LOCK_BACKOFF_SECONDS, saying at INFO
whom it waits for (DuckDB names the holder's PID) when it starts waiting and every
WAIT_REPORT_SECONDS after; it gives up with DatabaseLockedError after ``timeout_seconds``.

:func:`open_duckdb` also runs :mod:`~trading_assets.storage.duckdb_integrity`'s check when the
previous process did not close the file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from trading_assets.storage.contract import (
    DatabaseLockedError,
    DatabaseWriteError,
    quote_identifier,
    validate_identifier,
)
from trading_assets.storage.duckdb_integrity import (
    mark_unverified,
    needs_verification,
    verify_unique_keys,
)

# DuckDB's message when another process holds the file ('IO Error: Could not set lock on file
# "...": Conflicting lock is held in /usr/bin/python3.11 (PID 1234). See also ...').
LOCK_ERROR_TEXT = "Could not set lock on file"
HOLDER_PATTERN = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
# No single wait between lock retries exceeds this, however long the timeout.
MAX_LOCK_BACKOFF_SECONDS = 5.0
# While waiting, a reminder at INFO this often, so a long wait never looks like a hang.
WAIT_REPORT_SECONDS = 60.0
# How those INFO lines begin (trading-assets main shows them on the console too).
LOCK_WAIT_MESSAGES = ("waiting for the lock on DuckDB file", "got the lock on DuckDB file")


def lock_holder(message: str) -> str:
    """'PID 1234 (/usr/bin/python3.11)' from DuckDB's lock error, or 'another process'."""
    found = HOLDER_PATTERN.search(message)
    if not found:
        return "another process"
    return f"PID {found['pid']} ({found['program']})"


def open_duckdb(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file once (no retry); read-only joins this process's read-write instance.

    If the previous process did not close the file (a ``.wal`` beside it), the marker is left
    before DuckDB replays the log, and every unique key is verified before the connection is
    returned (StoredDuplicatesError otherwise).
    """
    unclean = needs_verification(path)
    if unclean:
        mark_unverified(path)
    con = _connect(path, read_only=read_only)
    if unclean:
        try:
            verify_unique_keys(con, path)
        except BaseException:
            con.close()
            raise
    return con


def _connect(path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
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
    timeout_seconds: float,
    base_seconds: float,
    open_file: Callable[..., duckdb.DuckDBPyConnection] = open_duckdb,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[str], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the file, waiting while another process holds its lock; always closes it.

    ``open_file(path, read_only=...)`` opens it once; ``sleep`` waits between attempts; ``report``
    (the run's INFO log) hears when the wait starts, every WAIT_REPORT_SECONDS, and when it ends.
    """
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseWriteError(
                f"cannot create the directory of DuckDB file {path}: {exc}"
            ) from exc
    waited = 0.0
    reported_at: float | None = None
    attempt = 0
    while True:
        try:
            con = open_file(path, read_only=read_only)
            break
        except duckdb.IOException as exc:
            if LOCK_ERROR_TEXT not in str(exc):
                if read_only:
                    raise
                raise DatabaseWriteError(
                    f"cannot open DuckDB file {path} for writing (a read-only path or "
                    f"filesystem, or no space left?); nothing was written. DuckDB said: {exc}"
                ) from exc
            holder = lock_holder(str(exc))
            if waited >= timeout_seconds:
                raise DatabaseLockedError(
                    f"DuckDB file {path} is locked by {holder} (DuckDB allows one writing "
                    f"process per file); gave up after {attempt + 1} attempt(s) over "
                    f"{waited:.1f}s (lock_timeout_seconds={timeout_seconds:g}). Let the other "
                    "run finish, close the other process (a notebook, the DuckDB CLI) or raise "
                    f"lock_timeout_seconds. DuckDB said: {exc}"
                ) from exc
            if report is not None and (
                reported_at is None or waited - reported_at >= WAIT_REPORT_SECONDS
            ):
                report(
                    f"{LOCK_WAIT_MESSAGES[0]} {path}: {holder} holds it (another "
                    f"run writing, or a notebook); waited {waited:.0f}s so far, will wait up to "
                    f"{timeout_seconds:g}s"
                )
                reported_at = waited
            delay = min(
                base_seconds * 2**attempt, MAX_LOCK_BACKOFF_SECONDS, timeout_seconds - waited
            )
            sleep(max(delay, 0.0))
            waited += max(delay, 0.0)
            attempt += 1
    if report is not None and reported_at is not None:
        report(f"{LOCK_WAIT_MESSAGES[1]} {path} after waiting {waited:.1f}s")
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
