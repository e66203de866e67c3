"""Sensors: the portfolio after each daily run, price alerts, new symbols' history, failed runs and
raw_prices' freshness.

- ``portfolio_after_daily``: after each successful main_job run, portfolio_job over every strategy.
- ``price_alerts`` (every 5 minutes while the exchange is open): open positions of the trade
  journal and today's watchlist against the latest prices (core/alerts.py has the rules); each
  alert is sent once through the notifier, the cursor remembering what was sent.
- ``backfill_new_symbols``: a ``symbols`` materialisation that added symbols starts one run that
  fetches only those symbols' history over the whole partition range and recomputes the daily
  assets downstream of raw_prices.
- ``notify_run_failure``: a failed run's id, failed step(s) and error through the notifier.
- ``raw_prices_freshness``: runs the check ``fresh_for_last_closed_session`` (checks.py) once each
  session has closed and the daily run has had its time, so a missed day shows in the UI.

(The dead-runs sensor lives with the rest of the dead-run logic in trading_assets.runs.)
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd

from trading_assets import market_hours
from trading_assets.assets.backtests import strategy_partitions
from trading_assets.assets.universe import UNIVERSE_METADATA_KEY
from trading_assets.checks import LAST_CLOSED_SESSION, last_closed_session, raw_prices_fresh
from trading_assets.core.alerts import (
    JOURNAL_COLUMNS,
    MOMENTUM,
    STDEV,
    alert_text,
    open_positions,
    position_levels,
    reached_levels,
    still_watched,
    watchlist_levels,
)
from trading_assets.core.quarantine import QUARANTINE_COLUMN
from trading_assets.jobs import main_job, portfolio_job
from trading_assets.notify import NotificationError, NotifierResource
from trading_assets.partitions import CALENDAR_CODE, START_DATE, trading_calendar, trading_days
from trading_assets.resources import PriceSourceResource
from trading_assets.storage.contract import DatabaseLockedError, TableStore

PORTFOLIO_AFTER_DAILY = "portfolio_after_daily"
PRICE_ALERTS = "price_alerts"
BACKFILL_NEW_SYMBOLS = "backfill_new_symbols"
NOTIFY_RUN_FAILURE = "notify_run_failure"
RAW_PRICES_FRESHNESS = "raw_prices_freshness"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
NEW_SYMBOLS_TAG = "trading_assets/new_symbols"

ALERTS_INTERVAL_SECONDS = 300
# A sensor tick must end within Dagster's evaluation timeout (60 s): a DuckDB file a run is
# writing is waited on this long, then the tick is skipped (the next one reads it).
SENSOR_LOCK_TIMEOUT_SECONDS = 20.0
# Calendar days before an open position's entry searched for its signal session's ATR or plan.
SIGNAL_LOOKBACK_DAYS = 14
# What backfill_new_symbols materialises: raw_prices with price_revisions (a restated history needs
# it) and the daily assets downstream of them; the universe is not fetched again, and the LLM's
# market_analysis (with the threshold_multipliers it feeds) is not asked again for every session.
NEW_SYMBOL_ASSETS = (
    "raw_prices",
    "price_revisions",
    "indicators",
    "market_environment",
    "watchlist",
)
NEW_SYMBOLS_BATCH = 50  # symbols materialisations read per tick
FRESHNESS_INTERVAL_SECONDS = 600
# The daily schedule starts 150 min after the close (18:30 New York) and runs the freshness check
# itself; the sensor judges a session only once that run has had time to finish.
FRESHNESS_DEADLINE_MINUTES = 240


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags of one run over the partitions first..last (a single-run backfill of the range)."""
    return {RANGE_START: first, RANGE_END: last}


def every_strategy_tags() -> dict[str, str]:
    keys = strategy_partitions.get_partition_keys()
    return range_tags(keys[0], keys[-1])


@dg.run_status_sensor(
    name=PORTFOLIO_AFTER_DAILY,
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[main_job],
    request_job=portfolio_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful main_job run: backtest every strategy over the stored "
    "history and refresh the journal, metrics and reports, in one run.",
)
def portfolio_after_daily(context: dg.RunStatusSensorContext):
    run_id = context.dagster_run.run_id
    return dg.RunRequest(run_key=f"portfolio-after-{run_id}", tags=every_strategy_tags())


