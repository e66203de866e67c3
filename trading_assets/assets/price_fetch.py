"""The fan-out half of raw_prices: plan the window's fetch as batches, fetch each batch in its own step.

``plan_batches`` splits the requested symbols the way the source asks for them
(PriceSourceResource.fetch_batches: Yahoo's download batches; a file is read once) and emits one
dynamic output per batch; ``fetch_batch`` runs once per batch. Under the multiprocess executor
(or k8s_job_executor, one pod per step) the batches download side by side; in process they run one
after another exactly as the single fetch did. What a batch step hands on (bars and per-symbol
failures) goes through BATCHES_IO_MANAGER_KEY, a pickle IO manager under the instance's storage
directory that every step process of the run can read; only the judging step after them writes
to the tables.
"""

import datetime as dt
import pickle
import traceback
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import pyarrow as pa

from trading_assets.core.adjustments import OVERLAP_SESSIONS
from trading_assets.core.prices import RAW_PRICE_COLUMNS, empty_prices
from trading_assets.core.quarantine import QUARANTINE_COLUMN
from trading_assets.core.symbols import validate_symbols
from trading_assets.market_hours import (
    DEFAULT_CLOSE_DELAY_MINUTES,
    require_closed,
    sessions_before,
)
from trading_assets.partitions import sessions_in_window
from trading_assets.resources import PriceSourceResource
from trading_assets.storage.contract import TableStore

# Intermediate outputs between raw_prices' steps: pickles any step process of the run can read
# (DAGSTER_HOME/storage/<run_id>/...). Swap in an S3 pickle IO manager where steps run in pods.
BATCHES_IO_MANAGER_KEY = "price_batches_io_manager"
BATCHES_IO_MANAGER = dg.FilesystemIOManager().get_resource_definition()
# On every fetch step, so an executor can cap how many hit the source at once
# (tag_concurrency_limits of the multiprocess or k8s_job_executor).
FETCH_STEP_TAG = {"trading_assets/step": "price_fetch"}
# Symbols named in a log line before "+N more".
SYMBOLS_SHOWN = 5
# More quarantined bars than this share of a run's bars is a source failure, not a bad print.
DEFAULT_MAX_QUARANTINED_SHARE = 0.01


class NoPricesFetchedError(RuntimeError):
    """The source returned no bar at all for the requested symbols and sessions."""


class UnknownSymbolsError(ValueError):
    """A re-fetch asked for symbols that are not in the universe."""


class BatchFetchError(RuntimeError):
    """A batch's fetch raised an exception that cannot be handed between processes as it was."""


class RawPricesConfig(dg.Config):
    symbols: list[str] | None = None
    """Re-fetch only these universe symbols; their stored rows in the range are replaced, others kept."""
    max_quarantined_share: float = DEFAULT_MAX_QUARANTINED_SHARE
    """Block the run when more than this share of its bars (and more than one) is quarantined."""
    close_delay_minutes: float = DEFAULT_CLOSE_DELAY_MINUTES
    """A session can be fetched only this long after its close (no partial bars)."""


@dataclass(frozen=True)
class PricePlan:
    """What the run fetches: the window's sessions, the overlap before it, the symbols and dates."""

    sessions: list[dt.date]
    overlap: list[dt.date]
    wanted: list[str]
    start: (
        dt.date
    )  # the overlap's first session when stored bars precede the window, else sessions[0]
    batches: int


@dataclass(frozen=True)
class PriceBatch:
    """One fetch step's request."""

    number: int  # 1-based, as logged
    of: int
    symbols: list[str]
    start: dt.date
    end: dt.date

    @property
    def name(self) -> str:
        return f"batch {self.number}/{self.of}"

    @property
    def label(self) -> str:
        return f"{self.name} ({len(self.symbols)} symbols: {some(self.symbols)})"


@dataclass
class BatchFetch:
    """One fetch step's answer: the bars, the symbols that failed (with why), and the exception
    when the whole batch raised (its symbols are then all in ``failed``)."""

    batch: PriceBatch
    prices: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None

    # Pickled with the bars as Arrow IPC (zstd): 2.9 M bars (the full shared history) pickle in
    # 3 s as 208 MB of python date and str objects, as Arrow in 0.6 s and 96 MB, read back equal.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        try:
            table = pa.Table.from_pandas(self.prices, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            return state  # not Arrow-shaped: pickled as it is
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        state["prices"] = _ArrowBars(sink.getvalue().to_pybytes())
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["prices"], _ArrowBars):
            state["prices"] = pa.ipc.open_stream(state["prices"].ipc).read_all().to_pandas()
        self.__dict__.update(state)


@dataclass(frozen=True)
class _ArrowBars:
    ipc: bytes


