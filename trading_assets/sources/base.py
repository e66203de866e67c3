"""The contract every price source meets, so `raw_prices` does not care where prices come from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd


@dataclass(frozen=True)
class FetchResult:
    """What a source returns for a request.

    ``prices`` follows trading_assets.core.prices.RAW_PRICE_COLUMNS (normalised, sorted).
    ``failed`` maps each symbol that could not be fetched to a one-line reason. A failed symbol
    never fails the whole request; the asset lists it in metadata and an asset check.
    """

    prices: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)


class FetchLog(Protocol):
    """Where a source reports retries and waits: a python logger, or a Dagster run's ``context.log``
    (whose messages are events of the run, shown in the UI)."""

    def info(self, msg: str) -> None: ...

    def warning(self, msg: str) -> None: ...


class PriceSource(Protocol):
    """Fetch daily bars for ``symbols`` on sessions ``start``..``end``, both inclusive."""

    name: str

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> FetchResult: ...
