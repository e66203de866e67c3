"""Resources: where prices and the universe come from. Chosen per deployment in definitions.py."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from pydantic import Field

from trading_assets import settings
from trading_assets.core.universe import parse_universe_spec
from trading_assets.sources.base import PriceSource
from trading_assets.sources.sample import SAMPLE_FUNDAMENTALS, sample_universe, sp500_universe


class PriceSourceResource(dg.ConfigurableResource):
    """The price source of raw_prices: ``sample`` (bundled), ``files`` (path) or ``yahoo`` (yfinance)."""

    kind: str = Field(default=settings.DEFAULT_PRICE_SOURCE, description="sample | files | yahoo")
    path: str | None = Field(default=None, description="files: long Parquet/CSV, or a directory of <SYMBOL>.csv")
    batch_size: int = Field(default=100, description="yahoo: symbols per download request")
    max_retries: int = Field(default=5, description="yahoo: retries on rate limits and network errors")
    yahoo_base_url: str | None = Field(default=None, description="yahoo: a mirror of Yahoo's API (tests)")

    def build(self) -> PriceSource:
        if self.kind == "sample":
            from trading_assets.sources.sample import SampleSource

            return SampleSource()
        if self.kind == "files":
            if not self.path:
                raise settings.ConfigurationError(
                    f"price source 'files' needs a path: set {settings.PRICES_PATH}"
                )
            from trading_assets.sources.files import FilesSource

            return FilesSource(self.path)
        if self.kind == "yahoo":
            from trading_assets.sources.yahoo import YahooSource

            return YahooSource(
                batch_size=self.batch_size, max_retries=self.max_retries, base_url=self.yahoo_base_url
            )
        raise settings.ConfigurationError(
            f"unknown price source {self.kind!r}: use one of {', '.join(settings.PRICE_SOURCES)}"
        )


class UniverseResource(dg.ConfigurableResource):
    """The stocks to track. ``spec`` is a CSV path or a comma-separated list; unset = the default list.

    Default: the bundled S&P 500 constituents; with the bundled ``sample`` price source, the sample's
    ~50 members of it (so completeness is judged against what the sample can deliver).
    """

    spec: str | None = Field(default=None, description="CSV path with a symbol column, or 'AAPL,MSFT'")
    price_source_kind: str = Field(default=settings.DEFAULT_PRICE_SOURCE)

    def members(self) -> pd.DataFrame:
        if self.spec:
            return parse_universe_spec(self.spec)
        return sample_universe() if self.price_source_kind == "sample" else sp500_universe()


class FundamentalsResource(dg.ConfigurableResource):
    """A fundamentals snapshot CSV with ``symbol`` and ``market_cap`` (USD); default: the bundled one."""

    path: str | None = Field(default=None, description="CSV with symbol, market_cap (USD)")

    def load(self) -> pd.DataFrame:
        from trading_assets.core.universe import read_fundamentals_csv

        return read_fundamentals_csv(self.path or SAMPLE_FUNDAMENTALS)
