"""The read API's FastAPI application: the store, the report store, CORS and the bearer token.

``create_app(store, reports, token=..., cors_origins=...)`` builds it from its parts (the tests);
``app_from_settings()`` from the deployment's variables (``trading-assets api`` through uvicorn).

Auth: with ``TRADING_ASSETS_API_TOKEN`` set every data route needs ``Authorization: Bearer
<token>`` (compared with hmac.compare_digest; missing or wrong -> 401). ``/health``, ``/docs``
and ``/openapi.json`` stay open, so a load balancer's probe and a reader of the schema need no
secret; without the token ``/health`` does not name the file or bucket it reads.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from trading_assets.api.errors import ApiError, install_handlers
from trading_assets.api.routes import build_router
from trading_assets.api.store import Store, StoreUnavailableError, store_from_settings

TITLE = "trading_assets read API"
BEARER = "bearer"


class ReportReader:
    """A report store's ``read``, with an unreachable store answered as 503, not 500."""

    def __init__(self, report_store: Any):
        self.report_store = report_store

    def read(self, name: str) -> str | None:
        try:
            return self.report_store.read(name)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot read report {name}: {exc}") from exc
        except Exception as exc:  # botocore's client errors (no bucket, no credentials)
            if type(exc).__module__.startswith(("botocore", "boto3")):
                raise StoreUnavailableError(
                    f"cannot read report {name}: {type(exc).__name__}: {exc}"
                ) from exc
            raise


def _presented_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != BEARER or not credentials.strip():
        return None
    return credentials.strip()


def create_app(
    store: Store,
    report_store: Any,
    *,
    token: str | None = None,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The API over ``store`` and ``report_store`` (a ReportStoreResource or its S3 subclass)."""
    expected = token.encode("utf-8") if token else None

    def authorized(request: Request) -> bool:
        if expected is None:
            return True
        presented = _presented_token(request)
        # header values arrive decoded as latin-1: back to the bytes the client sent
        return presented is not None and hmac.compare_digest(presented.encode("latin-1"), expected)

    def require_token(request: Request) -> None:
        if not authorized(request):
            raise ApiError(
                401,
                "missing or wrong bearer token (Authorization: Bearer <TRADING_ASSETS_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title=TITLE,
        description="Read-only JSON over the tables the trading_assets graph stored. See docs/api.md.",
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins if cors_origins is not None else ["*"],
        allow_methods=["GET"],
        allow_headers=["Authorization"],
    )
    install_handlers(app)
    app.include_router(build_router(store, ReportReader(report_store), require_token, authorized))
    app.router.on_shutdown.append(store.close)
    return app


def app_from_settings(*, direct: bool = False) -> FastAPI:
    """The API over the deployment's store and reports, configured by TRADING_ASSETS_* variables."""
    from trading_assets import settings
    from trading_assets.cli import reports_dir
    from trading_assets.resources import ReportStoreResource

    store = store_from_settings(direct=direct)
    if store.describe()["kind"] == "s3":
        from trading_assets.storage.s3_reports import S3ReportStoreResource

        reports: Any = S3ReportStoreResource(bucket=store.bucket, prefix=store.prefix)
    else:
        reports = ReportStoreResource(directory=str(reports_dir()))
    origins = settings.env(settings.API_CORS_ORIGINS)
    return create_app(
        store,
        reports,
        token=settings.env(settings.API_TOKEN),
        cors_origins=[o.strip() for o in origins.split(",") if o.strip()] if origins else None,
    )


def direct_app_from_settings() -> FastAPI:
    """As app_from_settings, opening the DuckDB file per request (benchmarks/bench_api.py)."""
    return app_from_settings(direct=True)


def serve(host: str, port: int, *, direct: bool = False) -> int:
    """``trading-assets api``: uvicorn serving the API until interrupted."""
    import uvicorn

    factory = "direct_app_from_settings" if direct else "app_from_settings"
    uvicorn.run(f"trading_assets.api.app:{factory}", factory=True, host=host, port=port)
    return 0
