"""A real S3/SNS/SES/Secrets Manager endpoint for tests: moto's server on 127.0.0.1, a free port.

``moto_endpoint`` (a pytest fixture, session-scoped, from conftest) starts ``moto_server`` as a
subprocess and waits until it answers; ``aws_env`` points the standard AWS chain at it
(AWS_ENDPOINT_URL, test credentials, a region) for one test, so the code under test talks to it
exactly as it would talk to AWS. Each test uses its own bucket (or calls ``reset_moto``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REGION = "us-east-1"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    """moto_server on a free port of 127.0.0.1; (process, endpoint URL) once it answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    cmd = [str(exe), "-H", "127.0.0.1", "-p", str(port)] if exe.exists() else [
        sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)
    ]  # fmt: skip
    handle = log.open("wb")
    process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}: {log.read_text()}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return process, endpoint
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {STARTUP_SECONDS} s")


def reset_moto(endpoint: str) -> None:
    """Forget every bucket, topic, message and secret (moto's reset API)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    process, endpoint = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch) -> str:
    """The standard AWS variables pointed at moto for this test; returns the endpoint URL."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return moto_endpoint
