"""Prices from Yahoo Finance through yfinance (``yf.download``), in batches, with retries.

What the source asks yfinance for: daily bars, ``auto_adjust=True`` (OHLC split- and
dividend-adjusted, as the shared data set was built), ``actions=False``, ``repair=False``,
``ignore_tz=True`` (each symbol's bars keep their own exchange-local session date; converting a
mixed batch to one zone would move Sydney sessions to the previous New York day). ``end`` is
inclusive here and exclusive in yfinance, so yfinance gets ``end + 1 day``; rows outside
``start..end`` are dropped in any case (Yahoo sometimes appends the live bar).

Batches and retries. Symbols go to ``yf.download`` ``batch_size`` at a time. A symbol that fails
does not fail its batch: it is retried, alone with the other failures of that batch, when the
failure is transient (HTTP 429 / ``YFRateLimitError``, HTTP 5xx, a network error, a malformed
body), after an exponential backoff with jitter: ``min(max_delay, base_delay * 2**attempt)``
scaled by a random factor in [0.5, 1). After ``max_retries`` retries, or at once for a permanent
failure (Yahoo's "Not Found", no rows in the range), the symbol goes to ``FetchResult.failed``
with a one-line reason. Only Yahoo's own answer is final: a symbol yfinance never asked for, or
whose bars Yahoo sent and yfinance dropped (a failed time-zone lookup inside yfinance), is retried. ``sleep`` and ``rng`` are injectable so tests do not wait.

Every retry is reported as a WARNING to ``log`` before its wait: the batch (number and symbols),
the retry (n of ``max_retries``), the wait in seconds and what Yahoo answered; so is the give-up.
``log`` is anything with ``info``/``warning`` (a python logger or Dagster's ``context.log``);
the resource passes the run's logger so these land in the run's event log, where the UI shows
them. Without it they go to this module's python logger.

Why a session of our own (:class:`YahooSession`). ``yf.download`` logs per-symbol errors and
returns an all-NaN column; yfinance 1.7 also hides most exceptions behind "possibly delisted; no
price data found". So every request goes through a curl_cffi session (browser impersonation, as
yfinance's default) that records, per symbol, what Yahoo actually answered to
``/v8/finance/chart/{symbol}``: HTTP 429, 5xx, a network error, malformed JSON, Yahoo's own error
description, or a valid answer with no rows. That record decides retry or give up and becomes
the reason in ``failed``. The session also caps every request's timeout (``timeout``) so a dead
host fails fast instead of hanging.

Mirror / base URL (``base_url``). yfinance has no base-URL setting, but ``yf.download`` accepts
``session=``. With ``base_url="http://127.0.0.1:8080"`` (or a proxy path such as
``https://mirror.example/yahoo``) the session rewrites every ``https://*.yahoo.com/...`` URL
(query1/query2 API hosts, the ``fc.yahoo.com`` cookie host, the consent hosts) to
``base_url + path + query`` and sends the original host in ``X-Forwarded-Host``; requests to any
other host are refused (:class:`YahooMirrorError`) and redirects are not followed, so nothing
leaves for the internet. This is how the tests run real yfinance against a local server that speaks
Yahoo's chart JSON, and how production can use a caching proxy or a corporate mirror.

yfinance globals. yfinance keeps one process-wide ``YfData`` (session, cookie, crumb) and an LRU
cache of responses for past date ranges (``YfData.cache_get``). A download here therefore holds
a module lock (downloads are serialised per process; yfinance still runs threads inside a batch),
installs its session with a fresh cookie/crumb state, clears the response cache (so a retry asks
again instead of replaying a cached 500, and one mirror's answers never serve another), and
restores the previous session, cookie and crumb afterwards. The sqlite caches (ticker time
zones, cookies) live in ``~/.cache/py-yfinance`` unless ``cache_dir`` / :func:`configure_yfinance_cache`
points them elsewhere (a process-wide setting).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pandas as pd
import yfinance as yf
from curl_cffi import requests as curl_requests
from yfinance import cache as yf_cache
from yfinance.data import YfData

from trading_assets.core.prices import PRICE_COLUMNS, PriceDataError, empty_prices, normalize_prices
from trading_assets.core.symbols import validate_symbols
from trading_assets.settings import ConfigurationError
from trading_assets.sources.base import FetchLog, FetchResult

# Where retries are reported when no run logger is given (the source used outside Dagster).
module_log = logging.getLogger(__name__)

SOURCE_NAME = "yahoo"
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_RETRIES = 5
# Five retries wait 2+4+8+16+32 s (before jitter), about a minute: long enough for a short
# Yahoo throttle to clear, short enough for a daily job.
DEFAULT_BASE_DELAY = 2.0
DEFAULT_MAX_DELAY = 60.0
# Per HTTP request; yfinance's own defaults are 10-30 s.
DEFAULT_TIMEOUT = 20.0
# fetch_market_caps stops asking after this many failed requests in a row (see there).
MAX_CONSECUTIVE_CAP_ERRORS = 10
DEFAULT_THREADS = 8
# Each backoff delay is scaled by a uniform factor in [JITTER_FLOOR, 1): retries of many clients
# (or batches) hit by the same 429 do not come back in lockstep ("equal jitter").
JITTER_FLOOR = 0.5
# Symbols named in a log line before "+N more": enough to recognise a batch, short enough to read.
SYMBOLS_SHOWN = 5
# Distinct failure reasons spelled out in one log line.
REASONS_SHOWN = 3
YAHOO_DOMAIN = "yahoo.com"
CHART_PATH_PREFIX = "/v8/finance/chart/"
# yf.download's column labels for the price fields (level "Price" of its MultiIndex).
YF_PRICE_FIELDS = {
    "Open",
    "High",
    "Low",
    "Close",
    "Adj Close",
    "Volume",
    "Dividends",
    "Stock Splits",
    "Capital Gains",
}

# yfinance's process-wide state a download swaps in and restores (see module docstring).
_YFDATA_STATE = ("_session", "_crumb", "_cookie", "_cookie_strategy")
_YFINANCE_LOCK = threading.RLock()


class YahooMirrorError(ConnectionError):
    """A request to a non-Yahoo host while routing to a mirror (nothing is sent)."""


@dataclass(frozen=True)
class ChartOutcome:
    """What Yahoo answered to a symbol's last chart request. ``reason`` is None for usable data."""

    reason: str | None
    transient: bool = False
    status: int | None = None
    bars: int = 0  # timestamps in a usable answer


