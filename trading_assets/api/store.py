"""What the API reads: the graph's stored tables, read-only, never in a writer's way.

Local (the DuckDB file). DuckDB lets one process write a file, and a read-only connection in
another process holds a shared lock that makes the writer's open fail (the IO manager's writer
then retries with backoff, ``storage/duckdb_connection.py``). So the API never keeps the file
open: :class:`DuckDBSnapshotStore` copies it (and its ``.wal``, if any) into a private snapshot
while holding a read-only connection for the few milliseconds of the copy, then answers every
request from the snapshot. When the file changes (size, mtime or inode, or its ``.wal``'s) the
next request after ``refresh_seconds`` tries a new copy; while a writer holds the lock the old
snapshot keeps answering (every table as of the last time no one was writing), so a running
materialisation never makes a request fail and requests never hold the writer up for longer than
a copy. Only when there is no snapshot yet and the lock stays held for ``lock_wait_seconds`` does
a request fail, with :class:`StoreUnavailableError` (503, Retry-After).

:class:`DuckDBDirectStore` opens the file read-only per request instead (retrying while locked,
then 503): the other design, kept so ``benchmarks/bench_api.py`` can measure both with a writer
running (it loses requests and slows the writer; see docs/benchmarks.md).

Prod (Parquet on S3): :class:`S3Store` registers each table a request needs as a pyarrow dataset
of exactly the objects its manifest lists (``storage/s3_sql.py``), on a fresh DuckDB cursor; a
manifest is read again after ``manifest_ttl_seconds`` and its dataset rebuilt when its ETag changed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from trading_assets.storage.duckdb_connection import LOCK_ERROR_TEXT

# How long a request waits for a locked file when there is nothing else to answer from.
DEFAULT_LOCK_WAIT_SECONDS = 10.0
# The least time between two attempts to refresh a snapshot of a file that changed.
DEFAULT_REFRESH_SECONDS = 1.0
# How long a read manifest (prod) is trusted before it is read again.
DEFAULT_MANIFEST_TTL_SECONDS = 2.0
# What a 503 tells the client to wait before asking again.
RETRY_AFTER_SECONDS = 5
LOCK_RETRY_SECONDS = 0.05


class StoreUnavailableError(RuntimeError):
    """The store cannot answer now (no file yet, the file locked, the bucket unreachable): 503."""

    def __init__(self, message: str, retry_after: int | None = RETRY_AFTER_SECONDS):
        super().__init__(message)
        self.retry_after = retry_after


class TableMissingError(LookupError):
    """An asset's table has not been materialised yet: 404."""


@dataclass
class Result:
    """A query's columns and rows (Python values as DuckDB returns them)."""

    columns: list[str]
    rows: list[tuple]


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any]) -> Result:
    cursor = con.execute(sql, list(params))
    columns = [d[0] for d in cursor.description or ()]
    return Result(columns, cursor.fetchall())


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and LOCK_ERROR_TEXT in str(exc)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }


