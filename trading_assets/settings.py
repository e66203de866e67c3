"""The configuration interface: environment variable names scripts and people rely on, with defaults.

Documented in README "Configuration". Read once at definitions load time.
"""

from __future__ import annotations

import os

DEPLOYMENT = "TRADING_ASSETS_DEPLOYMENT"  # local (default) | prod
DUCKDB_PATH = "TRADING_ASSETS_DUCKDB_PATH"  # the DuckDB file of the local deployment
PRICE_SOURCE = "TRADING_ASSETS_PRICE_SOURCE"  # sample (local default) | files | yahoo
PRICES_PATH = "TRADING_ASSETS_PRICES_PATH"  # input of the files source
UNIVERSE = "TRADING_ASSETS_UNIVERSE"  # CSV path with a symbol column, or "AAPL,MSFT,..."
CALENDAR = "TRADING_ASSETS_CALENDAR"  # exchange_calendars code: XNYS (default), XASX, XLON, ...
START_DATE = "TRADING_ASSETS_START_DATE"  # first partition, YYYY-MM-DD
# CSV with symbol, market_cap; default: bundled
FUNDAMENTALS_PATH = "TRADING_ASSETS_FUNDAMENTALS_PATH"
# CSV of per-session STDEV threshold multipliers
MULTIPLIERS_PATH = "TRADING_ASSETS_MULTIPLIERS_PATH"
TRADES_PATH = "TRADING_ASSETS_TRADES_PATH"  # the user's trades CSV for trade_journal (optional)
REPORTS_DIR = "TRADING_ASSETS_REPORTS_DIR"  # where performance_report writes its HTML (local)
# optional mirror/proxy of Yahoo's API (tests use a local one)
YAHOO_BASE_URL = "TRADING_ASSETS_YAHOO_BASE_URL"
# prod (Parquet on S3); endpoint and credentials come from the standard AWS chain (AWS_ENDPOINT_URL, ...)
S3_BUCKET = "TRADING_ASSETS_S3_BUCKET"  # required for prod
S3_PREFIX = "TRADING_ASSETS_S3_PREFIX"  # optional key prefix inside the bucket
# alerts and failure notices
NOTIFIER = "TRADING_ASSETS_NOTIFIER"  # log (default) | sns | ses
SNS_TOPIC_ARN = "TRADING_ASSETS_SNS_TOPIC_ARN"  # sns: the topic
SES_SENDER = "TRADING_ASSETS_SES_FROM"  # ses: the verified sender address
SES_RECIPIENTS = "TRADING_ASSETS_SES_TO"  # ses: comma-separated recipients
SECRET_ID = "TRADING_ASSETS_SECRET_ID"  # optional Secrets Manager secret (JSON) with the targets
# market_analysis' LLM (trading_assets/llm): none (default, no call) | openai | bedrock
LLM = "TRADING_ASSETS_LLM"
LLM_MODEL = "TRADING_ASSETS_LLM_MODEL"  # the model id (bedrock: a model or inference profile id)
LLM_BASE_URL = "TRADING_ASSETS_LLM_BASE_URL"  # openai: any OpenAI-compatible endpoint (.../v1)
LLM_API_KEY = "OPENAI_API_KEY"  # openai: the bearer key
LLM_PRICE_INPUT = "TRADING_ASSETS_LLM_PRICE_PER_1K_INPUT"  # USD per 1,000 input tokens
LLM_PRICE_OUTPUT = "TRADING_ASSETS_LLM_PRICE_PER_1K_OUTPUT"  # USD per 1,000 output tokens
# the read API (trading-assets api)
API_TOKEN = "TRADING_ASSETS_API_TOKEN"  # optional bearer token every data endpoint then requires
API_CORS_ORIGINS = "TRADING_ASSETS_API_CORS_ORIGINS"  # comma-separated origins, default *

DEFAULT_DEPLOYMENT = "local"
DEFAULT_DUCKDB_PATH = "data/trading_assets.duckdb"
DEFAULT_REPORTS_DIR = "reports"
DEFAULT_PRICE_SOURCE = "sample"
DEFAULT_CALENDAR = "XNYS"
# The shared real data starts on the first session of 2000; a full-history backfill needs it.
DEFAULT_START_DATE = "2000-01-03"

DEPLOYMENTS = ("local", "prod")
PRICE_SOURCES = ("sample", "files", "yahoo")
NOTIFIERS = ("log", "sns", "ses")
DEFAULT_NOTIFIER = "log"
DEFAULT_PROD_PRICE_SOURCE = "yahoo"
LLMS = ("none", "openai", "bedrock")
DEFAULT_LLM = "none"


class ConfigurationError(ValueError):
    """A TRADING_ASSETS_* variable has a value the project cannot use."""


def env(name: str, default: str | None = None) -> str | None:
    """The variable's value with surrounding blanks removed; unset or blank gives ``default``."""
    value = os.environ.get(name, "").strip()
    return value or default


def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env(name, default)
    assert value is not None
    if value not in allowed:
        raise ConfigurationError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value
