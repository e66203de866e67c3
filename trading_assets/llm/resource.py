"""LLMResource: which model answers market_analysis (``none`` by default: no call, 1.0 everywhere).

- ``none``: nothing is read, nothing is asked; every session stores status ``off``.
- ``openai``: an OpenAI-compatible chat endpoint at ``base_url`` (TRADING_ASSETS_LLM_BASE_URL,
  default https://api.openai.com/v1) with ``api_key`` (OPENAI_API_KEY).
- ``bedrock``: Bedrock's Converse API; region, credentials and endpoint from the AWS chain
  (AWS_REGION, AWS_ENDPOINT_URL, ...), ``region`` overrides the chain's region.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from trading_assets import settings
from trading_assets.llm.analyse import Pricing, RetryPolicy
from trading_assets.llm.clients import (
    DEFAULT_MAX_TOKENS,
    BedrockConverseClient,
    Completer,
    OpenAIChatClient,
)

NONE, OPENAI, BEDROCK = settings.LLMS
LLM_KINDS = settings.LLMS
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


class LLMResource(dg.ConfigurableResource):
    """The model market_analysis asks for each session's threshold multipliers."""

    kind: str = Field(default=NONE, description="none | openai | bedrock")
    model: str | None = Field(
        default=None, description="model id (openai: gpt-4o-mini; bedrock: a model or profile id)"
    )
    base_url: str | None = Field(default=None, description="openai: the API's base URL (…/v1)")
    api_key: str | None = Field(default=None, description="openai: the bearer key")
    region: str | None = Field(default=None, description="bedrock: region (unset: AWS chain)")
    timeout: float = Field(default=60.0, description="seconds one call may take")
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, description="longest answer, in tokens")
    max_retries: int = Field(default=4, description="retries of a throttled call")
    retry_base_delay: float = Field(default=1.0, description="first wait, doubled each retry")
    retry_max_delay: float = Field(default=30.0, description="longest wait between retries")
    input_price_per_1k: float = Field(default=0.0, description="USD per 1,000 input tokens")
    output_price_per_1k: float = Field(default=0.0, description="USD per 1,000 output tokens")

    @property
    def enabled(self) -> bool:
        self._check_kind()
        return self.kind != NONE

    def model_name(self) -> str:
        """``model``; a ConfigurationError when a real kind has none."""
        if not self.model:
            raise settings.ConfigurationError(
                f"LLM kind {self.kind!r} needs a model id: set {settings.LLM_MODEL}"
            )
        return self.model

    def client(self) -> Completer:
        self._check_kind()
        if self.kind == OPENAI:
            return OpenAIChatClient(
                self.base_url or DEFAULT_OPENAI_BASE_URL,
                self.model_name(),
                self.api_key,
                self.timeout,
                self.max_tokens,
            )
        if self.kind == BEDROCK:
            return BedrockConverseClient(
                self.model_name(), self.region, self.timeout, self.max_tokens
            )
        raise settings.ConfigurationError("LLM kind 'none' makes no calls")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.retry_base_delay, self.retry_max_delay)

    def pricing(self) -> Pricing:
        return Pricing(self.input_price_per_1k, self.output_price_per_1k)

    @classmethod
    def from_env(cls) -> LLMResource:
        """The resource definitions.py configures from TRADING_ASSETS_LLM, _LLM_MODEL,
        _LLM_BASE_URL, OPENAI_API_KEY (as a dg.EnvVar: the UI never shows the key) and the
        per-1k-token prices; ConfigurationError for an unknown kind or a price that is not a
        number >= 0."""

        def env_or_none(name: str) -> dg.EnvVar | None:
            return dg.EnvVar(name) if settings.env(name) is not None else None

        return cls(
            kind=settings.choice(settings.LLM, settings.DEFAULT_LLM, settings.LLMS),
            model=env_or_none(settings.LLM_MODEL),
            base_url=env_or_none(settings.LLM_BASE_URL),
            api_key=env_or_none(settings.LLM_API_KEY),
            input_price_per_1k=_price(settings.LLM_PRICE_INPUT),
            output_price_per_1k=_price(settings.LLM_PRICE_OUTPUT),
        )

    def _check_kind(self) -> None:
        if self.kind not in LLM_KINDS:
            raise settings.ConfigurationError(
                f"unknown LLM kind {self.kind!r}: use one of {', '.join(LLM_KINDS)}"
            )


def _price(name: str) -> float:
    text = settings.env(name, "0")
    try:
        value = float(text)  # type: ignore[arg-type]
    except ValueError:
        value = float("nan")
    if not value >= 0:  # NaN too
        raise settings.ConfigurationError(
            f"{name}={text!r} is not a price >= 0 (USD per 1k tokens)"
        )
    return value
