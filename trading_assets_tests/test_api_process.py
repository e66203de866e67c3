"""``trading-assets api`` as a user starts it: the real process on a free port of 127.0.0.1,
queried over HTTP with the standard library, stopped (SIGTERM) in teardown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from trading_assets_tests.moto_server import free_port

TOKEN = "process-test-token"
STARTUP_SECONDS = 60.0


def get(url: str, token: str | None = TOKEN) -> tuple[int, dict, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    db = tmp_path / "served.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE raw_prices AS SELECT 'AAPL' AS symbol, DATE '2025-07-22' + i::INTEGER "
                    "AS date, 1.0 AS open, 2.0 AS high, 0.5 AS low, 100.0 + i AS close, "
                    "1e6 AS volume, 'sample' AS source, NULL::VARCHAR AS quarantine "
                    "FROM range(2) t(i)")  # fmt: skip
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "stdev.html").write_text("<html>stdev</html>")
    snapshots = tmp_path / "tmp"
    snapshots.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "TRADING_ASSETS_DUCKDB_PATH": str(db),
        "TRADING_ASSETS_REPORTS_DIR": str(reports),
        "TRADING_ASSETS_API_TOKEN": TOKEN,
        "TMPDIR": str(snapshots),  # where the snapshots go
    }
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "trading_assets.cli", "api", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"trading-assets api exited: {(tmp_path / 'api.log').read_text()}")
            try:
                if get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"trading-assets api did not answer within {STARTUP_SECONDS} s")
            time.sleep(0.2)
        yield base, process, snapshots
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.mark.slow
def test_the_api_process_answers_over_http(server):
    base, process, snapshots = server
    status, headers, body = get(f"{base}/prices/AAPL?limit=1")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["data"] == [
        {"symbol": "AAPL", "date": "2025-07-22", "open": 1.0, "high": 2.0, "low": 0.5,
         "close": 100.0, "volume": 1e6, "source": "sample", "quarantine": None}
    ]  # fmt: skip
    assert answer["next"] == f"{base}/prices/AAPL?offset=1&limit=1"
    assert json.loads(get(answer["next"])[2])["next"] is None
    assert get(f"{base}/prices/AAPL", token=None)[0] == 401
    assert get(f"{base}/prices/AAPL", token="wrong")[0] == 401
    assert get(f"{base}/prices/AAPL%3B")[0] == 422
    status, headers, body = get(f"{base}/reports/stdev")
    assert (status, body) == (200, "<html>stdev</html>")
    assert headers["content-type"].startswith("text/html")
    assert json.loads(get(f"{base}/openapi.json", token=None)[2])["info"]["title"]
    # a clean stop (uvicorn shuts the app down, then exits by the signal) removes the snapshots
    assert list(snapshots.glob("trading-assets-api-*/*.duckdb"))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    assert not list(snapshots.glob("trading-assets-api-*"))
