"""The suite fails, never skips, when the shared market data or TA-Lib is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from trading_assets_tests.conftest import PROJECT_ROOT
from trading_assets_tests.shared_data import SHARED_DATA_VARIABLE

QUICK_TEST = "trading_assets_tests/test_symbols.py"  # any test: the check runs before collection


def run_pytest(env_changes: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_changes}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", QUICK_TEST]
    return subprocess.run(
        cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def test_missing_shared_data_fails_the_run_and_says_where_to_put_it(tmp_path):
    missing = tmp_path / "no-market-data"
    result = run_pytest({SHARED_DATA_VARIABLE: str(missing)})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "shared market data not found" in output
    assert f"{SHARED_DATA_VARIABLE}={missing}" in output  # the place asked for ...
    assert "../shared/data/market" in output  # ... and the default
    assert "skipped" not in output and "passed" not in output


def test_missing_talib_fails_the_run(tmp_path):
    # A talib module that cannot be imported shadows the installed one.
    (tmp_path / "talib.py").write_text("raise ImportError('TA-Lib hidden by the test')\n")
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_pytest({"PYTHONPATH": pythonpath})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "TA-Lib is not importable" in output and "pip install -e '.[dev]'" in output
