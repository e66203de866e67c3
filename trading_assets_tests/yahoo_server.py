"""A local stand-in for Yahoo Finance's chart API, for tests that run real yfinance offline.

``serve_yahoo(prices, faults=...)`` starts a ThreadingHTTPServer on 127.0.0.1 (free port) and
yields a :class:`YahooChartServer` whose ``base_url`` is given to
``YahooSource(base_url=...)``. yfinance then does its real work (cookie, crumb, time-zone probe,
``/v8/finance/chart/{symbol}`` with ``period1``/``period2``/``interval=1d``) over the socket.

Responses are built from real rows (a long frame of symbol, date, open, high, low, close, volume,
e.g. ``../shared/data/market/prices_daily.parquet``) in the shape Yahoo serves:

- ``chart.result[0].meta`` (currency, symbol, exchangeTimezoneName ``America/New_York``, gmtoffset,
  instrumentType, validRanges, currentTradingPeriod, ...);
- ``timestamp``: epoch seconds of each session's 09:30 New York open, as Yahoo stamps daily bars;
- ``indicators.quote[0]`` open/high/low/close/volume and ``indicators.adjclose[0].adjclose``.

The shared rows are already split- and dividend-adjusted (yfinance ``auto_adjust=True``). To prove a
client really asks yfinance to adjust, the server serves them "unadjusted": OHLC divided by
:data:`ADJUSTMENT_FACTOR`, with ``adjclose`` the true adjusted close. ``auto_adjust=True`` scales
OHLC by ``adjclose / close`` and gets the shared rows back; ``auto_adjust=False`` would not.

Unknown symbols get Yahoo's 404 ``{"chart": {"result": null, "error": {"code": "Not Found", ...}}}``.
A range with no sessions gets Yahoo's 200 with meta and empty ``indicators.quote[0]``.
Optional ``market_caps`` answer the quote endpoints behind ``Ticker.info`` (quoteSummary, v7
quote; fundamentals-timeseries answers empty). ``meta.regularMarketPrice`` is the last bar's
(adjusted) close, or what :meth:`YahooChartServer.set_latest_price` set: the live quote a
latest-price request reads.

Faults per symbol (:class:`Fault`): N x HTTP 429 then success, HTTP 500 (permanent or N times),
"no data" (200 with no rows), malformed JSON, connection dropped without a response. A fault
counts every chart request of that symbol (yfinance's time-zone probe and the price request).

Every request is logged (:class:`RequestRecord`) with the host yfinance meant to reach (the
``X-Forwarded-Host`` header YahooSource adds when it routes to a mirror), so a test can assert what
reached the server: retries, batches, and that nothing went elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd

EXCHANGE_TZ = "America/New_York"
# Yahoo stamps a daily bar with the session's opening time in the exchange's zone.
SESSION_OPEN = dt.time(9, 30)
# Served OHLC = adjusted / ADJUSTMENT_FACTOR; adjclose = adjusted (see module docstring).
ADJUSTMENT_FACTOR = 0.8
CRUMB = "local-test-crumb"
VALID_RANGES = ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"]
CHART_PREFIX = "/v8/finance/chart/"
QUOTE_SUMMARY_PREFIX = "/v10/finance/quoteSummary/"
QUOTE_PATH = "/v7/finance/quote"
TIMESERIES_PREFIX = "/ws/fundamentals-timeseries/v1/finance/timeseries/"

# Fault kinds.
RATE_LIMIT = "rate_limit"
SERVER_ERROR = "server_error"
NO_DATA = "no_data"
MALFORMED = "malformed"
DROP = "drop"
# A usable answer whose meta lacks exchangeTimezoneName: yfinance's time-zone lookup fails and it
# never asks for the history, though Yahoo answered with a bar.
NO_TIMEZONE = "no_timezone"
FAULT_KINDS = (RATE_LIMIT, SERVER_ERROR, NO_DATA, MALFORMED, DROP, NO_TIMEZONE)


@dataclass(frozen=True)
class Fault:
    """What the server does to a symbol's chart requests: ``kind`` for the first ``times`` (None = always)."""

    kind: str
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"fault times must be >= 1 or None (always), got {self.times}")

    @classmethod
    def rate_limit(cls, times: int | None = 1) -> Fault:
        return cls(RATE_LIMIT, times)

    @classmethod
    def server_error(cls, times: int | None = None) -> Fault:
        return cls(SERVER_ERROR, times)

    @classmethod
    def no_data(cls) -> Fault:
        return cls(NO_DATA, None)

    @classmethod
    def malformed(cls, times: int | None = None) -> Fault:
        return cls(MALFORMED, times)

    @classmethod
    def drop(cls, times: int | None = None) -> Fault:
        return cls(DROP, times)

    @classmethod
    def no_timezone(cls, times: int | None = None) -> Fault:
        return cls(NO_TIMEZONE, times)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. ``status`` is None when the connection was dropped."""

    method: str
    path: str
    host: str
    query: dict[str, str]
    # history | probe (range=, yfinance's time-zone lookup) | quote | cookie | crumb | consent | other
    kind: str
    symbol: str | None
    status: int | None


@dataclass
class _SymbolBars:
    timestamps: np.ndarray  # int64 epoch seconds, sorted
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


class YahooChartServer:
    """The server: start/stop it, read its request log. Use :func:`serve_yahoo` in tests."""

    def __init__(
        self,
        prices: pd.DataFrame,
        faults: Mapping[str, Fault] | None = None,
        market_caps: Mapping[str, float] | None = None,
    ) -> None:
        self._bars = _bars_by_symbol(prices)
        self._market_caps = dict(market_caps or {})
        self._faults = dict(faults or {})
        self._fault_hits: dict[str, int] = {}
        self._latest: dict[str, float] = {}
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> YahooChartServer:
        handler = type("_Handler", (_YahooHandler,), {"chart_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="yahoo-chart-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port: later connections are refused."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> YahooChartServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def chart_requests(
        self, symbol: str | None = None, kind: str | None = None
    ) -> list[RequestRecord]:
        """Chart requests (history and time-zone probes), optionally of one symbol or one kind."""
        return [
            r
            for r in self.requests
            if r.kind in ("history", "probe")
            and (symbol is None or r.symbol == symbol)
            and (kind is None or r.kind == kind)
        ]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def set_fault(self, symbol: str, fault: Fault | None) -> None:
        """Change a symbol's fault between requests (None removes it); resets its hit count."""
        with self._lock:
            if fault is None:
                self._faults.pop(symbol, None)
            else:
                self._faults[symbol] = fault
            self._fault_hits.pop(symbol, None)

    def set_latest_price(self, symbol: str, price: float | None) -> None:
        """Serve ``price`` as the symbol's ``meta.regularMarketPrice`` (a live quote during the
        session); None goes back to the last bar's close."""
        with self._lock:
            if price is None:
                self._latest.pop(symbol, None)
            else:
                self._latest[symbol] = float(price)

    # -- used by the handler -----------------------------------------------------------------
    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _take_fault(self, symbol: str) -> str | None:
        """The fault kind to apply to this request of ``symbol``, counting it, or None."""
        with self._lock:
            fault = self._faults.get(symbol)
            if fault is None:
                return None
            hits = self._fault_hits.get(symbol, 0)
            if fault.times is not None and hits >= fault.times:
                return None
            self._fault_hits[symbol] = hits + 1
            return fault.kind

    def _quote_body(self, path: str, query: dict[str, str]) -> tuple[int, dict]:
        """quoteSummary / v7 quote / fundamentals-timeseries: what Ticker.info reads (marketCap)."""
        if path.startswith(TIMESERIES_PREFIX):
            return 200, {"timeseries": {"result": [], "error": None}}
        if path.startswith(QUOTE_SUMMARY_PREFIX):
            symbol = path[len(QUOTE_SUMMARY_PREFIX) :]
            cap = self._market_caps.get(symbol)
            if cap is None:
                error = {
                    "code": "Not Found",
                    "description": f"Quote not found for symbol: {symbol}",
                }
                return 404, {"quoteSummary": {"result": None, "error": error}}
            module = {
                "summaryDetail": {"marketCap": cap, "currency": "USD"},
                "quoteType": {"symbol": symbol},
            }
            return 200, {"quoteSummary": {"result": [module], "error": None}}
        symbols = [s for s in query.get("symbols", "").split(",") if s in self._market_caps]
        result = [
            {"symbol": s, "marketCap": self._market_caps[s], "currency": "USD"} for s in symbols
        ]
        return 200, {"quoteResponse": {"result": result, "error": None}}

    def _chart_body(self, symbol: str, query: dict[str, str]) -> tuple[int, dict]:
        bars = self._bars.get(symbol)
        if bars is None:
            return 404, _chart_error("Not Found", "No data found, symbol may be delisted")
        interval = query.get("interval", "1d")
        if interval != "1d":
            return 400, _chart_error(
                "Bad Request", f"Invalid input - interval={interval} is not supported"
            )
        if "period1" in query or "period2" in query:
            try:
                lo = int(query.get("period1", "0"))
                hi = int(query.get("period2", str(2**62)))
            except ValueError:
                return 400, _chart_error(
                    "Bad Request", "Invalid input - period1/period2 must be integers"
                )
            # Yahoo's period2 is exclusive: a bar stamped at or after it is not served.
            keep = (bars.timestamps >= lo) & (bars.timestamps < hi)
            data_range = ""
        else:
            # range=1d etc.: yfinance only uses this to learn the time zone; the last bar is enough.
            keep = np.zeros(len(bars.timestamps), dtype=bool)
            if len(keep):
                keep[-1] = True
            data_range = query.get("range", "1d")
        with self._lock:
            latest = self._latest.get(symbol)
        return 200, _chart_result(symbol, bars, keep, data_range, latest)


