"""The endpoints: fixed, parameterised SQL over the graph's tables.

Every table and column named in SQL comes from the constants below (the allow-list); only values
(a symbol, dates, a strategy, a page) travel as parameters. A list answer is
``{"data": [row, ...], "next": url or null}``: at most ``limit`` rows (default DEFAULT_PAGE_ROWS,
at most MAX_PAGE_ROWS; more is a 422, never a silent clamp), ``next`` the same request for the
following page. NaN and infinite floats are answered as null; dates as ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from trading_assets.api.errors import invalid, not_found
from trading_assets.api.store import Result, Store, TableMissingError
from trading_assets.core.backtest.result import SHORT, STRATEGIES
from trading_assets.core.indicators import INDICATOR_COLUMNS
from trading_assets.core.journal import USER_STRATEGY
from trading_assets.core.symbols import normalize_symbol

DEFAULT_PAGE_ROWS = 1000
MAX_PAGE_ROWS = 10_000
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"

# The allow-list: tables and the columns the API selects from them.
SYMBOLS, RAW_PRICES, INDICATORS = "symbols", "raw_prices", "indicators"
ENVIRONMENT, WATCHLIST = "market_environment", "watchlist"
TRADES, EQUITY = "backtest_trades", "backtest_equity"
JOURNAL, METRICS = "trade_journal", "performance_metrics"
PRICE_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "source", "quarantine")
INDICATOR_SELECTABLE = (*INDICATOR_COLUMNS, "close", "volume", "quarantine")
# /health: each table and the column that dates its rows (None: rows only)
HEALTH_TABLES: dict[str, str | None] = {
    SYMBOLS: None,
    RAW_PRICES: "date",
    "price_revisions": "date",
    "fundamentals": "as_of",
    INDICATORS: "date",
    ENVIRONMENT: "date",
    WATCHLIST: "date",
    "threshold_multipliers": "date",
    TRADES: None,
    EQUITY: "date",
    JOURNAL: None,
    METRICS: "last_session",
}
# Strategies with a report (the journal of the trader's own trades has one too).
REPORTED = (*STRATEGIES, USER_STRATEGY)
_SAFE_NAME = re.compile(r"^[a-z_]+$")


def json_value(value: Any) -> Any:
    """One value as JSON has it: NaN/inf -> null, dates ISO, decimals as floats."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return json_value(float(value))
    return value


def json_rows(result: Result) -> list[dict[str, Any]]:
    return [
        {c: json_value(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows
    ]


def parse_date(text: str | None, name: str) -> dt.date | None:
    """A YYYY-MM-DD parameter (the pattern is checked by FastAPI) that is a real date."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise invalid(f"{name}={text!r} is not a date (YYYY-MM-DD)") from None


def date_range(start: str | None, end: str | None, column: str) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for ``start <= column <= end`` (either may be absent)."""
    first, last = parse_date(start, "start"), parse_date(end, "end")
    if first and last and first > last:
        raise invalid(f"start {first} is after end {last}")
    conditions, params = [], []
    if first:
        conditions.append(f"{column} >= ?")
        params.append(first)
    if last:
        conditions.append(f"{column} <= ?")
        params.append(last)
    return conditions, params


class Page:
    """The ``limit``/``offset`` of a list request."""

    def __init__(
        self,
        request: Request,
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE_ROWS, description="rows per page")
        ] = DEFAULT_PAGE_ROWS,
        offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
    ):
        self.request, self.limit, self.offset = request, limit, offset

    def answer(
        self, store: Store, sql: str, params: Sequence[Any], tables: Sequence[str]
    ) -> dict[str, Any]:
        """Run ``sql`` (ordered, without LIMIT) for this page: ``{"data", "next"}``."""
        result = store.query(
            f"{sql} LIMIT ? OFFSET ?", [*params, self.limit + 1, self.offset], tables
        )
        more = len(result.rows) > self.limit
        result.rows = result.rows[: self.limit]
        following = (
            str(
                self.request.url.include_query_params(
                    offset=self.offset + self.limit, limit=self.limit
                )
            )
            if more
            else None
        )
        return {"data": json_rows(result), "next": following}


PageDep = Annotated[Page, Depends()]
DateQuery = Annotated[str | None, Query(pattern=DATE_PATTERN, description="YYYY-MM-DD")]


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _strategy(name: str, allowed: Sequence[str]) -> str:
    if name not in allowed:
        raise not_found(f"unknown strategy {name!r}: one of {', '.join(allowed)}")
    return name


