"""A reverse proxy on 127.0.0.1 in front of moto's server that fails chosen S3 requests for real.

The IO manager under test is pointed at the proxy through the standard chain (AWS_ENDPOINT_URL), so
it talks HTTP over a socket exactly as to S3; a rule makes, say, every PUT of a Parquet object after
the second one fail. Failures are what a client meets in production:

``error``        answer 500 InternalError without forwarding (S3 having a bad moment);
``drop``         close the connection without an answer, without forwarding (endpoint gone);
``lose_answer``  forward the request (moto applies it), then close without an answer: the change
                 happened but the client cannot know;
``deny_missing`` forward the request, and turn a 404 answer into 403 AccessDenied, as S3 answers a
                 GET of a missing key to a caller without (unconditional) s3:ListBucket.
"""

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>injected by the test proxy</Message></Error>"
)
_DENIED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)


@dataclass
class Rule:
    """Fail requests that ``matches``, after letting the first ``after`` of them through, at most
    ``times`` times (None: every one)."""

    matches: Callable[[str, str], bool]  # (method, path with query) -> bool
    action: str  # "error" | "drop" | "lose_answer" | "deny_missing"
    after: int = 0
    times: int | None = None
    seen: int = 0
    fired: int = 0


class FaultProxy:
    """Start with :meth:`start`; ``endpoint`` is its URL. Rules apply in order, first match wins."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, matches: Callable[[str, str], bool], action: str = "error",
             after: int = 0, times: int | None = None) -> Rule:  # fmt: skip
        rule = Rule(matches, action, after, times)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _decide(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self.rules:
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.matches(method, path):
                    rule.seen += 1
                    if rule.seen > rule.after:
                        rule.fired += 1
                        return rule.action
                    return None
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.getheaders(), response.read()
                finally:
                    connection.close()

            def _handle(self) -> None:
                body = self._body()
                action = proxy._decide(self.command, self.path)
                if action == "drop":
                    self.close_connection = True
                    return
                if action == "error":
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_ERROR_BODY)))
                    self.end_headers()
                    self.wfile.write(_ERROR_BODY)
                    return
                status, headers, payload = self._forward(body)
                if action == "lose_answer":
                    self.close_connection = True
                    return
                if action == "deny_missing" and status == 404:
                    status, payload = 403, _DENIED_BODY
                    headers = [("Content-Type", "application/xml")]
                self.send_response(status)
                head = self.command == "HEAD"  # its Content-Length is the object's: keep it
                for key, value in headers:
                    if key.lower() not in _HOP_BY_HOP and (head or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not head:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler


def parquet_put(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith(".parquet")


def manifest_put(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith("/_manifest.json")


def batch_delete(method: str, path: str) -> bool:
    return method == "POST" and "?delete" in path


def anything(method: str, path: str) -> bool:
    return True


def get(method: str, path: str) -> bool:
    return method == "GET" and "list-type" not in path
