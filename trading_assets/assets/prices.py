"""raw_prices: daily OHLCV bars per (symbol, session), and price_revisions: what each run restated.

A graph of steps, so that a universe of thousands of symbols fetches in parallel:

    plan_batches ─┬─ fetch_batch[0] ─┐
                  ├─ fetch_batch[1] ─┼─ judge_and_store  → raw_prices, price_revisions, checks
                  └─ fetch_batch[n] ─┘

``plan_batches`` and ``fetch_batch`` (price_fetch.py) split the window's symbols into the source's
batches and fetch each in its own step; ``judge_and_store`` compares the overlap with the stored
bars, re-fetches re-adjusted histories whole, quarantines, runs the checks and returns both tables.
Under the in-process executor the steps run one after another, as the single step did.

Thin: the rules live in trading_assets.core (quality, quarantine, adjustments).
"""

import datetime as dt

import dagster as dg
import pandas as pd

from trading_assets import checks
from trading_assets.assets.common import day_after
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.assets.price_checks import check_results
from trading_assets.assets.price_fetch import (
    BATCHES_IO_MANAGER,
    BATCHES_IO_MANAGER_KEY,
    BatchFetch,
    NoPricesFetchedError,
    PricePlan,
    RawPricesConfig,
    collected,
    fetch_batch,
    plan_batches,
    stored_rows,
)
from trading_assets.assets.price_fetch import (
    UnknownSymbolsError as UnknownSymbolsError,  # raised by plan_batches; imported from here
)
from trading_assets.core import quality
from trading_assets.core.adjustments import ADJUSTMENT, find_history_changes
from trading_assets.core.quarantine import QUARANTINE_COLUMN, judge_bars
from trading_assets.market_hours import first_session, session_after, sessions_from_to
from trading_assets.partitions import trading_days
from trading_assets.resources import PriceSourceResource
from trading_assets.sources.base import PriceSource
from trading_assets.storage.contract import Restatement, TableStore

# Kinds of price_revisions rows besides the adjustment/revision of core.adjustments.
VERDICT = "verdict"  # only a stored bar's quarantine verdict changed (its next bar arrived)
REVISION_COLUMNS = ["date", "symbol", "kind", "restate_from", "factor", "sessions_compared"]
CHECK_SPECS = checks.raw_prices_check_specs()
# The op output (and graph output) Dagster wires each check to.
CHECK_OUTPUTS = [spec.get_python_identifier() for spec in CHECK_SPECS]


class QuarantineLimitError(RuntimeError):
    """The blocking check quarantine_within_limits failed: nothing of the run was written."""


class RevisionsNotSelectedError(RuntimeError):
    """raw_prices restated stored history but price_revisions, which tells downstream assets to
    recompute it, was not selected; nothing was written."""