def _file_key(path: Path) -> tuple | None:
    """What tells one version of the file (and its write-ahead log) from another."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    try:
        wal = Path(f"{path}.wal").stat()
        wal_key = (wal.st_size, wal.st_mtime_ns)
    except FileNotFoundError:
        wal_key = None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, wal_key)


@dataclass
class _Snapshot:
    """One copy of the file, open read-only, shared by the requests that started on it."""

    key: tuple
    path: Path
    con: duckdb.DuckDBPyConnection
    tables: set[str]
    taken_at: float
    users: int = 0
    retired: bool = False

    def close_if_unused(self) -> None:
        if self.retired and self.users == 0:
            self.con.close()
            for leftover in (self.path, Path(f"{self.path}.wal")):
                leftover.unlink(missing_ok=True)


@dataclass
class DuckDBSnapshotStore:
    """The local DuckDB file, read through private snapshots (see the module docstring)."""

    path: Path
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    snapshot_dir: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _current: _Snapshot | None = field(default=None, repr=False)
    _last_attempt: float = field(default=float("-inf"), repr=False)
    _copies: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.snapshot_dir is None:
            self.snapshot_dir = Path(tempfile.mkdtemp(prefix="trading-assets-api-"))
        self.snapshot_dir = Path(self.snapshot_dir)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)

    def describe(self) -> dict[str, Any]:
        current = self._current
        return {
            "kind": "duckdb",
            "location": str(self.path),
            "snapshot_taken_at": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(current.taken_at))
                if current
                else None
            ),
        }

    def query(self, sql: str, params: Sequence[Any] = (), tables: Sequence[str] = ()) -> Result:
        """Run one parameterised query; ``tables`` must exist (TableMissingError otherwise)."""
        with self._snapshot() as snap:
            for table in tables:
                if table not in snap.tables:
                    raise TableMissingError(f"{table} has not been materialised yet")
            cursor = snap.con.cursor()
            try:
                return _run(cursor, sql, params)
            finally:
                cursor.close()

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.retired = True
                self._current.close_if_unused()
                self._current = None
        shutil.rmtree(self.snapshot_dir, ignore_errors=True)

    @contextmanager
    def _snapshot(self) -> Iterator[_Snapshot]:
        snap = self._acquire()
        try:
            yield snap
        finally:
            with self._lock:
                snap.users -= 1
                snap.close_if_unused()

    def _acquire(self) -> _Snapshot:
        key = _file_key(self.path)
        if key is None:
            raise StoreUnavailableError(
                f"no DuckDB file at {self.path}: run trading-assets main first", retry_after=None
            )
        current = self._current
        stale = current is None or current.key != key
        if stale and (
            current is None or time.monotonic() - self._last_attempt >= self.refresh_seconds
        ):
            self._refresh(wait=current is None)
        with self._lock:
            if self._current is None:  # the refresh failed and nothing older exists
                raise StoreUnavailableError(
                    f"DuckDB file {self.path} stayed locked by a writer for "
                    f"{self.lock_wait_seconds:g} s and no earlier snapshot exists; try again"
                )
            self._current.users += 1
            return self._current

    def _refresh(self, *, wait: bool) -> None:
        """Copy the file into a new snapshot unless another thread is already doing it."""
        if not self._refresh_lock.acquire(blocking=wait):
            return
        try:
            self._last_attempt = time.monotonic()
            key = _file_key(self.path)
            if self._current is not None and self._current.key == key:
                return  # another thread refreshed it while this one waited
            deadline = time.monotonic() + (self.lock_wait_seconds if wait else 0.0)
            while True:
                try:
                    snap = self._copy()
                    break
                except duckdb.IOException as exc:
                    if not _is_lock_error(exc) or time.monotonic() >= deadline:
                        if _is_lock_error(exc):
                            return  # keep the old snapshot; the next request tries again
                        raise
                    time.sleep(LOCK_RETRY_SECONDS)
            with self._lock:
                old, self._current = self._current, snap
                if old is not None:
                    old.retired = True
                    old.close_if_unused()
        finally:
            self._refresh_lock.release()

    def _copy(self) -> _Snapshot:
        """Copy the file under a read-only connection's shared lock (so no writer is mid-write)."""
        self._copies += 1
        target = self.snapshot_dir / f"snapshot-{os.getpid()}-{self._copies}.duckdb"
        source = duckdb.connect(str(self.path), read_only=True)
        try:
            key = _file_key(self.path)
            shutil.copyfile(self.path, target)
            wal = Path(f"{self.path}.wal")
            if wal.exists():  # a writer that died before its checkpoint: the log is part of it
                shutil.copyfile(wal, Path(f"{target}.wal"))
        finally:
            source.close()
        con = duckdb.connect(str(target), read_only=True)
        assert key is not None
        return _Snapshot(key, target, con, _tables(con), time.time())


@dataclass
class DuckDBDirectStore:
    """The local DuckDB file opened read-only for each request (for comparison; see above)."""

    path: Path
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS

    def describe(self) -> dict[str, Any]:
        return {"kind": "duckdb", "location": str(self.path), "snapshot_taken_at": None}

    def query(self, sql: str, params: Sequence[Any] = (), tables: Sequence[str] = ()) -> Result:
        with self._connect() as con:
            present = _tables(con)
            for table in tables:
                if table not in present:
                    raise TableMissingError(f"{table} has not been materialised yet")
            return _run(con, sql, params)

    def close(self) -> None:
        pass

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not Path(self.path).exists():
            raise StoreUnavailableError(
                f"no DuckDB file at {self.path}: run trading-assets main first", retry_after=None
            )
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=True)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreUnavailableError(
                        f"DuckDB file {self.path} stayed locked by a writer for "
                        f"{self.lock_wait_seconds:g} s; try again"
                    ) from exc
                time.sleep(LOCK_RETRY_SECONDS)
        try:
            yield con
        finally:
            con.close()


