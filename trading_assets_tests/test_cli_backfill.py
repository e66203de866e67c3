"""The README's CLI range backfill, run as a subprocess against a persistent DAGSTER_HOME."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets_tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow
RANGE = "2024-01-02...2024-03-28"


def backfill(env, select="symbols,raw_prices"):
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "trading_assets.definitions",
           "--select", select, "--partition-range", RANGE]
    return subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def test_cli_range_backfill_runs_once_and_rerun_is_identical(tmp_path):
    home, db = tmp_path / "home", tmp_path / "cli.duckdb"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADING_ASSETS_DUCKDB_PATH": str(db),
           "TRADING_ASSETS_UNIVERSE": "AAPL,MSFT,BRK-B"}
    first = backfill(env)
    assert first.returncode == 0, first.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        rows1 = con.execute("SELECT * EXCLUDE (fetched_at) FROM raw_prices ORDER BY symbol, date").df()
    assert rows1["date"].min() == pd.Timestamp("2024-01-02") and rows1["date"].max() == pd.Timestamp("2024-03-28")
    assert rows1.groupby("symbol").size().to_dict() == {s: 61 for s in ["AAPL", "BRK-B", "MSFT", "QQQ", "SPY", "^VIX"]}
    second = backfill(env, select="raw_prices")
    assert second.returncode == 0, second.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as con:
        rows2 = con.execute("SELECT * EXCLUDE (fetched_at) FROM raw_prices ORDER BY symbol, date").df()
    pd.testing.assert_frame_equal(rows1, rows2)
    # one run per CLI call, each covering the whole range
    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == 2
    for r in runs:
        assert r.tags["dagster/asset_partition_range_start"] == "2024-01-02"
        assert r.tags["dagster/asset_partition_range_end"] == "2024-03-28"
    assert all(r.is_success for r in runs)