@dg.op(
    out={
        "raw_prices": dg.Out(is_required=False),
        "price_revisions": dg.Out(is_required=False),
        **{name: dg.Out(is_required=False) for name in CHECK_OUTPUTS},
    },
    description="Compare, re-fetch re-adjusted histories, quarantine, check; return both tables.",
)
def judge_and_store(
    context: dg.OpExecutionContext,
    config: RawPricesConfig,
    plan: PricePlan,
    fetches: list[BatchFetch],
    price_source: PriceSourceResource,
    io_manager: dg.ResourceParam[TableStore],
):
    sessions, overlap, wanted = plan.sessions, plan.overlap, plan.wanted
    source = price_source.build()
    # The stored bars just before the window (compared and judged against) and just after it.
    stored = stored_rows(io_manager, wanted, overlap[0] if overlap else None, sessions[0])
    after = session_after(sessions[-1])
    stored_after = stored_rows(io_manager, wanted, after, day_after(after)) if after else None

    prices, failed = collected(fetches, source.name)
    fetched, dropped = _on_calendar(prices, set(overlap) | set(sessions))
    duplicates = quality.find_duplicates(fetched)
    fresh = quality.drop_duplicates(fetched)
    if fresh[fresh["date"] >= sessions[0]].empty:
        raise NoPricesFetchedError(
            f"{source.name} returned no bars for {len(wanted)} symbols over {sessions[0]}..{sessions[-1]}; "
            f"failures: {_head(failed)}"
        )
    changes = find_history_changes(stored, fresh[fresh["date"] < sessions[0]])
    adjusted = changes.loc[changes["kind"] == ADJUSTMENT, "symbol"].tolist()
    if adjusted:
        context.log.warning(
            f"history changed for {len(adjusted)} symbol(s) (split, dividend or re-adjusted "
            f"source): re-fetching their whole history: {adjusted[:20]}"
        )
        first_stored = _first_stored(io_manager, adjusted)
        fresh, lost = _with_full_history(source, fresh, adjusted, sessions[-1], first_stored)
        # A symbol whose history changed but could not be fetched again keeps its stored rows and
        # is written nothing this run (a new bar on an old adjustment would mix two scales).
        failed.update(lost)
        adjusted = [s for s in adjusted if s not in lost]
        changes = changes[~changes["symbol"].isin(list(lost))]

    judged, restated_from = _judge(fresh, stored, stored_after, adjusted, changes, sessions[0])
    in_window = judged["date"] >= sessions[0]
    restatement = Restatement(column="symbol", key_from=restated_from)
    revisions = _revisions(restated_from, adjusted, changes, sessions[-1])
    _require_revisions_selected(context, revisions)
    # Restatements of this window stay recorded until downstream has run on them: a re-run of the
    # window (after a failed downstream step, say) finds the history already restated, and must
    # not erase what the first run found.
    revisions = _with_stored_revisions(io_manager, revisions, sessions)
    out = judged[in_window | judged["symbol"].isin(list(restated_from))].reset_index(drop=True)
    window = judged[in_window]

    light = {
        "rows": int(in_window.sum()),
        "source": source.name,
        "symbols_requested": len(wanted),
        "fetch_batches": plan.batches,
        "symbols_fetched": int(window["symbol"].nunique()),
        "sessions": len(sessions),
        "first_session": str(sessions[0]),
        "last_session": str(sessions[-1]),
        "failed_symbols_count": len(failed),
        "rows_off_calendar_dropped": dropped,
        "duplicate_rows_dropped": len(fetched) - len(fresh),
        "quarantined_rows": int(window[QUARANTINE_COLUMN].notna().sum()),
        "symbols_restated": len(restated_from),
        "symbols_readjusted": len(adjusted),
    }
    heavy = {**frame_metadata(window), "failed_symbols": dg.MetadataValue.json(failed)}
    metadata, events = split_metadata(context, light, heavy, dg.AssetKey("raw_prices"))
    selected_checks = {key.name for key in context.selected_asset_check_keys}
    results = [
        check
        for check in check_results(
            window,
            judged[~in_window],
            duplicates,
            failed,
            wanted,
            sessions,
            changes,
            config,
            restated_from,
        )
        if check.check_name in selected_checks
    ]
    blocked = [
        r for r in results if r.check_name in checks.RAW_PRICES_BLOCKING_CHECKS and not r.passed
    ]
    if blocked:
        # Judged before anything is written: a blocked run leaves the store as it was (a
        # restatement written without its downstream recomputation would leave tables disagreeing).
        yield from results
        raise QuarantineLimitError(
            f"blocking check {blocked[0].check_name} failed: "
            f"{blocked[0].metadata['quarantined_in_window'].value} bar(s) quarantined in the window "
            f"(limit {blocked[0].metadata['limit'].value}), "
            f"{blocked[0].metadata['benchmark_bars_quarantined'].value} of them benchmark bars; "
            "nothing was written. See the check's offending_listed, fix the source or raise "
            "max_quarantined_share."
        )
    yield dg.Output(
        out, output_name="raw_prices", metadata={**metadata, **restatement.to_metadata()}
    )
    if "price_revisions" in context.selected_output_names:
        yield dg.Output(revisions, output_name="price_revisions", metadata={"rows": len(revisions)})
    yield from events
    yield from results


def _config_for_steps(config: dict) -> dict:
    """The graph's config, RawPricesConfig at ``{"ops": {"raw_prices": {"config": ...}}}`` as
    before the fan-out, handed to the two steps that read it."""
    return {"plan_batches": {"config": config}, "judge_and_store": {"config": config}}