class _YahooHandler(BaseHTTPRequestHandler):
    chart_server: YahooChartServer  # set on the per-server subclass
    server_version = "yahoo-chart-test/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean; the request log is the record

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._handle()

    def _handle(self) -> None:
        server = self.chart_server
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        host = self.headers.get("X-Forwarded-Host") or self.headers.get("Host") or ""
        symbol = path[len(CHART_PREFIX) :] if path.startswith(CHART_PREFIX) else None
        if symbol is not None:
            kind = "history" if ("period1" in query or "period2" in query) else "probe"
        elif path.startswith((QUOTE_SUMMARY_PREFIX, QUOTE_PATH, TIMESERIES_PREFIX)):
            kind = "quote"
        elif path.endswith("/v1/test/getcrumb"):
            kind = "crumb"
        elif "consent" in host or "consent" in path:
            kind = "consent"
        elif host.startswith("fc.") or path in ("", "/"):
            kind = "cookie"
        else:
            kind = "other"

        def record(status: int | None) -> None:
            server._record(RequestRecord(self.command, path, host, query, kind, symbol, status))

        if symbol is None:
            if kind == "crumb":
                status, body, ctype = 200, CRUMB.encode(), "text/plain;charset=utf-8"
            elif kind == "quote":
                status, payload = server._quote_body(path, query)
                body, ctype = json.dumps(payload).encode(), "application/json;charset=utf-8"
            elif kind in ("cookie", "consent"):
                # No Set-Cookie: nothing a client could cache as a real Yahoo cookie.
                status, body, ctype = (
                    200,
                    b"<html><body>ok</body></html>",
                    "text/html;charset=utf-8",
                )
            else:
                status = 404
                body = json.dumps(
                    {
                        "finance": {
                            "result": None,
                            "error": {"code": "Not Found", "description": "HTTP 404 Not Found"},
                        }
                    }
                ).encode()
                ctype = "application/json;charset=utf-8"
            record(status)
            self._send(status, body, ctype)
            return

        fault = server._take_fault(symbol)
        if fault == DROP:
            record(None)
            self.close_connection = True
            # Close without a status line: the client sees "empty reply from server".
            return
        if fault == RATE_LIMIT:
            record(429)
            self._send(429, b"Too Many Requests\r\n", "text/plain;charset=utf-8")
            return
        if fault == SERVER_ERROR:
            record(500)
            self._send(
                500, b"<html><body>Internal Server Error</body></html>", "text/html;charset=utf-8"
            )
            return
        if fault == MALFORMED:
            record(200)
            self._send(
                200, b'{"chart":{"result":[{"meta":{"currency":"USD","symbol":', "application/json"
            )
            return
        if fault == NO_DATA:
            status, payload = 200, _chart_result(symbol, server._bars.get(symbol), None, "")
        else:
            status, payload = server._chart_body(symbol, query)
            if fault == NO_TIMEZONE and payload.get("chart", {}).get("result"):
                del payload["chart"]["result"][0]["meta"]["exchangeTimezoneName"]
        record(status)
        self._send(
            status, json.dumps(payload, allow_nan=False).encode(), "application/json;charset=utf-8"
        )

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _chart_error(code: str, description: str) -> dict:
    return {"chart": {"result": None, "error": {"code": code, "description": description}}}