class YahooSession(curl_requests.Session):
    """The curl_cffi session yfinance uses for one fetch: mirror routing, capped timeouts, outcomes.

    ``base_url=None`` talks to Yahoo itself. Thread-safe: yf.download calls it from its threads.
    """

    def __init__(self, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(impersonate="chrome")  # as yfinance's own default session
        self.base_url = _check_base_url(base_url)
        self.timeout_cap = float(timeout)
        self._outcomes: dict[str, ChartOutcome] = {}
        self._outcomes_lock = threading.Lock()

    def request(self, method, url, *args, **kwargs):  # curl_cffi's signature
        kwargs["timeout"] = _capped_timeout(kwargs.get("timeout"), self.timeout_cap)
        symbol = _chart_symbol(url)
        if self.base_url is not None:
            url, original_host = _mirror_url(url, self.base_url)
            headers = dict(kwargs.get("headers") or {})
            headers["X-Forwarded-Host"] = original_host
            kwargs["headers"] = headers
            # A redirect would be followed by curl itself, past the rewrite: a mirror answers directly.
            kwargs["allow_redirects"] = False
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception as exc:
            if symbol is not None:
                self._remember(
                    symbol, ChartOutcome(f"network error: {_short_error(exc)}", transient=True)
                )
            raise
        if symbol is not None:
            self._remember(symbol, _chart_outcome(response.status_code, response.content))
        return response

    def outcomes(self) -> dict[str, ChartOutcome]:
        with self._outcomes_lock:
            return dict(self._outcomes)

    def reset_outcomes(self) -> None:
        with self._outcomes_lock:
            self._outcomes.clear()

    def _remember(self, symbol: str, outcome: ChartOutcome) -> None:
        with self._outcomes_lock:
            self._outcomes[symbol] = outcome


class YahooSource:
    """Daily bars from Yahoo Finance via yfinance (see the module docstring for the behaviour)."""

    def __init__(
        self,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        base_url: str | None = None,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        timeout: float = DEFAULT_TIMEOUT,
        threads: bool | int = True,
        cache_dir: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        name: str = SOURCE_NAME,
        log: FetchLog | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"yahoo batch_size must be >= 1, got {batch_size}")
        if max_retries < 0:
            raise ConfigurationError(f"yahoo max_retries must be >= 0, got {max_retries}")
        if base_delay < 0 or max_delay < 0:
            raise ConfigurationError(
                f"yahoo retry delays must be >= 0, got {base_delay}, {max_delay}"
            )
        if timeout <= 0:
            raise ConfigurationError(f"yahoo timeout must be > 0 seconds, got {timeout}")
        self.name = name
        self.batch_size = int(batch_size)
        self.max_retries = int(max_retries)
        self.base_url = _check_base_url(base_url)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.timeout = float(timeout)
        self.threads = threads
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self.log: FetchLog = log if log is not None else module_log
        if cache_dir is not None:
            configure_yfinance_cache(cache_dir)

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> FetchResult:
        """Bars for ``symbols`` on sessions ``start..end`` (inclusive); failures in ``failed``."""
        symbols = validate_symbols(symbols)  # again, before any symbol goes into a URL
        start, end = _as_date(start, "start"), _as_date(end, "end")
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if not symbols:
            return FetchResult(empty_prices(self.name))
        fetched_at = dt.datetime.now(dt.UTC)
        frames: list[pd.DataFrame] = []
        failed: dict[str, str] = {}
        chunks = list(batches(symbols, self.batch_size))
        with YahooSession(self.base_url, self.timeout) as session:
            for number, batch in enumerate(chunks, 1):
                label = f"batch {number}/{len(chunks)} ({len(batch)} symbols: {some(batch)})"
                if len(chunks) > 1:
                    self.log.info(f"yahoo {label}: requesting {start}..{end}")
                prices, batch_failed = self._fetch_batch(session, batch, start, end, label)
                frames.append(prices)
                failed.update(batch_failed)
        frames = [f for f in frames if not f.empty]
        if not frames:
            return FetchResult(empty_prices(self.name), failed)
        prices = normalize_prices(
            pd.concat(frames, ignore_index=True),
            source=self.name,
            fetched_at=fetched_at,
            origin="yahoo",
        )
        return FetchResult(prices, failed)

    def backoff_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): capped exponential with jitter."""
        cap = min(self.max_delay, self.base_delay * 2**retry)
        return cap * self._rng.uniform(JITTER_FLOOR, 1.0)

    def _fetch_batch(
        self,
        session: YahooSession,
        batch: list[str],
        start: dt.date,
        end: dt.date,
        label: str = "batch",
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        frames: list[pd.DataFrame] = []
        failed: dict[str, str] = {}
        gave_up: dict[str, str] = {}
        pending = batch
        for attempt in range(self.max_retries + 1):
            session.reset_outcomes()
            raw = self.download(session, pending, start, end)
            prices = long_prices_from_download(raw, pending)
            prices = prices[(prices["date"] >= start) & (prices["date"] <= end)]
            prices = prices[prices[["open", "high", "low", "close"]].notna().any(axis=1)]
            frames.append(prices)
            got = set(prices["symbol"])
            outcomes = session.outcomes()
            retry: dict[str, str] = {}
            for symbol in pending:
                if symbol in got:
                    continue
                outcome = _missing_outcome(outcomes.get(symbol), start, end)
                reason = outcome.reason
                if outcome.transient and attempt < self.max_retries:
                    retry[symbol] = reason
                elif outcome.transient:
                    gave_up[symbol] = reason
                    failed[symbol] = f"{reason}; gave up after {attempt + 1} attempt(s)"
                else:
                    failed[symbol] = reason
            if not retry:
                break
            delay = self.backoff_delay(attempt)
            self.log.warning(
                f"yahoo {label}: attempt {attempt + 1} failed for {len(retry)} symbol(s): "
                f"{reasons_by_symbol(retry)}; retry {attempt + 1}/{self.max_retries} in {delay:.2f} s"
            )
            self._sleep(delay)
            pending = list(retry)
        if gave_up:
            self.log.warning(
                f"yahoo {label}: gave up on {len(gave_up)} symbol(s) after "
                f"{self.max_retries + 1} attempt(s): {reasons_by_symbol(gave_up)}; "
                "they are listed as failed"
            )
        return pd.concat(frames, ignore_index=True), failed

    def download(
        self, session: YahooSession, symbols: list[str], start: dt.date, end: dt.date
    ) -> pd.DataFrame:
        """One ``yf.download`` call for one batch attempt, through ``session`` (tests count batches here)."""
        threads = self.threads
        if threads is True:
            # yfinance's own default is 2 x CPUs; a fixed small pool is gentler on Yahoo's limits.
            threads = min(len(symbols), DEFAULT_THREADS)
        with use_yfinance_session(session):
            return yf.download(
                list(symbols),
                start=start.isoformat(),
                end=(end + dt.timedelta(days=1)).isoformat(),  # yfinance's end is exclusive
                interval="1d",
                auto_adjust=True,
                actions=False,
                repair=False,
                keepna=False,
                ignore_tz=True,
                group_by="column",
                multi_level_index=True,
                progress=False,
                threads=threads,
                timeout=self.timeout,
                session=session,
            )


def fetch_market_caps(
    symbols: list[str],
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_consecutive_errors: int = MAX_CONSECUTIVE_CAP_ERRORS,
    log: FetchLog | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Market capitalisation per symbol from yfinance's ``Ticker.info["marketCap"]``, and failures.

    Returns ``(caps, failed)``: caps in the quote currency, failed maps symbol -> reason (indices
    and unknown symbols have no market cap). One attempt per symbol, no retries: a cap is a slow
    moving attribute, the next run fills a gap. Routed like prices (``base_url`` mirror, capped
    timeouts). After ``max_consecutive_errors`` requests in a row that raised (network down,
    Yahoo refusing), the remaining symbols are not asked and are listed as skipped: a dead
    network must not cost one timeout per symbol of a 500-stock universe. The first request of
    such a run of errors and the give-up are WARNINGs to ``log`` (as for prices), so a run
    waiting on timeouts says why.
    """
    log = log if log is not None else module_log
    symbols = validate_symbols(symbols)
    caps: dict[str, float] = {}
    failed: dict[str, str] = {}
    if not symbols:
        return caps, failed
    errors_in_a_row, last_error = 0, ""
    with YahooSession(base_url, timeout) as session, use_yfinance_session(session):
        for i, symbol in enumerate(symbols):
            if errors_in_a_row >= max_consecutive_errors:
                skipped = symbols[i:]
                log.warning(
                    f"yahoo market caps: the previous {errors_in_a_row} requests failed "
                    f"(last: {last_error}); not asking the remaining {len(skipped)} symbol(s): "
                    f"{some(skipped)}"
                )
                for rest in skipped:
                    failed[rest] = (
                        f"not requested: the previous {errors_in_a_row} requests failed "
                        f"(last: {last_error})"
                    )
                break
            try:
                info = yf.Ticker(symbol, session=session).info
            except Exception as exc:  # yfinance raises HTTP, JSON and YF* errors here
                last_error = failed[symbol] = _short_error(exc)[:300]
                errors_in_a_row += 1
                if errors_in_a_row == 1:
                    log.warning(
                        f"yahoo market cap of {symbol} failed: {last_error}; going on "
                        f"(stops after {max_consecutive_errors} failures in a row)"
                    )
                continue
            errors_in_a_row = 0
            cap = info.get("marketCap") if isinstance(info, dict) else None
            if isinstance(cap, int | float) and not isinstance(cap, bool) and cap > 0:
                caps[symbol] = float(cap)
            else:
                failed[symbol] = "Yahoo returned no marketCap"
    return caps, failed


