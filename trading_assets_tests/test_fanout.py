"""raw_prices' fetch fans out: one step per batch of symbols (issue 9, "Past one machine").

Real yfinance against the local Yahoo-format server, batches of two symbols. In process: one
`raw_prices.fetch_batch[i]` step per batch, each asking the server for its own symbols only; the
table equals a one-batch fetch's. A batch the server fails, or whose fetch raises, is listed as
failed symbol by symbol while the other batches' rows are stored. Under the multiprocess
executor the batch steps run in processes of their own and store the same table.
"""

from __future__ import annotations

import logging
import os
import re

import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets import checks
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.resources import PriceSourceResource, UniverseResource
from trading_assets.sources.base import FetchResult
from trading_assets.sources.files import FilesSource
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices
from trading_assets_tests.test_assets_ingest import RANGE, range_tags, step_error, write_prices
from trading_assets_tests.test_source_faults import listed_reasons
from trading_assets_tests.yahoo_server import Fault, isolated_yfinance_cache, serve_yahoo

pytestmark = pytest.mark.filterwarnings(
    # yfinance 1.7 itself (history.py) casts an all-None volume column (^VIX) with fillna.
    "ignore:Downcasting object dtype arrays:FutureWarning"
)

UNIVERSE = "AAPL,MSFT,NVDA"
ALL = ["AAPL", "MSFT", "NVDA", "QQQ", "SPY", "^VIX"]  # the universe plus the benchmarks
SERVED = ("2024-03-01", "2024-04-30")
BATCH_SIZE = 2
FETCH_STEP = re.compile(r"raw_prices\.fetch_batch\[(\d+)\]")


@pytest.fixture(scope="module")
def yahoo(tmp_path_factory):
    cache = tmp_path_factory.mktemp("yfinance-cache")
    with isolated_yfinance_cache(str(cache)), serve_yahoo(shared_prices(ALL, *SERVED)) as server:
        yield server


def yahoo_source(base_url: str, batch_size: int = BATCH_SIZE, **extra) -> PriceSourceResource:
    return PriceSourceResource(
        kind="yahoo", yahoo_base_url=base_url, batch_size=batch_size, yahoo_timeout=5, **extra
    )