def _chart_result(
    symbol: str,
    bars: _SymbolBars | None,
    keep: np.ndarray | None,
    data_range: str,
    latest: float | None = None,
) -> dict:
    """Yahoo's chart JSON for the kept bars of a symbol (no bars: meta and an empty quote, as Yahoo does)."""
    now = pd.Timestamp.now(tz=EXCHANGE_TZ)
    gmtoffset = int(now.utcoffset().total_seconds())
    zone = now.tzname()
    last = None
    if bars is not None and len(bars.timestamps):
        last = len(bars.timestamps) - 1
    meta: dict = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "CBOE" if symbol.startswith("^") else "NYQ",
        "fullExchangeName": "Cboe Indices" if symbol.startswith("^") else "NYSE",
        "instrumentType": "INDEX" if symbol.startswith("^") else "EQUITY",
        "firstTradeDate": int(bars.timestamps[0]) if last is not None else None,
        "regularMarketTime": int(bars.timestamps[last]) + 6 * 3600 + 1800
        if last is not None
        else None,
        "hasPrePostMarketData": not symbol.startswith("^"),
        "gmtoffset": gmtoffset,
        "timezone": zone,
        "exchangeTimezoneName": EXCHANGE_TZ,
        "regularMarketPrice": latest
        if latest is not None
        else (_num(bars.close[last]) if last is not None else None),
        "chartPreviousClose": _num(bars.close[last - 1]) if last else None,
        "priceHint": 2,
        "currentTradingPeriod": {
            name: {"timezone": zone, "start": start, "end": end, "gmtoffset": gmtoffset}
            for name, (start, end) in _trading_periods(now).items()
        },
        "dataGranularity": "1d",
        "range": data_range,
        "validRanges": VALID_RANGES,
    }
    result: dict = {"meta": meta}
    if bars is None or keep is None or not keep.any():
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    else:
        result["timestamp"] = [int(t) for t in bars.timestamps[keep]]
        # Served "unadjusted" (see module docstring); adjclose carries the adjusted close.
        result["indicators"] = {
            "quote": [
                {
                    "open": [_num(v / ADJUSTMENT_FACTOR) for v in bars.open[keep]],
                    "high": [_num(v / ADJUSTMENT_FACTOR) for v in bars.high[keep]],
                    "low": [_num(v / ADJUSTMENT_FACTOR) for v in bars.low[keep]],
                    "close": [_num(v / ADJUSTMENT_FACTOR) for v in bars.close[keep]],
                    "volume": [None if np.isnan(v) else int(v) for v in bars.volume[keep]],
                }
            ],
            "adjclose": [{"adjclose": [_num(v) for v in bars.close[keep]]}],
        }
    return {"chart": {"result": [result], "error": None}}


