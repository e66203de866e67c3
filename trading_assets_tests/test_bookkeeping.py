"""Range-run bookkeeping: what the instance records for a single-run backfill, and the CLI's report.

These guard the Dagster behaviour trading_assets/instance.py relies on (README, "Range runs and
Dagster's bookkeeping"): a Dagster upgrade that changes it fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from trading_assets.cli import instance_yaml
from trading_assets.definitions import defs
from trading_assets.instance import BatchingSqliteEventLogStorage
from trading_assets.partitions import trading_days
from trading_assets_tests.conftest import PROJECT_ROOT

START, END = "2024-03-25", "2024-04-05"  # 9 sessions (Good Friday 2024-03-29 is none)
KEYS = trading_days.get_partition_keys_in_range(dg.PartitionKeyRange(START, END))
CHECK = dg.AssetCheckKey(dg.AssetKey("bars"), "bars_ok")


def _instance(tmp_path, dagster_yaml: str | None = None) -> dg.DagsterInstance:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml or instance_yaml(home))
    return dg.DagsterInstance.from_config(str(home))


def _assets(fail: bool = False):
    """A partitioned asset with an unpartitioned check in the asset, like raw_prices."""

    @dg.asset(
        name="bars",
        partitions_def=trading_days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec("bars_ok", asset="bars")],
        io_manager_key="mem",
    )
    def bars(context):
        if fail:
            raise RuntimeError("source down")
        yield dg.Output(len(context.partition_keys), metadata={"rows": len(context.partition_keys)})
        yield dg.AssetCheckResult(check_name="bars_ok", passed=True)

    return [bars]


class _NoStore(dg.IOManager):
    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return None


def _run(instance, start=START, end=END, fail=False):
    return dg.materialize(
        _assets(fail),
        instance=instance,
        resources={"mem": _NoStore()},
        tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        raise_on_error=False,
    )


def test_project_instance_uses_the_batching_storage_and_turns_batching_on(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    instance = _instance(tmp_path)
    assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    assert instance.event_log_storage._base_dir == str(tmp_path / "home" / "history" / "runs")
    # the plain project file (no base_dir), as `dagster` commands load it from $DAGSTER_HOME
    home = tmp_path / "plain"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert dg.DagsterInstance.get().event_log_storage._base_dir == str(home / "history" / "runs")


def test_range_materialisations_reach_the_storage_as_one_batch(tmp_path, monkeypatch):
    """Dagster hands a range's N materialisations and N planned events to store_event_batch."""
    instance = _instance(tmp_path)
    batches: list[list[str]] = []
    original = BatchingSqliteEventLogStorage.store_event_batch

    def spy(self, events):
        batches.append([e.dagster_event_type.value for e in events])
        return original(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "store_event_batch", spy)
    assert _run(instance).success
    assert ["ASSET_MATERIALIZATION"] * len(KEYS) in batches
    planned = [b for b in batches if "ASSET_MATERIALIZATION_PLANNED" in b]
    assert planned and planned[0].count("ASSET_MATERIALIZATION_PLANNED") == len(KEYS)


def test_batched_index_equals_dagsters_own_storage(tmp_path):
    """Same partitions, tags and asset record as the stock SqliteEventLogStorage writes event by event."""
    stock_yaml = "event_log_storage:\n  module: dagster._core.storage.event_log\n  class: SqliteEventLogStorage\n" \
                 f"  config:\n    base_dir: {tmp_path / 'stock' / 'home' / 'history' / 'runs'}\n"
    (tmp_path / "stock").mkdir()
    (tmp_path / "ours").mkdir()
    stock, ours = _instance(tmp_path / "stock", stock_yaml), _instance(tmp_path / "ours")
    assert type(stock.event_log_storage) is SqliteEventLogStorage
    for instance in (stock, ours):
        assert _run(instance).success
    key = dg.AssetKey("bars")

    def summary(instance):
        records = instance.fetch_materializations(key, limit=100).records
        tags = instance.event_log_storage.get_event_tags_for_asset(key)
        latest = instance.get_latest_materialization_event(key)
        return (
            sorted(instance.get_materialized_partitions(key)),
            sorted(r.partition_key for r in records),
            len(tags),
            latest.dagster_event.partition,
        )

    assert summary(ours) == summary(stock)
    assert summary(ours)[0] == KEYS


def test_one_check_row_per_run_and_it_is_completed(tmp_path):
    """Dagster 1.13 plans an unpartitioned check once per partition of the run (and never completes
    those rows); the project's storage keeps one row, completed by the check's result."""
    instance = _instance(tmp_path)
    assert _run(instance).success
    rows = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=100)
    assert len(rows) == 1
    assert rows[0].status == AssetCheckExecutionRecordStatus.SUCCEEDED and rows[0].partition is None


def test_partition_status_materialised_failed_and_missing(tmp_path, monkeypatch):
    """A failed range shows its partitions as failed (needs one planned event per partition, i.e.
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS unset), earlier ones materialised, the rest missing."""
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    instance = _instance(tmp_path)
    assert _run(instance, START, KEYS[3]).success
    assert not _run(instance, KEYS[4], END, fail=True).success
    cache = get_and_update_asset_status_cache_value(instance, dg.AssetKey("bars"), trading_days)
    materialised = cache.deserialize_materialized_partition_subsets(trading_days)
    failed = cache.deserialize_failed_partition_subsets(trading_days)
    assert sorted(materialised.get_partition_keys()) == KEYS[:4]
    assert sorted(failed.get_partition_keys()) == KEYS[4:]
    assert "2024-04-08" not in materialised.get_partition_keys() + failed.get_partition_keys()  # missing


def test_project_checks_are_unpartitioned():
    """instance.py keeps one planned row per check and run: right only for unpartitioned checks."""
    specs = [spec for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) for spec in a.check_specs]
    assert specs
    assert all(spec.partitions_def is None for spec in specs)


@pytest.mark.slow
def test_cli_prints_a_progress_report_not_the_event_stream(tmp_path):
    home, db = tmp_path / "home", tmp_path / "cli.duckdb"
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADING_ASSETS_DUCKDB_PATH": str(db),
           "TRADING_ASSETS_UNIVERSE": "AAPL,MSFT"}
    env.pop("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", None)
    cmd = [sys.executable, "-m", "trading_assets.cli", "main", "--select", "symbols,raw_prices",
           "--start", START, "--end", END]
    res = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = (res.stdout + res.stderr).splitlines()
    assert not [line for line in out if " - DEBUG - " in line]
    assert len(out) < 40, out
    assert any("raw_prices" in line and " ok " in line and f"{len(KEYS)} partitions" in line for line in out), out
    assert any(line.strip().startswith("check raw_prices/") for line in out), out
    assert any(line.startswith("Tables: ") and str(db) in line for line in out), out
    assert any(f"DAGSTER_HOME={home} dagster dev" in line for line in out), out
    instance = dg.DagsterInstance.from_config(str(home))
    (run,) = instance.get_runs()
    assert run.is_success and run.tags["dagster/asset_partition_range_end"] == END
    assert sorted(instance.get_materialized_partitions(dg.AssetKey("raw_prices"))) == KEYS
