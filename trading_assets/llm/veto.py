"""The LLM as trade judge: asked about each stdev signal before it becomes a trade (the rounds are
core.backtest.veto's), it answers ``{"veto": true|false, "reasoning": "..."}``.

A judgement that fails (timeout, throttled past the retries, an error, an answer outside
VERDICT_SCHEMA) approves the signal: the tactic's own rules stand, and the row says why
(status ``fallback``). Judgements are reused by (symbol, signal date, prompt hash) from the stored
rows, as market_analysis' answers are; the prompt holds the signal's features and its session's
market environment, so a judgement is asked again only when those change.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from trading_assets.core.backtest.veto import SIGNAL_COLUMNS
from trading_assets.llm.analyse import (
    CALL_COLUMNS,
    FALLBACK,
    OK,
    Pricing,
    RetryPolicy,
    RunStats,
    complete_with_retries,
)
from trading_assets.llm.answer import AnswerError, json_object
from trading_assets.llm.clients import Completer, LLMError
from trading_assets.llm.prompt import ENVIRONMENT_FIELDS, Prompt, json_value

APPROVED, VETOED = "approved", "vetoed"
VERDICT_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["veto", "reasoning"],
    "properties": {
        "veto": {"type": "boolean", "description": "true: do not take this trade"},
        "reasoning": {"type": "string", "description": "why, in one or two sentences"},
    },
}
SYSTEM_PROMPT = f"""You review the entries of a swing-trading system's STDEV tactic before they \
are placed. A signal was judged at a session's close and fills at the next session's open: MR \
trades a z-score extreme back to the mean, TC trades the pull-back in a trend. Veto only a \
signal the market environment or the features make clearly unwise; otherwise approve. Answer \
with ONE JSON object and nothing else, matching this JSON Schema: \
{json.dumps(VERDICT_SCHEMA, sort_keys=True)}"""
# A stored review: the signal as the engine offered it, the verdict, and the call.
REVIEW_COLUMNS: tuple[str, ...] = (
    *SIGNAL_COLUMNS,
    "verdict",
    "status",
    "reasoning",
    "fallback_reason",
    *CALL_COLUMNS,
)


def parse_verdict(text: str) -> tuple[bool, str]:
    """(veto, reasoning) from the answer; AnswerError naming what is wrong."""
    value = json_object(text)
    problems = []
    if not isinstance(value.get("veto"), bool):
        problems.append(f"veto must be true or false, got {value.get('veto')!r}")
    if not isinstance(value.get("reasoning"), str):
        problems.append(f"reasoning must be a string, got {value.get('reasoning')!r}")
    if problems:
        raise AnswerError("; ".join(problems))
    return value["veto"], value["reasoning"]


def signal_prompt(signal: Mapping, environment: Mapping | None, model: str) -> Prompt:
    features = {k: json_value(signal[k]) for k in REVIEW_COLUMNS[:10] if k in signal}
    env = (
        {f: json_value(environment.get(f)) for f in ENVIRONMENT_FIELDS}
        if environment
        else "unknown"
    )
    user = (
        f"Session {signal['signal_date'].isoformat()}. Signal: "
        f"{json.dumps(features, sort_keys=True)}\nMarket environment: "
        f"{json.dumps(env, sort_keys=True)}\nApprove or veto this trade as the JSON object described."
    )
    digest = hashlib.sha256("\0".join((model, SYSTEM_PROMPT, user)).encode()).hexdigest()
    return Prompt(signal["signal_date"], SYSTEM_PROMPT, user, digest[:16])


class LLMTradeJudge:
    """A core.backtest.veto judge backed by a model; ``reviews()`` are the rows it judged."""

    def __init__(
        self,
        client: Completer,
        model: str,
        environment: pd.DataFrame,
        stored: pd.DataFrame,
        *,
        policy: RetryPolicy,
        pricing: Pricing,
        warn: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.model, self.policy, self.pricing = client, model, policy, pricing
        self.warn, self.sleep = warn, sleep
        self.environment = {
            pd.Timestamp(row["date"]).date(): row for row in environment.to_dict("records")
        } if "date" in environment else {}  # fmt: skip
        self.cached = _reusable(stored)
        self.stats = RunStats()
        self.rows: list[dict] = []

    def __call__(self, signals: pd.DataFrame) -> np.ndarray:
        verdicts = []
        for signal in signals.to_dict("records"):
            prompt = signal_prompt(signal, self.environment.get(signal["signal_date"]), self.model)
            key = (signal["symbol"], signal["signal_date"], prompt.prompt_hash)
            row = self.cached.get(key)
            if row is not None:
                self.stats.cache_hits += 1
                row = {**row, **{k: signal[k] for k in REVIEW_COLUMNS[:10]}}
            else:
                row = self._judge(signal, prompt)
            self.rows.append(row)
            verdicts.append(row["verdict"] == VETOED)
        return np.array(verdicts, dtype=bool)

    def reviews(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(REVIEW_COLUMNS))

    def _judge(self, signal: dict, prompt: Prompt) -> dict:
        row = {
            **{k: signal[k] for k in REVIEW_COLUMNS[:10]},
            "verdict": APPROVED,
            "status": OK,
            "reasoning": "",
            "fallback_reason": "",
            "model": self.model,
            "prompt_hash": prompt.prompt_hash,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
        }
        try:
            completion = complete_with_retries(
                self.client, prompt, self.policy, self.warn, self.stats, self.sleep
            )
        except LLMError as exc:
            return {**row, "status": FALLBACK, "fallback_reason": str(exc)}
        cost = self.pricing.cost(completion.input_tokens, completion.output_tokens)
        self.stats.input_tokens += completion.input_tokens
        self.stats.output_tokens += completion.output_tokens
        self.stats.cost_usd += cost
        row.update(
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost,
        )
        try:
            veto, reasoning = parse_verdict(completion.text)
        except AnswerError as exc:
            return {**row, "status": FALLBACK, "fallback_reason": f"invalid answer: {exc}"}
        return {**row, "verdict": VETOED if veto else APPROVED, "reasoning": reasoning}


def _reusable(stored: pd.DataFrame) -> dict[tuple, dict]:
    if stored is None or stored.empty or not set(REVIEW_COLUMNS) <= set(stored.columns):
        return {}
    ok = stored[stored["status"] == OK]
    return {
        (row["symbol"], pd.Timestamp(row["signal_date"]).date(), row["prompt_hash"]): row
        for row in ok[list(REVIEW_COLUMNS)].to_dict("records")
    }