def _trading_periods(now: pd.Timestamp) -> dict[str, tuple[int, int]]:
    day = now.normalize()

    def at(hour: int, minute: int) -> int:
        return int(day.replace(hour=hour, minute=minute).timestamp())

    return {
        "pre": (at(4, 0), at(9, 30)),
        "regular": (at(9, 30), at(16, 0)),
        "post": (at(16, 0), at(20, 0)),
    }


def _num(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def _bars_by_symbol(prices: pd.DataFrame) -> dict[str, _SymbolBars]:
    required = ["symbol", "date", "open", "high", "low", "close", "volume"]
    missing = [c for c in required if c not in prices.columns]
    if missing:
        raise ValueError(f"prices frame is missing column(s) {missing}; expected {required}")
    frame = prices[required].copy()
    dates = pd.to_datetime(frame["date"]).dt.normalize()
    opens = dates + pd.Timedelta(hours=SESSION_OPEN.hour, minutes=SESSION_OPEN.minute)
    frame["ts"] = opens.dt.tz_localize(EXCHANGE_TZ).dt.tz_convert("UTC").astype("int64") // 10**9
    out: dict[str, _SymbolBars] = {}
    for symbol, rows in frame.sort_values(["symbol", "ts"]).groupby("symbol", sort=False):
        out[str(symbol)] = _SymbolBars(
            timestamps=rows["ts"].to_numpy(dtype="int64"),
            open=rows["open"].to_numpy(dtype="float64"),
            high=rows["high"].to_numpy(dtype="float64"),
            low=rows["low"].to_numpy(dtype="float64"),
            close=rows["close"].to_numpy(dtype="float64"),
            volume=rows["volume"].to_numpy(dtype="float64"),
        )
    return out


@contextmanager
def serve_yahoo(
    prices: pd.DataFrame,
    faults: Mapping[str, Fault] | None = None,
    market_caps: Mapping[str, float] | None = None,
) -> Iterator[YahooChartServer]:
    """Serve ``prices`` in Yahoo's chart format on 127.0.0.1; yields the running server (``.base_url``).

    ``market_caps`` (symbol -> USD) feeds the quote endpoints behind yfinance's ``Ticker.info``.
    """
    server = YahooChartServer(prices, faults, market_caps)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def isolated_yfinance_cache(cache_dir: str) -> Iterator[str]:
    """Point yfinance's sqlite caches at ``cache_dir`` for the duration, then back.

    yfinance keeps a per-process time-zone cache and cookie cache in ``~/.cache/py-yfinance``. Tests
    must neither read a developer's cached entries nor write test entries there.
    """
    from yfinance import cache as yf_cache

    from trading_assets.sources.yahoo import configure_yfinance_cache

    before = yf_cache._TzDBManager.get_location()
    configure_yfinance_cache(cache_dir)
    try:
        yield cache_dir
    finally:
        configure_yfinance_cache(before)
