"""What the model must answer: one JSON object with the analysis, the four multipliers, confidence
and reasoning, validated against ANSWER_SCHEMA.

Nothing is clamped: a multiplier outside [MULTIPLIER_MIN, MULTIPLIER_MAX], a confidence outside
[0, 1], a missing key, a non-number or text that is not one JSON object is an AnswerError whose
message says which, and the session falls back to 1.0 with that message as its reason. Keys the
schema does not know are ignored. One Markdown code fence around the object (```json ... ```) is
accepted, as chat models often add one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from trading_assets.core.backtest.multipliers import (
    MULTIPLIER_COLUMNS,
    MULTIPLIER_MAX,
    MULTIPLIER_MIN,
)

_NUMBER = {"type": "number"}
ANSWER_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["analysis", *MULTIPLIER_COLUMNS, "confidence", "reasoning"],
    "properties": {
        "analysis": {
            "type": "string",
            "description": "a short analysis of the session (<= 120 words)",
        },
        **{
            name: {**_NUMBER, "minimum": MULTIPLIER_MIN, "maximum": MULTIPLIER_MAX}
            for name in MULTIPLIER_COLUMNS
        },
        "confidence": {**_NUMBER, "minimum": 0.0, "maximum": 1.0},
        "reasoning": {"type": "string", "description": "why these multipliers"},
    },
}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
# How much of a bad answer an error message quotes.
_QUOTED = 200


class AnswerError(ValueError):
    """The model's answer cannot be used; the message is the fallback reason stored."""


@dataclass(frozen=True)
class Answer:
    analysis: str
    mr_arm: float
    mr_trigger: float
    tc_arm: float
    tc_trigger: float
    confidence: float
    reasoning: str

    def multipliers(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in MULTIPLIER_COLUMNS}


def parse_answer(text: str) -> Answer:
    """The validated answer in ``text``; AnswerError naming every violation otherwise."""
    value = json_object(text)
    problems = _violations(value)
    if problems:
        raise AnswerError("; ".join(problems))
    return Answer(**{key: value[key] for key in ANSWER_SCHEMA["required"]})  # type: ignore[index]


def json_object(text: str) -> dict:
    """The one JSON object in ``text`` (one Markdown code fence around it allowed); AnswerError
    for malformed JSON or another JSON value."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise AnswerError(f"malformed JSON ({exc.msg} at char {exc.pos}): {_quote(text)}") from None
    if not isinstance(value, dict):
        raise AnswerError(f"not a JSON object but {type(value).__name__}: {_quote(text)}")
    return value


def _violations(value: dict) -> list[str]:
    properties: dict[str, dict] = ANSWER_SCHEMA["properties"]  # type: ignore[assignment]
    problems = []
    for key in ANSWER_SCHEMA["required"]:  # type: ignore[union-attr]
        if key not in value:
            problems.append(f"missing {key}")
            continue
        rule, got = properties[key], value[key]
        if rule["type"] == "string":
            if not isinstance(got, str):
                problems.append(f"{key} must be a string, got {got!r}")
            continue
        # bool is an int in Python, not a number in JSON Schema.
        if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(got):
            problems.append(f"{key} must be a number, got {got!r}")
        elif not rule["minimum"] <= got <= rule["maximum"]:
            problems.append(f"{key}={got!r} outside [{rule['minimum']}, {rule['maximum']}]")
    return problems


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTED else text[:_QUOTED] + "...")
