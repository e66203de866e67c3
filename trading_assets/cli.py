"""``trading-assets``: the project's commands for people and scripts.

``trading-assets main`` materialises the whole graph over the bundled sample's full range in one
run, recorded in a persistent Dagster instance (``$DAGSTER_HOME``, default ``./dagster_home``) so
``dagster dev`` shows it afterwards with its full event log. ``--start/--end/--select`` change the
range and the assets.

It runs the job in this process (Dagster's in-process executor: steps one after another, as
DuckDB's one writer per file makes them anyway, without a Python process and a definitions load
per step) and prints a progress report instead of Dagster's DEBUG event stream: each step with its
rows, partitions and time, each check's outcome, warnings, and at the end where the tables and the
UI are. Before it starts it marks failed any earlier run whose process was killed
(:mod:`trading_assets.runs`).

``trading-assets dead-runs`` does only that; ``trading-assets repair-duckdb [FILE]`` repairs a file
that a crash left with duplicated keys (:mod:`trading_assets.storage.duckdb_integrity`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from trading_assets.sources.sample import SAMPLE_END, SAMPLE_START
from trading_assets.storage.duckdb_connection import LOCK_WAIT_MESSAGES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = "dagster_home"


def ensure_dagster_home() -> Path:
    """$DAGSTER_HOME (default ./dagster_home), created with the project's dagster.yaml if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / DEFAULT_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(instance_yaml(home))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def instance_yaml(home: Path) -> str:
    """The project's dagster.yaml for ``home``, with the event log's directory written in (the
    storage falls back to $DAGSTER_HOME, which is wrong for an instance loaded from another dir)."""
    text = (PROJECT_ROOT / "dagster.yaml").read_text()
    marker = "  class: BatchingSqliteEventLogStorage\n"
    if marker in text and "base_dir" not in text:
        text = text.replace(
            marker, marker + f"  config:\n    base_dir: {home / 'history' / 'runs'}\n"
        )
    return text


@dataclass
class Progress:
    """What the console shows of a run, collected from Dagster's log records as they arrive."""

    out: TextIO
    # step -> asset -> [rows written (the IO manager's row_count), materialised partitions]
    assets: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)  # step -> SUCCESS / FAILURE
    # (asset, check, passed, severity)
    checks: list[tuple[str, str, bool, str]] = field(default_factory=list)
    warnings: int = 0
    reports: list[str] = field(default_factory=list)  # files performance_report wrote
    # node -> [helper steps ok, their seconds, the slowest]: the steps inside a graph-backed asset
    # that store nothing (raw_prices' plan and one fetch per batch), shown as one line per node
    helpers: dict[str, list[float]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)  # nodes whose "running ..." line was shown

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def handle(self, record: logging.LogRecord) -> None:
        from dagster._core.events import DagsterEventType

        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or (event.step_key if event is not None else None) or "-"
        if event is None:  # a user log line (context.log): warnings, errors and lock waits
            message = meta.get("orig_message", record.getMessage())
            if record.levelno >= logging.WARNING:
                self.warnings += 1
                self.say(f"  {logging.getLevelName(record.levelno).lower()} [{step}] {message}")
            elif message.startswith(LOCK_WAIT_MESSAGES):  # a wait must never look like a hang
                self.say(f"  [{step}] {message}")
            return
        kind = event.event_type
        if kind == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            stats = self.assets.setdefault(step, {}).setdefault(
                materialization.asset_key.to_user_string(), [-1, 0]
            )
            stats[1] += event.partition is not None
            value = materialization.metadata.get("row_count") or materialization.metadata.get(
                "rows"
            )
            if stats[0] < 0 and value is not None:
                stats[0] = int(value.value)
            self.reports += [
                str(v.value) for k, v in materialization.metadata.items() if k.startswith("path_")
            ]
        elif kind == DagsterEventType.STEP_START:
            node = step.split(".")[0]
            if node not in self.started:
                self.started.add(node)
                self.say(f"  {node:<20} running ...")
            elif node in self.helpers and "[" not in step:  # the step after a fan-out's steps
                done, total, slowest = self.helpers[node]
                self.say(
                    f"  {node:<20} ok      {int(done)} plan/fetch step(s), {total:.1f} s in all, "
                    f"the slowest {slowest:.1f} s"
                )
        elif kind == DagsterEventType.STEP_SUCCESS:
            self.steps[step] = "SUCCESS"
            seconds = f"{event.event_specific_data.duration_ms / 1000:7.1f} s"
            if "." in step and step not in self.assets:  # a helper step: counted, not listed
                stats = self.helpers.setdefault(step.split(".")[0], [0, 0.0, 0.0])
                duration = event.event_specific_data.duration_ms / 1000
                stats[0], stats[1], stats[2] = (
                    stats[0] + 1,
                    stats[1] + duration,
                    max(stats[2], duration),
                )
                return
            for asset, (rows, parts) in (self.assets.get(step) or {step: [-1, 0]}).items():
                rows_text = f"{rows:>10,} rows" if rows >= 0 else f"{'':>15}"
                where = (
                    f"{parts:,} partition{'s' if parts != 1 else ''}" if parts else "unpartitioned"
                )
                self.say(f"  {asset:<20} ok      {rows_text}  {where:<17} {seconds}".rstrip())
                seconds = ""  # the step's time once, on its first asset
        elif kind == DagsterEventType.STEP_FAILURE:
            self.steps[step] = "FAILURE"
            error = event.step_failure_data.error
            cause = error.cause or error
            while cause.cause is not None:
                cause = cause.cause
            message = cause.message.strip().splitlines()[0]
            head, _, rest = message.partition(": ")
            if rest and head.split(".")[-1] == cause.cls_name:  # "pkg.mod.Error: text" -> "text"
                message = rest
            self.say(f"  {step:<20} FAILED  {cause.cls_name}: {message[:300]}")
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.asset_check_evaluation_data
            severity = ev.severity.value if ev.severity is not None else "ERROR"
            self.checks.append((ev.asset_key.to_user_string(), ev.check_name, ev.passed, severity))
            verdict = "passed" if ev.passed else ("FAILED" if severity == "ERROR" else "warn")
            self.say(f"    check {ev.asset_key.to_user_string()}/{ev.check_name}: {verdict}")


