"""fundamentals materialised into a throwaway DuckDB file: snapshots accumulate, never duplicate."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets import resources as resources_module
from trading_assets.assets.analytics import fundamentals
from trading_assets.assets.universe import symbols
from trading_assets.resources import FundamentalsResource, UniverseResource
from trading_assets.sources.sample import SAMPLE_FUNDAMENTALS
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices

BUNDLED_AS_OF = dt.date(2025, 2, 1)
UNIVERSE = "AAPL,MSFT,GEV"


def run(db, source: FundamentalsResource, instance=None, kind="sample"):
    return dg.materialize(
        [symbols, fundamentals],
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "universe": UniverseResource(spec=UNIVERSE, price_source_kind=kind),
            "fundamentals_source": source,
        },
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def stored(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * FROM fundamentals ORDER BY as_of, symbol").df()


def metadata(result) -> dict:
    md = result.asset_materializations_for_node("fundamentals")[0].metadata
    return {k: v.value for k, v in md.items()}


def step_error(result):
    err = result.get_step_failure_events()[0].event_specific_data.error
    while err.cls_name.startswith("Dagster") and err.cause is not None:
        err = err.cause
    return err


@pytest.fixture
def snapshot_dir(tmp_path):
    folder = tmp_path / "snapshots"
    folder.mkdir()
    shutil.copy(SAMPLE_FUNDAMENTALS, folder / SAMPLE_FUNDAMENTALS.name)
    return folder


def test_snapshots_accumulate_and_rematerialising_does_not_duplicate(tmp_path, snapshot_dir):
    db, instance = tmp_path / "t.duckdb", dg.DagsterInstance.ephemeral()
    source = FundamentalsResource(path=str(snapshot_dir))
    first = run(db, source, instance)
    assert first.success
    one = stored(db)
    assert len(one) == 503 and set(one["as_of"].dt.date) == {BUNDLED_AS_OF}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT typeof(as_of) FROM fundamentals LIMIT 1").fetchone()[0] == "DATE"
    md = metadata(first)
    assert (md["snapshots_stored"], md["newest_as_of"]) == (1, "2025-02-01")
    assert (md["universe_stocks_with_known_cap"], md["universe_stocks"]) == (3, 3)

    # a later snapshot arrives (a new file), and the older one's file is gone: both stay stored
    (snapshot_dir / SAMPLE_FUNDAMENTALS.name).unlink()
    later = pd.DataFrame({"symbol": ["AAPL", "MSFT"], "market_cap": [3.1e12, 3.2e12]})
    later.to_csv(snapshot_dir / "fundamentals_2025-07-01.csv", index=False)
    assert run(db, source, instance).success
    two = stored(db)
    assert len(two) == 503 + 2
    assert two.groupby(two["as_of"].dt.date).size().to_dict() == {
        BUNDLED_AS_OF: 503,
        dt.date(2025, 7, 1): 2,
    }
    md = metadata(run(db, source, instance))  # the same snapshot again: idempotent
    pd.testing.assert_frame_equal(stored(db), two)
    assert (md["snapshots_stored"], md["newest_as_of"]) == (2, "2025-07-01")
    assert md["stored_as_of"] == ["2025-02-01", "2025-07-01"]
    assert md["universe_stocks_with_known_cap"] == 2  # GEV is not in the newest snapshot


@pytest.mark.parametrize(
    "text", ["", "symbol,market_cap\n", "symbol,market_cap\nAAPL,a lot\n", "ticker,cap\nAAPL,1\n"]
)
def test_malformed_or_empty_snapshot_is_a_named_error_and_stored_snapshots_stay(tmp_path, text):
    db = tmp_path / "t.duckdb"
    assert run(db, FundamentalsResource()).success
    before = stored(db)
    bad = tmp_path / "fundamentals_2025-07-01.csv"
    bad.write_text(text)
    result = run(db, FundamentalsResource(path=str(bad)))
    assert not result.success
    err = step_error(result)
    assert err.cls_name == "FundamentalsSnapshotError" and str(bad) in err.message
    pd.testing.assert_frame_equal(stored(db), before)


# -- the yahoo price source records a snapshot each day ---------------------------------------


@pytest.fixture
def yahoo(tmp_path):
    """A local Yahoo-format server with real 2025-02-01 caps for AAPL and MSFT (none for GEV)."""
    from trading_assets_tests.yahoo_server import isolated_yfinance_cache, serve_yahoo

    real = pd.read_csv(SAMPLE_FUNDAMENTALS).set_index("symbol")["market_cap"]
    caps = {s: float(real[s]) for s in ("AAPL", "MSFT")}
    prices = shared_prices(["AAPL", "MSFT", "SPY"], "2024-03-01", "2024-03-28")
    with isolated_yfinance_cache(str(tmp_path / "yf")), serve_yahoo(prices, market_caps=caps) as s:
        yield s, caps


def yahoo_source(base_url: str) -> FundamentalsResource:
    return FundamentalsResource(price_source_kind="yahoo", yahoo_base_url=base_url, yahoo_timeout=5)


def test_yahoo_source_stores_one_snapshot_per_session(tmp_path, yahoo, monkeypatch):
    server, caps = yahoo
    db, instance = tmp_path / "t.duckdb", dg.DagsterInstance.ephemeral()
    # Saturday after Good Friday 2024: the latest session is Thursday 2024-03-28.
    monkeypatch.setattr(resources_module, "exchange_today", lambda: dt.date(2024, 3, 30))
    first = run(db, yahoo_source(server.base_url), instance, kind="yahoo")
    assert first.success
    md = metadata(first)
    assert md["yahoo_as_of"] == "2024-03-28"
    assert md["market_caps_failed"] == 1 and list(md["failed"]) == ["GEV"]
    monkeypatch.setattr(resources_module, "exchange_today", lambda: dt.date(2024, 4, 1))
    assert run(db, yahoo_source(server.base_url), instance, kind="yahoo").success
    assert all(r.host.endswith("yahoo.com") for r in server.requests)
    table = stored(db)
    fetched = table[table["source"] == "yahoo"]
    assert fetched.groupby(fetched["as_of"].dt.date)["symbol"].apply(list).to_dict() == {
        dt.date(2024, 3, 28): ["AAPL", "MSFT"],
        dt.date(2024, 4, 1): ["AAPL", "MSFT"],
    }
    assert fetched.set_index("symbol")["market_cap"].to_dict() == caps
    # the snapshot file (bundled by default) is stored beside the daily ones
    assert (table["source"] == "file").sum() == 503


def test_yahoo_network_failure_is_a_named_error_and_stored_snapshots_stay(tmp_path, yahoo):
    server, _ = yahoo
    db = tmp_path / "t.duckdb"
    assert run(db, yahoo_source(server.base_url), kind="yahoo").success
    before = stored(db)
    dead = "http://127.0.0.1:9"  # nothing listens there: every request is refused
    result = run(db, yahoo_source(dead), kind="yahoo")
    assert not result.success
    err = step_error(result)
    assert err.cls_name == "NoMarketCapsFetchedError"
    assert "ConnectionError" in err.message and "stored snapshots are unchanged" in err.message
    pd.testing.assert_frame_equal(stored(db), before)