@dg.op(
    out={
        "plan": dg.Out(io_manager_key=BATCHES_IO_MANAGER_KEY),
        "batches": dg.DynamicOut(io_manager_key=BATCHES_IO_MANAGER_KEY),
    },
    description="The window, the symbols to fetch and their split into batches (one step each).",
)
def plan_batches(
    context: dg.OpExecutionContext,
    config: RawPricesConfig,
    symbols: pd.DataFrame,
    price_source: PriceSourceResource,
    io_manager: dg.ResourceParam[TableStore],
):
    sessions = sessions_in_window(context.partition_time_window)
    if not sessions:
        raise NoPricesFetchedError(f"no {context.partition_key_range} session in the calendar")
    require_closed(sessions[-1], config.close_delay_minutes)
    # Sorted: a batch holds the same symbols run after run, whatever order the store reads back.
    wanted = sorted(requested_symbols(config, symbols["symbol"].tolist()))
    source = price_source.build()  # a misconfigured source fails here, before any fan-out
    overlap = sessions_before(sessions[0], OVERLAP_SESSIONS)
    # The overlap is fetched again only when there are stored bars there to compare it with.
    stored = stored_rows(io_manager, wanted, overlap[0] if overlap else None, sessions[0])
    start = overlap[0] if len(stored) else sessions[0]
    chunks = price_source.fetch_batches(wanted)
    if not chunks:
        raise NoPricesFetchedError("no symbols to fetch")
    context.log.info(
        f"fetching {len(wanted)} symbols from {source.name}, {start}..{sessions[-1]}, "
        f"in {len(chunks)} batch(es) of up to {max(len(c) for c in chunks)}"
    )
    yield dg.Output(PricePlan(sessions, overlap, wanted, start, len(chunks)), output_name="plan")
    for index, chunk in enumerate(chunks):
        batch = PriceBatch(index + 1, len(chunks), chunk, start, sessions[-1])
        yield dg.DynamicOutput(batch, mapping_key=str(index), output_name="batches")


@dg.op(
    out=dg.Out(io_manager_key=BATCHES_IO_MANAGER_KEY),
    tags=FETCH_STEP_TAG,
    description="Fetch one batch of symbols over the window (and the overlap before it).",
)
def fetch_batch(
    context: dg.OpExecutionContext, batch: PriceBatch, price_source: PriceSourceResource
) -> BatchFetch:
    # Built inside the step: the source's retries are then WARNING events of this step.
    source = price_source.build()
    context.log.info(f"{source.name} {batch.label}: fetching {batch.start}..{batch.end}")
    try:
        result = source.fetch(batch.symbols, batch.start, batch.end)
    except Exception as exc:  # one broken batch must not cost the others' rows (see judge)
        reason = f"{batch.name} failed: {type(exc).__name__}: {exc}"[:500]
        context.log.warning(
            f"{source.name} {batch.label}: {reason}; its symbols are listed as failed"
        )
        context.log.info("".join(traceback.format_exception(exc)))
        return BatchFetch(
            batch, pd.DataFrame(), {s: reason for s in batch.symbols}, error=_portable(exc)
        )
    return BatchFetch(batch, result.prices, dict(result.failed))


def collected(fetched: list[BatchFetch], source_name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every batch's bars as one frame, in the order one fetch would return them, and every
    batch's failures.

    When every batch raised, the source itself is broken: its first exception is raised again, as
    the single fetch of old did (a truncated price file fails the run naming the file)."""
    fetched = sorted(fetched, key=lambda f: f.batch.number)
    errors = [f.error for f in fetched if f.error is not None]
    if fetched and len(errors) == len(fetched):
        raise errors[0]
    failed: dict[str, str] = {}
    for f in fetched:
        failed.update(f.failed)
    frames = [f.prices for f in fetched if len(f.prices)]
    if not frames:
        return empty_prices(source_name), failed
    # In batch order, as one fetch of the sorted symbols returns them (last duplicate wins).
    prices = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return prices, failed


def requested_symbols(config: RawPricesConfig, universe: list[str]) -> list[str]:
    if not config.symbols:
        return universe
    wanted = validate_symbols(config.symbols)
    unknown = sorted(set(wanted) - set(universe))
    if unknown:
        raise UnknownSymbolsError(
            f"not in the universe (materialise `symbols` first or fix the list): {unknown}"
        )
    return wanted


def stored_rows(io_manager: TableStore, wanted, start, end) -> pd.DataFrame:
    """Stored raw_prices rows of ``wanted`` with start <= date < end (none when start is None)."""
    frame = (
        io_manager.read_rows("raw_prices", symbols=wanted, start=start, end=end)
        if start is not None
        else pd.DataFrame()
    )
    # An empty store, or a table written before quarantine existed, lacks some columns.
    frame = frame.reindex(columns=[*RAW_PRICE_COLUMNS, QUARANTINE_COLUMN])
    return frame.astype({"symbol": object, "date": object, QUARANTINE_COLUMN: object})


def some(symbols: list[str], most: int = SYMBOLS_SHOWN) -> str:
    shown = ", ".join(symbols[:most])
    return shown + (f", +{len(symbols) - most} more" if len(symbols) > most else "")


def _portable(exc: Exception) -> BaseException:
    """``exc`` if it survives a pickle round trip (the judging step may run in another process),
    else a BatchFetchError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return BatchFetchError(f"{type(exc).__name__}: {exc}")
