"""Faults at the price sources, through real materialisations of raw_prices (issue 7, points 3-4).

Yahoo: real yfinance against the local Yahoo-format server (yahoo_server.py) answering 429, 500
or malformed JSON for one symbol, or a closed port for all. Each retry must be a WARNING event in
the run's event log (read back from the DagsterInstance, as the UI reads it) naming the batch,
the attempt, the wait and the error; the symbol then fails with the reason and keeps its stored
rows. Retry waits are real but short (``retry_base_delay``).

Files: a header-only CSV, a missing column, a Parquet file cut in half. A directory file fails its
symbol alone; a long file fails the run. Either way the error names the file and the problem, and
stored rows stay as they were.
"""

from __future__ import annotations

import logging
import re
import shutil

import dagster as dg
import pandas as pd
import pytest

from trading_assets import checks
from trading_assets.assets.prices import NoPricesFetchedError, raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.core.prices import PriceDataError
from trading_assets.resources import FundamentalsResource, PriceSourceResource, UniverseResource
from trading_assets.sources.files import YAHOO_EXPORT_COLUMNS
from trading_assets.sources.yahoo import JITTER_FLOOR
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests import test_assets_fundamentals
from trading_assets_tests.conftest import shared_prices
from trading_assets_tests.test_assets_ingest import (
    RANGE,
    check_results,
    range_tags,
    run,
    step_error,
    table,
    write_prices,
)
from trading_assets_tests.test_files_source import yahoo_export
from trading_assets_tests.yahoo_server import Fault, isolated_yfinance_cache, serve_yahoo

pytestmark = pytest.mark.filterwarnings(
    # yfinance 1.7 itself (history.py) casts an all-None volume column (^VIX) with fillna.
    "ignore:Downcasting object dtype arrays:FutureWarning"
)

UNIVERSE = "AAPL,MSFT"
ALL = ["AAPL", "MSFT", "QQQ", "SPY", "^VIX"]  # the universe plus the benchmarks, as fetched
BROKEN = "MSFT"
SERVED = ("2024-03-01", "2024-04-30")  # covers RANGE and the 5-session overlap before it
MAX_RETRIES = 2
BASE_DELAY = 0.1  # seconds before the first retry: real waits of 0.05-0.1 s, then 0.1-0.2 s
BATCH = "batch 1/1 (5 symbols: AAPL, MSFT, QQQ, SPY, ^VIX)"
# raw_prices fetches each batch in a step of its own; its retries are that step's WARNINGs.
FETCH_STEP = "raw_prices.fetch_batch[0]"
RETRY = re.compile(
    rf"yahoo {re.escape(BATCH)}: attempt (\d) failed for (\d) symbol\(s\): (.+) \((.+)\); "
    r"retry (\d)/(\d) in ([\d.]+) s"
)


def run_warnings(instance: dg.DagsterInstance, result, step: str) -> list[str]:
    """The WARNING messages a step logged, from the run's event log in the instance."""
    return [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event is None and entry.level == logging.WARNING and entry.step_key == step
    ]


def listed_reasons(markdown: str) -> dict[str, str]:
    """symbol -> reason from the all_symbols_fetched check's markdown table."""
    rows = [line.strip("| ").split("|") for line in markdown.splitlines()[2:]]
    return {symbol.strip(): reason.strip() for symbol, reason in rows}


def stored_rows(db, symbol: str) -> pd.DataFrame:
    return table(db).query("symbol == @symbol").reset_index(drop=True)


# -- Yahoo -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yahoo(tmp_path_factory):
    """The local Yahoo server (real rows) with yfinance's caches in a temp dir."""
    cache = tmp_path_factory.mktemp("yfinance-cache")
    served = shared_prices(ALL, *SERVED)
    with isolated_yfinance_cache(str(cache)), serve_yahoo(served) as server:
        yield server