@dg.graph_multi_asset(
    outs={
        "raw_prices": dg.AssetOut(
            is_required=False,
            group_name="market",
            kinds={"pandas", "duckdb"},
            description="Daily bars per (symbol, session) as the source delivered them, with a "
            "`quarantine` reason where a bar is kept out of every calculation.",
            metadata={
                "partition_expr": "date",
                "replace_keys": ["symbol"],
                "unique_key": ["symbol", "date"],
            },
        ),
        "price_revisions": dg.AssetOut(
            is_required=False,
            group_name="market",
            kinds={"pandas", "duckdb"},
            description="Per run (dated by its last session), the symbols whose stored history it "
            "restated and from which date: a split or dividend (adjustment, with the factor), a "
            "corrected bar (revision), or a re-judged bar (verdict). Downstream assets recompute "
            "those symbols' rows from that date.",
            metadata={
                "partition_expr": "date",
                "unique_key": ["date", "symbol"],
                "allow_empty": True,
            },
        ),
    },
    partitions_def=trading_days,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=CHECK_SPECS,
    # `--select raw_prices` works; price_revisions is required only when a run restates history.
    can_subset=True,
    config=dg.ConfigMapping(_config_for_steps, config_schema=RawPricesConfig.to_config_schema()),
    resource_defs={BATCHES_IO_MANAGER_KEY: BATCHES_IO_MANAGER},
)
def raw_prices(symbols):
    """Daily bars (open, high, low, close, volume) for every universe symbol on every session of the
    partition range, with provenance (source, fetched_at). Prices are as the source serves them:
    yfinance auto-adjusted for splits and dividends. Each fetch also reads the 5 sessions before
    the range and compares them with the stored bars: when a symbol's history changed (a split, a
    dividend, a re-adjusted export) its whole history is fetched again and replaced. Bad bars are
    quarantined (stored, flagged, kept out downstream), never fatal. The fetch runs one step per
    batch of symbols, in parallel under a multiprocess executor."""
    plan, batches = plan_batches(symbols)
    fetched = batches.map(fetch_batch).collect()
    return judge_and_store(plan, fetched)._asdict()


def _require_revisions_selected(context: dg.OpExecutionContext, revisions) -> None:
    selected = context.selected_output_names
    if "raw_prices" not in selected:
        raise RevisionsNotSelectedError(
            "price_revisions is written by raw_prices: select raw_prices too"
        )
    if "price_revisions" not in selected and len(revisions):
        shown = ", ".join(f"{r.symbol} ({r.kind})" for r in revisions.head(10).itertuples())
        raise RevisionsNotSelectedError(
            f"this run restates stored history of {len(revisions)} symbol(s): {shown}. Select "
            "price_revisions with raw_prices (e.g. --select raw_prices,price_revisions, or the "
            "ingest_job) so that the downstream assets recompute what changed; nothing was written"
        )


def _on_calendar(prices: pd.DataFrame, sessions: set[dt.date]) -> tuple[pd.DataFrame, int]:
    keep = prices["date"].isin(sessions)  # e.g. CBOE-only ^VIX sessions are dropped
    return prices[keep], int((~keep).sum())


def _first_stored(io_manager: TableStore, symbols: list[str]) -> dict:
    stored = io_manager.read_rows("raw_prices", columns=["symbol", "date"], symbols=symbols)
    return stored.groupby("symbol")["date"].min().to_dict() if len(stored) else {}


def _with_full_history(source: PriceSource, fresh, adjusted, last, first_stored=None):
    """``fresh`` with the re-adjusted symbols' rows replaced by their whole history, and the symbols
    whose history could not be fetched (dropped from ``fresh``) with the reason.

    A source that serves less history than is stored (a file of recent bars only) cannot restate
    it: the older stored rows would stay on the old adjustment, so such a symbol is dropped too.
    """
    result = source.fetch(adjusted, first_session(), last)
    calendar = set(sessions_from_to(first_session(), last))
    history = quality.drop_duplicates(result.prices[result.prices["date"].isin(calendar)])
    served_from = history.groupby("symbol")["date"].min().to_dict()
    lost = {}
    for symbol in adjusted:
        if symbol not in served_from:
            lost[symbol] = (
                f"history changed, but re-fetching it failed: {result.failed.get(symbol, 'no rows')}"
            )
        elif first_stored and symbol in first_stored and served_from[symbol] > first_stored[symbol]:
            lost[symbol] = (
                f"history changed, but {source.name} serves it only from {served_from[symbol]} while "
                f"it is stored from {first_stored[symbol]}: not restated (the older rows would keep "
                "the old adjustment); fetch the whole history from a source that has it"
            )
    history = history[~history["symbol"].isin(list(lost))]
    merged = pd.concat([fresh[~fresh["symbol"].isin(adjusted)], history], ignore_index=True)
    return merged.sort_values(["symbol", "date"], ignore_index=True), lost