def _progress_logger(progress: Progress):
    import dagster as dg

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                progress.handle(record)
            except Exception as exc:  # the report must never break the run
                progress.say(f"  (progress report error: {exc!r})")

    @dg.logger(description="trading-assets progress report: steps, rows, checks, warnings")
    def progress_logger(_init_context) -> logging.Logger:
        logger = logging.getLogger("trading_assets.progress")
        logger.handlers = [_Handler()]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        return logger

    return progress_logger


def tables_location() -> str:
    """Where the deployment keeps its tables: the DuckDB file, or the bucket's prefix."""
    from trading_assets import settings

    if settings.env(settings.DEPLOYMENT, settings.DEFAULT_DEPLOYMENT) == "prod":
        prefix = (settings.env(settings.S3_PREFIX, "") or "").strip("/")
        return (
            f"s3://{settings.env(settings.S3_BUCKET)}/{prefix}".rstrip("/")
            + "/ (trading-assets sql)"
        )
    return str(duckdb_path())


def reports_dir() -> Path:
    from trading_assets import settings

    return Path(settings.env(settings.REPORTS_DIR, settings.DEFAULT_REPORTS_DIR) or "").resolve()


def duckdb_path() -> Path:
    from trading_assets import settings

    return Path(settings.env(settings.DUCKDB_PATH, settings.DEFAULT_DUCKDB_PATH) or "").resolve()