# --- price alerts ---------------------------------------------------------------------------------


def market_closed(now: pd.Timestamp) -> str | None:
    """None while the exchange is open at ``now``; else why not and when it opens."""
    cal = trading_calendar(CALENDAR_CODE, START_DATE)
    minute = now.tz_convert("UTC").floor("min")
    if minute < cal.first_minute or minute >= cal.last_minute:
        return f"{minute:%Y-%m-%d %H:%M} UTC is outside the {CALENDAR_CODE} calendar's range"
    if cal.is_open_on_minute(minute):
        return None
    opens = cal.next_open(minute).tz_convert(cal.tz)
    return f"{CALENDAR_CODE} is closed; it opens {opens:%a %Y-%m-%d %H:%M %Z}"


def sensor_reader(store: TableStore) -> TableStore:
    """``store`` with a lock wait short enough for a sensor tick (DuckDB; others as they are)."""
    from trading_assets.storage.duckdb_io import DuckDBIOManager

    if isinstance(store, DuckDBIOManager):
        return DuckDBIOManager(
            database=store.database,
            schema_name=store.schema_name,
            lock_timeout_seconds=min(store.lock_timeout_seconds, SENSOR_LOCK_TIMEOUT_SECONDS),
            lock_retry_base_seconds=store.lock_retry_base_seconds,
        )
    return store


def watched_levels(store: TableStore, now: pd.Timestamp) -> pd.DataFrame:
    """Every level the alerts watch: open positions' stops and targets, and the entries of the
    watchlist of the last closed session (the plan for the session in progress)."""
    journal = store.read_rows("trade_journal", columns=list(JOURNAL_COLUMNS))
    opened = open_positions(journal)
    atr = _signal_rows(store, opened[opened["strategy"] == STDEV], "indicators", "atr_14")
    plans = _signal_rows(store, opened[opened["strategy"] == MOMENTUM], "watchlist", "stop")
    levels = [position_levels(journal, atr, plans)]
    session = last_closed_session(now)
    if session is not None:
        today = store.read_rows(
            "watchlist",
            columns=["symbol", "date", "entry", "shares"],
            start=session,
            end=session + dt.timedelta(days=1),
        )
        levels.append(watchlist_levels(today))
    found = [frame for frame in levels if len(frame)]
    return pd.concat(found, ignore_index=True) if found else levels[0]


def _signal_rows(store: TableStore, rows: pd.DataFrame, asset: str, column: str) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=["symbol", "date", column])
    entries = pd.to_datetime(rows["entry_date"])
    return store.read_rows(
        asset,
        columns=["symbol", "date", column],
        symbols=sorted(set(rows["symbol"])),
        start=(entries.min() - pd.Timedelta(days=SIGNAL_LOOKBACK_DAYS)).date(),
        end=entries.max().date(),
    )


def latest_prices(
    price_source: PriceSourceResource, store: TableStore, symbols: list[str], log=None
) -> tuple[dict[str, float], dict[str, str]]:
    """The latest price per symbol and the symbols without one (with the reason): Yahoo's live
    quote with the yahoo source, else the last clean stored close."""
    if not symbols:
        return {}, {}
    if price_source.kind == "yahoo":
        from trading_assets.sources.yahoo import DEFAULT_TIMEOUT, fetch_latest_prices

        return fetch_latest_prices(
            symbols,
            base_url=price_source.yahoo_base_url,
            timeout=price_source.yahoo_timeout or DEFAULT_TIMEOUT,
            log=log,
        )
    rows = store.read_rows(
        "raw_prices", columns=["symbol", "date", "close", QUARANTINE_COLUMN], symbols=symbols
    )
    clean = rows[rows[QUARANTINE_COLUMN].isna() & rows["close"].notna()]
    last = clean.sort_values("date").groupby("symbol")["close"].last().astype(float).to_dict()
    return last, {s: "no stored close" for s in symbols if s not in last}


def _sent(cursor: str | None) -> set[str]:
    return set(json.loads(cursor)["sent"]) if cursor else set()


def _cursor(sent: list[str]) -> str:
    return json.dumps({"sent": sent})


