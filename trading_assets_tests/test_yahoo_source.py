"""The yahoo price source: real yfinance over real HTTP to a local server speaking Yahoo's chart API.

Nothing here reaches the internet: YahooSource(base_url=...) routes every *.yahoo.com request to the
server from yahoo_server.py and refuses any other host. The server builds its answers from real
rows of ../shared/data/market/prices_daily.parquet.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance as yf
from yfinance.data import YfData

from trading_assets.core.prices import RAW_PRICE_COLUMNS, PriceDataError
from trading_assets.core.symbols import InvalidSymbolError
from trading_assets.settings import ConfigurationError
from trading_assets.sources import yahoo as yahoo_module
from trading_assets.sources.yahoo import (
    JITTER_FLOOR,
    YahooMirrorError,
    YahooSession,
    YahooSource,
    _capped_timeout,
    fetch_market_caps,
    long_prices_from_download,
    use_yfinance_session,
)
from trading_assets_tests.conftest import SHARED_MARKET, shared_prices
from trading_assets_tests.yahoo_server import Fault, isolated_yfinance_cache, serve_yahoo

pytestmark = pytest.mark.filterwarnings(
    # yfinance 1.7 itself (history.py) casts an all-None volume column (^VIX) with fillna.
    "ignore:Downcasting object dtype arrays:FutureWarning"
)

SYMBOLS = ["AAPL", "MSFT", "BRK-B", "GEV", "^VIX"]
SERVED_FROM, SERVED_TO = "2023-12-01", "2024-04-30"
START, END = dt.date(2024, 1, 2), dt.date(2024, 1, 31)
RETRY_SEED = 7  # jitter RNG seed: reproducible delays
MAX_RETRIES = 2
REQUEST_TIMEOUT = 5.0  # seconds; the server is local, a stray wait fails fast
NY = "America/New_York"
SHARED_FUNDAMENTALS = SHARED_MARKET / "fundamentals_2025-02-01.csv"


@pytest.fixture(scope="module", autouse=True)
def _yfinance_cache(tmp_path_factory):
    """yfinance's sqlite caches (ticker time zones, cookies) go to a temp dir, never ~/.cache."""
    path = tmp_path_factory.mktemp("yfinance-cache")
    with isolated_yfinance_cache(str(path)):
        yield path


@pytest.fixture(scope="module")
def served_prices() -> pd.DataFrame:
    return shared_prices(SYMBOLS, SERVED_FROM, SERVED_TO)


class RecordingSource(YahooSource):
    """YahooSource that records each yf.download batch and each backoff delay (sleep is a no-op)."""

    def __init__(self, base_url: str, **kwargs):
        self.delays: list[float] = []
        self.batches_downloaded: list[list[str]] = []
        kwargs.setdefault("max_retries", MAX_RETRIES)
        super().__init__(
            base_url=base_url,
            sleep=self.delays.append,
            rng=random.Random(RETRY_SEED),
            timeout=REQUEST_TIMEOUT,
            **kwargs,
        )

    def download(self, session, symbols, start, end):
        self.batches_downloaded.append(list(symbols))
        return super().download(session, symbols, start, end)


