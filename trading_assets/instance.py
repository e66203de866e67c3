"""The Dagster instance's event log: SQLite, with range runs written in batches.

A single-run backfill of N sessions makes Dagster record, per partitioned asset, N planned events
and N materialisation events (a partition's status in the UI is read from them). Dagster emits each
group with batch metadata, but the stock ``SqliteEventLogStorage`` writes them one by one: for
every event it opens the run's database and the index database, commits and fsyncs each. On the
bundled sample (1,648 sessions, 4 partitioned assets) that was ~2 minutes of a run whose
computation takes seconds.

``BatchingSqliteEventLogStorage`` (configured in ``dagster.yaml``) is that storage with:

- ``store_event_batch``: consecutive asset events of one batch go into the run's database in one
  transaction and into the index database in another, through the same private helpers Dagster's
  own ``store_event`` uses (so the index rows, tags and asset records are identical). Dagster only
  hands over batches when ``DAGSTER_EVENT_BATCH_SIZE`` > 0; this storage sets a default for the
  process that loads it.
- one asset-check "planned" row per check and run. This project's checks are not partitioned:
  they run once on the rows a run stores and report one result (partition ``None``). Dagster 1.13
  nevertheless records a planned row per partition of the run, each with the serialised partitions
  definition (~27 KB with the calendar's holidays), and never resolves them (they stayed
  ``PLANNED`` in the UI). Here the planned row is the one the result then completes.

Both rely on Dagster internals (guarded by trading_assets_tests/test_bookkeeping.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, cast

import dagster._check as check
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData
from dagster_shared.serdes import serialize_value

# Events Dagster hands over in one batch are buffered until the batch ends or reaches this size.
EVENT_BATCH_SIZE = "1000"


def _asset_event(event: EventLogEntry) -> bool:
    return event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage that writes a batch of asset events in two transactions."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            check.invariant(
                bool(home), "BatchingSqliteEventLogStorage needs base_dir or DAGSTER_HOME"
            )
            base_dir = os.path.join(cast(str, home), "history", "runs")  # Dagster's default place
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Any:
        return {"base_dir": dg_field_optional_string()}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchingSqliteEventLogStorage:
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Store in order; each run of consecutive asset events of one run in two transactions."""
        group: list[EventLogEntry] = []
        for event in events:
            if _asset_event(event) and (not group or group[0].run_id == event.run_id):
                group.append(event)
                continue
            self._store_asset_events(group)
            group = []
            if _asset_event(event):
                group = [event]
            else:
                self.store_event(event)
        self._store_asset_events(group)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        if len(events) <= 1:
            for event in events:
                self.store_event(event)
            return
        # The rows SqliteEventLogStorage.store_event inserts (prepare_insert_event), each event
        # serialised once, inserted as one executemany per database, each in one transaction.
        rows = [self._event_to_row(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        with self.index_transaction() as conn:
            inserted = conn.execute(
                SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                ),
                rows,
            )
            event_ids = [int(row[0]) for row in inserted]
            check.invariant(len(event_ids) == len(events), "one storage id per event")
            self._store_asset_event_tags(conn, list(events), event_ids)
            # The asset's own row (latest materialisation, run, timestamp): each event type writes a
            # fixed set of columns, so the last event of each (asset, type) gives the same row.
            last: dict[tuple[str, str], int] = {}
            for i, event in enumerate(events):
                dagster_event = check.not_none(event.dagster_event)
                last[(str(dagster_event.asset_key), dagster_event.event_type_value)] = i
            for i in sorted(last.values()):
                self._store_asset_event(conn, events[i], event_ids[i])

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = cast(
            AssetCheckEvaluationPlanned, check.not_none(event.dagster_event).event_specific_data
        )
        check.invariant(
            event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
            "not a planned check",
        )
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert().values(
                    asset_key=planned.asset_key.to_string(),
                    check_name=planned.check_name,
                    partition=None,  # the result of an unpartitioned check completes this row
                    run_id=event.run_id,
                    execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                    evaluation_event=serialize_value(event),
                    evaluation_event_timestamp=self._event_insert_timestamp(event),
                    evaluation_event_storage_id=event_id,
                )
            )


def dg_field_optional_string() -> Any:
    from dagster import Field, StringSource

    return Field(StringSource, is_required=False)