def fetch_latest_prices(
    symbols: list[str],
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_consecutive_errors: int = MAX_CONSECUTIVE_CAP_ERRORS,
    log: FetchLog | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """The latest traded price per symbol, Yahoo's ``regularMarketPrice``, and failures.

    One chart request per symbol (``/v8/finance/chart/{symbol}?range=1d&interval=1d``, whose
    ``meta`` carries the live price during the session), routed like prices (``base_url`` mirror,
    capped timeouts). Returns ``(prices, failed)``, failed mapping symbol -> reason. No retries:
    the alerts sensor asks again on its next tick. After ``max_consecutive_errors`` requests in a
    row that did not reach Yahoo (network errors, 429, 5xx, malformed answers) the rest are not
    asked (as fetch_market_caps), with one WARNING to ``log``.
    """
    log = log if log is not None else module_log
    symbols = validate_symbols(symbols)
    prices: dict[str, float] = {}
    failed: dict[str, str] = {}
    errors_in_a_row = 0
    with YahooSession(base_url, timeout) as session:
        for i, symbol in enumerate(symbols):
            if errors_in_a_row >= max_consecutive_errors:
                skipped = symbols[i:]
                log.warning(
                    f"yahoo latest prices: the previous {errors_in_a_row} requests failed; not "
                    f"asking the remaining {len(skipped)} symbol(s): {some(skipped)}"
                )
                failed.update(dict.fromkeys(skipped, "not requested after repeated failures"))
                break
            url = (
                f"https://query2.finance.{YAHOO_DOMAIN}{CHART_PATH_PREFIX}{quote(symbol, safe='')}"
            )
            try:
                response = session.get(url, params={"range": "1d", "interval": "1d"})
            except Exception as exc:  # curl_cffi raises its own request errors
                failed[symbol] = f"network error: {_short_error(exc)}"
                errors_in_a_row += 1
                continue
            outcome = _chart_outcome(response.status_code, response.content)
            # Only trouble reaching Yahoo counts towards giving up; an unknown symbol is an answer.
            errors_in_a_row = errors_in_a_row + 1 if outcome.transient else 0
            price = _market_price(response.content)
            if outcome.reason is not None or price is None:
                failed[symbol] = outcome.reason or "Yahoo returned no regularMarketPrice"
                continue
            prices[symbol] = price
    return prices, failed


def _market_price(content: bytes) -> float | None:
    """``chart.result[0].meta.regularMarketPrice`` when it is a positive number."""
    try:
        meta = json.loads(content)["chart"]["result"][0]["meta"]
        price = meta["regularMarketPrice"]
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None
    if isinstance(price, bool) or not isinstance(price, int | float) or not price > 0:
        return None
    return float(price)


def long_prices_from_download(frame: pd.DataFrame | None, symbols: Sequence[str]) -> pd.DataFrame:
    """yf.download's wide frame as long rows (symbol, date, open, high, low, close, volume).

    Accepts what yfinance versions return: MultiIndex columns (Price, Ticker) (``group_by="column"``)
    or (Ticker, Price) (``group_by="ticker"``), flat columns for a single ticker, an empty frame,
    a tz-aware or naive DatetimeIndex (dates are the index's own wall-clock dates). All-NaN rows
    (a symbol absent on a day another symbol traded) are kept here; normalize_prices drops them.
    Raises PriceDataError for a shape it cannot read.
    """
    symbols = list(symbols)
    if frame is None or frame.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c not in ("symbol", "date") else object)
                for c in PRICE_COLUMNS
            }
        )
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex):
        if columns.nlevels != 2:
            raise PriceDataError(
                f"yfinance frame has {columns.nlevels} column levels; expected 2 (price, ticker)"
            )
        levels = [set(map(str, columns.get_level_values(i))) for i in (0, 1)]
        if levels[0] <= YF_PRICE_FIELDS:
            ticker_level = 1
        elif levels[1] <= YF_PRICE_FIELDS:
            ticker_level = 0
        else:
            raise PriceDataError(
                f"yfinance frame has no level of price fields: {sorted(levels[0])[:8]}, {sorted(levels[1])[:8]}"
            )
        wide = frame.copy()
        wide.index = _session_dates(wide.index)
        wide.index.name = "date"
        wide.columns = wide.columns.set_names(
            ["ticker" if i == ticker_level else "field" for i in (0, 1)]
        )
        long = wide.stack(level="ticker", future_stack=True).reset_index()
        long = long.rename(columns={"ticker": "symbol"})
    else:
        if len(symbols) != 1:
            raise PriceDataError(
                f"yfinance frame has flat columns but {len(symbols)} symbols were requested"
            )
        long = frame.copy()
        long.index = _session_dates(long.index)
        long.index.name = "date"
        long = long.reset_index()
        long["symbol"] = symbols[0]
    long.columns = [str(c) for c in long.columns]
    missing = [f for f in ("Open", "High", "Low", "Close") if f not in long.columns]
    if missing:
        raise PriceDataError(
            f"yfinance frame lacks price field(s) {missing}; got {list(long.columns)}"
        )
    if "Volume" not in long.columns:
        long["Volume"] = float("nan")
    long = long.rename(columns={f: f.lower() for f in ("Open", "High", "Low", "Close", "Volume")})
    long["date"] = pd.DatetimeIndex(long["date"]).date
    return long[list(PRICE_COLUMNS)].reset_index(drop=True)


