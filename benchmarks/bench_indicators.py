"""Benchmark: compute_indicators against TA-Lib per symbol and a naive pandas loop.

Data: the last 2,520 SPY sessions of the shared prices_daily.parquet ($TRADING_ASSETS_SHARED_DATA,
else ../shared/data/market) for 500 symbols
(SPY, QQQ, ^VIX and the 497 stocks with the most rows in that window), dates as datetime64 as DuckDB
hands them over. ``--synthetic`` uses a seeded random walk of exactly 500 x 2,520 rows instead.

Timed in the same process, warm (after JIT), best and median of --repeats runs:
- compute_indicators(prices): every column, including rs_rating and the DataFrame.
- TA-Lib reference: talib SMA x3, EMA x2, RSI, MACD, BBANDS, ATR, OBV, STOCH called per symbol on
  numpy slices of the sorted frame, rs_raw with numpy, and rs_rating with a pandas groupby rank.
- naive baseline: per symbol ``df[df.symbol == s]`` with pandas rolling/ewm, and the pandas rank.
The first call (numba compile, or loading numba's on-disk cache) is timed in fresh subprocesses.

Run: python benchmarks/bench_indicators.py [--write-doc] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _doc import (  # benchmarks/ is on sys.path
    ROOT,
    first_call_seconds,
    machine,
    publish,
    shared_prices_file,
)

from trading_assets.core.indicators import compute_indicators

SESSIONS = 2_520
SYMBOLS = 500
BENCHMARKS = ("SPY", "QQQ", "^VIX")
RANDOM_SEED = 20250724


def load_real() -> pd.DataFrame:
    table = pq.read_table(
        shared_prices_file(), columns=["symbol", "date", "open", "high", "low", "close", "volume"]
    )
    spy = table.filter(pc.equal(table["symbol"], "SPY"))["date"].to_numpy()
    first = np.sort(spy)[-SESSIONS]
    table = table.filter(pc.greater_equal(table["date"], pa_scalar_date(first)))
    frame = table.to_pandas(date_as_object=False)
    frame = frame[frame["date"].isin(pd.to_datetime(np.sort(spy)[-SESSIONS:]))]
    counts = frame.groupby("symbol").size().drop(list(BENCHMARKS))
    stocks = counts.sort_values(ascending=False, kind="stable").index[: SYMBOLS - len(BENCHMARKS)]
    frame = frame[frame["symbol"].isin([*BENCHMARKS, *stocks])]
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def pa_scalar_date(value):
    import pyarrow as pa

    return pa.scalar(pd.Timestamp(value).date(), type=pa.date32())


def load_synthetic() -> pd.DataFrame:
    rng = np.random.default_rng(RANDOM_SEED)
    dates = pd.bdate_range("2015-07-01", periods=SESSIONS)
    symbols = [*BENCHMARKS, *(f"S{i:03d}" for i in range(SYMBOLS - len(BENCHMARKS)))]
    n = SESSIONS * len(symbols)
    close = (
        50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (len(symbols), SESSIONS)), axis=1)).ravel()
    )
    spread = np.abs(rng.normal(0.0, 0.01, n)) * close
    return pd.DataFrame({
        "symbol": np.repeat(np.array(sorted(symbols), dtype=object), SESSIONS),
        "date": np.tile(dates.to_numpy(), len(symbols)),
        "open": close, "high": close + spread, "low": close - spread, "close": close,
        "volume": rng.integers(100_000, 10_000_000, n).astype(np.float64),
    })  # fmt: skip


def talib_reference(prices: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """The 8 TA-Lib functions per symbol on numpy slices + rs_raw + pandas rank for rs_rating."""
    out = talib_per_symbol(prices)
    return out, pandas_rs_rating(prices, out[16])


def talib_per_symbol(prices: pd.DataFrame) -> np.ndarray:
    """Rows 0..15: the TA-Lib outputs; row 16: rs_raw."""
    import talib

    symbol = prices["symbol"].to_numpy()
    bounds = np.r_[0, np.flatnonzero(symbol[1:] != symbol[:-1]) + 1, len(symbol)]
    high, low, close, volume = (prices[c].to_numpy() for c in ("high", "low", "close", "volume"))
    out = np.empty((17, len(prices)))
    for k in range(len(bounds) - 1):
        s, e = bounds[k], bounds[k + 1]
        h, lo, c, v = high[s:e], low[s:e], close[s:e], volume[s:e]
        out[0, s:e] = talib.SMA(c, 20)
        out[1, s:e] = talib.SMA(c, 50)
        out[2, s:e] = talib.SMA(c, 200)
        out[3, s:e] = talib.EMA(c, 12)
        out[4, s:e] = talib.EMA(c, 26)
        out[5, s:e] = talib.RSI(c, 14)
        out[6:9, s:e] = talib.MACD(c, 12, 26, 9)
        out[9:12, s:e] = talib.BBANDS(c, 20, 2, 2, 0)
        out[12, s:e] = talib.ATR(h, lo, c, 14)
        out[13, s:e] = talib.OBV(c, v)
        out[14:16, s:e] = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
        rs = np.full(e - s, np.nan)
        if e - s > 252:
            rs[252:] = (0.4 * (c[252:] / c[189:-63] - 1) + 0.2 * (c[252:] / c[126:-126] - 1)
                        + 0.2 * (c[252:] / c[63:-189] - 1) + 0.2 * (c[252:] / c[:-252] - 1))  # fmt: skip
        out[16, s:e] = rs
    return out


def pandas_rs_rating(prices: pd.DataFrame, rs: np.ndarray) -> pd.Series:
    rs_raw = pd.Series(rs).where(~prices["symbol"].isin(BENCHMARKS).to_numpy())
    rank = rs_raw.groupby(prices["date"].to_numpy()).rank(method="min")
    n = rs_raw.groupby(prices["date"].to_numpy()).transform("count")
    rating = (1 + np.floor(99 * (rank - 1) / n)).astype("Int64")
    return rating


def naive_pandas(prices: pd.DataFrame) -> pd.DataFrame:
    """What one writes first: filter each symbol, pandas rolling/ewm, concat, groupby rank."""
    parts = []
    for sym in prices["symbol"].unique():
        df = prices[prices["symbol"] == sym].sort_values("date").copy()
        c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
        for p in (20, 50, 200):
            df[f"sma_{p}"] = c.rolling(p).mean()
        for p in (12, 26):
            df[f"ema_{p}"] = c.ewm(span=p, adjust=False).mean()
        delta = c.diff()
        gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
        loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
        df["rsi_14"] = 100 * gain / (gain + loss)
        df["macd"] = df["ema_12"] - df["ema_26"]
        df["macd_signal"] = df["macd"].ewm(span=9, adjust=False).mean()
        df["macd_hist"] = df["macd"] - df["macd_signal"]
        mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
        df["bollinger_upper"], df["bollinger_middle"], df["bollinger_lower"] = (
            mid + 2 * sd,
            mid,
            mid - 2 * sd,
        )
        prev = c.shift()
        tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1)
        df["atr_14"] = tr.ewm(alpha=1 / 14, adjust=False).mean()
        df["obv"] = (np.sign(delta).fillna(0) * v).cumsum()
        hh, ll = h.rolling(14).max(), lo.rolling(14).min()
        df["stoch_k"] = (100 * (c - ll) / (hh - ll)).rolling(3).mean().rolling(3).mean()
        df["stoch_d"] = df["stoch_k"].rolling(3).mean()
        df["rs_raw"] = (0.4 * c.pct_change(63) + 0.2 * c.pct_change(126)
                        + 0.2 * c.pct_change(189) + 0.2 * c.pct_change(252))  # fmt: skip
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    stock = ~out["symbol"].isin(BENCHMARKS)
    out.loc[stock, "rs_rank"] = out[stock].groupby("date")["rs_raw"].rank(method="min")
    return out


def stage_times(prices: pd.DataFrame, repeats: int) -> dict[str, float]:
    """Median time of each step of compute_indicators (uses the module's private steps)."""
    import numba

    from trading_assets.core.indicators import api, constants, inputs, per_symbol, project_columns

    steps: dict[str, list[float]] = {}

    def clock(name, t0):
        steps.setdefault(name, []).append(time.perf_counter() - t0)
        return time.perf_counter()

    for _ in range(repeats):
        t = time.perf_counter()
        days = inputs._session_days(prices["date"])
        order, bounds, labels = inputs._sort_plan(prices["symbol"], days)
        cols = [inputs._float_column(prices, c, order) for c in ("high", "low", "close", "volume")]
        t = clock("input: dates, sort check, symbol bounds", t)
        n = len(prices)
        out = np.empty((constants._N_FLOAT, n))
        codes = np.empty(n, dtype=np.int8)
        with numba.parallel_chunksize(api._SYMBOLS_PER_CHUNK):
            per_symbol._all_symbols(bounds, *cols, out, codes)
        t = clock("per-symbol kernel (24 float columns + hh_ll codes, incl. page faults)", t)
        is_stock = np.array([label not in BENCHMARKS for label in labels])
        project_columns._rs_rating(
            days, out[constants._RS_RAW], bounds, is_stock, np.empty(n, np.int64), np.empty(n, bool)
        )
        t = clock("rs_rating (cross-sectional rank by date)", t)
        t0 = time.perf_counter()
        compute_indicators(prices)
        steps.setdefault("total", []).append(time.perf_counter() - t0)
    result = {k: statistics.median(v) for k, v in steps.items()}
    result["DataFrame assembly (rest of total)"] = result["total"] - sum(
        v for k, v in result.items() if k != "total"
    )
    return result


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


FIRST_CALL = """
import sys, time
sys.path.insert(0, {root!r})
import pandas as pd
t0 = time.perf_counter()
from trading_assets.core.indicators import compute_indicators
frame = pd.DataFrame({{"symbol": ["A"] * 300, "date": pd.bdate_range("2024-01-01", periods=300),
    "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1e6}})
compute_indicators(frame)
print(time.perf_counter() - t0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--naive-repeats", type=int, default=1)
    parser.add_argument(
        "--synthetic", action="store_true", help="seeded random walk instead of the parquet"
    )
    parser.add_argument(
        "--write-doc", action="store_true", help="update this section of docs/benchmarks.md"
    )
    args = parser.parse_args()

    import numba
    import talib

    host = machine()
    prices = load_synthetic() if args.synthetic else load_real()
    rows, n_symbols = len(prices), prices["symbol"].nunique()
    as_dates = prices.assign(
        date=prices["date"].dt.date
    )  # datetime.date objects, normalize_prices' form

    with tempfile.TemporaryDirectory(prefix="numba-cold-") as empty_cache:
        cold = first_call_seconds(FIRST_CALL.format(root=str(ROOT)), empty_cache)
    first_call_seconds(FIRST_CALL.format(root=str(ROOT)), None)  # fills numba's on-disk cache if the source changed since it was written
    cached = first_call_seconds(FIRST_CALL.format(root=str(ROOT)), None)
    compute_indicators(prices)  # JIT (or cache load) in this process

    ours = timed(lambda: compute_indicators(prices), args.repeats)
    ours_dates = timed(lambda: compute_indicators(as_dates), max(3, args.repeats // 2))
    shuffled = prices.sample(frac=1.0, random_state=RANDOM_SEED)
    ours_shuffled = timed(lambda: compute_indicators(shuffled), max(3, args.repeats // 2))
    stages = stage_times(prices, args.repeats)
    reference = timed(lambda: talib_reference(prices), args.repeats)
    talib_only = timed(lambda: talib_per_symbol(prices), args.repeats)
    rs = talib_per_symbol(prices)[16]
    rank_only = timed(lambda: pandas_rs_rating(prices, rs), args.repeats)
    naive = timed(lambda: naive_pandas(prices), args.naive_repeats)

    best_ref = min(reference)
    lines = [
        "## Indicators (compute_indicators vs TA-Lib)",
        "",
        f"Data: {'seeded random walk' if args.synthetic else 'shared prices_daily.parquet, last 2,520 SPY sessions'}, "
        f"{n_symbols} symbols, {rows:,} rows (sorted by symbol, date; date as datetime64 as DuckDB returns it).",
        f"Machine: {host}. numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"TA-Lib {talib.__version__} (C {talib.__ta_version__.decode().split()[0]}), pandas {pd.__version__}.",
        "",
        "| what | best (s) | median (s) | vs TA-Lib best |",
        "|---|---:|---:|---:|",
    ]
    for name, times in [
        ("compute_indicators (all 25 columns incl. rs_rating, DataFrame out)", ours),
        ("compute_indicators, date as datetime.date objects", ours_dates),
        ("compute_indicators, rows shuffled (sorted first)", ours_shuffled),
        (
            "**reference**: TA-Lib per symbol (8 functions) + numpy rs_raw + pandas groupby rank",
            reference,
        ),
        ("... of which the TA-Lib loop + rs_raw", talib_only),
        ("... of which the pandas groupby rank for rs_rating", rank_only),
        ("naive: per-symbol df[df.symbol == s] + pandas rolling/ewm + rank", naive),
    ]:
        lines.append(f"| {name} | {min(times):.3f} | {statistics.median(times):.3f} | "
                     f"{min(times) / best_ref:.2f}x |")  # fmt: skip
    lines += [
        "",
        f"Target <= 0.5x of the reference: {min(ours) / best_ref:.2f}x best-to-best, "
        f"{statistics.median(ours) / statistics.median(reference):.2f}x median-to-median.",
    ]
    lines += ["", "Where compute_indicators' time goes (median of the same repeats):", "",
              "| step | median (s) |", "|---|---:|"]  # fmt: skip
    lines += [f"| {name} | {seconds:.3f} |" for name, seconds in stages.items()]
    lines += [
        "",
        f"First call in a fresh process (import + one small frame): {cold:.1f} s with an empty numba "
        f"cache (compiling), {cached:.2f} s with numba's on-disk cache (cache=True) warm.",
        f"Repeats: {args.repeats} warm runs each (naive: {args.naive_repeats}). "
        f"Load average {os.getloadavg()[0]:.2f} at the end.",
        "",
        "How: one numba pass per symbol over its contiguous rows (symbols spread over the cores in",
        "chunks of 8), every indicator written straight into one preallocated 2-D float array whose",
        "rows become the DataFrame's columns without a copy; rolling extremes by van Herk/Gil-Werman",
        "(O(n) for any window); rs_rating by a date sweep that insertion-sorts each session starting",
        "from the previous session's order (nearly sorted: ~7 moves per stock per day) instead of a",
        "pandas groupby rank. Already-sorted input (what normalize_prices and DuckDB reads give) skips",
        "sorting; other orders get two counting sorts. Timings on this 2-core VM move by up to 2x with",
        "other jobs' load, so compare rows of the same run.",
    ]
    publish(lines, args.write_doc)


if __name__ == "__main__":
    main()