def expected_rows(symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    frame = shared_prices(symbols, start.isoformat(), end.isoformat())
    frame = frame.assign(date=pd.to_datetime(frame["date"]).dt.date)
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def assert_matches_shared(
    prices: pd.DataFrame, symbols: list[str], start: dt.date, end: dt.date
) -> None:
    got = (
        prices[prices["symbol"].isin(symbols)]
        .sort_values(["symbol", "date"])
        .reset_index(drop=True)
    )
    want = expected_rows(symbols, start, end)
    assert got[["symbol", "date"]].equals(want[["symbol", "date"]])
    np.testing.assert_allclose(
        got[["open", "high", "low", "close"]].to_numpy(),
        want[["open", "high", "low", "close"]].to_numpy(),
        rtol=1e-9,
    )
    stocks = want["volume"].notna()
    np.testing.assert_array_equal(
        got.loc[stocks, "volume"].to_numpy(), want.loc[stocks, "volume"].to_numpy()
    )
    # Yahoo serves no volume for indices; yfinance turns it into 0 (the shared file keeps NaN).
    assert (got.loc[~stocks, "volume"] == 0).all()


def midnight_ny(day: dt.date) -> int:
    return int(pd.Timestamp(day).tz_localize(NY).timestamp())


def test_batch_equals_shared_rows_with_inclusive_end(served_prices):
    with serve_yahoo(served_prices) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(SYMBOLS, START, END)
        # GEV listed 2024-03-27: a real symbol with no rows in January is failed, with the reason.
        assert result.failed == {"GEV": f"no rows from Yahoo between {START} and {END}"}
        present = [s for s in SYMBOLS if s != "GEV"]
        assert list(result.prices.columns) == list(RAW_PRICE_COLUMNS)
        assert_matches_shared(result.prices, present, START, END)
        assert (result.prices["source"] == "yahoo").all()
        # ^VIX traded on 2024-01-15 (MLK day) when stocks did not: yf.download pads the stocks
        # with an all-NaN row that day; it must not survive as a price row.
        assert not result.prices[["open", "high", "low", "close"]].isna().any().any()
        assert dt.date(2024, 1, 15) in set(
            result.prices.loc[result.prices.symbol == "^VIX", "date"]
        )
        assert dt.date(2024, 1, 15) not in set(
            result.prices.loc[result.prices.symbol == "AAPL", "date"]
        )
        # Inclusive end: yfinance got the exclusive end + 1 day; Feb 1 was served data but is not asked.
        history = server.chart_requests(kind="history")
        assert {r.symbol for r in history} == set(SYMBOLS)
        assert {int(r.query["period1"]) for r in history} == {midnight_ny(START)}
        assert {int(r.query["period2"]) for r in history} == {
            midnight_ny(END + dt.timedelta(days=1))
        }
        assert {r.query["interval"] for r in history} == {"1d"}
        # Every request was meant for Yahoo and arrived here; no retry was needed.
        assert all(r.host.endswith("yahoo.com") for r in server.requests)
        assert source.delays == []
        assert source.batches_downloaded == [SYMBOLS]


def test_prices_are_auto_adjusted(served_prices):
    """The server serves OHLC / ADJUSTMENT_FACTOR with the adjusted close in adjclose (see
    yahoo_server): equality with the shared rows above holds only with auto_adjust=True."""
    with serve_yahoo(served_prices) as server:
        result = RecordingSource(server.base_url).fetch(["AAPL"], START, START)
    want = expected_rows(["AAPL"], START, START)
    assert result.prices["close"].iloc[0] == pytest.approx(want["close"].iloc[0], rel=1e-12)


def test_listing_inside_the_range_returns_rows_from_the_listing_day(served_prices):
    with serve_yahoo(served_prices) as server:
        result = RecordingSource(server.base_url).fetch(
            ["GEV", "AAPL"], dt.date(2024, 3, 20), dt.date(2024, 4, 5)
        )
    assert result.failed == {}
    gev = result.prices[result.prices.symbol == "GEV"]
    assert gev["date"].min() == dt.date(2024, 3, 27)
    assert_matches_shared(result.prices, ["GEV", "AAPL"], dt.date(2024, 3, 20), dt.date(2024, 4, 5))


def test_rate_limit_then_success_is_retried(served_prices):
    # yfinance itself asks again once after a 4xx (switching cookie strategy), so two 429s make
    # one failed yfinance attempt; our retry then succeeds.
    with serve_yahoo(served_prices, faults={"MSFT": Fault.rate_limit(times=2)}) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(["AAPL", "MSFT"], START, END)
        msft = [r.status for r in server.chart_requests("MSFT")]
    assert result.failed == {}
    assert_matches_shared(result.prices, ["AAPL", "MSFT"], START, END)
    assert msft[:2] == [429, 429] and msft[-1] == 200 and set(msft[2:]) == {200}
    # One retry, of MSFT alone (AAPL was not asked again), after a jittered base delay.
    assert source.batches_downloaded == [["AAPL", "MSFT"], ["MSFT"]]
    assert len(source.delays) == 1
    assert source.base_delay * JITTER_FLOOR <= source.delays[0] < source.base_delay


def test_rate_limit_that_never_clears_gives_up_after_max_retries(served_prices, caplog):
    with serve_yahoo(served_prices, faults={"MSFT": Fault.rate_limit(times=None)}) as server:
        source = RecordingSource(server.base_url)
        with caplog.at_level(logging.WARNING, logger=yahoo_module.__name__):
            result = source.fetch(["AAPL", "MSFT"], START, END)
    assert set(result.prices["symbol"]) == {"AAPL"}
    assert "HTTP 429" in result.failed["MSFT"]
    assert f"gave up after {MAX_RETRIES + 1} attempt(s)" in result.failed["MSFT"]
    assert len(source.delays) == MAX_RETRIES
    # Outside Dagster the retries are WARNINGs of the module's logger, with the waits slept.
    batch = "yahoo batch 1/1 (2 symbols: AAPL, MSFT)"
    reason = "rate limited by Yahoo (HTTP 429) (MSFT)"
    assert [r.getMessage() for r in caplog.records if r.name == yahoo_module.__name__] == [
        f"{batch}: attempt 1 failed for 1 symbol(s): {reason}; retry 1/2 in {source.delays[0]:.2f} s",
        f"{batch}: attempt 2 failed for 1 symbol(s): {reason}; retry 2/2 in {source.delays[1]:.2f} s",
        f"{batch}: gave up on 1 symbol(s) after 3 attempt(s): {reason}; they are listed as failed",
    ]


class ListLog:
    """A FetchLog keeping what it is told, line by line (as a run's log would show it)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))


def test_retries_go_to_the_log_given_and_name_each_batch(served_prices):
    """A run's logger (context.log in Dagster) gets the reports instead of the module's logger."""
    reports = ListLog()
    with serve_yahoo(served_prices, faults={"^VIX": Fault.server_error(times=2)}) as server:
        source = RecordingSource(server.base_url, batch_size=2, log=reports)
        result = source.fetch(["AAPL", "MSFT", "^VIX"], START, END)
    assert result.failed == {}
    assert reports.lines == [
        ("info", f"yahoo batch 1/2 (2 symbols: AAPL, MSFT): requesting {START}..{END}"),
        ("info", f"yahoo batch 2/2 (1 symbols: ^VIX): requesting {START}..{END}"),
        (
            "warning",
            "yahoo batch 2/2 (1 symbols: ^VIX): attempt 1 failed for 1 symbol(s): Yahoo server "
            f"error (HTTP 500) (^VIX); retry 1/2 in {source.delays[0]:.2f} s",
        ),
    ]


def test_permanent_server_error_fails_only_that_symbol(served_prices):
    with serve_yahoo(served_prices, faults={"MSFT": Fault.server_error()}) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(["AAPL", "MSFT", "^VIX"], START, END)
        msft = server.chart_requests("MSFT")
    assert result.failed == {
        "MSFT": f"Yahoo server error (HTTP 500); gave up after {MAX_RETRIES + 1} attempt(s)"
    }
    assert_matches_shared(result.prices, ["AAPL", "^VIX"], START, END)
    assert {r.status for r in msft} == {500}
    assert source.batches_downloaded == [["AAPL", "MSFT", "^VIX"], ["MSFT"], ["MSFT"]]
    assert len(msft) >= MAX_RETRIES + 1  # each attempt reached the server (no cached 500 replayed)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.malformed(), "malformed response from Yahoo (HTTP 200, not JSON)"),
        (Fault.drop(), "network error: ConnectionError"),
    ],
    ids=["malformed-json", "connection-drop"],
)
def test_one_broken_symbol_does_not_fail_the_batch(served_prices, fault, reason):
    with serve_yahoo(served_prices, faults={"BRK-B": fault}) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(["AAPL", "BRK-B", "MSFT"], START, END)
    assert list(result.failed) == ["BRK-B"]
    assert result.failed["BRK-B"].startswith(reason)
    assert "gave up after" in result.failed["BRK-B"]  # transient: retried, then given up
    assert_matches_shared(result.prices, ["AAPL", "MSFT"], START, END)


def test_a_symbol_yfinance_drops_after_yahoo_answered_is_retried_not_failed(served_prices):
    # Yahoo's answers lack exchangeTimezoneName: yfinance drops the bars it was sent. Yahoo did
    # answer, with bars, so this is not Yahoo's verdict and the symbol is asked again.
    with serve_yahoo(served_prices, faults={"MSFT": Fault.no_timezone(times=1)}) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(["AAPL", "MSFT"], START, END)
    assert result.failed == {}
    assert source.batches_downloaded == [["AAPL", "MSFT"], ["MSFT"]]
    assert_matches_shared(result.prices, ["AAPL", "MSFT"], START, END)

    # Every time: failed after the retries, saying what happened rather than "no rows".
    with serve_yahoo(served_prices, faults={"MSFT": Fault.no_timezone()}) as server:
        source = RecordingSource(server.base_url, max_retries=1)
        result = source.fetch(["AAPL", "MSFT"], START, END)
    bars = len(expected_rows(["MSFT"], START, END))
    assert result.failed == {
        "MSFT": f"Yahoo answered with {bars} bar(s) but yfinance returned none; "
        "gave up after 2 attempt(s)"
    }
    assert len(source.batches_downloaded) == 2
    assert_matches_shared(result.prices, ["AAPL"], START, END)


def test_malformed_once_then_good_is_retried(served_prices):
    with serve_yahoo(served_prices, faults={"BRK-B": Fault.malformed(times=1)}) as server:
        result = RecordingSource(server.base_url).fetch(["BRK-B"], START, END)
    assert result.failed == {}
    assert_matches_shared(result.prices, ["BRK-B"], START, END)


def test_no_data_and_unknown_symbols_are_listed_failed_without_retry(served_prices):
    # no_data: Yahoo answers 200 with meta and no bars; ZZZZ: Yahoo's 404 "Not Found" error JSON.
    with serve_yahoo(served_prices, faults={"MSFT": Fault.no_data()}) as server:
        source = RecordingSource(server.base_url)
        result = source.fetch(["AAPL", "MSFT", "ZZZZ"], START, END)
        unknown = server.chart_requests("ZZZZ")
    assert result.failed == {
        "MSFT": f"no rows from Yahoo between {START} and {END}",
        "ZZZZ": "Yahoo: Not Found: No data found, symbol may be delisted (HTTP 404)",
    }
    assert unknown and {r.status for r in unknown} == {404}
    assert source.delays == [] and len(source.batches_downloaded) == 1  # permanent: not retried
    assert_matches_shared(result.prices, ["AAPL"], START, END)


def test_batches_of_two(served_prices):
    with serve_yahoo(served_prices) as server:
        source = RecordingSource(server.base_url, batch_size=2)
        result = source.fetch(
            ["AAPL", "MSFT", "BRK-B", "^VIX", "GEV"], dt.date(2024, 4, 1), dt.date(2024, 4, 30)
        )
        history = server.chart_requests(kind="history")
    assert source.batches_downloaded == [["AAPL", "MSFT"], ["BRK-B", "^VIX"], ["GEV"]]
    assert sorted(r.symbol for r in history) == sorted(SYMBOLS)
    assert result.failed == {}
    assert_matches_shared(result.prices, SYMBOLS, dt.date(2024, 4, 1), dt.date(2024, 4, 30))


def test_invalid_symbol_never_reaches_the_server(served_prices):
    with serve_yahoo(served_prices) as server:
        source = RecordingSource(server.base_url)
        with pytest.raises(InvalidSymbolError, match="../../v1/test"):
            source.fetch(["AAPL", "../../v1/test"], START, END)
        with pytest.raises(InvalidSymbolError):
            source.fetch(["AAPL?crumb=x"], START, END)
        assert server.requests == []
        assert source.batches_downloaded == []


def test_network_failure_fails_every_symbol_after_bounded_retries(served_prices):
    with serve_yahoo(served_prices) as server:
        base_url = server.base_url
    # The server is stopped: its port refuses connections.
    source = RecordingSource(base_url)
    result = source.fetch(["AAPL", "MSFT"], START, END)
    assert result.prices.empty and list(result.prices.columns) == list(RAW_PRICE_COLUMNS)
    assert set(result.failed) == {"AAPL", "MSFT"}
    for reason in result.failed.values():
        assert reason.startswith("network error: ConnectionError")
        assert "Failed to connect" in reason
        assert reason.endswith(f"gave up after {MAX_RETRIES + 1} attempt(s)")
    assert len(source.delays) == MAX_RETRIES


def test_empty_request_and_duplicates(served_prices):
    with serve_yahoo(served_prices) as server:
        source = RecordingSource(server.base_url)
        empty = source.fetch([], START, END)
        assert empty.prices.empty and empty.failed == {} and server.requests == []
        result = source.fetch(["aapl", "AAPL", " AAPL "], START, END)
    assert source.batches_downloaded == [["AAPL"]]
    assert_matches_shared(result.prices, ["AAPL"], START, END)


def test_backoff_is_exponential_capped_and_jittered():
    source = YahooSource(base_delay=1.0, max_delay=5.0, rng=random.Random(RETRY_SEED))
    delays = [source.backoff_delay(retry) for retry in range(6)]
    caps = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    for delay, cap in zip(delays, caps, strict=True):
        assert cap * JITTER_FLOOR <= delay < cap
    assert len(set(delays)) == len(delays)  # jitter: no two retries wait the same


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"max_retries": -1},
        {"timeout": 0},
        {"base_delay": -1.0},
        {"base_url": "ftp://127.0.0.1:21"},
        {"base_url": "127.0.0.1:8080"},
        {"base_url": "http://127.0.0.1:8080/?x=1"},
    ],
)
def test_bad_configuration_is_a_named_error(kwargs):
    with pytest.raises(ConfigurationError):
        YahooSource(**kwargs)


def test_every_request_timeout_is_capped():
    # yfinance asks for 10-30 s and sometimes none at all; a dead host must fail within the cap.
    assert _capped_timeout(30, REQUEST_TIMEOUT) == REQUEST_TIMEOUT
    assert _capped_timeout(1, REQUEST_TIMEOUT) == 1
    assert _capped_timeout(None, REQUEST_TIMEOUT) == REQUEST_TIMEOUT
    assert _capped_timeout((3, 60), REQUEST_TIMEOUT) == (3, REQUEST_TIMEOUT)


def test_start_after_end_is_an_error():
    with pytest.raises(ValueError, match="after end"):
        YahooSource(base_url="http://127.0.0.1:9").fetch(["AAPL"], END, START)


def test_mirror_session_refuses_other_hosts_and_rewrites_yahoo_hosts(served_prices):
    with serve_yahoo(served_prices) as server:
        with YahooSession(server.base_url, timeout=REQUEST_TIMEOUT) as session:
            with pytest.raises(YahooMirrorError, match="example.com"):
                session.get("https://example.com/v8/finance/chart/AAPL")
            response = session.get("https://query1.finance.yahoo.com/v1/test/getcrumb", timeout=60)
        assert response.status_code == 200
        assert [(r.host, r.path, r.kind) for r in server.requests] == [
            ("query1.finance.yahoo.com", "/v1/test/getcrumb", "crumb")
        ]


def test_yfinance_state_is_restored_after_a_fetch(served_prices, _yfinance_cache):
    before = YfData()._session
    with serve_yahoo(served_prices) as server:
        RecordingSource(server.base_url).fetch(["AAPL"], START, END)
    assert YfData()._session is before
    assert (Path(_yfinance_cache) / "tkr-tz.db").exists()  # time-zone cache written to the temp dir


# -- what yf.download really returns, read by long_prices_from_download ----------------------


def real_download(base_url: str, symbols: list[str], **options) -> pd.DataFrame:
    with YahooSession(base_url, timeout=REQUEST_TIMEOUT) as session, use_yfinance_session(session):
        return yf.download(
            symbols,
            start=START.isoformat(),
            end=(END + dt.timedelta(days=1)).isoformat(),
            auto_adjust=True,
            actions=False,
            progress=False,
            threads=False,
            session=session,
            **options,
        )


@pytest.mark.parametrize(
    ("symbols", "options"),
    [
        (["AAPL", "^VIX"], {"group_by": "column"}),  # columns (Price, Ticker)
        (["AAPL", "^VIX"], {"group_by": "ticker"}),  # columns (Ticker, Price)
        (["AAPL", "^VIX"], {"ignore_tz": False}),  # tz-aware index (America/New_York)
        (["AAPL"], {"multi_level_index": False}),  # flat columns for one ticker
        (["AAPL"], {}),  # one ticker, still (Price, Ticker)
    ],
    ids=["price-ticker", "ticker-price", "tz-aware", "single-flat", "single-multiindex"],
)
def test_reads_every_shape_yfinance_returns(served_prices, symbols, options):
    with serve_yahoo(served_prices) as server:
        frame = real_download(server.base_url, symbols, **options)
    if options.get("ignore_tz") is False:
        assert str(frame.index.tz) == NY
    long = long_prices_from_download(frame, symbols)
    long = long.dropna(subset=["open", "high", "low", "close"], how="all")
    assert_matches_shared(long, symbols, START, END)


def test_reads_empty_and_rejects_unknown_shapes():
    empty = long_prices_from_download(pd.DataFrame(), ["AAPL"])
    assert empty.empty and list(empty.columns) == [
        "symbol",
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]
    index = pd.DatetimeIndex(["2024-01-02"])
    flat = pd.DataFrame(
        {"Open": [1.0], "High": [1.0], "Low": [1.0], "Close": [1.0], "Volume": [1]}, index=index
    )
    with pytest.raises(PriceDataError, match="flat columns but 2 symbols"):
        long_prices_from_download(flat, ["AAPL", "MSFT"])
    odd = pd.DataFrame(
        [[1.0, 2.0]], index=index, columns=pd.MultiIndex.from_tuples([("a", "AAPL"), ("b", "AAPL")])
    )
    with pytest.raises(PriceDataError, match="no level of price fields"):
        long_prices_from_download(odd, ["AAPL"])
    no_close = flat.drop(columns=["Close"])
    with pytest.raises(PriceDataError, match=r"lacks price field\(s\) \['Close'\]"):
        long_prices_from_download(no_close, ["AAPL"])


# -- market caps (Ticker.info over the same mirror) -------------------------------------------


def test_market_caps_from_ticker_info(served_prices):
    fundamentals = pd.read_csv(SHARED_FUNDAMENTALS).set_index("symbol")["market_cap"]
    caps = {s: float(fundamentals[s]) for s in ("AAPL", "MSFT")}
    with serve_yahoo(served_prices, market_caps=caps) as server:
        got, failed = fetch_market_caps(
            ["AAPL", "MSFT", "ZZZZ"], base_url=server.base_url, timeout=REQUEST_TIMEOUT
        )
        assert all(r.host.endswith("yahoo.com") for r in server.requests)
    assert got == caps
    assert failed == {"ZZZZ": "Yahoo returned no marketCap"}
    with pytest.raises(InvalidSymbolError):
        fetch_market_caps(["AAPL;DROP"], base_url="http://127.0.0.1:9")


def test_market_caps_stop_asking_a_dead_network(caplog):
    symbols = ["AAPL", "MSFT", "GEV", "NVDA", "XOM"]
    dead = "http://127.0.0.1:9"  # nothing listens there: every request is refused at once
    with caplog.at_level(logging.WARNING, logger=yahoo_module.__name__):
        got, failed = fetch_market_caps(
            symbols, base_url=dead, timeout=REQUEST_TIMEOUT, max_consecutive_errors=2
        )
    first, gave_up = [r.getMessage() for r in caplog.records if r.name == yahoo_module.__name__]
    assert first.startswith("yahoo market cap of AAPL failed: ConnectionError")
    assert gave_up.startswith("yahoo market caps: the previous 2 requests failed (last: Connection")
    assert gave_up.endswith("not asking the remaining 3 symbol(s): GEV, NVDA, XOM")
    assert got == {} and list(failed) == symbols
    assert all(failed[s].startswith("ConnectionError") for s in symbols[:2])
    assert all(
        failed[s].startswith("not requested: the previous 2 requests failed") for s in symbols[2:]
    )
