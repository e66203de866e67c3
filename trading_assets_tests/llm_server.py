"""A local stand-in for an LLM API, for tests that run the real clients offline.

``serve_llm()`` starts a ThreadingHTTPServer on 127.0.0.1 (free port) and yields an
:class:`LLMStubServer` that speaks both APIs the project uses:

- OpenAI chat completions: ``POST /v1/chat/completions`` (``base_url`` = ``.../v1``), answering
  ``choices[0].message.content`` and ``usage.prompt_tokens``/``completion_tokens``; throttling is
  HTTP 429 with OpenAI's ``rate_limit_exceeded`` error body and a ``Retry-After`` header.
- Bedrock Converse: ``POST /model/{modelId}/converse`` (boto3's ``bedrock-runtime`` client with
  ``endpoint_url``/AWS_ENDPOINT_URL = ``endpoint`` and fake credentials), answering
  ``output.message.content[0].text`` and ``usage.inputTokens``/``outputTokens``; throttling is
  HTTP 429 with ``x-amzn-ErrorType: ThrottlingException``, errors as AWS JSON errors.

What it answers: queued :class:`Reply` objects first (``queue``), one per request, then
``respond(request)`` (default :func:`good_answer`: a valid answer whose multipliers depend on the
session named in the prompt, so a test can predict them). Replies: an answer text (valid, bad JSON,
out of range, ...), ``THROTTLE`` (429), ``error(status)``, and ``sleep(seconds)`` (holds the request
past the client's timeout; released at shutdown so a test never waits for it).

Every request is recorded (:class:`LLMRequest`): api, model, system and user text, headers.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

OPENAI, BEDROCK = "openai", "bedrock"
ANSWER, THROTTLED, ERROR, SLEEP = "answer", "throttle", "error", "sleep"
OPENAI_PATH = "/v1/chat/completions"
CONVERSE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/converse$")
SESSION_IN_PROMPT = re.compile(r"Session (\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Reply:
    kind: str
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    status: int = 500
    seconds: float = 0.0


def answer(text: str, input_tokens: int = 1200, output_tokens: int = 150) -> Reply:
    return Reply(ANSWER, text, input_tokens, output_tokens)


def answer_json(input_tokens: int = 1200, output_tokens: int = 150, **values: object) -> Reply:
    """A JSON answer: the good defaults with ``values`` replacing them (None drops a key)."""
    body = {
        "analysis": "Breadth is healthy and volatility is low.",
        "mr_arm": 1.0,
        "mr_trigger": 1.0,
        "tc_arm": 1.0,
        "tc_trigger": 1.0,
        "confidence": 0.6,
        "reasoning": "calm market",
        **values,
    }
    return answer(
        json.dumps({k: v for k, v in body.items() if v is not None}), input_tokens, output_tokens
    )


THROTTLE = Reply(THROTTLED)


def error(status: int = 500) -> Reply:
    return Reply(ERROR, status=status)


def sleep(seconds: float) -> Reply:
    return Reply(SLEEP, seconds=seconds)


@dataclass(frozen=True)
class LLMRequest:
    api: str
    model: str
    system: str
    user: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def session(self) -> str | None:
        found = SESSION_IN_PROMPT.search(self.user)
        return found.group(1) if found else None


def session_multiplier(session: str | None) -> float:
    """The mr_arm :func:`good_answer` gives a session: 1.0 + day-of-month / 100 (1.01 .. 1.31)."""
    return 1.0 + int(session[-2:]) / 100 if session else 1.0


def good_answer(request: LLMRequest) -> Reply:
    """A valid answer: mr_arm = session_multiplier(session), tc_trigger 0.9, the others 1.0."""
    return answer_json(
        mr_arm=session_multiplier(request.session),
        tc_trigger=0.9,
        analysis=f"analysis of {request.session}",
        reasoning=f"reasoning for {request.session}",
    )


class LLMStubServer:
    def __init__(self, respond: Callable[[LLMRequest], Reply] = good_answer) -> None:
        self.respond = respond
        self.requests: list[LLMRequest] = []
        self._queued: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.endpoint}/v1"

    def queue(self, *replies: Reply) -> None:
        """The next requests get these replies, in order, before ``respond`` is asked again."""
        with self._lock:
            self._queued.extend(replies)

    def start(self) -> None:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _reply_for(self, request: LLMRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._queued:
                return self._queued.popleft()
        return self.respond(request)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                headers = {k.lower(): v for k, v in self.headers.items()}
                converse = CONVERSE_PATH.match(self.path)
                if self.path == OPENAI_PATH:
                    messages = {m["role"]: m["content"] for m in body["messages"]}
                    request = LLMRequest(
                        OPENAI, body["model"], messages.get("system", ""), messages["user"], headers
                    )
                elif converse:
                    request = LLMRequest(
                        BEDROCK,
                        unquote(converse.group("model")),
                        "".join(part["text"] for part in body.get("system", [])),
                        "".join(part["text"] for part in body["messages"][0]["content"]),
                        headers,
                    )
                else:
                    self._send(404, {"message": f"no route {self.path}"})
                    return
                reply = server._reply_for(request)
                if reply.kind == SLEEP:
                    server._stop.wait(reply.seconds)
                    reply = answer_json()
                try:
                    self._answer(request.api, request.model, reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def _answer(self, api: str, model: str, reply: Reply) -> None:
                if reply.kind == ANSWER:
                    self._send(200, _completion(api, model, reply))
                elif reply.kind == THROTTLED and api == OPENAI:
                    body = {
                        "error": {
                            "message": "Rate limit reached for requests",
                            "type": "requests",
                            "code": "rate_limit_exceeded",
                        }
                    }
                    self._send(429, body, {"Retry-After": "0"})
                elif reply.kind == THROTTLED:
                    self._send(
                        429,
                        {"message": "Too many requests, please wait before trying again."},
                        {"x-amzn-ErrorType": "ThrottlingException"},
                    )
                elif api == OPENAI:
                    self._send(reply.status, {"error": {"message": "stub server error"}})
                else:
                    self._send(
                        reply.status,
                        {"message": "stub server error"},
                        {"x-amzn-ErrorType": "InternalServerException"},
                    )

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def _completion(api: str, model: str, reply: Reply) -> dict:
    if api == OPENAI:
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        }
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": reply.text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": reply.input_tokens,
            "outputTokens": reply.output_tokens,
            "totalTokens": reply.input_tokens + reply.output_tokens,
        },
        "metrics": {"latencyMs": 5},
    }


@contextmanager
def serve_llm(respond: Callable[[LLMRequest], Reply] = good_answer) -> Iterator[LLMStubServer]:
    server = LLMStubServer(respond)
    server.start()
    try:
        yield server
    finally:
        server.stop()
