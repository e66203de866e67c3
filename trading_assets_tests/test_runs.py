"""How trading_assets.runs tells a dead run worker from a live one, with real processes.

(The whole path, a SIGKILLed run marked failed by the sensor and by the CLI, is in
test_crash_safety.py.)
"""

import subprocess
import sys
import time

from trading_assets.runs import process_gone


def test_a_live_process_is_not_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_gone(child.pid, started_by=time.time()) is None
    finally:
        child.kill()
        child.wait()


def test_an_exited_process_is_gone_zombie_or_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while (reason := process_gone(child.pid, started_by=time.time())) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "zombie" in reason  # exited, not yet waited for: still in the process table
    child.wait()
    assert process_gone(child.pid, started_by=time.time()) == (
        f"process {child.pid} no longer exists"
    )


def test_a_pid_reused_by_a_newer_process_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # The run started an hour before this process did: the pid is not the run's worker.
        reason = process_gone(child.pid, started_by=time.time() - 3600)
        assert reason == f"process {child.pid} exited; the pid now belongs to a newer process"
    finally:
        child.kill()
        child.wait()
