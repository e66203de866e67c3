"""Resources: where prices, the universe and market-cap snapshots come from.

Chosen per deployment in definitions.py. The price and fundamentals resources keep the run's
logger (``InitResourceContext.log``) and hand it to the Yahoo source: its retries, waits and
give-ups are then WARNING events of the run, shown in the UI, not python-logging lines Dagster
never records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from trading_assets import settings
from trading_assets.core.fundamentals import (
    combine_snapshots,
    market_cap_snapshot,
    read_fundamentals_snapshots,
)
from trading_assets.core.universe import parse_universe_spec
from trading_assets.partitions import CALENDAR_CODE, START_DATE, sessions_between, trading_calendar
from trading_assets.sources.base import FetchLog, PriceSource
from trading_assets.sources.sample import SAMPLE_FUNDAMENTALS, sample_universe, sp500_universe


class RunLoggedResource(dg.ConfigurableResource):
    """A resource whose source reports retries and waits to the run's log (None outside a run)."""

    _log: FetchLog | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._log = context.log

    def run_log(self) -> FetchLog | None:
        """The running step's logger (its events name the step), else the run's, else None."""
        try:
            return dg.OpExecutionContext.get().log
        except dg.DagsterInvariantViolationError:
            return self._log


class PriceSourceResource(RunLoggedResource):
    """The price source of raw_prices: ``sample`` (bundled), ``files`` (path) or ``yahoo`` (yfinance)."""

    kind: str = Field(default=settings.DEFAULT_PRICE_SOURCE, description="sample | files | yahoo")
    path: str | None = Field(
        default=None, description="files: long Parquet/CSV, or a directory of <SYMBOL>.csv"
    )
    batch_size: int = Field(
        default=100,
        description="yahoo: symbols per download request, and per raw_prices fetch step",
    )
    max_retries: int = Field(
        default=5, description="yahoo: retries on rate limits and network errors"
    )
    yahoo_base_url: str | None = Field(
        default=None, description="yahoo: a mirror of Yahoo's API (tests)"
    )
    retry_base_delay: float | None = Field(
        default=None,
        description="yahoo: seconds before the first retry, doubled each retry (unset: 2)",
    )
    retry_max_delay: float | None = Field(
        default=None, description="yahoo: longest wait between retries in seconds (unset: 60)"
    )
    yahoo_timeout: float | None = Field(
        default=None, description="yahoo: seconds per HTTP request (unset: 20)"
    )

    def fetch_batches(self, symbols: list[str]) -> list[list[str]]:
        """How raw_prices splits a fetch of ``symbols`` into steps (one per batch, run in parallel
        by a multiprocess executor): yahoo's download batches of ``batch_size``, in order; a file
        source is read once (a local read gains nothing from more processes)."""
        if self.kind != "yahoo":
            return [list(symbols)] if symbols else []
        if self.batch_size < 1:
            raise settings.ConfigurationError(
                f"yahoo batch_size must be >= 1, got {self.batch_size}"
            )
        size = self.batch_size
        return [list(symbols[i : i + size]) for i in range(0, len(symbols), size)]

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

            unset_means_default = {
                "base_delay": self.retry_base_delay,
                "max_delay": self.retry_max_delay,
                "timeout": self.yahoo_timeout,
            }
            return YahooSource(
                batch_size=self.batch_size,
                max_retries=self.max_retries,
                base_url=self.yahoo_base_url,
                log=self.run_log(),
                **{k: v for k, v in unset_means_default.items() if v is not None},
            )
        raise settings.ConfigurationError(
            f"unknown price source {self.kind!r}: use one of {', '.join(settings.PRICE_SOURCES)}"
        )


class UniverseResource(dg.ConfigurableResource):
    """The stocks to track. ``spec`` is a CSV path or a comma-separated list; unset = the default list.

    Default: the bundled S&P 500 constituents; with the bundled ``sample`` price source, the sample's
    ~50 members of it (so completeness is judged against what the sample can deliver).
    """

    spec: str | None = Field(
        default=None, description="CSV path with a symbol column, or 'AAPL,MSFT'"
    )
    price_source_kind: str = Field(default=settings.DEFAULT_PRICE_SOURCE)

    def members(self) -> pd.DataFrame:
        if self.spec:
            return parse_universe_spec(self.spec)
        return sample_universe() if self.price_source_kind == "sample" else sp500_universe()


