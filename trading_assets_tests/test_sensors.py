"""The sensors and schedules, evaluated against a real ephemeral Dagster instance.

price_alerts reads a throwaway DuckDB file, asks the local Yahoo-format server for live prices and
publishes to moto's SNS (read back from a subscribed SQS queue); notify_run_failure reports a real
failed run; backfill_new_symbols' run is executed and the Yahoo server's request log shows which
symbols it fetched; the schedules' ticks around holidays. The clock is ``market_hours.now_utc``,
moved by each test. (raw_prices_freshness: test_freshness.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import boto3
import dagster as dg
import duckdb
import pandas as pd
import pytest

from trading_assets import market_hours, sensors
from trading_assets.assets.analytics import fundamentals, watchlist
from trading_assets.assets.indicators import indicators
from trading_assets.assets.market import market_environment
from trading_assets.assets.prices import raw_prices
from trading_assets.assets.universe import symbols
from trading_assets.definitions import defs  # at collection: test_definitions reloads the package
from trading_assets.jobs import MAIN_JOB
from trading_assets.notify import NotifierResource
from trading_assets.resources import FundamentalsResource, PriceSourceResource, UniverseResource
from trading_assets.schedules import daily_after_close, weekly_market_environment
from trading_assets.sensors import (
    NEW_SYMBOL_ASSETS,
    backfill_new_symbols,
    notify_run_failure,
    price_alerts,
    range_tags,
)
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests.conftest import shared_prices
from trading_assets_tests.test_notify import received, ses_sent, topic_with_queue, unique
from trading_assets_tests.yahoo_server import isolated_yfinance_cache, serve_yahoo

pytestmark = pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning")
D = dt.date
NY = "America/New_York"
SERVED = ["AAPL", "MSFT", "NVDA", "XOM", "SPY", "QQQ", "^VIX"]


@pytest.fixture
def clock(monkeypatch):
    def move_to(new_york_time: str) -> pd.Timestamp:
        now = pd.Timestamp(new_york_time, tz=NY).tz_convert("UTC")
        monkeypatch.setattr(market_hours, "now_utc", lambda: now)
        return now

    return move_to


@pytest.fixture(scope="module")
def yahoo(tmp_path_factory):
    prices = shared_prices(SERVED, "2023-06-01", "2024-07-05")
    with isolated_yfinance_cache(str(tmp_path_factory.mktemp("yf"))), serve_yahoo(prices) as server:
        yield server


def write_tables(db, **frames: pd.DataFrame) -> None:
    with duckdb.connect(str(db)) as con:
        for name, frame in frames.items():
            con.register("frame", frame)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM frame")
            con.unregister("frame")


def position(symbol, side, entry_date, entry_price, exit_date=None, strategy="stdev"):
    return {
        "strategy": strategy,
        "trade_id": 0,
        "symbol": symbol,
        "side": side,
        "setup": "MR",
        "entry_date": entry_date,
        "entry_price": entry_price,
        "exit_date": exit_date,
        "exit_price": None if exit_date is None else entry_price,
        "shares": 10.0,
        "fees": 0.1,
        "pnl": 0.0,
        "r_multiple": 0.0,
        "exit_reason": None if exit_date is None else "stop",
    }


# Open: AAPL long (ATR 4 at 07-01: stop 204.4, target 218.4) and XOM short (ATR 2 at 07-02: stop
# 114.8, target 107.8); MSFT closed. Watchlist of 07-05: NVDA sized at entry 125, MSFT unsized.
OPEN_AAPL = position("AAPL", "long", D(2024, 7, 2), 210.0)
JOURNAL = [OPEN_AAPL, position("XOM", "short", D(2024, 7, 3), 112.0)]
CLOSED = position("MSFT", "long", D(2024, 6, 3), 400.0, exit_date=D(2024, 6, 10))
ATR = pd.DataFrame(
    {"symbol": ["AAPL", "XOM"], "date": [D(2024, 7, 1), D(2024, 7, 2)], "atr_14": [4.0, 2.0]}
)


def plans(session: dt.date, entry: float = 125.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["NVDA", "MSFT"],
            "date": [session, session],
            "entry": [entry, 450.0],
            "stop": [entry - 10, 440.0],
            "shares": [40.0, 0.0],
        }
    )


def alert_store(tmp_path, journal=JOURNAL, watch=None):
    db = tmp_path / "alerts.duckdb"
    write_tables(
        db,
        trade_journal=pd.DataFrame([*journal, CLOSED]),
        indicators=ATR,
        watchlist=plans(D(2024, 7, 5)) if watch is None else watch,
    )
    return db


def evaluate(instance, db, notifier, cursor=None, price_source=None, yahoo=None):
    """One tick of price_alerts, as the daemon runs it: a context with the stored cursor."""
    source = price_source or PriceSourceResource(kind="yahoo", yahoo_base_url=yahoo.base_url)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": source,
            "notifier": notifier,
        },
    )
    return price_alerts.evaluate_tick(context)


def subjects(queue) -> list[str]:
    return sorted(envelope["Subject"] for envelope in received(queue))


def sent_ids(cursor: str) -> list[str]:
    return json.loads(cursor)["sent"]


@pytest.fixture
def quotes(yahoo):
    def set_prices(**prices):
        for symbol, price in prices.items():
            yahoo.set_latest_price(symbol, price)

    yield set_prices
    for symbol in SERVED:
        yahoo.set_latest_price(symbol, None)


# --- price alerts ------------------------------------------------------------------------------


def test_each_alert_is_sent_once_across_ticks_and_a_restart(
    tmp_path, clock, aws_env, yahoo, quotes
):
    db = alert_store(tmp_path)
    topic, queue = topic_with_queue()
    instance = dg.DagsterInstance.ephemeral()
    clock("2024-07-08 11:00")  # a Monday, the market open
    quotes(AAPL=204.0, XOM=113.0, NVDA=126.0)
    first = evaluate(instance, db, NotifierResource(kind="sns", sns_topic_arn=topic), yahoo=yahoo)
    assert subjects(queue) == [
        "[trading_assets] AAPL long stop hit at 204.00 (stop 204.40, stdev)",
        "[trading_assets] NVDA at 126.00: at or above its watchlist entry 125.00",
    ]
    assert sent_ids(first.cursor) == [
        "stdev|AAPL|2024-07-02|stop|204.4000",
        "watchlist|NVDA|2024-07-05|entry|125.0000",
    ]
    assert "5 level(s) of 3 symbol(s) watched, 2 reached, 2 sent" in first.skip_message

    # The next tick with the cursor the first returned, and after a restart (new resources, a new
    # context from the persisted cursor): the same prices send nothing again.
    notifier = NotifierResource(kind="sns", sns_topic_arn=topic)
    second = evaluate(instance, db, notifier, first.cursor, yahoo=yahoo)
    restarted = evaluate(dg.DagsterInstance.ephemeral(), db, notifier, second.cursor, yahoo=yahoo)
    assert subjects(queue) == []
    assert second.cursor == restarted.cursor == first.cursor

    # XOM rallies through its stop: only that is new.
    quotes(XOM=115.0)
    third = evaluate(instance, db, notifier, restarted.cursor, yahoo=yahoo)
    assert subjects(queue) == ["[trading_assets] XOM short stop hit at 115.00 (stop 114.80, stdev)"]
    assert len(sent_ids(third.cursor)) == 3

    # AAPL's position closes: its id is forgotten (the cursor stays bounded), nothing is sent.
    write_tables(db, trade_journal=pd.DataFrame([JOURNAL[1], {**OPEN_AAPL, **CLOSED_AT_STOP}]))
    fourth = evaluate(instance, db, notifier, third.cursor, yahoo=yahoo)
    assert subjects(queue) == []
    assert sent_ids(fourth.cursor) == [
        "stdev|XOM|2024-07-03|stop|114.8000",
        "watchlist|NVDA|2024-07-05|entry|125.0000",
    ]

    # The next session: the plan of 07-05 has passed; 07-08's plan (entry 125 again) is new.
    write_tables(db, watchlist=pd.concat([plans(D(2024, 7, 5)), plans(D(2024, 7, 8))]))
    clock("2024-07-09 10:00")
    fifth = evaluate(instance, db, notifier, fourth.cursor, yahoo=yahoo)
    assert subjects(queue) == [
        "[trading_assets] NVDA at 126.00: at or above its watchlist entry 125.00"
    ]
    assert sent_ids(fifth.cursor) == [
        "stdev|XOM|2024-07-03|stop|114.8000",
        "watchlist|NVDA|2024-07-08|entry|125.0000",
    ]


CLOSED_AT_STOP = {"exit_date": D(2024, 7, 8), "exit_price": 204.4, "exit_reason": "stop"}


@pytest.mark.parametrize(
    "when, opens",
    [
        ("2024-07-04 12:00", "Fri 2024-07-05 09:30 EDT"),  # Independence Day
        ("2024-07-06 12:00", "Mon 2024-07-08 09:30 EDT"),  # Saturday
        ("2024-07-08 09:29", "Mon 2024-07-08 09:30 EDT"),  # before the open
        ("2024-07-03 13:00", "Fri 2024-07-05 09:30 EDT"),  # after the early close at 13:00
    ],
)
def test_outside_market_hours_the_sensor_says_when_it_opens(tmp_path, clock, yahoo, when, opens):
    db = alert_store(tmp_path)
    clock(when)
    yahoo.clear_log()
    tick = evaluate(dg.DagsterInstance.ephemeral(), db, NotifierResource(), "kept", yahoo=yahoo)
    assert tick.skip_message == f"XNYS is closed; it opens {opens}"
    assert tick.cursor == "kept" and yahoo.requests == []


def test_sample_source_uses_the_last_stored_close_and_ses(tmp_path, clock, aws_env):
    db = alert_store(tmp_path)
    closes = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL", "NVDA", "XOM"],
            "date": [D(2024, 7, 1), D(2024, 7, 3), D(2024, 7, 5), D(2024, 7, 5), D(2024, 7, 5)],
            "close": [210.0, 200.0, 999.0, 124.0, 112.0],
            # A quarantined bar is no price: AAPL's last clean close is 200 (below its stop).
            "quarantine": [None, None, "bad_tick", None, None],
        }
    )
    write_tables(db, raw_prices=closes)
    sender = f"{unique('alerts')}@example.com"
    boto3.client("ses").verify_email_identity(EmailAddress=sender)
    notifier = NotifierResource(kind="ses", ses_sender=sender, ses_recipients="trader@example.com")
    clock("2024-07-08 15:59")
    tick = evaluate(
        dg.DagsterInstance.ephemeral(), db, notifier, price_source=PriceSourceResource()
    )
    [mail] = ses_sent(aws_env, sender)
    assert mail["subject"] == "[trading_assets] AAPL long stop hit at 200.00 (stop 204.40, stdev)"
    assert mail["body"].endswith("alert id: stdev|AAPL|2024-07-02|stop|204.4000")
    assert sent_ids(tick.cursor) == ["stdev|AAPL|2024-07-02|stop|204.4000"]


def test_a_failing_notifier_sends_the_rest_next_tick(tmp_path, clock, aws_env, yahoo, quotes):
    db = alert_store(tmp_path)
    clock("2024-07-08 11:00")
    quotes(AAPL=204.0, NVDA=1.0, XOM=100.0)  # AAPL's stop and XOM's target
    gone = "arn:aws:sns:us-east-1:123456789012:" + unique("deleted")
    instance = dg.DagsterInstance.ephemeral()
    tick = evaluate(instance, db, NotifierResource(kind="sns", sns_topic_arn=gone), yahoo=yahoo)
    assert "0 sent; the notifier failed, the rest are retried next tick" in tick.skip_message
    assert gone in tick.skip_message and sent_ids(tick.cursor) == []
    topic, queue = topic_with_queue()
    tick = evaluate(
        instance, db, NotifierResource(kind="sns", sns_topic_arn=topic), tick.cursor, yahoo=yahoo
    )
    assert len(subjects(queue)) == 2 and len(sent_ids(tick.cursor)) == 2


def test_a_table_locked_by_a_writer_skips_the_tick(tmp_path, clock, yahoo, monkeypatch):
    db = alert_store(tmp_path)
    monkeypatch.setattr(sensors, "SENSOR_LOCK_TIMEOUT_SECONDS", 0.3)
    clock("2024-07-08 11:00")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        tick = evaluate(dg.DagsterInstance.ephemeral(), db, NotifierResource(), "c", yahoo=yahoo)
    finally:
        holder.kill()
        holder.wait()
    assert tick.skip_message.startswith("the tables are being written; next tick reads them")
    assert tick.cursor == "c"


HOLD_LOCK = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(60)"


def test_latest_prices_from_yahoos_chart_meta(yahoo, quotes):
    from trading_assets.sources.yahoo import fetch_latest_prices
    from trading_assets_tests.yahoo_server import Fault

    quotes(NVDA=131.25)
    yahoo.clear_log()
    yahoo.set_fault("XOM", Fault.server_error(times=1))
    try:
        prices, failed = fetch_latest_prices(
            ["AAPL", "NVDA", "XOM", "ZZZZ"], base_url=yahoo.base_url, timeout=5
        )
    finally:
        yahoo.set_fault("XOM", None)
    last_aapl = shared_prices(["AAPL"], "2024-07-05", "2024-07-05")["close"].iloc[0]
    assert prices == {"AAPL": pytest.approx(last_aapl), "NVDA": 131.25}
    assert failed == {
        "XOM": "Yahoo server error (HTTP 500)",
        "ZZZZ": "Yahoo: Not Found: No data found, symbol may be delisted (HTTP 404)",
    }
    # One request per symbol to Yahoo's chart API (through the mirror), nothing else.
    assert [(r.symbol, r.query, r.host) for r in yahoo.requests] == [
        (s, {"range": "1d", "interval": "1d"}, "query2.finance.yahoo.com")
        for s in ("AAPL", "NVDA", "XOM", "ZZZZ")
    ]
    # Yahoo unreachable: after max_consecutive_errors failures in a row the rest are not asked.
    yahoo.set_fault("XOM", Fault.server_error())
    try:
        prices, failed = fetch_latest_prices(
            ["XOM", "AAPL"], base_url=yahoo.base_url, timeout=5, max_consecutive_errors=1
        )
    finally:
        yahoo.set_fault("XOM", None)
    assert prices == {} and failed["AAPL"] == "not requested after repeated failures"


# --- new symbols -------------------------------------------------------------------------------


def universe_run(instance, db, spec):
    resources = {
        "io_manager": DuckDBIOManager(database=str(db)),
        "universe": UniverseResource(spec=spec),
    }
    return dg.materialize([symbols], resources=resources, instance=instance)


def test_new_symbols_each_materialisation_one_run_of_only_its_symbols(tmp_path, clock):
    instance, db = dg.DagsterInstance.ephemeral(), tmp_path / "t.duckdb"
    clock("2024-07-08 11:00")
    for spec in ("AAPL,MSFT", "AAPL,MSFT,NVDA", "AAPL,MSFT,NVDA,XOM", "AAPL,MSFT,XOM,NVDA"):
        universe_run(instance, db, spec)
    assert backfill_new_symbols.job_name == MAIN_JOB
    result = backfill_new_symbols.evaluate_tick(dg.build_sensor_context(instance=instance))
    # The first universe is skipped (its own run fetches everything); the third run added nothing.
    assert [r.run_config for r in result.run_requests] == [
        {"ops": {"raw_prices": {"config": {"symbols": ["NVDA"]}}}},
        {"ops": {"raw_prices": {"config": {"symbols": ["XOM"]}}}},
    ]
    records = instance.fetch_materializations(dg.AssetKey("symbols"), limit=10, ascending=True)
    ids = [r.storage_id for r in records.records]
    for request, storage_id in zip(result.run_requests, ids[1:3], strict=True):
        assert request.run_key == f"new-symbols-{storage_id}"
        assert request.tags[sensors.RANGE_START] == "2000-01-03"
        assert request.tags[sensors.RANGE_END] == "2024-07-05"  # the last closed session
        assert [k.to_user_string() for k in request.asset_selection] == list(NEW_SYMBOL_ASSETS)
    assert result.cursor == str(ids[-1])
    again = backfill_new_symbols.evaluate_tick(dg.build_sensor_context(instance, result.cursor))
    assert not again.run_requests and "no new symbols materialisation" in again.skip_message
    # Added, then removed again before the sensor looked: nothing to fetch.
    universe_run(instance, db, "AAPL,MSFT,XOM,NVDA,AMD")
    universe_run(instance, db, "AAPL,MSFT,XOM,NVDA")
    late = backfill_new_symbols.evaluate_tick(dg.build_sensor_context(instance, result.cursor))
    assert not late.run_requests and "no symbol added" in late.skip_message


def test_new_symbol_assets_are_raw_prices_and_the_daily_assets_downstream():
    repo = defs.get_repository_def()
    daily = repo.get_job(MAIN_JOB).asset_layer.executable_asset_keys
    selection = dg.AssetSelection.assets("raw_prices", "price_revisions").downstream()
    downstream = selection.resolve(repo.asset_graph)
    # All but the LLM's analysis and the multipliers it feeds: a symbol added must not ask the
    # model again about every session of the history (a new watchlist row changes the prompt).
    assert {k.to_user_string() for k in downstream & daily} == {
        *NEW_SYMBOL_ASSETS,
        "market_analysis",
        "threshold_multipliers",
    }


DAILY_ASSETS = [symbols, raw_prices, indicators, market_environment, fundamentals, watchlist]


def test_backfill_run_fetches_only_the_new_symbol_and_updates_the_rest(tmp_path, clock, yahoo):
    instance, db = dg.DagsterInstance.ephemeral(), tmp_path / "t.duckdb"
    clock("2024-03-01 11:00")

    def resources(spec):
        return {
            "io_manager": DuckDBIOManager(database=str(db)),
            "price_source": PriceSourceResource(kind="yahoo", yahoo_base_url=yahoo.base_url),
            "universe": UniverseResource(spec=spec, price_source_kind="yahoo"),
            "fundamentals_source": FundamentalsResource(),
        }

    start, end = "2023-06-01", "2024-02-29"
    first = dg.materialize(
        DAILY_ASSETS,
        resources=resources("AAPL,MSFT"),
        tags=range_tags(start, end),
        instance=instance,
    )
    assert first.success
    before = query(db, "SELECT * FROM raw_prices ORDER BY symbol, date")
    breadth = "SELECT date, breadth_pct FROM market_environment ORDER BY date"
    breadth_before = query(db, breadth)
    dg.materialize([symbols], resources=resources("AAPL,MSFT,NVDA"), instance=instance)
    [request] = backfill_new_symbols.evaluate_tick(dg.build_sensor_context(instance)).run_requests
    assert (
        request.tags[sensors.RANGE_END] == end and request.tags[sensors.RANGE_START] == "2000-01-03"
    )

    # The requested run, as requested except that it starts where the served history starts:
    # over all 6,000 sessions since 2000 Dagster's per-partition bookkeeping alone takes minutes.
    yahoo.clear_log()
    run = dg.materialize(
        DAILY_ASSETS,
        selection=request.asset_selection,
        run_config=request.run_config,
        tags={**request.tags, sensors.RANGE_START: start},
        resources=resources("AAPL,MSFT,NVDA"),
        instance=instance,
    )
    assert run.success
    assert {r.symbol for r in yahoo.chart_requests(kind="history")} == {"NVDA"}
    after = query(db, "SELECT * FROM raw_prices ORDER BY symbol, date")
    pd.testing.assert_frame_equal(after[after["symbol"] != "NVDA"].reset_index(drop=True), before)
    assert len(after[after["symbol"] == "NVDA"]) == len(before[before["symbol"] == "AAPL"])
    # The sessions' rows downstream were recomputed: the breadth counts NVDA too now.
    breadth_after = query(db, breadth)
    assert len(breadth_after) == len(breadth_before) and not breadth_after.equals(breadth_before)
    assert query(db, "SELECT count(*) AS n FROM indicators WHERE symbol = 'NVDA'")["n"][0] > 0


def query(db, sql) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).df()


# --- failed runs --------------------------------------------------------------------------------


def test_a_failed_run_is_reported_with_its_step_and_error(tmp_path, aws_env):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [symbols, raw_prices],
        resources={
            "io_manager": DuckDBIOManager(database=str(tmp_path / "t.duckdb")),
            "price_source": PriceSourceResource(),
            "universe": UniverseResource(spec="AAPL,MSFT"),
        },
        partition_key="2024-07-05",
        run_config={"ops": {"raw_prices": {"config": {"symbols": ["ZZZZ"]}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    [failed_step] = result.get_step_failure_events()
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    topic, queue = topic_with_queue()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensors.NOTIFY_RUN_FAILURE,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        dagster_event=failure.dagster_event,
        resources={"notifier": NotifierResource(kind="sns", sns_topic_arn=topic)},
    ).for_run_failure()
    notify_run_failure(context)
    [envelope] = received(queue)
    assert envelope["Subject"] == (
        f"[trading_assets] run failed: __ephemeral_asset_job__, step {failed_step.step_key} "
        f"({result.run_id[:8]})"
    )
    lines = envelope["Message"].splitlines()
    assert lines[0] == f"run {result.run_id} of job __ephemeral_asset_job__ failed"
    assert "partition: 2024-07-05" in lines
    assert lines[-1].startswith(f"failed step {failed_step.step_key}: UnknownSymbolsError: ")
    assert "['ZZZZ']" in lines[-1]
    assert envelope["MessageAttributes"]["dedupe_key"]["Value"] == f"run-failure|{result.run_id}"


# --- schedules --------------------------------------------------------------------------------


def schedule_tick(schedule, day: str, hour: int, tz: str):
    when = pd.Timestamp(f"{day} {hour:02d}:00", tz=tz).to_pydatetime()
    context = dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


def test_daily_schedule_cron_and_the_week_of_independence_day():
    assert daily_after_close.cron_schedule == "30 18 * * 1-5"
    assert daily_after_close.execution_timezone == NY
    keys = {}
    for day in ("2024-07-01", "2024-07-02", "2024-07-03", "2024-07-04", "2024-07-05"):
        tick = schedule_tick(daily_after_close, day, 18, NY)
        keys[day] = [(r.partition_key, r.run_key) for r in tick.run_requests] or tick.skip_message
    assert keys == {
        "2024-07-01": [("2024-07-01", "daily-2024-07-01")],
        "2024-07-02": [("2024-07-02", "daily-2024-07-02")],
        "2024-07-03": [("2024-07-03", "daily-2024-07-03")],  # an early close is a session
        "2024-07-04": "2024-07-04 is not a XNYS session",
        "2024-07-05": [("2024-07-05", "daily-2024-07-05")],
    }


@pytest.mark.parametrize(
    "sunday, session",
    [
        ("2024-07-07", "2024-07-05"),
        ("2025-01-12", "2025-01-10"),  # the week of the 2025-01-09 closure (national mourning)
        ("2024-12-29", "2024-12-27"),
    ],
)
def test_weekly_schedule_sunday_tick(sunday, session):
    tick = schedule_tick(weekly_market_environment, sunday, 18, "UTC")
    assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [
        (session, f"weekly-environment-{session}")
    ]