@dg.sensor(
    name=PRICE_ALERTS,
    minimum_interval_seconds=ALERTS_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="While the exchange is open, every 5 minutes: open positions at their stop or a "
    "target, and today's watchlist candidates at or above their entry, each alert sent once "
    "through the notifier.",
)
def price_alerts(
    context: dg.SensorEvaluationContext,
    io_manager: dg.ResourceParam[TableStore],
    price_source: PriceSourceResource,
    notifier: NotifierResource,
):
    now = market_hours.now_utc()
    closed = market_closed(now)
    if closed:
        return dg.SkipReason(closed)
    store = sensor_reader(io_manager)
    try:
        watched = watched_levels(store, now)
        symbols = sorted(set(watched["symbol"]))
        prices, failed = latest_prices(price_source, store, symbols, log=context.log)
    except DatabaseLockedError as exc:
        return dg.SkipReason(f"the tables are being written; next tick reads them ({exc})")
    if failed:
        shown = dict(list(failed.items())[:5])
        context.log.warning(f"no latest price for {len(failed)} symbol(s), e.g. {shown}")
    sent = _sent(context.cursor)
    alerts = reached_levels(watched, prices)
    delivered: list[str] = []
    error: NotificationError | None = None
    for alert in alerts[~alerts["alert_id"].isin(sent)].to_dict("records"):
        subject, message = alert_text(alert)
        try:
            notifier.send(subject, message, dedupe_key=alert["alert_id"], log=context.log)
        except NotificationError as exc:
            error = exc  # the rest are tried again next tick; those sent stay sent
            break
        delivered.append(alert["alert_id"])
    summary = (
        f"{len(watched)} level(s) of {len(symbols)} symbol(s) watched, {len(alerts)} reached, "
        f"{len(delivered)} sent"
    )
    if error is not None:
        context.log.error(f"notifier failed after {len(delivered)} alert(s): {error}")
        summary += f"; the notifier failed, the rest are retried next tick: {error}"
    return dg.SensorResult(
        skip_reason=summary, cursor=_cursor(still_watched(sent | set(delivered), watched))
    )


# --- new symbols ----------------------------------------------------------------------------------


def _listed(metadata: dict, key: str) -> list[str]:
    value = metadata.get(key)
    return [str(s) for s in value.value] if value is not None and value.value else []


def new_symbols_request(
    storage_id: int, added: list[str], now: pd.Timestamp
) -> dg.RunRequest | dg.SkipReason:
    """One run: raw_prices of ``added`` over every session up to the last closed one, and the
    daily assets downstream of it."""
    last = last_closed_session(now)
    first = trading_days.get_first_partition_key()
    if last is None or first is None:
        return dg.SkipReason("no closed session yet")
    return dg.RunRequest(
        run_key=f"new-symbols-{storage_id}",
        run_config={"ops": {"raw_prices": {"config": {"symbols": added}}}},
        tags={**range_tags(first, last.isoformat()), NEW_SYMBOLS_TAG: ",".join(added)[:255]},
        asset_selection=[dg.AssetKey(key) for key in NEW_SYMBOL_ASSETS],
    )


@dg.sensor(
    name=BACKFILL_NEW_SYMBOLS,
    job=main_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a symbols materialisation adds symbols: one run fetching only their "
    "history over the whole partition range, then the daily assets downstream of raw_prices.",
)
def backfill_new_symbols(context: dg.SensorEvaluationContext):
    # Not dg.asset_sensor: it sees only the newest materialisation per tick, and an addition
    # followed by another materialisation before the tick would be lost. Every event is read here.
    key = dg.AssetKey("symbols")
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(key, after_storage_id=after), limit=NEW_SYMBOLS_BATCH, ascending=True
    ).records
    if not records:
        return dg.SkipReason("no new symbols materialisation")
    latest = context.instance.get_latest_materialization_event(key)
    current = set(_listed(latest.asset_materialization.metadata, UNIVERSE_METADATA_KEY))
    requests, skipped = [], []
    for record in records:
        metadata = record.asset_materialization.metadata
        added = _listed(metadata, "added")
        universe = _listed(metadata, UNIVERSE_METADATA_KEY)
        if added and set(added) == set(universe) and not _listed(metadata, "removed"):
            # The first universe: the run (or backfill) that built it fetches everything.
            skipped.append(f"{record.storage_id}: first universe")
            continue
        added = [s for s in added if s in current]  # removed again since: nothing to fetch
        if not added:
            skipped.append(f"{record.storage_id}: no symbol added")
            continue
        requests.append(new_symbols_request(record.storage_id, added, market_hours.now_utc()))
    context.log.info(f"{len(requests)} backfill(s); skipped {skipped}")
    return dg.SensorResult(
        run_requests=[r for r in requests if isinstance(r, dg.RunRequest)],
        cursor=str(records[-1].storage_id),
        skip_reason=None if requests else f"no symbols added ({'; '.join(skipped)})",
    )