def run_yahoo(db, base_url: str, instance: dg.DagsterInstance):
    return dg.materialize(
        [symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(
                kind="yahoo",
                yahoo_base_url=base_url,
                max_retries=MAX_RETRIES,
                retry_base_delay=BASE_DELAY,
                yahoo_timeout=5,
            ),
            "universe": UniverseResource(spec=UNIVERSE, price_source_kind="yahoo"),
        },
        tags=range_tags(*RANGE),
        instance=instance,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def yahoo_store(yahoo, tmp_path_factory):
    """A store holding RANGE as fetched from the healthy server."""
    db = tmp_path_factory.mktemp("yahoo-store") / "t.duckdb"
    assert run_yahoo(db, yahoo.base_url, dg.DagsterInstance.ephemeral()).success
    return db


@pytest.fixture
def db(yahoo_store, tmp_path):
    copy = tmp_path / "t.duckdb"
    shutil.copy(yahoo_store, copy)
    return copy


def assert_retry_warnings(warnings: list[str], symbols: list[str], reason: str) -> None:
    """One WARNING per retry naming batch, attempt, symbols, error and wait; then the give-up."""
    retries = [RETRY.fullmatch(w) for w in warnings if "retry" in w]
    assert len(retries) == MAX_RETRIES and all(retries), warnings
    for n, match in enumerate(retries, 1):
        attempt, count, error, failed, retry, of, wait = match.groups()
        assert (int(attempt), int(retry), int(of)) == (n, n, MAX_RETRIES)
        assert int(count) == len(symbols) and failed == ", ".join(symbols)
        assert error.startswith(reason)
        cap = BASE_DELAY * 2 ** (n - 1)  # exponential backoff, jittered into [cap/2, cap)
        assert cap * JITTER_FLOOR - 0.005 <= float(wait) <= cap + 0.005
    gave_up = [w for w in warnings if "gave up" in w]
    assert len(gave_up) == 1, warnings
    assert gave_up[0].startswith(
        f"yahoo {BATCH}: gave up on {len(symbols)} symbol(s) after {MAX_RETRIES + 1} attempt(s): "
        f"{reason}"
    )
    assert gave_up[0].endswith(f"({', '.join(symbols)}); they are listed as failed")


@pytest.mark.parametrize(
    ("fault", "reason", "status", "requests_per_attempt"),
    [
        # yfinance itself asks once more after an HTTP error, so each attempt sends two requests.
        (Fault.rate_limit(times=None), "rate limited by Yahoo (HTTP 429)", 429, 2),
        (Fault.server_error(), "Yahoo server error (HTTP 500)", 500, 2),
        (Fault.malformed(), "malformed response from Yahoo (HTTP 200, not JSON)", 200, 1),
    ],
    ids=["http-429", "http-500", "malformed-json"],
)
def test_a_failing_yahoo_symbol_is_retried_visibly_then_listed_and_keeps_its_rows(
    yahoo, db, fault, reason, status, requests_per_attempt
):
    before = stored_rows(db, BROKEN)
    instance = dg.DagsterInstance.ephemeral()
    yahoo.set_fault(BROKEN, fault)
    yahoo.clear_log()
    try:
        result = run_yahoo(db, yahoo.base_url, instance)
    finally:
        yahoo.set_fault(BROKEN, None)
    assert result.success  # one failed symbol never stops the universe

    assert_retry_warnings(run_warnings(instance, result, FETCH_STEP), [BROKEN], reason)
    # Every attempt reached the server (no cached answer replayed); the healthy symbols were
    # asked once, not again with each retry.
    broken = yahoo.chart_requests(BROKEN)
    assert [r.status for r in broken] == [status] * (MAX_RETRIES + 1) * requests_per_attempt
    assert len(yahoo.chart_requests("AAPL")) == 1

    fetched = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert check_results(result)[checks.RAW_PRICES_ALL_FETCHED] is False
    listed = fetched[checks.RAW_PRICES_ALL_FETCHED].metadata["failed_symbols_listed"].value
    assert listed_reasons(listed) == {
        BROKEN: f"{reason}; gave up after {MAX_RETRIES + 1} attempt(s)"
    }
    pd.testing.assert_frame_equal(stored_rows(db, BROKEN), before)
    assert set(stored_rows(db, "AAPL")["date"].astype(str)) >= {RANGE[0], RANGE[1]}


def test_yahoo_unreachable_is_retried_visibly_then_fails_and_the_store_is_unchanged(yahoo, db):
    with serve_yahoo(shared_prices(["AAPL"], *SERVED)) as closed:
        pass  # stopped on exit: its port now refuses connections
    before = table(db)
    instance = dg.DagsterInstance.ephemeral()
    result = run_yahoo(db, closed.base_url, instance)
    assert not result.success

    reason = "network error: ConnectionError: Failed to perform, curl: (7) Failed to connect"
    assert_retry_warnings(run_warnings(instance, result, FETCH_STEP), ALL, reason)
    err = step_error(result)
    assert err.cls_name == NoPricesFetchedError.__name__
    for symbol in ALL:
        assert f"{symbol}: {reason}" in err.message
    assert f"gave up after {MAX_RETRIES + 1} attempt(s)" in err.message
    pd.testing.assert_frame_equal(table(db), before)


def test_market_cap_failures_are_warnings_in_the_run_log(tmp_path):
    """fundamentals with the yahoo source and Yahoo unreachable: no retries there (one request
    per symbol), but the run says at once which request failed and why."""
    instance = dg.DagsterInstance.ephemeral()
    dead = "http://127.0.0.1:9"  # nothing listens there
    source = FundamentalsResource(price_source_kind="yahoo", yahoo_base_url=dead, yahoo_timeout=5)
    result = test_assets_fundamentals.run(tmp_path / "t.duckdb", source, instance, kind="yahoo")
    assert not result.success
    warnings = run_warnings(instance, result, "fundamentals")
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("yahoo market cap of AAPL failed: ConnectionError")
    assert "stops after 10 failures in a row" in warnings[0]


# -- Files -------------------------------------------------------------------------------------


@pytest.fixture
def export_dir(tmp_path):
    """A directory of real Yahoo-export CSVs (Adj Close = Close), one per symbol."""
    folder = tmp_path / "exports"
    folder.mkdir()
    for symbol, rows in shared_prices(ALL, *SERVED).groupby("symbol"):
        yahoo_export(rows, 1.0).to_csv(folder / f"{symbol}.csv", index=False)
    return folder


@pytest.mark.parametrize(
    ("broken_csv", "problem"),
    [
        (",".join(YAHOO_EXPORT_COLUMNS) + "\n", "no rows"),
        ("Date,Open,High,Low,Adj Close,Volume\n2024-03-25,1,1,1,1,1\n", "missing column 'Close'"),
    ],
    ids=["header-only", "missing-column"],
)
def test_a_bad_file_in_a_directory_fails_its_symbol_alone(
    tmp_path, export_dir, broken_csv, problem
):
    db = tmp_path / "t.duckdb"
    assert run(db, universe=UNIVERSE, kind="files", path=str(export_dir)).success
    before, aapl_before = stored_rows(db, BROKEN), stored_rows(db, "AAPL")
    path = export_dir / f"{BROKEN}.csv"
    path.write_text(broken_csv)
    result = run(db, universe=UNIVERSE, kind="files", path=str(export_dir))
    assert result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evals[checks.RAW_PRICES_ALL_FETCHED].passed
    listed = evals[checks.RAW_PRICES_ALL_FETCHED].metadata["failed_symbols_listed"].value
    assert listed_reasons(listed)[BROKEN].startswith(f"{path}: {problem}")
    assert set(listed_reasons(listed)) == {BROKEN}
    pd.testing.assert_frame_equal(stored_rows(db, BROKEN), before)
    # the other symbols were fetched and written again
    aapl = stored_rows(db, "AAPL")
    assert (aapl["fetched_at"] > aapl_before["fetched_at"]).all()
    pd.testing.assert_frame_equal(
        aapl.drop(columns="fetched_at"), aapl_before.drop(columns="fetched_at")
    )


def header_only_csv(path, real):
    real.head(0).to_csv(path, index=False)


def without_close(path, real):
    write_prices(path, real.drop(columns="close"))


def cut_in_half(path, real):
    write_prices(path, real)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "damage", "problem"),
    [
        ("prices.csv", header_only_csv, "no rows"),
        ("prices.parquet", without_close, "missing column 'close';"),
        ("prices.parquet", cut_in_half, "unreadable price file: "),
    ],
    ids=["header-only-csv", "missing-column", "truncated-parquet"],
)
def test_a_bad_long_file_fails_the_run_naming_file_and_problem(tmp_path, name, damage, problem):
    db, good = tmp_path / "t.duckdb", tmp_path / "good.parquet"
    real = shared_prices(ALL, *SERVED)
    write_prices(good, real)
    assert run(db, universe=UNIVERSE, kind="files", path=str(good)).success
    before = table(db)
    bad = tmp_path / name
    damage(bad, real)
    result = run(db, universe=UNIVERSE, kind="files", path=str(bad))
    assert not result.success
    err = step_error(result)
    assert err.cls_name == PriceDataError.__name__
    assert err.message.startswith(f"{PriceDataError.__module__}.PriceDataError: {bad}: {problem}")
    pd.testing.assert_frame_equal(table(db), before)