def run_range(
    select: str,
    start: str,
    end: str,
    out: TextIO = sys.stdout,
    strategies: tuple[str, str] | None = None,
    backtest_config: dict | None = None,
) -> int:
    """Materialise ``select`` over ``start..end`` in the persistent instance; 0 on success.

    The daily graph runs once over the range; the portfolio assets selected (backtests and what
    follows, partitioned by strategy) run after it, once, over ``strategies`` (first, last; default
    every strategy), only if the daily run succeeded; ``backtest_config`` is the backtests step's
    config (BacktestConfig: params, equity, commission_bps, slippage_bps, start, end).
    """
    import warnings

    import dagster as dg

    # The project opts into these Dagster features knowingly (pyproject's pytest config does the same).
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    home = ensure_dagster_home()
    from trading_assets.definitions import defs
    from trading_assets.jobs import (
        DAILY_SELECTION,
        MAIN_JOB,
        OPTIMIZATION_JOB,
        OPTIMIZATION_SELECTION,
        PORTFOLIO_JOB,
        PORTFOLIO_SELECTION,
    )
    from trading_assets.partitions import trading_days
    from trading_assets.runs import fail_dead_runs
    from trading_assets.sensors import RANGE_END, RANGE_START, every_strategy_tags, range_tags

    started = time.perf_counter()
    repo = defs.get_repository_def()
    keys = (
        # a multi-asset that cannot be subset comes whole (raw_prices can: a run that restates
        # history without price_revisions stops with RevisionsNotSelectedError)
        dg.AssetSelection.from_coercible(select.split(","))
        .required_multi_asset_neighbors()
        .resolve(repo.asset_graph)
    )
    selections = {
        MAIN_JOB: DAILY_SELECTION,
        PORTFOLIO_JOB: PORTFOLIO_SELECTION,
        OPTIMIZATION_JOB: OPTIMIZATION_SELECTION,
    }
    optimization = keys & OPTIMIZATION_SELECTION.resolve(repo.asset_graph)
    if select == "*":
        optimization = set()  # the walk-forward search runs when named, as its job does
    portfolio = keys & PORTFOLIO_SELECTION.resolve(repo.asset_graph)
    daily = keys - portfolio - OPTIMIZATION_SELECTION.resolve(repo.asset_graph)
    stages: list[tuple[str, set, dict[str, str]]] = []
    if daily:
        for key in (start, end):
            if not trading_days.has_partition_key(key):
                raise SystemExit(
                    f"{key} is not a session of the trading calendar (see trading_assets/partitions.py)"
                )
        sessions = len(trading_days.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
        stages.append((MAIN_JOB, daily, range_tags(start, end)))
        scope = f"{len(daily)} asset(s) over {start}..{end} ({sessions:,} session{'s' if sessions != 1 else ''}), one run"
    else:
        scope = ""
    if portfolio:
        tags = range_tags(*strategies) if strategies else every_strategy_tags()
        stages.append((PORTFOLIO_JOB, portfolio, tags))
        span = f"{tags[RANGE_START]}..{tags[RANGE_END]}"
        scope += f"{'; then ' if scope else ''}{len(portfolio)} portfolio asset(s), strategies {span}, one run"
    if optimization:
        tags = range_tags(*strategies) if strategies else every_strategy_tags()
        stages.append((OPTIMIZATION_JOB, optimization, tags))
        span = f"{tags[RANGE_START]}..{tags[RANGE_END]}"
        scope += f"{'; then ' if scope else ''}the walk-forward search, strategies {span}, one run"

    progress = Progress(out)
    progress.say(f"trading-assets main: {scope}\nDAGSTER_HOME={home}")
    results = []
    not_run: list[str] = []
    with dg.DagsterInstance.get() as instance:
        # Without a daemon nothing else would notice a run killed earlier (kill -9, OOM).
        for dead in fail_dead_runs(instance):
            progress.say(f"marked dead run {dead.run_id} failed: {dead.reason}")
        for name, stage_keys, tags in stages:
            # Only the job's own checks: without asset_check_selection a subset takes every check
            # of its assets, raw_prices' freshness check included (the sensor's to run).
            checks = {
                key
                for key in selections[name].resolve_checks(repo.asset_graph)
                if key.asset_key in stage_keys
            }
            job = repo.get_job(name).get_subset(
                asset_selection=set(stage_keys), asset_check_selection=checks
            )
            nodes = {node.name for node in job.graph.nodes}
            if results and not results[-1].success:
                not_run += sorted(nodes)
                continue
            if results:
                progress.say(f"{name}: strategies {tags[RANGE_START]}..{tags[RANGE_END]}")
            result = job.with_logger_defs(
                {"progress": _progress_logger(progress)}
            ).execute_in_process(
                instance=instance,
                # only this logger: without a "loggers" section Dagster adds its DEBUG console logger
                run_config={
                    "loggers": {"progress": {}},
                    **(
                        {"ops": {"backtests": {"config": backtest_config}}}
                        if backtest_config and name == PORTFOLIO_JOB
                        else {}
                    ),
                },
                tags=tags,
                raise_on_error=False,
            )
            results.append(result)
            # a graph-backed asset's steps are "<node>.<op>" (raw_prices.fetch_batch[3])
            not_run += sorted(nodes - {step.split(".")[0] for step in progress.steps})
    success = all(r.success for r in results) and len(results) == len(stages)
    failed_checks = [f"{a}/{c}" for a, c, ok, sev in progress.checks if not ok and sev == "ERROR"]
    warned = [f"{a}/{c}" for a, c, ok, sev in progress.checks if not ok and sev != "ERROR"]
    status = "succeeded" if success else "FAILED"
    runs = ", ".join(r.run_id for r in results)
    progress.say(
        f"\nRun{'s' if len(results) > 1 else ''} {runs} {status} in {time.perf_counter() - started:.1f} s: "
        f"{sum(v == 'SUCCESS' for v in progress.steps.values())} step(s) ok"
        + (
            f", failed: {', '.join(k for k, v in progress.steps.items() if v != 'SUCCESS')}"
            if any(v != "SUCCESS" for v in progress.steps.values())
            else ""
        )
        + (f", not run: {', '.join(not_run)}" if not_run else "")
        + f". Checks: {sum(ok for *_, ok, _ in progress.checks)} passed"
        + (f", failed (blocking): {', '.join(failed_checks)}" if failed_checks else "")
        + (f", warnings: {', '.join(warned)}" if warned else "")
        + "."
    )
    progress.say(f"Tables: {tables_location()}")
    if progress.reports:
        where = (
            progress.reports[0].rsplit("/", 1)[0] if "://" in progress.reports[0] else reports_dir()
        )
        progress.say(f"Reports: {where} (open {progress.reports[0]} in a browser)")
    progress.say(f"UI (full event log, partitions, checks): DAGSTER_HOME={home} dagster dev")
    return 0 if success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trading-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "main", help="materialise the graph over a range in one run (default: the sample)"
    )
    run.add_argument(
        "--start", default=SAMPLE_START, help=f"first session (default {SAMPLE_START})"
    )
    run.add_argument("--end", default=SAMPLE_END, help=f"last session (default {SAMPLE_END})")
    run.add_argument(
        "--select",
        default="*",
        help="asset selection, e.g. 'symbols,raw_prices' (default: everything but the "
        "walk-forward search, which runs when named: 'optimization_trials,strategy_optimization')",
    )
    backtest = sub.add_parser(
        "backtest",
        help="backtest one strategy (or all) over the stored history, then refresh the journal, "
        "metrics and reports",
    )
    backtest.add_argument(
        "strategy",
        nargs="?",
        default="all",
        help="ma_crossover, rsi_mean_reversion, stdev, watchlist_momentum or all (default)",
    )
    backtest.add_argument(
        "--params",
        default="{}",
        help="the strategy's constants to override, e.g. '{\"mr_arm_z\": 1.5}'",
    )
    backtest.add_argument("--from", dest="first", help="first session traded (YYYY-MM-DD)")
    backtest.add_argument("--to", dest="last", help="last session traded (YYYY-MM-DD)")
    sql = sub.add_parser(
        "sql",
        help="run SQL over the stored tables: the DuckDB file (local) or the bucket's Parquet (prod)",
    )
    sql.add_argument("query", help="e.g. \"select * from indicators where symbol = 'AAPL'\"")
    sql.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    api = sub.add_parser(
        "api", help="serve the read-only REST API over the stored tables (docs/api.md)"
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    api.add_argument(
        "--open-per-request",
        action="store_true",
        help="open the DuckDB file per request instead of reading snapshots (for comparison)",
    )
    sub.add_parser(
        "init-home", help="create $DAGSTER_HOME (default ./dagster_home) with dagster.yaml"
    )
    sub.add_parser(
        "dead-runs",
        help="mark failed the runs of $DAGSTER_HOME whose worker process was killed",
    )
    repair = sub.add_parser(
        "repair-duckdb",
        help="make every unique key unique again in a DuckDB file a crash left duplicated",
    )
    repair.add_argument(
        "database", nargs="?", help="the DuckDB file (default: $TRADING_ASSETS_DUCKDB_PATH)"
    )
    args = parser.parse_args(argv)
    if args.command == "backtest":
        return run_backtests(args.strategy, args.params, args.first, args.last)
    if args.command == "sql":
        return run_sql(args.query, csv=args.csv)
    if args.command == "api":
        from trading_assets.api.app import serve

        return serve(args.host, args.port, direct=args.open_per_request)
    if args.command == "init-home":
        print(f"export DAGSTER_HOME={ensure_dagster_home()}")
        return 0
    if args.command == "dead-runs":
        return report_dead_runs()
    if args.command == "repair-duckdb":
        return repair_duckdb(Path(args.database) if args.database else duckdb_path())
    return run_range(args.select, args.start, args.end)


def run_backtests(
    strategy: str, params: str, first: str | None, last: str | None, out: TextIO = sys.stdout
) -> int:
    """``trading-assets backtest``: the portfolio assets over the stored daily tables."""
    import json

    from trading_assets.core.backtest.result import STRATEGIES

    if strategy != "all" and strategy not in STRATEGIES:
        raise SystemExit(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)} or all")
    try:
        overrides = json.loads(params)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--params is not JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise SystemExit("--params must be a JSON object of constant names and values")
    if overrides and strategy == "all":
        raise SystemExit("--params needs one strategy: the constants differ between strategies")
    config: dict = {k: v for k, v in (("start", first), ("end", last)) if v}
    if overrides:
        config["params"] = {strategy: overrides}
    span = (STRATEGIES[0], STRATEGIES[-1]) if strategy == "all" else (strategy, strategy)
    from trading_assets.jobs import PORTFOLIO_SELECTION_NAMES

    return run_range(
        ",".join(PORTFOLIO_SELECTION_NAMES), "", "", out, strategies=span, backtest_config=config
    )


