"""The two ways to reach a model: an OpenAI-compatible chat endpoint and Bedrock's Converse API.

Each client sends the system and user messages and returns a Completion with the text and the
tokens the API's ``usage`` reports. Failures are told apart because they are handled apart:
Throttled (HTTP 429 / ThrottlingException: retried with backoff by the resource), LLMTimeout (no
answer within ``timeout`` seconds) and LLMCallError (anything else: 4xx/5xx, no text, a broken
envelope); the last two fall back to 1.0 at once.

openai: POST ``{base_url}/chat/completions`` with ``Authorization: Bearer <api_key>``, plain
urllib (no dependency). bedrock: boto3's ``bedrock-runtime`` client; region, credentials and the
endpoint (AWS_ENDPOINT_URL, how tests reach the local stub) from the standard AWS chain. botocore's
own retries are off (one attempt per call), so every retry is the resource's and is logged.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

DEFAULT_MAX_TOKENS = 800
# Deterministic answers: the cache and a backfill assume asking again gives the same kind of answer.
TEMPERATURE = 0.0


class LLMError(RuntimeError):
    """A call that gave no usable completion; the message is the fallback reason stored."""


class Throttled(LLMError):
    """The API asked to slow down (HTTP 429 or Bedrock's ThrottlingException)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LLMTimeout(LLMError):
    """No answer within the client's timeout."""


class LLMCallError(LLMError):
    """Any other failure: an error status, an envelope without text, an unreachable endpoint."""


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int


class Completer(Protocol):
    def complete(self, system: str, user: str) -> Completion: ...


class OpenAIChatClient:
    """Any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout, self.max_tokens = (
            model,
            api_key,
            timeout,
            max_tokens,
        )

    def complete(self, system: str, user: str) -> Completion:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": TEMPERATURE,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code == 429:
                raise Throttled(f"HTTP 429 from {self.url}: {detail}", _seconds(exc)) from None
            raise LLMCallError(f"HTTP {exc.code} from {self.url}: {detail}") from None
        except TimeoutError:
            raise LLMTimeout(f"no answer from {self.url} within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise LLMTimeout(f"no answer from {self.url} within {self.timeout:g} s") from None
            raise LLMCallError(f"cannot reach {self.url}: {exc.reason}") from None
        try:
            envelope = json.loads(payload)
            text = envelope["choices"][0]["message"]["content"]
            usage = envelope.get("usage") or {}
            tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMCallError(f"{self.url} answered no chat completion ({exc!r})") from None
        if not isinstance(text, str):
            raise LLMCallError(f"{self.url} answered a completion without text")
        return Completion(text, *tokens)


class BedrockConverseClient:
    """Bedrock's Converse API (``bedrock-runtime``), any model id or inference profile."""

    def __init__(
        self,
        model: str,
        region: str | None,
        timeout: float,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        self.client = boto3.client("bedrock-runtime", region_name=region, config=config)
        self.model, self.timeout, self.max_tokens = model, timeout, max_tokens

    def complete(self, system: str, user: str) -> Completion:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            ReadTimeoutError,
        )

        try:
            response = self.client.converse(
                modelId=self.model,
                system=[{"text": system}],
                messages=[{"role": "user", "content": [{"text": user}]}],
                inferenceConfig={"maxTokens": self.max_tokens, "temperature": TEMPERATURE},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "ThrottlingException" or status == 429:
                raise Throttled(f"Bedrock {code or status}: {message}") from None
            raise LLMCallError(f"Bedrock {code or status}: {message}") from None
        except (ReadTimeoutError, ConnectTimeoutError):
            raise LLMTimeout(f"no answer from Bedrock within {self.timeout:g} s") from None
        except BotoCoreError as exc:
            raise LLMCallError(f"Bedrock call failed: {exc}") from None
        try:
            parts = response["output"]["message"]["content"]
            text = "".join(part["text"] for part in parts if "text" in part)
            usage = response.get("usage") or {}
            tokens = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
        except (KeyError, TypeError) as exc:
            raise LLMCallError(f"Bedrock answered no message ({exc!r})") from None
        return Completion(text, *tokens)


def _seconds(error: urllib.error.HTTPError) -> float | None:
    """The Retry-After header in seconds, if the server sent a number."""
    try:
        return float(error.headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
