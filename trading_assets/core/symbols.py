"""Ticker symbols: the one strict pattern every symbol passes before it reaches SQL, a URL or a path."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

# Yahoo-style tickers: AAPL, BRK-B, BF-B, ^VIX, BHP.AX, 7203.T, RDS.A, ES=F, EURUSD=X.
# One optional caret (indices), a root of letters/digits, up to two dot/dash suffixes, and an
# optional Yahoo "=X"/"=F" tail. No spaces, quotes, slashes, semicolons or lower case survive.
SYMBOL_PATTERN = re.compile(r"^\^?[A-Z0-9]{1,10}(?:[.\-][A-Z0-9]{1,5}){0,2}(?:=[A-Z]{1,2})?$")
MAX_SYMBOL_LENGTH = 20

# Symbols later assets need (market environment: SPY/QQQ against their SMAs, VIX level).
BENCHMARK_SYMBOLS: tuple[str, ...] = ("SPY", "QQQ", "^VIX")


class InvalidSymbolError(ValueError):
    """A symbol does not match SYMBOL_PATTERN."""


def normalize_symbol(raw: object) -> str:
    """Strip and upper-case one symbol, then validate it. Raises InvalidSymbolError."""
    if not isinstance(raw, str):
        raise InvalidSymbolError(f"symbol must be a string, got {type(raw).__name__}: {raw!r}")
    sym = raw.strip().upper()
    if len(sym) > MAX_SYMBOL_LENGTH or not SYMBOL_PATTERN.fullmatch(sym):
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: expected a Yahoo-style ticker such as AAPL, BRK-B or ^VIX "
            f"(pattern {SYMBOL_PATTERN.pattern})"
        )
    return sym


def validate_symbols(raw: Iterable[object]) -> list[str]:
    """Normalise every symbol; raise one InvalidSymbolError naming all bad ones. Keeps first-seen order, drops repeats."""
    out: list[str] = []
    seen: set[str] = set()
    bad: list[str] = []
    for item in raw:
        try:
            sym = normalize_symbol(item)
        except InvalidSymbolError:
            bad.append(repr(item))
            continue
        if sym not in seen:
            seen.add(sym)
            out.append(sym)
    if bad:
        shown = ", ".join(bad[:20]) + (f" (+{len(bad) - 20} more)" if len(bad) > 20 else "")
        raise InvalidSymbolError(
            f"{len(bad)} invalid symbol(s): {shown}; expected Yahoo-style tickers such as AAPL, BRK-B or ^VIX"
        )
    return out


def normalize_symbol_column(col: pd.Series) -> pd.Series:
    """A column of symbols in normal form, one output per row (repeats kept).

    Each distinct value is validated once, not once per row; any bad value raises one
    InvalidSymbolError naming every bad symbol.
    """
    mapping: dict[object, str] = {}
    uniques = list(pd.unique(col))
    for value in uniques:
        try:
            mapping[value] = normalize_symbol(value)
        except InvalidSymbolError:
            validate_symbols(uniques)  # raises, naming every bad symbol
    return col.map(mapping).astype(object)
