"""Shared fixtures: the real market data beside the project, and a throwaway DAGSTER_HOME.

The shared market data and TA-Lib are requirements of the suite, not options: the TA-Lib parity
tests and every test on real prices need them. When either is missing the run stops at once with a
failure (never a skip), so a green run always includes them.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from trading_assets_tests.shared_data import PRICES_FILE, missing_shared_data, shared_market_dir
from trading_assets_tests.shared_data import (
    PROJECT_ROOT as PROJECT_ROOT,  # the tests import it from here
)

SHARED_MARKET = shared_market_dir()
SHARED_PRICES = SHARED_MARKET / PRICES_FILE


def missing_requirements() -> list[str]:
    """What the suite needs but this machine lacks, each as a message saying how to fix it."""
    problems = [problem] if (problem := missing_shared_data()) else []
    try:
        import talib  # noqa: F401
    except ImportError as exc:
        problems.append(
            f"TA-Lib is not importable ({exc}): it is a dev dependency the indicator parity tests "
            "compare against; install it with pip install -e '.[dev]'."
        )
    return problems


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = missing_requirements()
    if problems:
        pytest.exit(
            "cannot run the tests: " + " ".join(problems), returncode=pytest.ExitCode.TESTS_FAILED
        )


def shared_prices(
    symbols: list[str], start: str | None = None, end: str | None = None
) -> pd.DataFrame:
    """Real rows of the shared prices_daily.parquet for a few symbols (date as datetime.date)."""
    frame = pq.read_table(SHARED_PRICES, filters=[("symbol", "in", symbols)]).to_pandas()
    dates = pd.to_datetime(frame["date"])
    keep = pd.Series(True, index=frame.index)
    if start:
        keep &= dates >= pd.Timestamp(start)
    if end:
        keep &= dates <= pd.Timestamp(end)
    frame = frame[keep]
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _isolated_dagster_home(tmp_path_factory, monkeypatch):
    """Never touch a developer's DAGSTER_HOME or ./data from a test."""
    home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))


# moto's server (a real S3/SNS/SES/Secrets Manager endpoint on 127.0.0.1) for the AWS tests.
from trading_assets_tests.moto_server import aws_env as aws_env  # noqa: E402
from trading_assets_tests.moto_server import moto_endpoint as moto_endpoint  # noqa: E402