class NoMarketCapsFetchedError(RuntimeError):
    """Yahoo answered no market cap for any symbol of the universe (an outage, not data)."""


@dataclass(frozen=True)
class FundamentalsLoad:
    """The snapshots one materialisation writes, and the symbols whose Yahoo market cap failed."""

    snapshots: pd.DataFrame
    failed: dict[str, str]
    yahoo_as_of: dt.date | None = None


def exchange_today() -> dt.date:
    """Today's date in the exchange's time zone (the clock of a Yahoo snapshot; tests replace it)."""
    return pd.Timestamp.now(tz=trading_calendar(CALENDAR_CODE, START_DATE).tz).date()


def latest_session(today: dt.date) -> dt.date:
    """The latest session on or before ``today``: today's after the close, Friday's on a weekend."""
    recent = sessions_between(CALENDAR_CODE, START_DATE, today - dt.timedelta(days=14), today)
    if not recent:
        raise settings.ConfigurationError(
            f"no {CALENDAR_CODE} session in the two weeks up to {today} (calendar from {START_DATE})"
        )
    return recent[-1]


class FundamentalsResource(RunLoggedResource):
    """Market-cap snapshots: the snapshot file(s), plus today's snapshot from Yahoo with the yahoo source.

    ``path``: a CSV (dated by an ``as_of`` column or its file name) or a directory of them;
    unset = the bundled S&P 500 snapshot of 2025-02-01. With ``price_source_kind="yahoo"`` each
    materialisation also fetches the universe's market caps and dates them with the latest session.
    """

    path: str | None = Field(
        default=None,
        description="snapshot CSV (as_of column or date in the name), or a directory of them",
    )
    price_source_kind: str = Field(default=settings.DEFAULT_PRICE_SOURCE)
    yahoo_base_url: str | None = Field(
        default=None, description="yahoo: a mirror of Yahoo's API (tests)"
    )
    yahoo_timeout: float = Field(default=20.0, description="yahoo: seconds per market-cap request")

    def load(self, stocks: list[str]) -> FundamentalsLoad:
        """The file snapshots, and with the yahoo source today's snapshot of ``stocks``.

        Raises FundamentalsSnapshotError for an unusable file and NoMarketCapsFetchedError when
        Yahoo gave no cap at all; either way nothing is written and stored snapshots stay.
        """
        files = read_fundamentals_snapshots(self.path or SAMPLE_FUNDAMENTALS)
        if self.price_source_kind != "yahoo":
            return FundamentalsLoad(files, {})
        from trading_assets.sources.yahoo import fetch_market_caps

        as_of = latest_session(exchange_today())
        caps, failed = fetch_market_caps(
            stocks, base_url=self.yahoo_base_url, timeout=self.yahoo_timeout, log=self.run_log()
        )
        if stocks and not caps:
            shown = dict(list(failed.items())[:5])
            raise NoMarketCapsFetchedError(
                f"Yahoo returned no market cap for any of {len(stocks)} symbols (as_of {as_of}); "
                f"stored snapshots are unchanged. Failures, e.g.: {shown}"
            )
        snapshot = market_cap_snapshot(caps, as_of)
        return FundamentalsLoad(combine_snapshots([files, snapshot]), failed, as_of)


class TradeJournalResource(dg.ConfigurableResource):
    """The user's own trades (a CSV of date, symbol, side, quantity, price, fees) for trade_journal;
    unset = the journal holds the backtests' trades only."""

    path: str | None = Field(
        default=None, description="the trades CSV (TRADING_ASSETS_TRADES_PATH)"
    )


class ReportStoreResource(dg.ConfigurableResource):
    """Where performance_report writes its self-contained HTML files: a local directory."""

    directory: str = Field(default=settings.DEFAULT_REPORTS_DIR, description="created when missing")

    def write(self, name: str, html: str) -> str:
        """Write ``<directory>/<name>`` whole or not at all; returns the file's absolute path."""
        from trading_assets.core.report import write_report

        return str(write_report(Path(self.directory).resolve() / name, html))

    def read(self, name: str) -> str | None:
        """The report ``name`` as written, or None when there is none (the read API)."""
        try:
            return (Path(self.directory).resolve() / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
