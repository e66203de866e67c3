"""One market_analysis row per session: ask the model, validate, fall back, reuse stored answers.

A row's ``status``:
- ``ok``: a valid answer; its multipliers feed threshold_multipliers;
- ``fallback``: no usable answer (throttled past the retries, a timeout, an error status, malformed
  JSON, a value outside the schema): the multipliers are 1.0 and ``fallback_reason`` says why;
- ``off``: the ``none`` resource, no call made, multipliers 1.0.

Cache: the stored row of a session is reused when it is ``ok`` and its ``prompt_hash`` is the one
built now (same model, same features, same wording), so re-running a session or a backfill over
stored sessions pays nothing. A fallback is asked again the next time.

Cost: ``(input_tokens x input_price + output_tokens x output_price) / 1000`` from the API's usage
fields; a cached row keeps what its answer cost when it was asked, the run's totals count new
calls only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from trading_assets.core.backtest.multipliers import COLUMNS as MULTIPLIER_FRAME_COLUMNS
from trading_assets.core.backtest.multipliers import MULTIPLIER_COLUMNS, NEUTRAL
from trading_assets.llm.answer import AnswerError, parse_answer
from trading_assets.llm.clients import Completer, Completion, LLMError, LLMTimeout, Throttled
from trading_assets.llm.prompt import Prompt

OK, FALLBACK, OFF = "ok", "fallback", "off"
STATUSES = (OK, FALLBACK, OFF)
# What every stored LLM answer records of its call (market_analysis' rows, the trade reviews).
CALL_COLUMNS: tuple[str, ...] = (
    "model",
    "prompt_hash",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "date",
    "analysis",
    *MULTIPLIER_COLUMNS,
    "confidence",
    "reasoning",
    "status",
    "fallback_reason",
    *CALL_COLUMNS,
    "raw_answer",
)
# threshold_multipliers' `source` of a session set by an ok answer: llm:<model>.
LLM_SOURCE_PREFIX = "llm:"
OFF_REASONING = "no LLM configured (resource 'none'): the configured thresholds"


@dataclass(frozen=True)
class RetryPolicy:
    """Throttling only: up to ``max_retries`` retries, waiting base_delay x 2^k (at least the
    server's Retry-After, at most max_delay)."""

    max_retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(f"retry settings must be >= 0, got {self}")

    def delay(self, retry: int, retry_after: float | None) -> float:
        wait = max(self.base_delay * 2**retry, retry_after or 0.0)
        return min(wait, self.max_delay)


@dataclass(frozen=True)
class Pricing:
    """US dollars per 1,000 tokens (0: cost not tracked)."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000


@dataclass
class RunStats:
    """What one materialisation spent: new calls, retries, cache hits, tokens and dollars."""

    calls: int = 0
    retries: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    fallbacks: dict[str, str] = field(default_factory=dict)

    def usage(self) -> dict[str, int | float]:
        """The run's calls, retries, cache hits, tokens and cost (USD), for asset metadata."""
        return {
            "calls": self.calls,
            "retries": self.retries,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def complete_with_retries(
    client: Completer,
    prompt: Prompt,
    policy: RetryPolicy,
    warn: Callable[[str], None],
    stats: RunStats,
    sleep: Callable[[float], None] = time.sleep,
) -> Completion:
    """The completion of ``prompt``, retrying Throttled with backoff (each retry a warning);
    Throttled after the last retry, LLMTimeout and other LLMErrors propagate."""
    for retry in range(policy.max_retries + 1):
        stats.calls += 1
        try:
            return client.complete(prompt.system, prompt.user)
        except Throttled as exc:
            if retry == policy.max_retries:
                raise Throttled(
                    f"throttled, gave up after {policy.max_retries} retries: {exc}"
                ) from None
            wait = policy.delay(retry, exc.retry_after)
            warn(
                f"LLM throttled on session {prompt.session} ({exc}); retry "
                f"{retry + 1}/{policy.max_retries} in {wait:.2f} s"
            )
            stats.retries += 1
            sleep(wait)
    raise AssertionError("unreachable")


def analyse_sessions(
    prompts: Sequence[Prompt],
    client: Completer,
    model: str,
    stored: pd.DataFrame,
    *,
    policy: RetryPolicy,
    pricing: Pricing,
    warn: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[pd.DataFrame, RunStats]:
    """ANALYSIS_COLUMNS, one row per prompt (session order kept); ``stored`` is the table's rows
    of these sessions (may be empty or lack columns: a table never written)."""
    stats = RunStats()
    reusable = _reusable(stored)
    rows = []
    for prompt in prompts:
        hit = reusable.get((prompt.session, prompt.prompt_hash))
        if hit is not None:
            stats.cache_hits += 1
            rows.append({**hit, "date": prompt.session})
            continue
        rows.append(_ask(prompt, client, model, policy, pricing, warn, sleep, stats))
    return _frame(rows), stats


def off_rows(sessions: Sequence) -> pd.DataFrame:
    """The ``none`` resource's rows: 1.0, status off, no call."""
    return _frame([
        {**_neutral(session, "", ""), "status": OFF, "reasoning": OFF_REASONING}
        for session in sessions
    ])  # fmt: skip


def _ask(prompt, client, model, policy, pricing, warn, sleep, stats: RunStats) -> dict:
    try:
        completion = complete_with_retries(client, prompt, policy, warn, stats, sleep)
    except LLMTimeout as exc:
        return _fallback(prompt, model, f"timeout: {exc}", stats)
    except LLMError as exc:
        return _fallback(prompt, model, str(exc), stats)
    tokens = completion.input_tokens, completion.output_tokens
    cost = pricing.cost(*tokens)
    stats.input_tokens += tokens[0]
    stats.output_tokens += tokens[1]
    stats.cost_usd += cost
    spent = {"input_tokens": tokens[0], "output_tokens": tokens[1], "cost_usd": cost}
    try:
        answer = parse_answer(completion.text)
    except AnswerError as exc:
        row = _fallback(prompt, model, f"invalid answer: {exc}", stats)
        return {**row, **spent, "raw_answer": completion.text}
    return {
        **_neutral(prompt.session, model, prompt.prompt_hash),
        **spent,
        **{name: float(value) for name, value in answer.multipliers().items()},
        "analysis": answer.analysis,
        "confidence": float(answer.confidence),
        "reasoning": answer.reasoning,
        "status": OK,
        "raw_answer": completion.text,
    }


def _fallback(prompt: Prompt, model: str, reason: str, stats: RunStats) -> dict:
    stats.fallbacks[prompt.session.isoformat()] = reason
    return {
        **_neutral(prompt.session, model, prompt.prompt_hash),
        "status": FALLBACK,
        "fallback_reason": reason,
        "reasoning": f"fallback to 1.0: {reason}",
    }


def _neutral(session, model: str, prompt_hash: str) -> dict:
    return {
        "date": session,
        "analysis": "",
        **dict.fromkeys(MULTIPLIER_COLUMNS, NEUTRAL),
        "confidence": None,
        "reasoning": "",
        "status": OFF,
        "fallback_reason": "",
        "model": model,
        "prompt_hash": prompt_hash,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "raw_answer": "",
    }


def _reusable(stored: pd.DataFrame) -> dict[tuple, dict]:
    if stored is None or stored.empty or not set(ANALYSIS_COLUMNS) <= set(stored.columns):
        return {}
    ok = stored[stored["status"] == OK]
    return {
        (pd.Timestamp(row["date"]).date(), row["prompt_hash"]): {
            c: row[c] for c in ANALYSIS_COLUMNS
        }
        for row in ok.to_dict("records")
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(ANALYSIS_COLUMNS))
    numbers = {c: "float64" for c in (*MULTIPLIER_COLUMNS, "confidence", "cost_usd")}
    text = {
        c: "string"
        for c in ("analysis", "reasoning", "status", "fallback_reason", "model", "prompt_hash")
    }
    return frame.astype({**numbers, **text, "raw_answer": "string"}).astype(
        {"input_tokens": "int64", "output_tokens": "int64"}
    )


def llm_multipliers(stored: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows of stored market_analysis rows as a threshold-multipliers frame (COLUMNS of
    core.backtest.multipliers, not yet validated), ``source`` = ``llm:<model>``; no rows when
    nothing is stored (a table never written reads back without columns)."""
    if stored is None or stored.empty or "status" not in stored.columns:
        return pd.DataFrame(columns=list(MULTIPLIER_FRAME_COLUMNS))
    ok = stored[stored["status"] == OK]
    return pd.DataFrame({
        "date": pd.to_datetime(ok["date"]).dt.date,
        **{name: ok[name].astype("float64") for name in MULTIPLIER_COLUMNS},
        "confidence": ok["confidence"].astype("float64"),
        "reasoning": ok["reasoning"].astype(object),
        "source": LLM_SOURCE_PREFIX + ok["model"].astype(str),
    })[list(MULTIPLIER_FRAME_COLUMNS)].reset_index(drop=True)  # fmt: skip