def some(symbols: Sequence[str], most: int = SYMBOLS_SHOWN) -> str:
    """``AAPL, MSFT, +51 more``: the first symbols and how many are left out."""
    shown = ", ".join(symbols[:most])
    return shown + (f", +{len(symbols) - most} more" if len(symbols) > most else "")


def reasons_by_symbol(reasons: dict[str, str], most: int = REASONS_SHOWN) -> str:
    """Failure reasons, each with the symbols it hit: ``HTTP 429 (MSFT); HTTP 500 (AAPL, NVDA)``."""
    by_reason: dict[str, list[str]] = {}
    for symbol, reason in reasons.items():
        by_reason.setdefault(reason, []).append(symbol)
    text = "; ".join(f"{reason} ({some(syms)})" for reason, syms in list(by_reason.items())[:most])
    return text + (f"; +{len(by_reason) - most} other reason(s)" if len(by_reason) > most else "")


def batches(symbols: Sequence[str], size: int) -> Iterator[list[str]]:
    """Consecutive chunks of at most ``size`` symbols."""
    for i in range(0, len(symbols), size):
        yield list(symbols[i : i + size])


def configure_yfinance_cache(cache_dir: str | Path) -> None:
    """Point yfinance's sqlite caches (ticker time zones, cookies, ISINs) at ``cache_dir``, process-wide.

    ``yf.set_tz_cache_location`` only takes effect before first use; yfinance's cache managers keep
    the databases they opened, so those are dropped here and reopen at the new place on next use.
    """
    with _YFINANCE_LOCK:
        yf.set_tz_cache_location(str(Path(cache_dir)))  # yfinance creates the folder on first use
        for manager, attr in (
            (getattr(yf_cache, "_TzCacheManager", None), "_tz_cache"),
            (getattr(yf_cache, "_CookieCacheManager", None), "_Cookie_cache"),
            (getattr(yf_cache, "_ISINCacheManager", None), "_isin_cache"),
        ):
            if manager is not None and hasattr(manager, attr):
                setattr(manager, attr, None)