def materialize(db, source: PriceSourceResource, instance=None):
    return dg.materialize(
        [symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": source,
            "universe": UniverseResource(spec=UNIVERSE, price_source_kind=source.kind),
        },
        tags=range_tags(*RANGE),
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def stored(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.execute("SELECT * FROM raw_prices ORDER BY symbol, date").df()
    return frame.drop(columns="fetched_at")


def fetch_steps(result) -> dict[int, str]:
    """batch index -> step key, for the fetch steps that succeeded."""
    return {
        int(m.group(1)): e.step_key
        for e in result.get_step_success_events()
        if (m := FETCH_STEP.fullmatch(e.step_key))
    }


def test_one_step_per_batch_each_fetching_its_own_symbols_and_the_same_table(yahoo, tmp_path):
    one = tmp_path / "one.duckdb"
    assert materialize(one, yahoo_source(yahoo.base_url, batch_size=100)).success
    yahoo.clear_log()
    instance = dg.DagsterInstance.ephemeral()
    fanned = tmp_path / "fanned.duckdb"
    result = materialize(fanned, yahoo_source(yahoo.base_url), instance)
    assert result.success
    assert sorted(fetch_steps(result)) == [0, 1, 2]  # six symbols in batches of two
    # Each step asked for its own two symbols, logged under its own step key.
    requested = {}
    for entry in instance.all_logs(result.run_id):
        found = re.search(r"yahoo batch (\d)/3 \(2 symbols: (\S+), (\S+)\)", entry.user_message)
        if entry.dagster_event is None and found:
            step = FETCH_STEP.fullmatch(entry.step_key or "")
            assert step and int(step.group(1)) + 1 == int(found.group(1)), entry.step_key
            requested[int(found.group(1))] = {found.group(2), found.group(3)}
    assert len(requested) == 3 and set().union(*requested.values()) == set(ALL)
    assert {r.symbol for r in yahoo.chart_requests(kind="history")} == set(ALL)
    assert len(yahoo.chart_requests("AAPL", kind="history")) == 1  # asked once, by its step
    pd.testing.assert_frame_equal(stored(fanned), stored(one))
    md = result.asset_materializations_for_node("raw_prices")[0].metadata
    observed = result.asset_observations_for_node("raw_prices")
    numbers = {**md, **(observed[0].metadata if observed else {})}
    assert numbers["fetch_batches"].value == 3 and numbers["symbols_fetched"].value == len(ALL)


def test_a_batch_the_source_fails_lists_its_symbols_and_the_other_batches_are_stored(
    yahoo, tmp_path
):
    db = tmp_path / "t.duckdb"
    broken = ALL[2:4]  # the whole second batch: batches are the sorted symbols, two by two
    for symbol in broken:
        yahoo.set_fault(symbol, Fault.server_error())
    try:
        result = materialize(db, yahoo_source(yahoo.base_url, max_retries=0))
    finally:
        for symbol in broken:
            yahoo.set_fault(symbol, None)
    assert result.success  # a failed batch never stops the universe
    assert sorted(fetch_steps(result)) == [0, 1, 2]
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    listed = evals[checks.RAW_PRICES_ALL_FETCHED].metadata["failed_symbols_listed"].value
    assert listed_reasons(listed) == dict.fromkeys(
        broken, "Yahoo server error (HTTP 500); gave up after 1 attempt(s)"
    )
    assert sorted(stored(db).symbol.unique()) == sorted(set(ALL) - set(broken))


class RaisingFiles:
    """The files source, except that a fetch including one of ``failing`` raises."""

    name = "files"

    def __init__(self, path, failing):
        self.source, self.failing = FilesSource(path), set(failing)

    def fetch(self, symbols, start, end) -> FetchResult:
        if self.failing & set(symbols):
            raise ConnectionResetError("connection reset by peer")
        return self.source.fetch(symbols, start, end)


class RaisingFilesResource(PriceSourceResource):
    """A files source split into batches of two (as yahoo's would be), some of which raise."""

    failing: list[str] = []

    def fetch_batches(self, symbols):
        return [symbols[i : i + BATCH_SIZE] for i in range(0, len(symbols), BATCH_SIZE)]

    def build(self):
        return RaisingFiles(self.path, self.failing)


def test_a_batch_whose_fetch_raises_fails_its_symbols_alone_and_all_failing_fails_the_run(
    tmp_path,
):
    path = tmp_path / "p.parquet"
    write_prices(path, shared_prices(ALL, *SERVED))
    db = tmp_path / "t.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    source = RaisingFilesResource(kind="files", path=str(path), failing=["NVDA"])
    result = materialize(db, source, instance)
    assert result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    listed = listed_reasons(
        evals[checks.RAW_PRICES_ALL_FETCHED].metadata["failed_symbols_listed"].value
    )
    reason = "batch 2/3 failed: ConnectionResetError: connection reset by peer"
    assert listed == {"NVDA": reason, "QQQ": reason}
    assert sorted(stored(db).symbol.unique()) == ["AAPL", "MSFT", "SPY", "^VIX"]
    warnings = [
        (e.step_key, e.user_message)
        for e in instance.all_logs(result.run_id)
        if e.dagster_event is None and e.level == logging.WARNING
    ]
    assert warnings == [
        ("raw_prices.fetch_batch[1]", f"files batch 2/3 (2 symbols: NVDA, QQQ): {reason}; "
         "its symbols are listed as failed")
    ]  # fmt: skip

    # Every batch raising is the source failing, not three batches: the run fails with its
    # error, and the store keeps what it had.
    before = stored(db)
    every = RaisingFilesResource(kind="files", path=str(path), failing=ALL)
    result = materialize(db, every)
    assert not result.success
    err = step_error(result)
    assert err.cls_name == "ConnectionResetError" and "connection reset by peer" in err.message
    pd.testing.assert_frame_equal(stored(db), before)


# -- the multiprocess executor ------------------------------------------------------------------


def fanout_job() -> dg.JobDefinition:
    """symbols + raw_prices under the multiprocess executor, resources set by the run config
    (a reconstructable job: each step process imports this module)."""
    defs = dg.Definitions(
        assets=[symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager.configure_at_launch(),
            "price_source": PriceSourceResource.configure_at_launch(),
            "universe": UniverseResource.configure_at_launch(),
        },
        jobs=[
            dg.define_asset_job(
                "fanout", selection=[symbols, raw_prices], executor_def=dg.multiprocess_executor
            )
        ],
    )
    return defs.resolve_job_def("fanout")


@pytest.mark.slow
def test_the_multiprocess_executor_fetches_batches_in_their_own_processes_same_table(
    yahoo, tmp_path, monkeypatch
):
    in_process = tmp_path / "in_process.duckdb"
    assert materialize(in_process, yahoo_source(yahoo.base_url)).success
    # The step processes start fresh: their yfinance caches must not be the developer's.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    db = tmp_path / "multiprocess.duckdb"
    run_config = {
        "execution": {"config": {"max_concurrent": 3}},
        "resources": {
            "io_manager": {"config": {"database": str(db)}},
            "price_source": {
                "config": {
                    "kind": "yahoo",
                    "yahoo_base_url": yahoo.base_url,
                    "batch_size": BATCH_SIZE,
                    "yahoo_timeout": 5,
                }
            },
            "universe": {"config": {"spec": UNIVERSE, "price_source_kind": "yahoo"}},
        },
    }
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        result = dg.execute_job(
            dg.reconstructable(fanout_job),
            instance=instance,
            run_config=run_config,
            tags=range_tags(*RANGE),
        )
        assert result.success
        starts = {
            e.step_key: e.pid
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_START
        }
    fetch_pids = {pid for step, pid in starts.items() if FETCH_STEP.fullmatch(step)}
    assert len([s for s in starts if FETCH_STEP.fullmatch(s)]) == 3
    assert len(fetch_pids) == 3 and os.getpid() not in fetch_pids  # a process per batch step
    pd.testing.assert_frame_equal(stored(db), stored(in_process))
