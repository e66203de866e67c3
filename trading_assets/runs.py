"""Runs whose worker process is gone: found and marked failed, so nothing waits on them.

A run worker killed with SIGKILL (kill -9, the OOM killer, a lost container) never records its
end: Dagster keeps the run STARTED for ever. The daemon's run monitoring cannot tell for the
default run launcher (it has no worker health check), and a STARTED run counts against
``max_concurrent_runs``, so two dead runs would stall the run queue for good. (The DuckDB writers
themselves wait on the file lock, which the OS frees at once: a dead run never holds that.)

:func:`fail_dead_runs` finds STARTED runs whose worker process (the pid Dagster records on the
run's RUN_START event) no longer exists, or is a zombie, or is a newer process that reused the
pid, and reports each as failed with the reason. It runs from the ``dead_runs`` sensor (every
minute under the daemon, i.e. ``dagster dev``) and at the start of every ``trading-assets main``
(without a daemon), and on demand as ``trading-assets dead-runs``.

It judges only instances whose run storage is the local SQLite files: every run of such an
instance ran on this machine, so a pid means the same process here. On a shared PostgreSQL
instance (``deploy/``) a pid could belong to another host; there it does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

# Linux's clock ticks per second, for the start time in /proc/<pid>/stat.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A process that started this long after the run did is another process that reused the pid.
PID_REUSE_SLACK_SECONDS = 5.0


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    job_name: str
    pid: int
    reason: str


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_gone(pid: int, started_by: float) -> str | None:
    """Why process ``pid`` (which existed at unix time ``started_by``) is gone, or None if alive."""
    if pid == os.getpid():
        return None
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): ask the kernel for the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} no longer exists"
        except PermissionError:
            pass  # it exists, owned by another user
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return f"process {pid} no longer exists"
    state, start_ticks = fields[0], int(fields[19])
    if state in ("Z", "X"):
        return f"process {pid} has exited (zombie, not yet reaped by its parent)"
    boot = _boot_time()
    if boot is not None and boot + start_ticks / _TICKS > started_by + PID_REUSE_SLACK_SECONDS:
        return f"process {pid} exited; the pid now belongs to a newer process"
    return None


def _local_instance(instance: dg.DagsterInstance) -> bool:
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage)


def dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """STARTED runs of this (local) instance whose worker process is gone."""
    if not _local_instance(instance):
        return []
    found: list[DeadRun] = []
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    for run in runs:
        starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        if not starts or starts[0].dagster_event is None or starts[0].dagster_event.pid is None:
            continue  # no worker recorded: nothing to judge by
        pid = starts[0].dagster_event.pid
        reason = process_gone(pid, starts[0].timestamp)
        if reason:
            found.append(DeadRun(run.run_id, run.job_name, pid, reason))
    return found


def fail_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark every dead run FAILURE (with the reason in its log); returns them."""
    dead = dead_runs(instance)
    for run in dead:
        record = instance.get_run_by_id(run.run_id)
        if record is None or record.status != dg.DagsterRunStatus.STARTED:
            continue  # finished meanwhile
        instance.report_run_failed(
            record,
            message=(
                f"Run worker died without recording an end ({run.reason}): marked failed by "
                "trading_assets.runs so it holds no run slot. Its writes were atomic; "
                "materialise its partitions again."
            ),
        )
    return dead


@dg.sensor(
    name="dead_runs",
    description="Marks failed the runs whose worker process was killed (kill -9, OOM), which "
    "Dagster would show as STARTED for ever and count against max_concurrent_runs.",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = fail_dead_runs(context.instance)
    for run in failed:
        context.log.warning(f"marked run {run.run_id} ({run.job_name}) failed: {run.reason}")
    return dg.SkipReason(f"marked {len(failed)} dead run(s) failed" if failed else "no dead runs")