@contextmanager
def use_yfinance_session(session: YahooSession) -> Iterator[None]:
    """Install ``session`` in yfinance's process-wide YfData for one call, then restore the previous state.

    Holds a module lock meanwhile: yfinance has one YfData per process, so two sources with
    different sessions (mirrors) must not interleave.
    """
    with _YFINANCE_LOCK:
        data = YfData()  # the singleton (created on first use)
        saved = {name: getattr(data, name) for name in _YFDATA_STATE if hasattr(data, name)}
        YfData(session=session)
        # A cookie/crumb belongs to the host that minted it: start clean, let yfinance fetch them.
        for name, value in (("_crumb", None), ("_cookie", None), ("_cookie_strategy", "basic")):
            if name in saved:
                setattr(data, name, value)
        YfData.cache_get.cache_clear()
        try:
            yield
        finally:
            YfData.cache_get.cache_clear()
            for name, value in saved.items():
                setattr(data, name, value)


def _missing_outcome(outcome: ChartOutcome | None, start: dt.date, end: dt.date) -> ChartOutcome:
    """Why a symbol of a batch came back without rows, and whether asking again may help.

    Only Yahoo's own verdict is final: an error object, or a valid answer without bars. A symbol
    yfinance never asked for, or whose last answer carried bars that yfinance then dropped (its
    time-zone lookup and threaded download fail inside yfinance now and then), is retried.
    """
    if outcome is None:
        return ChartOutcome("yfinance made no chart request for it", transient=True)
    if outcome.reason is not None:
        return outcome
    if outcome.bars:
        return ChartOutcome(
            f"Yahoo answered with {outcome.bars} bar(s) but yfinance returned none",
            transient=True,
            status=outcome.status,
        )
    return ChartOutcome(f"no rows from Yahoo between {start} and {end}", status=outcome.status)