# --- failed runs ------------------------------------------------------------------------------------


def failure_text(context: dg.RunFailureSensorContext) -> tuple[str, str]:
    """(subject, message): the run, its failed step(s) with their errors, or the run's own error."""
    run = context.dagster_run
    steps = context.get_step_failure_events()
    lines = [f"run {run.run_id} of job {run.job_name} failed"]
    for name in (RANGE_START, RANGE_END, "dagster/partition"):
        if name in run.tags:
            lines.append(f"{name.split('/')[-1]}: {run.tags[name]}")
    for event in steps:
        error = event.event_specific_data.error if event.event_specific_data else None
        # Dagster wraps the step's own exception ("Error occurred while executing op ..."): the
        # trader wants the one the code raised.
        while error is not None and error.cls_name.startswith("Dagster") and error.cause:
            error = error.cause
        text = f"{error.cls_name}: {error.message.strip()}" if error else event.message
        lines.append(f"failed step {event.step_key}: {text}")
    if not steps:
        lines.append(f"error: {context.failure_event.message}")
    where = f", step {steps[0].step_key}" if steps else ""
    return f"run failed: {run.job_name}{where} ({run.run_id[:8]})", "\n".join(lines)


@dg.run_failure_sensor(
    name=NOTIFY_RUN_FAILURE,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends each failed run's id, failed step(s) and error through the notifier.",
)
def notify_run_failure(context: dg.RunFailureSensorContext, notifier: NotifierResource):
    subject, message = failure_text(context)
    # A NotificationError fails the tick: the cursor stays, the next tick sends it again.
    notifier.send(
        subject, message, dedupe_key=f"run-failure|{context.dagster_run.run_id}", log=context.log
    )


# --- freshness ------------------------------------------------------------------------------------


@dg.sensor(
    name=RAW_PRICES_FRESHNESS,
    minimum_interval_seconds=FRESHNESS_INTERVAL_SECONDS,
    asset_selection=dg.AssetSelection.checks(raw_prices_fresh),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs raw_prices' freshness check once each session has closed (and the daily "
    "run has had its time), and again after a stale verdict once raw_prices is materialised.",
)
def raw_prices_freshness(context: dg.SensorEvaluationContext):
    due = last_closed_session(market_hours.now_utc(), FRESHNESS_DEADLINE_MINUTES)
    if due is None:
        return dg.SkipReason("no session has closed yet")
    key = raw_prices_fresh.check_key
    instance = context.instance
    summary = instance.event_log_storage.get_asset_check_summary_records([key])[key]
    last = summary.last_check_execution_record
    if last is not None and last.status.value == "PLANNED":
        run = instance.get_run_by_id(last.run_id)
        if run is not None and not run.is_finished:
            return dg.SkipReason(f"the check is being evaluated (run {last.run_id})")
    done = summary.last_completed_check_execution_record
    evaluation = done.event.asset_check_evaluation if done and done.event else None
    latest = instance.get_latest_materialization_event(dg.AssetKey("raw_prices"))
    marker = latest.timestamp if latest else 0
    if evaluation is not None:
        judged = evaluation.metadata.get(LAST_CLOSED_SESSION)
        if judged is not None and str(judged.value) >= due.isoformat():
            if evaluation.passed:
                return dg.SkipReason(f"raw_prices is fresh for {judged.value}")
            if marker <= done.event.timestamp:
                return dg.SkipReason(
                    f"raw_prices is stale for {judged.value}; judged again once it is materialised"
                )
    return dg.RunRequest(run_key=f"freshness-{due}-{marker}", asset_check_keys=[key])
