"""The API's errors as HTTP answers: bad input is a 4xx naming the problem, never a 500.

- an invalid symbol (core/symbols.py's pattern), a bad date, an unknown column, a page too large:
  422 with ``{"detail": "..."}`` (FastAPI's own validation errors keep its list format);
- an unknown symbol, strategy or session, a table or report not materialised yet: 404;
- no store yet, or a file locked with nothing earlier to answer from: 503 with Retry-After;
- a missing or wrong bearer token: 401 with ``WWW-Authenticate: Bearer``;
- a stored table without the columns the API selects (a store written by another version): 500
  naming DuckDB's error, as JSON.
"""

from __future__ import annotations

import duckdb
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from trading_assets.api.store import StoreUnavailableError, TableMissingError
from trading_assets.core.symbols import InvalidSymbolError


class ApiError(Exception):
    """An answer other than 200, with the reason a person reads."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def not_found(detail: str) -> ApiError:
    return ApiError(404, detail)


def invalid(detail: str) -> ApiError:
    return ApiError(422, detail)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(InvalidSymbolError)
    async def _invalid_symbol(_request: Request, exc: InvalidSymbolError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(TableMissingError)
    async def _table_missing(_request: Request, exc: TableMissingError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreUnavailableError)
    async def _unavailable(_request: Request, exc: StoreUnavailableError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)

    @app.exception_handler(duckdb.Error)
    async def _query_failed(_request: Request, exc: duckdb.Error) -> JSONResponse:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return JSONResponse(
            {"detail": f"the stored tables could not answer: {type(exc).__name__}: {first}"},
            status_code=500,
        )