def _with_stored_revisions(
    io_manager: TableStore, revisions: pd.DataFrame, sessions
) -> pd.DataFrame:
    """This run's revisions plus those already recorded for the window (this run's win a tie)."""
    stored = io_manager.read_rows("price_revisions", start=sessions[0], end=day_after(sessions[-1]))
    if stored.empty:
        return revisions
    stored = stored.reindex(columns=REVISION_COLUMNS)
    both = pd.concat([stored.astype(revisions.dtypes.to_dict()), revisions], ignore_index=True)
    return both.drop_duplicates(["date", "symbol"], keep="last").reset_index(drop=True)


def _judge(fresh, stored, stored_after, adjusted, changes, window_start):
    """Quarantine verdicts for the fetched bars; and per symbol, the first stored date to restate.

    Bars before the window keep their stored verdict, except each symbol's newest stored bar (its
    next bar was unknown when it was judged) and bars whose values changed. The stored bar after
    the window (a re-run of an old range) is judged with, never written.
    """
    keys = ["symbol", "date"]
    stored_verdict = f"{QUARANTINE_COLUMN}_stored"
    frame = fresh.merge(
        stored[[*keys, QUARANTINE_COLUMN]].rename(columns={QUARANTINE_COLUMN: stored_verdict}),
        on=keys,
        how="left",
        indicator="_in_store",
    )
    frame["_after"] = False
    if stored_after is not None and len(stored_after):
        extra = stored_after[~stored_after["symbol"].isin(adjusted)]
        frame = pd.concat([frame, extra.assign(_after=True)], ignore_index=True)
    frame[QUARANTINE_COLUMN] = frame[stored_verdict].where(
        ~frame["_after"], frame.get(QUARANTINE_COLUMN)
    )
    day = pd.to_datetime(frame["date"])
    start = pd.Timestamp(window_start)
    newest_stored = pd.to_datetime(stored.groupby("symbol")["date"].max())
    first_revised = pd.to_datetime(changes.set_index("symbol")["first_changed"])
    before = (day < start) & ~frame["symbol"].isin(adjusted)
    last_judged = frame["symbol"].map(newest_stored)
    revised_from = frame["symbol"].map(first_revised)
    final = (before & (day < last_judged) & ~(day >= revised_from)) | frame["_after"]
    frame[QUARANTINE_COLUMN] = judge_bars(frame, final=final).astype("string")

    # Restate a symbol from the first bar before the window whose values or verdict changed.
    verdict_changed = (
        before
        & (frame["_in_store"] == "both")
        & (frame[QUARANTINE_COLUMN].fillna("") != frame[stored_verdict].fillna(""))
    )
    starts = frame.loc[verdict_changed].groupby("symbol")["date"].min().to_dict()
    for symbol, first in changes.set_index("symbol")["first_changed"].items():
        starts[symbol] = min(first, starts.get(symbol, first))
    for symbol in adjusted:
        starts[symbol] = first_session()
    keep = ~frame["_after"] & (
        (day >= start) | (day >= pd.to_datetime(frame["symbol"].map(starts)))
    )
    judged = frame[keep].drop(columns=["_after", "_in_store", stored_verdict])
    judged = judged.reset_index(drop=True)
    return judged, starts


def _revisions(restated_from, adjusted, changes, last_session) -> pd.DataFrame:
    by_symbol = changes.set_index("symbol")
    rows = []
    for symbol, first in sorted(restated_from.items()):
        known = symbol in by_symbol.index
        rows.append(
            {
                "date": last_session,
                "symbol": symbol,
                "kind": by_symbol.at[symbol, "kind"] if known else VERDICT,
                "restate_from": first,
                "factor": float(by_symbol.at[symbol, "factor"]) if known else None,
                "sessions_compared": int(by_symbol.at[symbol, "sessions_compared"]) if known else 0,
            }
        )
    frame = pd.DataFrame(rows, columns=REVISION_COLUMNS)
    return frame.astype(
        {"symbol": "string", "kind": "string", "factor": "float64", "sessions_compared": "int64"}
    )


def _head(failed: dict[str, str], n: int = 5) -> str:
    items = list(failed.items())
    return "; ".join(f"{s}: {r}" for s, r in items[:n]) + (
        f" (+{len(items) - n} more)" if len(items) > n else ""
    )
