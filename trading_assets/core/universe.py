"""The symbol universe: which stocks the pipeline tracks, with their sector, plus the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from trading_assets.core.symbols import BENCHMARK_SYMBOLS, validate_symbols

UNIVERSE_COLUMNS: tuple[str, ...] = ("symbol", "name", "sector", "is_benchmark")
BENCHMARK_SECTOR = "Benchmark"


class UniverseError(ValueError):
    """The universe source is unusable: missing file, no `symbol` column, or no symbols."""


def read_universe_csv(path: str | Path) -> pd.DataFrame:
    """A CSV with a ``symbol`` column; ``name`` and ``sector`` are used when present."""
    path = Path(path)
    if not path.is_file():
        raise UniverseError(f"universe file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UniverseError(f"universe file {path} is not a readable CSV: {exc}") from exc
    cols = {c.strip().lower(): c for c in frame.columns}
    if "symbol" not in cols:
        raise UniverseError(f"universe file {path} has no 'symbol' column (columns: {list(frame.columns)})")
    return pd.DataFrame(
        {
            "symbol": frame[cols["symbol"]],
            "name": frame[cols["name"]] if "name" in cols else None,
            "sector": frame[cols["sector"]] if "sector" in cols else None,
        }
    )


def parse_universe_spec(spec: str) -> pd.DataFrame:
    """TRADING_ASSETS_UNIVERSE: a path to a CSV (ends in .csv or exists), else a comma-separated list."""
    spec = spec.strip()
    if spec.lower().endswith(".csv") or Path(spec).is_file():
        return read_universe_csv(spec)
    items = [s for s in (part.strip() for part in spec.split(",")) if s]
    if not items:
        raise UniverseError("TRADING_ASSETS_UNIVERSE is empty: give a CSV path or symbols like 'AAPL,MSFT'")
    return pd.DataFrame({"symbol": items, "name": None, "sector": None})


def build_universe(members: pd.DataFrame, benchmarks: Sequence[str] = BENCHMARK_SYMBOLS) -> pd.DataFrame:
    """Validate and de-duplicate the members, then make sure every benchmark is present.

    Raises InvalidSymbolError naming every bad symbol, UniverseError when no stock remains.
    """
    members = members.copy()
    members["symbol"] = members["symbol"].astype(str)
    symbols = validate_symbols(members["symbol"])  # raises on any bad symbol
    members["symbol"] = members["symbol"].str.strip().str.upper()
    members = members.drop_duplicates("symbol", keep="first").set_index("symbol").reindex(symbols)
    members = members.reset_index()
    bench = set(benchmarks)
    members["is_benchmark"] = members["symbol"].isin(bench)
    if not (~members["is_benchmark"]).any():
        raise UniverseError("the universe has no stocks besides the benchmarks")
    extra = [b for b in benchmarks if b not in set(members["symbol"])]
    if extra:
        members = pd.concat(
            [members, pd.DataFrame({"symbol": extra, "name": None, "sector": None, "is_benchmark": True})],
            ignore_index=True,
        )
    members.loc[members["is_benchmark"], "sector"] = BENCHMARK_SECTOR
    members["name"] = members["name"].where(members["name"].notna() & (members["name"] != ""), None)
    members["sector"] = members["sector"].where(members["sector"].notna() & (members["sector"] != ""), None)
    return members[list(UNIVERSE_COLUMNS)].reset_index(drop=True)


def universe_changes(previous: Sequence[str] | None, current: Sequence[str]) -> tuple[list[str], list[str]]:
    """(added, removed) symbols since the previous universe; everything is 'added' the first time."""
    prev = set(previous or [])
    cur = set(current)
    return sorted(cur - prev), sorted(prev - cur)
