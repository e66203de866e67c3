"""trading_assets.llm: the answer schema, the prompt, and both real clients (urllib for the
OpenAI-compatible API, boto3 for Bedrock's Converse) against the local stub server
(llm_server.py) answering good answers, bad JSON, out-of-range values, 429s and hangs."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from trading_assets.core.backtest.multipliers import MULTIPLIER_COLUMNS
from trading_assets.llm.analyse import (
    FALLBACK,
    OK,
    Pricing,
    RetryPolicy,
    analyse_sessions,
)
from trading_assets.llm.answer import AnswerError, parse_answer
from trading_assets.llm.clients import LLMCallError, LLMTimeout, Throttled
from trading_assets.llm.prompt import MAX_WATCHLIST_SYMBOLS, build_prompt, build_prompts
from trading_assets.llm.resource import LLMResource
from trading_assets.settings import ConfigurationError
from trading_assets_tests.llm_server import (
    BEDROCK,
    OPENAI,
    THROTTLE,
    answer,
    answer_json,
    error,
    serve_llm,
    session_multiplier,
    sleep,
)

MODEL_OPENAI = "gpt-test-mini"
MODEL_BEDROCK = "anthropic.claude-3-haiku-20240307-v1:0"  # a colon, as real ids have
DAY = dt.date(2024, 3, 5)
FAST_RETRY = RetryPolicy(max_retries=3, base_delay=0.0, max_delay=0.0)


# --- the answer -------------------------------------------------------------------------------


def good(**values) -> str:
    body = {
        "analysis": "a",
        "mr_arm": 1.2,
        "mr_trigger": 0.8,
        "tc_arm": 1.0,
        "tc_trigger": 2.0,
        "confidence": 0.5,
        "reasoning": "r",
    }
    return json.dumps({**body, **values})


def test_a_valid_answer_is_read_whole_and_a_fenced_one_too():
    parsed = parse_answer(good())
    assert parsed.multipliers() == {
        "mr_arm": 1.2,
        "mr_trigger": 0.8,
        "tc_arm": 1.0,
        "tc_trigger": 2.0,
    }
    assert (parsed.confidence, parsed.reasoning) == (0.5, "r")
    assert parse_answer("```json\n" + good() + "\n```") == parsed
    # a key the schema does not know is ignored
    assert parse_answer(good(extra="x")) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json at all", "malformed JSON"),
        ('{"mr_arm": 1.0', "malformed JSON"),
        ("[1, 2]", "not a JSON object but list"),
        (good(mr_arm=2.5), "mr_arm=2.5 outside [0.5, 2.0]"),
        (good(tc_trigger=0.49), "tc_trigger=0.49 outside [0.5, 2.0]"),
        (good(confidence=1.5), "confidence=1.5 outside [0.0, 1.0]"),
        (good(mr_arm="1.2"), "mr_arm must be a number, got '1.2'"),
        (good(mr_arm=True), "mr_arm must be a number, got True"),
        (good(mr_arm=None), "mr_arm must be a number, got None"),
        (good(reasoning=3), "reasoning must be a string"),
        (good().replace('"mr_arm": 1.2', '"mr_arm": NaN'), "mr_arm must be a number, got nan"),
    ],
)
def test_a_bad_answer_is_an_answer_error_saying_why(text, reason):
    with pytest.raises(AnswerError, match=None) as caught:
        parse_answer(text)
    assert reason in str(caught.value)


def test_every_violation_is_named_not_only_the_first():
    body = json.loads(good(mr_arm=0.1, confidence=-1))
    del body["tc_arm"]
    message = str(pytest.raises(AnswerError, parse_answer, json.dumps(body)).value)
    assert "mr_arm=0.1" in message and "confidence=-1" in message and "missing tc_arm" in message


# --- the prompt -------------------------------------------------------------------------------


def features(session: dt.date, symbols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "symbol": symbols,
        "date": session,
        "close": [100.0 + i for i in range(len(symbols))],
        "zscore_20": [-2.123456, *[0.5] * (len(symbols) - 1)],
        "atr_pct_rank_252": 0.4,
        "ema_slope_20": float("nan"),
        "rs_rating": [float(i) for i in range(len(symbols))],
    })  # fmt: skip


def test_the_prompt_lists_benchmarks_and_the_strongest_watchlist_names_and_hashes_stably():
    stocks = [f"S{i:02d}" for i in range(40)]
    feats = features(DAY, ["SPY", "QQQ", "^VIX", *stocks])
    watch = pd.DataFrame({"symbol": stocks, "date": DAY})
    env = pd.DataFrame(
        {"date": [DAY], "environment": ["B"], "vix_close": [14.2], "breadth_pct": [61.0]}
    )
    prompt = build_prompt(DAY, env, feats, watch, MODEL_OPENAI)
    data = json.loads(prompt.user.split("\n")[1])
    assert [row["symbol"] for row in data["benchmarks"]] == ["QQQ", "SPY", "^VIX"]
    assert data["benchmarks"][1]["zscore_20"] == -2.123  # 4 significant digits
    assert data["benchmarks"][1]["ema_slope_20"] is None  # NaN is null
    # the strongest by RS first, at most MAX_WATCHLIST_SYMBOLS, but the size is the whole list's
    assert len(data["watchlist"]) == MAX_WATCHLIST_SYMBOLS and data["watchlist_size"] == 40
    assert data["watchlist"][0]["symbol"] == "S39"
    assert data["market_environment"]["environment"] == "B"
    assert data["market_environment"]["spy_close"] is None  # a column it was not given
    # same rows -> same hash; another model or another feature value -> another hash
    assert build_prompt(DAY, env, feats, watch, MODEL_OPENAI).prompt_hash == prompt.prompt_hash
    assert build_prompt(DAY, env, feats, watch, "other").prompt_hash != prompt.prompt_hash
    moved = feats.assign(zscore_20=feats["zscore_20"] + 0.01)
    assert build_prompt(DAY, env, moved, watch, MODEL_OPENAI).prompt_hash != prompt.prompt_hash


def test_a_session_without_environment_or_watchlist_still_has_a_prompt():
    empty = pd.DataFrame(columns=["symbol", "date"])
    prompt = build_prompt(DAY, pd.DataFrame(columns=["date"]), features(DAY, ["SPY"]), empty, "m")
    data = json.loads(prompt.user.split("\n")[1])
    assert data["market_environment"] == "unknown"
    assert data["watchlist"] == [] and data["watchlist_size"] == 0
    assert "JSON Schema" in prompt.system and '"mr_arm"' in prompt.system


# --- the clients against the stub -------------------------------------------------------------


@pytest.fixture
def bedrock_env(monkeypatch):
    def point_at(endpoint: str) -> None:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"):
            monkeypatch.delenv(name, raising=False)

    return point_at


def resource_for(api: str, server, bedrock_env, **kw) -> LLMResource:
    if api == OPENAI:
        return LLMResource(
            kind="openai", model=MODEL_OPENAI, base_url=server.base_url, api_key="sk-test", **kw
        )
    bedrock_env(server.endpoint)
    return LLMResource(kind="bedrock", model=MODEL_BEDROCK, **kw)


@pytest.mark.parametrize("api", [OPENAI, BEDROCK])
def test_each_client_sends_both_messages_and_reads_text_and_usage(api, bedrock_env):
    with serve_llm() as server:
        server.queue(answer(good(), input_tokens=321, output_tokens=45))
        completion = (
            resource_for(api, server, bedrock_env)
            .client()
            .complete("SYS", "Session 2024-03-05 USER")
        )
    assert parse_answer(completion.text).mr_arm == 1.2
    assert (completion.input_tokens, completion.output_tokens) == (321, 45)
    [request] = server.requests
    assert (request.api, request.system, request.user) == (api, "SYS", "Session 2024-03-05 USER")
    assert request.model == (MODEL_OPENAI if api == OPENAI else MODEL_BEDROCK)
    if api == OPENAI:
        assert request.headers["authorization"] == "Bearer sk-test"
    else:  # SigV4 with the fake credentials, for the bedrock service
        assert "Credential=testing/" in request.headers["authorization"]
        assert "/bedrock/aws4_request" in request.headers["authorization"]


@pytest.mark.parametrize("api", [OPENAI, BEDROCK])
def test_each_client_tells_throttling_timeouts_and_errors_apart(api, bedrock_env):
    with serve_llm() as server:
        client = resource_for(api, server, bedrock_env, timeout=0.5).client()
        server.queue(THROTTLE)
        with pytest.raises(Throttled):
            client.complete("s", "u")
        server.queue(sleep(30))
        with pytest.raises(LLMTimeout, match="within 0.5 s"):
            client.complete("s", "u")
        server.queue(error(500))
        with pytest.raises(LLMCallError, match="500|InternalServer"):
            client.complete("s", "u")
        # one request each: botocore's own retries are off, the resource's are the only ones
        assert len(server.requests) == 3


def test_an_unreachable_endpoint_is_a_call_error():
    with serve_llm() as server:
        url = server.base_url
    client = LLMResource(kind="openai", model="m", base_url=url, timeout=2).client()
    with pytest.raises(LLMCallError, match="cannot reach"):
        client.complete("s", "u")


def test_the_resource_refuses_an_unknown_kind_and_a_missing_model():
    with pytest.raises(ConfigurationError, match="unknown LLM kind 'gpt'"):
        LLMResource(kind="gpt").client()
    with pytest.raises(ConfigurationError, match="TRADING_ASSETS_LLM_MODEL"):
        LLMResource(kind="openai").client()
    assert not LLMResource().enabled


# --- analyse_sessions: retries, fallbacks, cache, cost ----------------------------------------


def prompts_for(days: list[dt.date], model: str):
    empty = pd.DataFrame(columns=["symbol", "date"])
    return [
        build_prompt(day, pd.DataFrame(columns=["date"]), features(day, ["SPY"]), empty, model)
        for day in days
    ]


DAYS = [
    dt.date(2024, 3, 4),
    dt.date(2024, 3, 5),
    dt.date(2024, 3, 6),
    dt.date(2024, 3, 7),
    dt.date(2024, 3, 8),
]


def run(server, api, bedrock_env, stored=None, policy=FAST_RETRY, **kw):
    resource = resource_for(api, server, bedrock_env, **kw)
    warnings: list[str] = []
    frame, stats = analyse_sessions(
        prompts_for(DAYS, resource.model),
        resource.client(),
        resource.model,
        stored if stored is not None else pd.DataFrame(),
        policy=policy,
        pricing=Pricing(input_per_1k=0.5, output_per_1k=2.0),
        warn=warnings.append,
        sleep=lambda _: None,
    )
    return frame, stats, warnings


@pytest.mark.parametrize("api", [OPENAI, BEDROCK])
def test_each_fault_falls_back_to_one_with_its_reason_and_good_sessions_keep_their_answer(
    api, bedrock_env
):
    with serve_llm() as server:
        server.queue(
            answer("Sure! Here you go: {mr_arm: 1.2}", 500, 20),  # 03-04: bad JSON
            answer_json(mr_arm=2.5),  # 03-05: out of range
            sleep(30),  # 03-06: hangs past the timeout
            THROTTLE,  # 03-07: 429, then the stub's good answer
            # 03-08: the stub's good answer
        )
        frame, stats, warnings = run(server, api, bedrock_env, timeout=0.5)
    by_day = frame.set_index("date")
    assert list(frame["status"]) == [FALLBACK, FALLBACK, FALLBACK, OK, OK]
    reasons = by_day["fallback_reason"]
    assert reasons[DAYS[0]].startswith("invalid answer: malformed JSON")
    assert reasons[DAYS[1]] == "invalid answer: mr_arm=2.5 outside [0.5, 2.0]"
    assert reasons[DAYS[2]].startswith("timeout: no answer")
    # nothing clamped: every fallback is exactly 1.0, the bad answer kept for the record
    fallen = frame[frame["status"] == FALLBACK]
    assert (fallen[list(MULTIPLIER_COLUMNS)] == 1.0).all().all()
    assert by_day.loc[DAYS[1], "raw_answer"] == json.loads(
        json.dumps(by_day.loc[DAYS[1], "raw_answer"])
    )
    assert json.loads(by_day.loc[DAYS[1], "raw_answer"])["mr_arm"] == 2.5
    # the answered sessions carry the stub's values for their session
    for day in (DAYS[3], DAYS[4]):
        assert by_day.loc[day, "mr_arm"] == session_multiplier(day.isoformat())
        assert by_day.loc[day, "tc_trigger"] == 0.9
        assert by_day.loc[day, "reasoning"] == f"reasoning for {day.isoformat()}"
    # one throttled retry, logged as a warning naming the session
    assert stats.retries == 1 and len(warnings) == 1 and "2024-03-07" in warnings[0]
    assert stats.calls == 6 == len(server.requests)
    # tokens of every answer that came back (bad ones cost too), priced per 1k
    answered = [(500, 20), (1200, 150), (1200, 150), (1200, 150)]
    assert stats.input_tokens == sum(i for i, _ in answered)
    assert stats.output_tokens == sum(o for _, o in answered)
    assert stats.cost_usd == pytest.approx(
        sum(i * 0.5 / 1000 + o * 2.0 / 1000 for i, o in answered)
    )
    assert frame["cost_usd"].sum() == pytest.approx(stats.cost_usd)
    assert by_day.loc[DAYS[2], "input_tokens"] == 0  # a timeout reports no usage


def test_throttling_past_the_retries_falls_back_and_the_waits_back_off(bedrock_env):
    waits: list[float] = []
    policy = RetryPolicy(max_retries=2, base_delay=0.5, max_delay=1.5)
    with serve_llm() as server:
        server.queue(THROTTLE, THROTTLE, THROTTLE, THROTTLE)
        resource = resource_for(OPENAI, server, bedrock_env)
        frame, stats = analyse_sessions(
            prompts_for(DAYS[:2], MODEL_OPENAI),
            resource.client(),
            MODEL_OPENAI,
            pd.DataFrame(),
            policy=policy,
            pricing=Pricing(),
            warn=lambda _: None,
            sleep=waits.append,
        )
    assert list(frame["status"]) == [FALLBACK, OK]
    assert frame["fallback_reason"][0].startswith("throttled, gave up after 2 retries")
    # 0.5, 1.0 for the first session (Retry-After 0 is below the backoff); 1.5 capped next
    assert waits == [0.5, 1.0, 0.5]
    assert stats.calls == 5


def test_stored_ok_answers_are_reused_and_fallbacks_are_asked_again(bedrock_env):
    with serve_llm() as server:
        server.queue(error(503))
        first, stats1, _ = run(server, OPENAI, bedrock_env)
        assert list(first["status"]) == [FALLBACK, OK, OK, OK, OK]
        second, stats2, _ = run(server, OPENAI, bedrock_env, stored=first)
        # only the fallback session was asked again
        assert [r.session for r in server.requests[len(DAYS) :]] == ["2024-03-04"]
    assert (stats1.calls, stats2.calls, stats2.cache_hits) == (5, 1, 4)
    assert list(second["status"]) == [OK] * 5
    pd.testing.assert_frame_equal(
        second.iloc[1:].reset_index(drop=True), first.iloc[1:].reset_index(drop=True)
    )
    # the run's cost counts new calls only; the cached rows keep what they cost
    assert stats2.cost_usd == pytest.approx(1200 * 0.5 / 1000 + 150 * 2.0 / 1000)
    assert second["cost_usd"].sum() == pytest.approx(5 * stats2.cost_usd)


def test_a_cached_answer_to_another_prompt_is_not_reused(bedrock_env):
    with serve_llm() as server:
        first, _, _ = run(server, OPENAI, bedrock_env)
        stored = first.assign(prompt_hash="0" * 16)
        _, stats, _ = run(server, OPENAI, bedrock_env, stored=stored)
    assert (stats.calls, stats.cache_hits) == (5, 0)


def test_the_resource_from_the_environment(monkeypatch):
    for name in ("TRADING_ASSETS_LLM", "TRADING_ASSETS_LLM_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert LLMResource.from_env().kind == "none"
    monkeypatch.setenv("TRADING_ASSETS_LLM", "openai")
    monkeypatch.setenv("TRADING_ASSETS_LLM_MODEL", "gpt-x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("TRADING_ASSETS_LLM_PRICE_PER_1K_INPUT", "0.15")
    resource = LLMResource.from_env()
    assert (resource.kind, resource.input_price_per_1k, resource.output_price_per_1k) == (
        "openai",
        0.15,
        0.0,
    )
    monkeypatch.setenv("TRADING_ASSETS_LLM_PRICE_PER_1K_OUTPUT", "cheap")
    with pytest.raises(ConfigurationError, match="PER_1K_OUTPUT='cheap' is not a price"):
        LLMResource.from_env()
    monkeypatch.setenv("TRADING_ASSETS_LLM", "claude")
    with pytest.raises(ConfigurationError, match="TRADING_ASSETS_LLM='claude'"):
        LLMResource.from_env()


def test_build_prompts_splits_by_date_and_gives_what_build_prompt_gives_per_session():
    days = [dt.date(2024, 3, 4), DAY, dt.date(2024, 3, 6)]
    feats = pd.concat([features(day, ["SPY", "QQQ", "AAA", "BBB"]) for day in days])
    feats.loc[feats["date"] == DAY, "zscore_20"] = 1.5
    watch = pd.DataFrame({"symbol": ["AAA", "BBB"], "date": [DAY, days[2]]})
    env = pd.DataFrame({"date": days[1:], "environment": ["A", "C"]})
    prompts = build_prompts(days, env, feats, watch, "m")
    assert prompts == [build_prompt(day, env, feats, watch, "m") for day in days]
    assert len({p.prompt_hash for p in prompts}) == 3
    assert json.loads(prompts[0].user.split("\n")[1])["market_environment"] == "unknown"