@dataclass
class _Table:
    etag: str | None
    dataset: Any  # pyarrow dataset, or None for a table never written
    read_at: float


@dataclass
class S3Store:
    """The prod bucket's tables (Parquet listed by each table's manifest), read-only."""

    bucket: str
    prefix: str = ""
    manifest_ttl_seconds: float = DEFAULT_MANIFEST_TTL_SECONDS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tables: dict[str, _Table] = field(default_factory=dict, repr=False)
    _con: Any = field(default=None, repr=False)
    _client: Any = field(default=None, repr=False)
    _filesystem: Any = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        prefix = self.prefix.strip("/")
        return {
            "kind": "s3",
            "location": f"s3://{self.bucket}/{prefix}".rstrip("/") + "/",
            "snapshot_taken_at": None,
        }

    def _clients(self) -> tuple[Any, Any]:
        from trading_assets.storage.s3_layout import s3_client
        from trading_assets.storage.s3_sql import s3_filesystem

        with self._lock:
            if self._client is None:
                self._client, self._filesystem = s3_client(), s3_filesystem()
                self._con = duckdb.connect()
            return self._client, self._filesystem

    def _table(self, name: str) -> _Table:
        from trading_assets.storage.s3_layout import TableLocation, read_manifest
        from trading_assets.storage.s3_sql import manifest_dataset

        cached = self._tables.get(name)
        if cached is not None and time.monotonic() - cached.read_at < self.manifest_ttl_seconds:
            return cached
        client, filesystem = self._clients()
        location = TableLocation.of(self.bucket, self.prefix, name)
        try:
            manifest, etag = read_manifest(client, location)
        except Exception as exc:  # botocore's errors: no credentials, no bucket, no endpoint
            raise StoreUnavailableError(
                f"cannot read {location.url('_manifest.json')}: {type(exc).__name__}: {exc}"
            ) from exc
        if cached is not None and cached.etag == etag:
            fresh = _Table(etag, cached.dataset, time.monotonic())
        else:
            dataset = (
                manifest_dataset(manifest, location, filesystem) if manifest is not None else None
            )
            fresh = _Table(etag, dataset, time.monotonic())
        self._tables[name] = fresh
        return fresh

    def query(self, sql: str, params: Sequence[Any] = (), tables: Sequence[str] = ()) -> Result:
        for attempt in (1, 2):
            datasets = {}
            for table in tables:
                entry = self._table(table)
                if entry.dataset is None:
                    raise TableMissingError(f"{table} has not been materialised yet")
                datasets[table] = entry.dataset
            self._clients()
            cursor = self._con.cursor()
            try:
                for table, dataset in datasets.items():
                    cursor.register(table, dataset)
                return _run(cursor, sql, params)
            except (OSError, duckdb.IOException) as exc:
                # An object a newer write's switch deleted after this manifest was read: read
                # the manifests again, once.
                for table in tables:
                    self._tables.pop(table, None)
                if attempt == 2:
                    raise StoreUnavailableError(f"reading the bucket failed: {exc}") from exc
            finally:
                cursor.close()
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


Store = DuckDBSnapshotStore | DuckDBDirectStore | S3Store


def store_from_settings(*, direct: bool = False) -> Store:
    """The deployment's store (TRADING_ASSETS_DEPLOYMENT), as ``trading-assets sql`` reads it."""
    from trading_assets import settings

    deployment = settings.choice(
        settings.DEPLOYMENT, settings.DEFAULT_DEPLOYMENT, settings.DEPLOYMENTS
    )
    if deployment == "prod":
        bucket = settings.env(settings.S3_BUCKET)
        if not bucket:
            raise settings.ConfigurationError(
                f"{settings.DEPLOYMENT}=prod needs {settings.S3_BUCKET}"
            )
        return S3Store(bucket, settings.env(settings.S3_PREFIX, "") or "")
    from trading_assets.cli import duckdb_path

    path = duckdb_path()
    return DuckDBDirectStore(path) if direct else DuckDBSnapshotStore(path)