def _chart_outcome(status: int, content: bytes) -> ChartOutcome:
    """Classify one chart response: usable, permanent failure, or worth retrying."""
    if status == 429:
        return ChartOutcome("rate limited by Yahoo (HTTP 429)", transient=True, status=status)
    if status >= 500:
        return ChartOutcome(f"Yahoo server error (HTTP {status})", transient=True, status=status)
    try:
        payload = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        # Truncated bodies and HTML error pages from proxies are usually passing trouble.
        return ChartOutcome(
            f"malformed response from Yahoo (HTTP {status}, not JSON)",
            transient=True,
            status=status,
        )
    chart = payload.get("chart") if isinstance(payload, dict) else None
    if not isinstance(chart, dict):
        return ChartOutcome(
            f"malformed response from Yahoo (HTTP {status}, no 'chart' object)",
            transient=True,
            status=status,
        )
    error = chart.get("error")
    if error:
        if isinstance(error, dict):
            text = ": ".join(str(error[k]) for k in ("code", "description") if error.get(k))
        else:
            text = str(error)
        return ChartOutcome(f"Yahoo: {text} (HTTP {status})", status=status)
    if status >= 400:
        return ChartOutcome(f"Yahoo refused the request (HTTP {status})", status=status)
    result = chart.get("result")
    if not isinstance(result, list) or not result or not isinstance(result[0], dict):
        return ChartOutcome(
            f"malformed response from Yahoo (HTTP {status}, no chart result)",
            transient=True,
            status=status,
        )
    # Valid, with or without sessions in range: a symbol with no rows gets its reason from the caller.
    timestamps = result[0].get("timestamp")
    return ChartOutcome(
        None, status=status, bars=len(timestamps) if isinstance(timestamps, list) else 0
    )