def run_sql(query: str, *, csv: bool = False, out: TextIO = sys.stdout) -> int:
    """``trading-assets sql``: the query over the deployment's tables, read-only."""
    import duckdb

    from trading_assets import settings

    deployment = settings.choice(
        settings.DEPLOYMENT, settings.DEFAULT_DEPLOYMENT, settings.DEPLOYMENTS
    )
    if deployment == "prod":
        from trading_assets.storage.s3_sql import attach_bucket

        bucket = settings.env(settings.S3_BUCKET)
        if not bucket:
            raise SystemExit(f"{settings.DEPLOYMENT}=prod needs {settings.S3_BUCKET}")
        con = duckdb.connect()
        attach_bucket(con, bucket, settings.env(settings.S3_PREFIX, "") or "")
    else:
        path = duckdb_path()
        if not path.exists():
            raise SystemExit(f"no DuckDB file at {path}: run trading-assets main first")
        con = duckdb.connect(str(path), read_only=True)
    try:
        result = con.sql(query)
        if result is None:
            print("(no result)", file=out)
        elif csv:
            result.to_df().to_csv(out, index=False)
        else:
            print(result.to_df().to_string(index=False, max_rows=200), file=out)
    except duckdb.Error as exc:
        print(f"sql: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def report_dead_runs(out: TextIO = sys.stdout) -> int:
    import dagster as dg

    from trading_assets.runs import fail_dead_runs

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        dead = fail_dead_runs(instance)
    for run in dead:
        print(f"marked run {run.run_id} ({run.job_name}) failed: {run.reason}", file=out)
    print(f"{len(dead)} dead run(s) marked failed", file=out)
    return 0


def repair_duckdb(path: Path, out: TextIO = sys.stdout) -> int:
    """Open ``path`` without the check, repair duplicated keys, say what to materialise again."""
    import duckdb

    from trading_assets.storage.duckdb_integrity import mark_unverified, repair_duplicates

    if not path.exists():
        print(f"no DuckDB file at {path}", file=out)
        return 1
    mark_unverified(path)  # a crash during the repair leaves the file still to be verified
    with duckdb.connect(str(path)) as con:
        repaired = repair_duplicates(con, path)
    for fix in repaired:
        print(
            f"{fix.table}: removed {fix.exact_copies_removed} exact duplicate row(s); deleted "
            f"{fix.conflicting_keys_deleted} key(s) whose copies differed",
            file=out,
        )
        if fix.conflicting_dates:
            asset = fix.table.split(".", 1)[1].replace("__", "/")
            first, last = fix.conflicting_dates
            print(
                f"  materialise them again: dagster asset materialize -m trading_assets.definitions "
                f"--select {asset} --partition-range {first}...{last}",
                file=out,
            )
    print(
        f"{path}: every unique key is unique" + ("" if repaired else " (nothing to repair)"),
        file=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
