"""After an unclean shutdown: prove every unique key is still unique before anyone reads or writes.

Why. A writer killed during COMMIT (SIGKILL, the OOM killer, a lost container) leaves the file and
its write-ahead log (``<file>.wal``). DuckDB 1.5.5 and 1.5.6 replay such a log on top of rows it
already holds and store every replaced key twice, silently and for good (issue 7; DuckDB PR
#25931). The project runs DuckDB 2.0.1, whose recovery the kill loop in
``trading_assets_tests/test_crash_safety.py`` finds clean; this module is the check that would
notice if a DuckDB version, a filesystem or another tool ever did it again.

How. Every table the IO manager writes with a ``unique_key`` carries that key in its table comment
(:func:`key_comment`), so the file itself says what must be unique. Opening a file that has a
``.wal`` beside it, or the ``.unverified`` marker of an earlier open that did not finish
verifying, first creates the marker (before DuckDB replays the log: a crash during replay or
verification leaves it), then opens, then counts duplicated keys in every keyed table:

- none: the marker is removed and the open proceeds;
- some: :class:`~trading_assets.storage.contract.StoredDuplicatesError`, naming the tables, keys
  and the repair command; the marker stays, so every later open fails the same way until
  ``trading-assets repair-duckdb`` (:func:`repair_duplicates`) has run.

A clean close leaves no ``.wal``, so the check costs nothing on the daily path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from trading_assets.storage.contract import StoredDuplicatesError, quote_identifier

UNVERIFIED_SUFFIX = ".unverified"
# How many duplicated keys a message quotes per table.
EXAMPLES = 3


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + UNVERIFIED_SUFFIX)


def needs_verification(path: Path) -> bool:
    """True if the last process to open ``path`` did not close it (or a check did not finish)."""
    return wal_path(path).exists() or marker_path(path).exists()


def mark_unverified(path: Path) -> None:
    """Leave the marker; a directory we cannot write to still gets the check, just no marker."""
    try:
        marker_path(path).touch()
    except OSError:
        pass


def key_comment(unique_key: tuple[str, ...] | list[str]) -> str:
    """The table comment that records a table's unique key."""
    return json.dumps({"unique_key": list(unique_key)})


def _parse_key(comment: str | None) -> tuple[str, ...] | None:
    try:
        key = json.loads(comment or "").get("unique_key")
    except (ValueError, AttributeError):
        return None  # no comment, or one a person wrote: not a key we recorded
    if isinstance(key, list) and key and all(isinstance(k, str) for k in key):
        return tuple(key)
    return None


def recorded_key(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> tuple[str, ...] | None:
    (row,) = con.execute(
        "SELECT any_value(comment) FROM duckdb_tables() "
        "WHERE lower(schema_name) = lower(?) AND lower(table_name) = lower(?)",
        [schema, table],
    ).fetchall()
    return _parse_key(row[0])


def record_key(
    con: duckdb.DuckDBPyConnection, qualified: str, schema: str, table: str, key: tuple[str, ...]
) -> None:
    """Record ``key`` in the table's comment (inside the caller's transaction) if it differs."""
    if recorded_key(con, schema, table) != tuple(key):
        literal = key_comment(key).replace("'", "''")
        con.execute(f"COMMENT ON TABLE {qualified} IS '{literal}'")


@dataclass(frozen=True)
class Duplicates:
    """One table's duplicated keys."""

    schema: str
    table: str
    key: tuple[str, ...]
    keys_duplicated: int
    extra_rows: int  # rows beyond one per key
    examples: tuple[tuple, ...]

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.table}"

    def describe(self) -> str:
        examples = "; ".join(
            ", ".join(f"{k}={v}" for k, v in zip(self.key, row, strict=True))
            for row in self.examples
        )
        return (
            f"{self.shown}: {self.keys_duplicated} key(s) of {list(self.key)} occur more than "
            f"once ({self.extra_rows} extra row(s); e.g. {examples})"
        )


def _keyed_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, tuple[str, ...]]]:
    rows = con.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE NOT temporary "
        "ORDER BY schema_name, table_name"
    ).fetchall()
    return [(s, t, key) for s, t, c in rows if (key := _parse_key(c)) is not None]


def find_duplicates(con: duckdb.DuckDBPyConnection) -> list[Duplicates]:
    """Every keyed table's duplicated keys (a full scan of the key columns of each)."""
    found: list[Duplicates] = []
    for schema, table, key in _keyed_tables(con):
        qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
        columns = ", ".join(quote_identifier(k) for k in key)
        (n_keys, extra) = con.execute(
            f"SELECT count(*), coalesce(sum(n - 1), 0) FROM "
            f"(SELECT count(*) AS n FROM {qualified} GROUP BY {columns} HAVING count(*) > 1)"
        ).fetchall()[0]
        if n_keys:
            examples = con.execute(
                f"SELECT {columns} FROM {qualified} GROUP BY {columns} HAVING count(*) > 1 "
                f"ORDER BY {columns} LIMIT {EXAMPLES}"
            ).fetchall()
            found.append(Duplicates(schema, table, key, n_keys, int(extra), tuple(examples)))
    return found