def _chart_symbol(url: str) -> str | None:
    path = urlsplit(url).path
    if not path.startswith(CHART_PATH_PREFIX):
        return None
    return unquote(path[len(CHART_PATH_PREFIX) :]).upper() or None


def _mirror_url(url: str, base_url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host != YAHOO_DOMAIN and not host.endswith("." + YAHOO_DOMAIN):
        raise YahooMirrorError(
            f"refusing to send a request for {host or url!r} to the Yahoo mirror {base_url}"
        )
    path = parts.path or "/"
    return base_url + path + (f"?{parts.query}" if parts.query else ""), parts.netloc


def _check_base_url(base_url: str | None) -> str | None:
    if base_url is None or not str(base_url).strip():
        return None
    base = str(base_url).strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"yahoo base_url must be http(s)://host[:port][/path] without query, got {base_url!r}"
        )
    return base


def _capped_timeout(timeout: object, cap: float) -> object:
    if isinstance(timeout, int | float) and not isinstance(timeout, bool):
        return min(float(timeout), cap)
    if isinstance(timeout, tuple) and all(isinstance(t, int | float) for t in timeout):
        return tuple(min(float(t), cap) for t in timeout)
    return cap  # None / curl_cffi's NOT_SET: never wait forever


def _short_error(exc: BaseException) -> str:
    text = str(exc).split(" See https://curl.se", 1)[0].strip().rstrip(".")
    # curl says how long it tried ("after 3 ms"): without it, one outage reads as one reason
    # for the whole batch instead of one per timing.
    text = re.sub(r" after \d+ ms", "", text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _session_dates(index: pd.Index) -> pd.DatetimeIndex:
    """A bar index as naive midnight timestamps of its own (exchange-local) calendar date."""
    stamps = pd.DatetimeIndex(pd.to_datetime(index))
    if stamps.tz is not None:
        stamps = stamps.tz_localize(None)  # keep the wall-clock date, not the UTC one
    return stamps.normalize()


def _as_date(value: object, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} must be a date, got {value!r}") from exc
