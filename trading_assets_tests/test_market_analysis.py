"""market_analysis and threshold_multipliers on the bundled sample, the LLM being the local stub
server (llm_server.py) through the real clients: rows per session, fallbacks with their reasons
and the WARN check, the cache across runs, throttling as WARNING events, the precedence of the
file and the run config over the LLM, and the default `none` resource making no call at all."""

from __future__ import annotations

import json
import logging
import shutil

import dagster as dg
import pandas as pd
import pytest

from trading_assets.assets.analysis import LLM_ANSWERS_VALID, market_analysis
from trading_assets.assets.backtests import threshold_multipliers
from trading_assets.llm.analyse import FALLBACK, OFF, OK
from trading_assets.llm.resource import LLMResource
from trading_assets_tests.llm_server import (
    THROTTLE,
    answer,
    answer_json,
    serve_llm,
    session_multiplier,
)
from trading_assets_tests.test_assets_portfolio import DAILY, query, resources

WARM_UP_START = "2022-12-01"  # enough sessions for the 252-session ATR percentile
START, END = "2024-03-04", "2024-03-08"
SESSIONS = ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08"]
GRAPH = [
    *[a for a in DAILY if a is not threshold_multipliers],
    market_analysis,
    threshold_multipliers,
]
MODEL = "gpt-test-mini"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def materialize(
    db, tmp_path, llm: LLMResource, selection=None, start=START, end=END, config=None, instance=None
):
    return dg.materialize(
        GRAPH,
        selection=selection,
        resources={**resources(db, tmp_path / "reports"), "llm": llm},
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
        run_config=config,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def openai(server, **kw) -> LLMResource:
    return LLMResource(
        kind="openai",
        model=MODEL,
        base_url=server.base_url,
        api_key="sk-test",
        timeout=kw.pop("timeout", 5.0),
        retry_base_delay=0.01,
        input_price_per_1k=0.15,
        output_price_per_1k=0.6,
        **kw,
    )


def build_daily(root):
    """The daily graph with the default `none` LLM, warm-up included, in ``root``/daily.duckdb."""
    db = root / "daily.duckdb"
    result = materialize(db, root, LLMResource(), start=WARM_UP_START)
    assert result.success
    return db


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    return build_daily(tmp_path_factory.mktemp("analysis"))


@pytest.fixture
def db(daily, tmp_path):
    copy = tmp_path / "copy.duckdb"
    shutil.copy(daily, copy)
    return copy


def analysis_rows(db) -> pd.DataFrame:
    rows = query(db, "SELECT * FROM market_analysis ORDER BY date")
    return rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d"))


def multipliers(db, start=START) -> pd.DataFrame:
    rows = query(db, f"SELECT * FROM threshold_multipliers WHERE date >= '{start}' ORDER BY date")
    return rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")).set_index("date")


def checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_the_none_resource_stores_off_sessions_at_one_and_asks_nothing(daily):
    rows = analysis_rows(daily)
    assert len(rows) > 150 and set(rows["status"]) == {OFF}
    assert (rows[["mr_arm", "mr_trigger", "tc_arm", "tc_trigger"]] == 1.0).all().all()
    assert (rows["input_tokens"] == 0).all() and (rows["model"] == "").all()
    assert set(multipliers(daily, WARM_UP_START)["source"]) == {"default"}


def test_ok_answers_feed_threshold_multipliers_and_a_bad_one_falls_back_with_a_warn_check(
    db, tmp_path
):
    with serve_llm() as server:
        server.queue(answer("I think the market is fine.", 900, 12))  # 03-04: not JSON
        result = materialize(db, tmp_path, openai(server), [market_analysis, threshold_multipliers])
    assert result.success  # a WARN check does not fail the run
    check = checks(result)[LLM_ANSWERS_VALID]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["fallback_sessions"].value == 1

    rows = analysis_rows(db).set_index("date").loc[SESSIONS]
    assert list(rows["status"]) == [FALLBACK, OK, OK, OK, OK]
    assert rows.loc["2024-03-04", "fallback_reason"].startswith("invalid answer: malformed JSON")
    assert rows.loc["2024-03-04", "raw_answer"] == "I think the market is fine."
    assert (rows["model"] == MODEL).all() and rows["prompt_hash"].str.len().eq(16).all()
    stored = multipliers(db)
    for day in SESSIONS[1:]:
        assert stored.loc[day, "mr_arm"] == rows.loc[day, "mr_arm"] == session_multiplier(day)
        assert stored.loc[day, "tc_trigger"] == 0.9
        assert stored.loc[day, "source"] == f"llm:{MODEL}"
        assert stored.loc[day, "reasoning"] == f"reasoning for {day}"
    assert (
        stored.loc["2024-03-04", "source"] == "default"
        and stored.loc["2024-03-04", "mr_arm"] == 1.0
    )

    # tokens and cost: 900 + 12 for the bad answer, 1200 + 150 for each good one
    meta = result.asset_materializations_for_node("market_analysis")[0].metadata
    assert meta["input_tokens"].value == 900 + 4 * 1200
    assert meta["output_tokens"].value == 12 + 4 * 150
    expected = (900 + 4 * 1200) * 0.15 / 1000 + (12 + 4 * 150) * 0.6 / 1000
    assert meta["cost_usd"].value == pytest.approx(expected)
    assert rows["cost_usd"].sum() == pytest.approx(expected)
    assert (
        result.asset_materializations_for_node("threshold_multipliers")[0]
        .metadata["sessions_from_llm"]
        .value
        == 4
    )


def test_the_prompt_carries_the_stored_features_of_the_benchmarks_and_the_watchlist(db, tmp_path):
    with serve_llm() as server:
        result = materialize(
            db, tmp_path, openai(server), [market_analysis], "2024-03-05", "2024-03-05"
        )
    assert result.success
    [request] = server.requests
    data = json.loads(request.user.split("\n")[1])
    # the independent reference: the stored tables, read with SQL
    spy = query(db, "SELECT * FROM indicators WHERE symbol = 'SPY' AND date = '2024-03-05'").iloc[0]
    served = {row["symbol"]: row for row in data["benchmarks"]}
    assert set(served) == {"SPY", "QQQ", "^VIX"}
    assert served["SPY"]["zscore_20"] == pytest.approx(spy["zscore_20"], rel=1e-3)
    assert served["SPY"]["atr_pct_rank_252"] == pytest.approx(spy["atr_pct_rank_252"], rel=1e-3)
    assert served["SPY"]["ema_slope_20"] == pytest.approx(spy["ema_slope_20"], rel=1e-3)
    env = query(db, "SELECT * FROM market_environment WHERE date = '2024-03-05'").iloc[0]
    assert data["market_environment"]["environment"] == env["environment"]
    assert data["market_environment"]["vix_close"] == pytest.approx(env["vix_close"], rel=1e-3)
    listed = query(db, "SELECT symbol FROM watchlist WHERE date = '2024-03-05'")["symbol"]
    assert data["watchlist_size"] == len(listed)
    assert {row["symbol"] for row in data["watchlist"]} <= set(listed)


def test_a_second_run_reuses_ok_answers_and_asks_only_the_fallback_again(db, tmp_path):
    with serve_llm() as server:
        server.queue(answer_json(mr_arm=3.0))  # 03-04 out of range
        first = materialize(db, tmp_path, openai(server), [market_analysis, threshold_multipliers])
        asked_first = len(server.requests)
        second = materialize(db, tmp_path, openai(server), [market_analysis, threshold_multipliers])
        asked_again = [r.session for r in server.requests[asked_first:]]
    assert first.success and second.success and asked_first == 5
    assert asked_again == ["2024-03-04"]
    meta = second.asset_materializations_for_node("market_analysis")[0].metadata
    assert (meta["calls"].value, meta["cache_hits"].value) == (1, 4)
    assert meta["input_tokens"].value == 1200  # the run pays for one call only
    assert checks(second)[LLM_ANSWERS_VALID].passed
    assert set(analysis_rows(db)["status"].iloc[-5:]) == {OK}
    assert multipliers(db).loc["2024-03-04", "mr_arm"] == session_multiplier("2024-03-04")


def test_throttling_is_retried_and_each_retry_is_a_warning_of_the_run(db, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    with serve_llm() as server:
        server.queue(THROTTLE, THROTTLE)
        result = materialize(
            db, tmp_path, openai(server), [market_analysis], "2024-03-05", "2024-03-05",
            instance=instance,
        )  # fmt: skip
    assert result.success and checks(result)[LLM_ANSWERS_VALID].passed
    assert len(server.requests) == 3
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event is None and entry.level == logging.WARNING
    ]
    assert len(warnings) == 2
    assert all("LLM throttled on session 2024-03-05" in w and "HTTP 429" in w for w in warnings)
    assert "retry 1/4" in warnings[0] and "retry 2/4" in warnings[1]
    meta = result.asset_materializations_for_node("market_analysis")[0].metadata
    assert meta["retries"].value == 2


def test_the_file_and_the_run_config_take_precedence_over_the_llm(db, tmp_path, monkeypatch):
    with serve_llm() as server:
        assert materialize(db, tmp_path, openai(server), [market_analysis]).success
    path = tmp_path / "multipliers.csv"
    path.write_text(
        "date,mr_arm,mr_trigger,tc_arm,tc_trigger,confidence,reasoning,source\n"
        "2024-03-05,0.5,0.5,0.5,0.5,1.0,analyst's view,analyst\n"
    )
    monkeypatch.setenv("TRADING_ASSETS_MULTIPLIERS_PATH", str(path))
    llm_off = LLMResource()  # threshold_multipliers reads the stored answers, it asks nothing
    assert materialize(db, tmp_path, llm_off, [threshold_multipliers]).success
    stored = multipliers(db)
    assert stored.loc["2024-03-05", "source"] == "file:multipliers.csv"
    assert stored.loc["2024-03-05", "mr_arm"] == 0.5
    assert set(stored.drop(index="2024-03-05")["source"]) == {f"llm:{MODEL}"}

    config = {"ops": {"threshold_multipliers": {"config": {"tc_arm": 1.5, "reasoning": "mine"}}}}
    assert materialize(db, tmp_path, llm_off, [threshold_multipliers], config=config).success
    stored = multipliers(db)
    assert stored.loc["2024-03-05", "source"] == "file:multipliers.csv"
    others = stored.drop(index="2024-03-05")
    assert set(others["source"]) == {"config"} and (others["tc_arm"] == 1.5).all()
    assert (others["mr_arm"] == 1.0).all()  # the config's own values, not the LLM's


def test_bedrock_through_the_asset(db, tmp_path, monkeypatch):
    with serve_llm() as server:
        for name, value in {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        llm = LLMResource(kind="bedrock", model=BEDROCK_MODEL, timeout=5.0)
        result = materialize(db, tmp_path, llm, [market_analysis, threshold_multipliers])
    assert result.success
    assert {r.api for r in server.requests} == {"bedrock"} and len(server.requests) == 5
    assert set(multipliers(db)["source"]) == {f"llm:{BEDROCK_MODEL}"}


def test_multiplier_effect_trades_stdev_with_and_without_the_recorded_multipliers(db, tmp_path):
    from trading_assets.assets.backtests import backtests
    from trading_assets.assets.multiplier_effect import multiplier_effect
    from trading_assets.assets.performance import performance_metrics, trade_journal
    from trading_assets.sensors import every_strategy_tags

    portfolio = [backtests, trade_journal, performance_metrics, multiplier_effect]

    def run_portfolio():
        result = dg.materialize(
            [*GRAPH, *portfolio],
            selection=portfolio,
            resources={**resources(db, tmp_path / "reports"), "llm": LLMResource()},
            tags=every_strategy_tags(),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert result.success
        return query(db, "SELECT * FROM multiplier_effect").set_index("strategy")

    neutral = run_portfolio()
    assert list(neutral.index) == ["stdev", "stdev_neutral"]
    assert neutral.loc["stdev", "sessions_not_neutral"] == 0
    # all multipliers 1.0: both rows are the stored stdev backtest, as performance_metrics has it
    metrics = query(db, "SELECT * FROM performance_metrics").set_index("strategy").loc["stdev"]
    for name in ("stdev", "stdev_neutral"):
        for key in ("total_return", "sharpe", "max_drawdown", "trade_count", "expectancy_r"):
            assert neutral.loc[name, key] == pytest.approx(metrics[key], nan_ok=True), key
    assert metrics["trade_count"] > 0

    # wider MR entries and rarer TC entries on every stored session: the recorded row moves, the
    # neutral one does not
    config = {"ops": {"threshold_multipliers": {"config": {"mr_arm": 0.5, "tc_arm": 2.0}}}}
    changed = materialize(
        db, tmp_path, LLMResource(), [threshold_multipliers], WARM_UP_START, END, config=config
    )
    assert changed.success
    moved = run_portfolio()
    sessions = query(db, "SELECT count(*) AS n FROM threshold_multipliers")["n"][0]
    assert moved.loc["stdev", "sessions_not_neutral"] == sessions
    assert moved.loc["stdev", "trade_count"] != moved.loc["stdev_neutral", "trade_count"]
    pd.testing.assert_series_equal(moved.loc["stdev_neutral"], neutral.loc["stdev_neutral"])


def test_prod_storage_answers_cached_and_read_back_from_s3(aws_env, tmp_path):
    """The same asset on the prod IO manager (Parquet in moto's S3): the cache and
    threshold_multipliers read market_analysis' rows back through S3ParquetIOManager.read_rows."""
    import boto3

    from trading_assets.storage.s3_io import S3ParquetIOManager

    bucket = "llm-analysis-test"
    boto3.client("s3").create_bucket(Bucket=bucket)

    def run(server):
        return dg.materialize(
            GRAPH,
            resources={
                **resources(tmp_path / "unused.duckdb", tmp_path / "reports"),
                "io_manager": S3ParquetIOManager(bucket=bucket, prefix="wh"),
                "llm": openai(server),
            },
            tags={
                "dagster/asset_partition_range_start": "2024-02-26",
                "dagster/asset_partition_range_end": END,
            },
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    with serve_llm() as server:
        first = run(server)
        asked = len(server.requests)
        second = run(server)
        asked_again = len(server.requests) - asked
    assert first.success and second.success
    assert asked == 10 and asked_again == 0  # two weeks, then every answer from the stored rows
    meta = second.asset_materializations_for_node("threshold_multipliers")[0].metadata
    assert meta["sessions_from_llm"].value == 10