def _has_rows(store: Store, table: str, column: str, value: Any) -> bool:
    assert _SAFE_NAME.match(table) and _SAFE_NAME.match(column)
    found = store.query(f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", [value], [table])
    return bool(found.rows)


def _keyed_series(
    store: Store,
    page: Page,
    table: str,
    columns: Sequence[str],
    key: tuple[str, Any],
    start: str | None,
    end: str | None,
    missing: str,
) -> dict[str, Any]:
    """One page of ``table``'s ``columns`` for the rows whose ``key`` column equals its value,
    within start..end, oldest first; 404 ``missing`` when that key has no row at all."""
    column, value = key
    conditions, params = date_range(start, end, "date")
    sql = (
        f"SELECT {', '.join(columns)} FROM {table}"
        f"{_where([f'{column} = ?', *conditions])} ORDER BY date"
    )
    answer = page.answer(store, sql, [value, *params], [table])
    if not answer["data"] and not _has_rows(store, table, column, value):
        raise not_found(missing)
    return answer


def build_router(store: Store, reports: Any, auth: Any, show_location: Any) -> APIRouter:
    """The routes over ``store`` and the report store ``reports`` (``.read(name) -> str | None``).

    ``auth`` is the dependency of every data route; ``show_location(request)`` says whether /health
    names the file or bucket (not to a caller without the token when one is set).
    """
    router = APIRouter()
    data = APIRouter(dependencies=[Depends(auth)])

    @router.get("/health", summary="the storage read and the latest session of each asset")
    def health(request: Request) -> dict[str, Any]:
        assets: dict[str, Any] = {}
        for table, dated in HEALTH_TABLES.items():
            latest = f", max({dated})" if dated else ", NULL"
            try:
                row = store.query(f"SELECT count(*){latest} FROM {table}", (), [table]).rows[0]
            except TableMissingError:
                assets[table] = None
                continue
            assets[table] = {"rows": row[0], "latest": json_value(row[1])}
        storage = store.describe()
        if not show_location(request):
            storage.pop("location", None)
        return {"status": "ok", "storage": storage, "assets": assets}

    @data.get("/symbols", summary="the universe: symbol, name, sector, is_benchmark")
    def symbols(page: PageDep) -> dict[str, Any]:
        # every column: name and sector are there only when the universe file has them
        sql = f"SELECT * FROM {SYMBOLS} ORDER BY symbol"
        return page.answer(store, sql, (), [SYMBOLS])

    @data.get("/prices/{symbol}", summary="a symbol's stored bars, oldest first")
    def prices(
        symbol: str, page: PageDep, start: DateQuery = None, end: DateQuery = None
    ) -> dict[str, Any]:
        sym = normalize_symbol(symbol)
        return _keyed_series(
            store, page, RAW_PRICES, PRICE_COLUMNS, ("symbol", sym), start, end,
            f"no prices stored for {sym}",
        )  # fmt: skip

    @data.get("/indicators/{symbol}", summary="a symbol's indicators, oldest first")
    def indicators(
        symbol: str,
        page: PageDep,
        start: DateQuery = None,
        end: DateQuery = None,
        columns: Annotated[
            str | None,
            Query(description=f"comma-separated, of: {', '.join(INDICATOR_SELECTABLE)}"),
        ] = None,
    ) -> dict[str, Any]:
        sym = normalize_symbol(symbol)
        chosen = list(INDICATOR_SELECTABLE)
        if columns is not None:
            chosen = [c.strip() for c in columns.split(",") if c.strip()]
            unknown = [c for c in chosen if c not in INDICATOR_SELECTABLE]
            if unknown or not chosen:
                raise invalid(
                    f"unknown column(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
                    f"choose from {', '.join(INDICATOR_SELECTABLE)}"
                )
            chosen = list(dict.fromkeys(chosen))
        return _keyed_series(
            store, page, INDICATORS, ["symbol", "date", *chosen], ("symbol", sym), start, end,
            f"no indicators stored for {sym}",
        )  # fmt: skip

    @data.get(
        "/environment",
        summary="a session's market environment (bias A-D and sizing); the latest by default",
    )
    def environment(date: DateQuery = None) -> dict[str, Any]:
        day = parse_date(date, "date")
        if day is None:
            sql = f"SELECT * FROM {ENVIRONMENT} ORDER BY date DESC LIMIT 1"
            result = store.query(sql, (), [ENVIRONMENT])
        else:
            sql = f"SELECT * FROM {ENVIRONMENT} WHERE date = ?"
            result = store.query(sql, [day], [ENVIRONMENT])
        if not result.rows:
            raise not_found(
                f"no market environment stored for {day}" if day else "market_environment is empty"
            )
        return {"data": json_rows(result), "next": None}

    @data.get(
        "/watchlist",
        summary="a session's watchlist (the latest by default); an empty list if nothing passed",
    )
    def watchlist(page: PageDep, date: DateQuery = None) -> dict[str, Any]:
        day = parse_date(date, "date")
        if day is None:
            sql = (
                f"SELECT * FROM {WATCHLIST} WHERE date = (SELECT max(date) FROM {WATCHLIST}) "
                "ORDER BY symbol"
            )
            return page.answer(store, sql, (), [WATCHLIST])
        sql = f"SELECT * FROM {WATCHLIST} WHERE date = ? ORDER BY symbol"
        return page.answer(store, sql, [day], [WATCHLIST])

    @data.get("/backtests/{strategy}/trades", summary="a strategy's round trips")
    def backtest_trades(strategy: str, page: PageDep) -> dict[str, Any]:
        name = _strategy(strategy, STRATEGIES)
        if not _has_rows(store, EQUITY, "strategy", name):
            raise not_found(f"{name} has not been backtested yet")
        sql = f"SELECT * FROM {TRADES} WHERE strategy = ? ORDER BY trade_id"
        return page.answer(store, sql, [name], [TRADES])

    @data.get("/backtests/{strategy}/equity", summary="a strategy's equity at each session's close")
    def backtest_equity(
        strategy: str, page: PageDep, start: DateQuery = None, end: DateQuery = None
    ) -> dict[str, Any]:
        name = _strategy(strategy, STRATEGIES)
        return _keyed_series(
            store, page, EQUITY, ["strategy", "date", "equity"], ("strategy", name), start, end,
            f"{name} has not been backtested yet",
        )  # fmt: skip

    @data.get("/performance", summary="the metrics row of each strategy, user and SPY")
    def performance(page: PageDep) -> dict[str, Any]:
        return page.answer(store, f"SELECT * FROM {METRICS} ORDER BY strategy", (), [METRICS])

    @data.get(
        "/journal/positions",
        summary="open positions of the trade journal, unrealised PnL at each symbol's latest clean close",
    )
    def positions(page: PageDep) -> dict[str, Any]:
        # the position.py rule: sign x shares x (close - entry) - fees, all fees from the entry on
        sql = f"""
            WITH last AS (
                SELECT symbol, max(date) AS last_close_date, arg_max(close, date) AS last_close
                FROM {RAW_PRICES}
                WHERE quarantine IS NULL AND close IS NOT NULL
                  AND symbol IN (SELECT symbol FROM {JOURNAL} WHERE exit_date IS NULL)
                GROUP BY symbol)
            SELECT j.strategy, j.trade_id, j.symbol, j.side, j.setup, j.entry_date,
                   j.entry_price, j.shares, j.fees, l.last_close_date, l.last_close,
                   (CASE WHEN j.side = ? THEN -1 ELSE 1 END) * j.shares
                     * (l.last_close - j.entry_price) - j.fees AS unrealised_pnl
            FROM {JOURNAL} j LEFT JOIN last l USING (symbol)
            WHERE j.exit_date IS NULL
            ORDER BY j.strategy, j.trade_id"""
        return page.answer(store, sql, [SHORT], [JOURNAL, RAW_PRICES])

    @data.get(
        "/journal/pnl",
        summary="realised PnL of the trade journal per exit session and strategy",
    )
    def pnl(page: PageDep, start: DateQuery = None, end: DateQuery = None) -> dict[str, Any]:
        conditions, params = date_range(start, end, "exit_date")
        sql = (
            "SELECT exit_date AS date, strategy, count(*) AS trades, sum(pnl) AS realised_pnl "
            f"FROM {JOURNAL}{_where(['exit_date IS NOT NULL', *conditions])} "
            "GROUP BY exit_date, strategy ORDER BY date, strategy"
        )
        return page.answer(store, sql, params, [JOURNAL])

    @data.get(
        "/reports/{strategy}",
        response_class=HTMLResponse,
        summary="the strategy's self-contained HTML report",
    )
    def report(strategy: str) -> HTMLResponse:
        name = _strategy(strategy, REPORTED)
        html = reports.read(f"{name}.html")
        if html is None:
            raise not_found(f"no report for {name} yet: run performance_report")
        return HTMLResponse(html)

    router.include_router(data)
    return router