def verify_unique_keys(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise StoredDuplicatesError if any keyed table holds a duplicate; else clear the marker."""
    found = find_duplicates(con)
    if found:
        mark_unverified(path)  # a read-only open may not have been able to; try again
        raise StoredDuplicatesError(
            f"DuckDB file {path} was not closed cleanly last time (a writer was killed) and now "
            f"holds duplicated keys: {'; '.join(d.describe() for d in found)}. Nothing was read "
            f"or written. Repair it with `trading-assets repair-duckdb {path}`: it keeps one "
            "copy of rows duplicated exactly, deletes keys whose copies differ and prints the "
            "partitions to materialise again."
        )
    marker_path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class Repaired:
    """What repair_duplicates did to one table."""

    table: str  # schema.table
    key: tuple[str, ...]
    exact_copies_removed: int  # rows removed because another row of the key was identical
    conflicting_keys_deleted: int  # keys whose copies differed: every row of them deleted
    conflicting_dates: tuple[str, str] | None  # first and last 'date' of those keys, if any


def repair_duplicates(con: duckdb.DuckDBPyConnection, path: Path) -> list[Repaired]:
    """Make every keyed table unique again, in one transaction, then clear the marker.

    Rows duplicated exactly keep one copy. A key whose copies differ cannot be decided (an old and
    a new version of the bar): all its rows are deleted, and its dates reported, so the partitions
    are materialised again from the source.
    """
    repaired: list[Repaired] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for dup in find_duplicates(con):
            qualified = f"{quote_identifier(dup.schema)}.{quote_identifier(dup.table)}"
            columns = ", ".join(quote_identifier(k) for k in dup.key)
            match = " AND ".join(
                f"t.{quote_identifier(k)} = d.{quote_identifier(k)}" for k in dup.key
            )
            con.execute(
                f"CREATE TEMP TABLE __dup_rows AS SELECT DISTINCT t.* FROM {qualified} AS t "
                f"WHERE EXISTS (SELECT 1 FROM (SELECT {columns} FROM {qualified} GROUP BY "
                f"{columns} HAVING count(*) > 1) AS d WHERE {match})"
            )
            (rows_before,) = con.execute(f"SELECT count(*) FROM {qualified}").fetchall()[0]
            # Keys whose distinct copies still differ: undecidable, dropped from the keep list.
            con.execute(
                f"CREATE TEMP TABLE __conflicts AS SELECT {columns} FROM __dup_rows "
                f"GROUP BY {columns} HAVING count(*) > 1"
            )
            has_date = "date" in {k.lower() for k in dup.key}
            dates = (
                con.execute(
                    "SELECT min(date)::VARCHAR, max(date)::VARCHAR FROM __conflicts"
                ).fetchall()[0]
                if has_date
                else (None, None)
            )
            (conflicts,) = con.execute("SELECT count(*) FROM __conflicts").fetchall()[0]
            (conflict_rows,) = con.execute(
                f"SELECT count(*) FROM {qualified} AS t WHERE EXISTS "
                f"(SELECT 1 FROM __conflicts AS d WHERE {match})"
            ).fetchall()[0]
            con.execute(
                f"DELETE FROM __dup_rows AS t WHERE EXISTS (SELECT 1 FROM __conflicts AS d WHERE {match})"
            )
            con.execute(
                f"DELETE FROM {qualified} AS t WHERE EXISTS "
                f"(SELECT 1 FROM (SELECT DISTINCT {columns} FROM __dup_rows UNION ALL "
                f"SELECT {columns} FROM __conflicts) AS d WHERE {match})"
            )
            con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM __dup_rows")
            (rows_after,) = con.execute(f"SELECT count(*) FROM {qualified}").fetchall()[0]
            con.execute("DROP TABLE __dup_rows")
            con.execute("DROP TABLE __conflicts")
            repaired.append(
                Repaired(
                    table=dup.shown,
                    key=dup.key,
                    exact_copies_removed=int(rows_before - rows_after - conflict_rows),
                    conflicting_keys_deleted=int(conflicts),
                    conflicting_dates=(dates[0], dates[1]) if conflicts and dates[0] else None,
                )
            )
        leftover = find_duplicates(con)
        if leftover:
            raise StoredDuplicatesError(
                f"repair left duplicates in {', '.join(d.shown for d in leftover)}; rolled back"
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    marker_path(path).unlink(missing_ok=True)
    return repaired
