"""The symbol universe: which stocks the pipeline tracks, with their sector, plus the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trading_assets.core.symbols import BENCHMARK_SYMBOLS, normalize_symbol_column

UNIVERSE_COLUMNS: tuple[str, ...] = ("symbol", "name", "sector", "is_benchmark")
BENCHMARK_SECTOR = "Benchmark"


class UniverseError(ValueError):
    """The universe source is unusable: missing file, no `symbol` column, or no symbols."""


def read_universe_csv(path: str | Path) -> pd.DataFrame:
    """A CSV with a ``symbol`` column; ``name`` and ``sector`` are used when present."""
    frame, cols = read_csv_columns(path, "universe", ("symbol",), dtype=str, keep_default_na=False)
    return pd.DataFrame(
        {
            "symbol": frame[cols["symbol"]],
            "name": frame[cols["name"]] if "name" in cols else None,
            "sector": frame[cols["sector"]] if "sector" in cols else None,
        }
    )


def read_csv_columns(
    path: str | Path,
    what: str,
    required: Sequence[str],
    error: type[Exception] = UniverseError,
    **read_kw,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The CSV and its columns by lower-cased name; ``error`` if missing, unreadable or lacking ``required``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    try:
        frame = pd.read_csv(path, **read_kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise error(f"{what} file {path} is not a readable CSV: {exc}") from exc
    cols = {c.strip().lower(): c for c in frame.columns}
    missing = [c for c in required if c not in cols]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise error(f"{what} file {path} has no {names} column (columns: {list(frame.columns)})")
    return frame, cols


def parse_universe_spec(spec: str) -> pd.DataFrame:
    """TRADING_ASSETS_UNIVERSE: a path to a CSV (ends in .csv or exists), else a comma-separated list."""
    spec = spec.strip()
    if spec.lower().endswith(".csv") or Path(spec).is_file():
        return read_universe_csv(spec)
    items = [s for s in (part.strip() for part in spec.split(",")) if s]
    if not items:
        raise UniverseError(
            "TRADING_ASSETS_UNIVERSE is empty: give a CSV path or symbols like 'AAPL,MSFT'"
        )
    return pd.DataFrame({"symbol": items, "name": None, "sector": None})


def build_universe(
    members: pd.DataFrame, benchmarks: Sequence[str] = BENCHMARK_SYMBOLS
) -> pd.DataFrame:
    """Validate and de-duplicate the members, then make sure every benchmark is present.

    Raises InvalidSymbolError naming every bad symbol, UniverseError when no stock remains.
    """
    members = members.copy()
    members["symbol"] = normalize_symbol_column(members["symbol"].astype(str))
    members = members.drop_duplicates("symbol", keep="first").reset_index(drop=True)
    bench = set(benchmarks)
    members["is_benchmark"] = members["symbol"].isin(bench)
    if not (~members["is_benchmark"]).any():
        raise UniverseError("the universe has no stocks besides the benchmarks")
    extra = [b for b in benchmarks if b not in set(members["symbol"])]
    if extra:
        members = pd.concat(
            [
                members,
                pd.DataFrame({"symbol": extra, "name": None, "sector": None, "is_benchmark": True}),
            ],
            ignore_index=True,
        )
    members.loc[members["is_benchmark"], "sector"] = BENCHMARK_SECTOR
    members["name"] = members["name"].where(members["name"].notna() & (members["name"] != ""), None)
    members["sector"] = members["sector"].where(
        members["sector"].notna() & (members["sector"] != ""), None
    )
    return members[list(UNIVERSE_COLUMNS)].reset_index(drop=True)


def universe_changes(
    previous: Sequence[str] | None, current: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(added, removed) symbols since the previous universe; everything is 'added' the first time."""
    prev = set(previous or [])
    cur = set(current)
    return sorted(cur - prev), sorted(prev - cur)
