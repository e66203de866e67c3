"""trading_assets.core.indicators against TA-Lib itself and pandas references, on real prices.

Real data: a few symbols of the shared prices_daily.parquet (conftest), read with pyarrow filters:
AAPL, NVR ($1,000+ prices), SPY, QQQ, ^VIX (null volume), GEV (listed 2024-03-27, short history),
ODFL (volume 0 on some days) and BRK-B.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import talib

from trading_assets.core.indicators import (
    INDICATOR_COLUMNS,
    INDICATOR_LOOKBACK_SESSIONS,
    OUTPUT_COLUMNS,
    DuplicateSessionError,
    IndicatorInputError,
    compute_indicators,
    continue_obv,
)
from trading_assets_tests.conftest import SHARED_PRICES

SYMBOLS = ("AAPL", "NVR", "SPY", "QQQ", "^VIX", "GEV", "ODFL", "BRK-B")
BENCHMARKS = ("SPY", "QQQ", "^VIX")
# The bar for "equals TA-Lib".
RTOL, ATOL = 1e-9, 1e-8
# The bar for "incremental equals backfill".
INCREMENTAL_ATOL = 1e-9
NEW_SESSIONS = 20  # sessions appended in the incremental test

TALIB_COLUMNS = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "rsi_14", "macd", "macd_signal", "macd_hist",
    "bollinger_upper", "bollinger_middle", "bollinger_lower", "atr_14", "obv", "stoch_k", "stoch_d",
)  # fmt: skip


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    """Real OHLCV for SYMBOLS, sorted, date as datetime.date (as normalize_prices stores it)."""
    table = pq.read_table(SHARED_PRICES, filters=[("symbol", "in", list(SYMBOLS))])
    return table.to_pandas().sort_values(["symbol", "date"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def indicators(prices) -> pd.DataFrame:
    return compute_indicators(prices)


def rows_of(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return frame[frame["symbol"] == symbol].reset_index(drop=True)


def talib_reference(p: pd.DataFrame) -> dict[str, np.ndarray]:
    """TA-Lib on one symbol's rows (sorted by date)."""
    h, lo, c, v = (p[col].to_numpy(dtype=float) for col in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2, 2, 0)
    slow_k, slow_d = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
    return {
        "sma_20": talib.SMA(c, 20), "sma_50": talib.SMA(c, 50), "sma_200": talib.SMA(c, 200),
        "ema_12": talib.EMA(c, 12), "ema_26": talib.EMA(c, 26), "rsi_14": talib.RSI(c, 14),
        "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "bollinger_upper": upper, "bollinger_middle": middle, "bollinger_lower": lower,
        "atr_14": talib.ATR(h, lo, c, 14), "obv": talib.OBV(c, v),
        "stoch_k": slow_k, "stoch_d": slow_d,
    }  # fmt: skip


def assert_same(actual, expected, name: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Identical NaN mask and values within tolerance."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    mask_a, mask_e = np.isnan(actual), np.isnan(expected)
    differ = np.flatnonzero(mask_a != mask_e)
    assert differ.size == 0, f"{name}: NaN mask differs at rows {differ[:10]}"
    np.testing.assert_allclose(
        actual[~mask_a], expected[~mask_e], rtol=rtol, atol=atol, err_msg=name
    )


# --- TA-Lib equality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_talib_columns_equal_talib_per_symbol(prices, indicators, symbol):
    ours = rows_of(indicators, symbol)
    reference = talib_reference(rows_of(prices, symbol))
    for name in TALIB_COLUMNS:
        assert_same(ours[name], reference[name], f"{symbol} {name}")


def test_warm_up_rows_follow_talib_seeding(indicators):
    """First valid row of each column on a long history (AAPL from 2000): TA-Lib's lookbacks, and
    the documented warm-ups of the project's own columns."""
    ours = rows_of(indicators, "AAPL")
    labels = [
        name for name in INDICATOR_COLUMNS if name != "hh_ll_20"
    ]  # a label, null on quiet days
    first_valid = {name: int(ours[name].notna().to_numpy().argmax()) for name in labels}
    assert first_valid == {
        "sma_20": 19, "sma_50": 49, "sma_200": 199, "ema_12": 11, "ema_26": 25, "rsi_14": 14,
        "macd": 33, "macd_signal": 33, "macd_hist": 33,  # TA-Lib MACD: 25 + 9 - 1
        "bollinger_upper": 19, "bollinger_middle": 19, "bollinger_lower": 19,
        "atr_14": 14, "obv": 0, "stoch_k": 17, "stoch_d": 17,  # STOCH: 13 + 2 + 2, both outputs
        "zscore_20": 19, "atr_pct_rank_252": 14 + 251, "ema_slope_20": 19 + 5,
        "high_52w_pct": 251, "low_52w_pct": 251, "vol_avg_50": 49,
        "rs_raw": 252, "rs_rating": 252,
    }  # fmt: skip


def test_macd_fast_ema_is_seeded_at_row_25_not_row_11(prices, indicators):
    """TA-Lib's MACD seeds its fast EMA with the 12 closes ending at row 25, so the MACD line is
    NOT ema_12 - ema_26 (which seeds ema_12 with rows 0..11); the two converge later."""
    ours = rows_of(indicators, "AAPL")
    naive_line = ours["ema_12"] - ours["ema_26"]
    assert abs(ours["macd"].iloc[33] - naive_line.iloc[33]) > 1e-6
    np.testing.assert_allclose(ours["macd"].iloc[-100:], naive_line.iloc[-100:], rtol=0, atol=1e-9)


def test_vix_has_no_obv_or_volume_average_but_everything_else(prices, indicators):
    vix = rows_of(indicators, "^VIX")
    assert rows_of(prices, "^VIX")["volume"].isna().all()
    assert vix["obv"].isna().all() and np.isnan(talib.OBV(*(rows_of(prices, "^VIX")[c].to_numpy()
                                                             for c in ("close", "volume")))).all()  # fmt: skip
    assert vix["vol_avg_50"].isna().all()
    assert (
        vix["rsi_14"].iloc[14:].notna().all() and vix["atr_pct_rank_252"].iloc[265:].notna().all()
    )


def test_zero_volume_days_count_as_zero(prices, indicators):
    odfl = rows_of(prices, "ODFL")
    assert (odfl["volume"] == 0).any()
    assert_same(
        rows_of(indicators, "ODFL")["vol_avg_50"],
        talib.SMA(odfl["volume"].to_numpy(), 50),
        "vol_avg_50",
    )


def test_short_history_gets_what_its_length_allows(prices, indicators):
    gev = rows_of(indicators, "GEV")
    n = len(gev)
    assert 252 < n < 400  # listed 2024-03-27
    assert gev["rs_raw"].iloc[252:].notna().all() and gev["rs_raw"].iloc[:252].isna().all()
    assert gev["high_52w_pct"].iloc[251:].notna().all()
    assert gev["atr_pct_rank_252"].iloc[265:].notna().all()
    # A history shorter than a lookback gives NaN for that indicator, like TA-Lib.
    short = compute_indicators(rows_of(prices, "GEV").iloc[:30])
    assert short["sma_50"].isna().all() and short["macd"].isna().all()
    assert short["sma_20"].iloc[19:].notna().all() and short["stoch_k"].iloc[17:].notna().all()


# --- Our own columns against pandas / TA-Lib references ----------------------------------------------


@pytest.mark.parametrize("symbol", ["AAPL", "NVR", "^VIX"])
def test_zscore_and_ema_slope(prices, indicators, symbol):
    c = rows_of(prices, symbol)["close"].to_numpy()
    ours = rows_of(indicators, symbol)
    upper, middle, _ = talib.BBANDS(c, 20, 1, 1, 0)  # upper - middle = population sigma
    sigma = upper - middle
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(sigma > 0, (c - middle) / sigma, np.nan)
    assert_same(ours["zscore_20"], expected, "zscore_20", rtol=1e-7)
    ema = talib.EMA(c, 20)
    expected_slope = np.full(len(c), np.nan)
    expected_slope[5:] = ema[5:] / ema[:-5] - 1
    assert_same(ours["ema_slope_20"], expected_slope, "ema_slope_20")


@pytest.mark.parametrize("symbol", ["AAPL", "GEV", "^VIX"])
def test_atr_pct_rank_is_share_of_last_252_atr_at_or_below_today(prices, indicators, symbol):
    p = rows_of(prices, symbol)
    atr = pd.Series(talib.ATR(*(p[c].to_numpy() for c in ("high", "low", "close")), 14))
    expected = atr.rolling(252).apply(lambda w: 100.0 * (w <= w[-1]).sum() / 252, raw=True)
    assert_same(rows_of(indicators, symbol)["atr_pct_rank_252"], expected, "atr_pct_rank_252")
    values = rows_of(indicators, symbol)["atr_pct_rank_252"].dropna()
    assert values.between(100 / 252, 100).all()


@pytest.mark.parametrize("symbol", ["AAPL", "NVR", "GEV"])
def test_52_week_high_low_and_volume_average(prices, indicators, symbol):
    p = rows_of(prices, symbol)
    ours = rows_of(indicators, symbol)
    assert_same(ours["high_52w_pct"], p["close"] / p["high"].rolling(252).max() - 1, "high_52w_pct")
    assert_same(ours["low_52w_pct"], p["close"] / p["low"].rolling(252).min() - 1, "low_52w_pct")
    assert (ours["high_52w_pct"].dropna() <= 0).all() and (ours["low_52w_pct"].dropna() >= 0).all()
    assert_same(ours["vol_avg_50"], p["volume"].rolling(50).mean(), "vol_avg_50", rtol=1e-12)


@pytest.mark.parametrize("symbol", ["AAPL", "QQQ"])
def test_hh_ll_20_against_rolling_extremes(prices, indicators, symbol):
    p = rows_of(prices, symbol)
    is_high = p["high"] >= p["high"].rolling(20).max()
    is_low = p["low"] <= p["low"].rolling(20).min()
    upper_half = p["close"] >= (p["high"] + p["low"]) / 2
    expected = np.select([is_high & is_low & upper_half, is_high & is_low, is_high, is_low],
                         ["HH", "LL", "HH", "LL"], default=None)  # fmt: skip
    ours = rows_of(indicators, symbol)["hh_ll_20"]
    assert list(ours) == list(expected)
    assert {"HH", "LL", None} == set(ours)


def test_hh_ll_outside_bar_is_labelled_by_its_close():
    """A bar that makes both the 20-session high and low: HH if it closed in its upper half."""
    n = 25
    base = pd.DataFrame({
        "symbol": "X", "date": pd.bdate_range("2024-01-01", periods=n),
        "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1e6,
    })  # fmt: skip
    up = base.copy()
    up.loc[n - 1, ["high", "low", "close"]] = [12.0, 8.0, 11.0]
    down = base.copy()
    down.loc[n - 1, ["high", "low", "close"]] = [12.0, 8.0, 9.0]
    assert compute_indicators(up)["hh_ll_20"].iloc[-1] == "HH"
    assert compute_indicators(down)["hh_ll_20"].iloc[-1] == "LL"
    # A flat stretch: every bar ties the highest high and the lowest low; close at the midpoint -> HH.
    flat = compute_indicators(base)["hh_ll_20"]
    assert flat.iloc[19:].eq("HH").all() and flat.iloc[:19].isna().all()  # needs 20 sessions


def test_rs_raw_and_rs_rating_against_pandas_rank(prices, indicators):
    expected_raw = []
    for symbol in SYMBOLS:
        c = rows_of(prices, symbol)["close"]
        expected_raw.append(0.4 * (c / c.shift(63) - 1) + 0.2 * (c / c.shift(126) - 1)
                            + 0.2 * (c / c.shift(189) - 1) + 0.2 * (c / c.shift(252) - 1))  # fmt: skip
    frame = indicators.copy()
    by_symbol = dict(zip(SYMBOLS, expected_raw, strict=True))
    for symbol in SYMBOLS:
        assert_same(
            rows_of(frame, symbol)["rs_raw"], by_symbol[symbol], f"{symbol} rs_raw", rtol=1e-12
        )
    stocks = frame[~frame["symbol"].isin(BENCHMARKS) & frame["rs_raw"].notna()]
    rank = stocks.groupby("date")["rs_raw"].rank(method="min")
    n = stocks.groupby("date")["rs_raw"].transform("count")
    expected = (1 + np.floor(99 * (rank - 1) / n)).astype("Int64")
    assert frame["rs_rating"].dtype == "Int64"
    pd.testing.assert_series_equal(
        frame.loc[stocks.index, "rs_rating"], expected, check_names=False
    )
    assert frame.loc[frame["symbol"].isin(BENCHMARKS), "rs_rating"].isna().all()
    assert frame.loc[frame["rs_raw"].isna(), "rs_rating"].isna().all()
    assert frame["rs_rating"].dropna().between(1, 99).all()


def test_rs_rating_ties_share_the_lowest_rating_and_benchmarks_param():
    days = pd.bdate_range("2020-01-01", periods=260)
    growth = {"A": 1.0, "B": 1.001, "C": 1.001, "SPY": 1.002}  # B and C tie; SPY would rank top
    frame = pd.concat([
        pd.DataFrame({"symbol": s, "date": days, "high": 10 * g ** np.arange(260),
                      "low": 10 * g ** np.arange(260), "close": 10 * g ** np.arange(260), "volume": 1.0})
        for s, g in growth.items()
    ])  # fmt: skip
    last = compute_indicators(frame).groupby("symbol").tail(1).set_index("symbol")["rs_rating"]
    # n = 3 stocks: A rank 1 -> 1 + floor(99*0/3) = 1; B, C rank_min 2 -> 1 + floor(99/3) = 34.
    assert last.drop("SPY").to_dict() == {"A": 1, "B": 34, "C": 34} and pd.isna(last["SPY"])
    rated_all = (
        compute_indicators(frame, benchmarks=()).groupby("symbol").tail(1).set_index("symbol")
    )
    # n = 4: SPY rank 4 -> 1 + floor(99*3/4) = 75.
    assert rated_all["rs_rating"].to_dict() == {"A": 1, "B": 25, "C": 25, "SPY": 75}


@pytest.mark.parametrize("price", [5.0, 0.1])  # 0.1: the SMA of twenty 0.1s is not exactly 0.1
def test_flat_prices_follow_talib_conventions(price):
    n = 60
    flat = pd.DataFrame({"symbol": "FLAT", "date": pd.bdate_range("2024-01-01", periods=n),
                         "high": price, "low": price, "close": price, "volume": 100.0})  # fmt: skip
    out = compute_indicators(flat)
    c = flat["close"].to_numpy()
    assert_same(out["rsi_14"], talib.RSI(c, 14), "rsi_14")  # no move at all reads 0
    assert_same(
        out["stoch_k"], talib.STOCH(c, c, c, 14, 3, 0, 3, 0)[0], "stoch_k"
    )  # flat range -> 0
    assert_same(out["bollinger_upper"], talib.BBANDS(c, 20, 2, 2, 0)[0], "bollinger_upper")
    assert out["zscore_20"].isna().all()  # sigma == 0: undefined, not inf
    assert (out["atr_14"].dropna() == 0).all()


# --- Missing values and independence of symbols ------------------------------------------------------


def test_nan_inside_a_series_drops_only_that_session(prices):
    """A session with a missing input is left out of the indicators that read it (NaN there); the
    rest equals TA-Lib run on the sessions that have the input. TA-Lib itself would turn SMA, EMA,
    BBANDS and MACD NaN for the rest of the history and RSI into a constant."""
    p = rows_of(prices, "AAPL").iloc[:800].copy()
    bad_close, bad_high, bad_volume = 300, 500, 650
    p.loc[bad_close, "close"] = np.nan
    p.loc[bad_high, "high"] = np.nan
    p.loc[bad_volume, "volume"] = np.nan
    out = compute_indicators(p)

    close_ok = p["close"].notna().to_numpy()
    ref_close = talib_reference(p[close_ok])
    for name in ("sma_20", "sma_200", "ema_12", "rsi_14", "macd", "macd_signal", "bollinger_upper"):
        expected = np.full(len(p), np.nan)
        expected[close_ok] = ref_close[name]
        assert_same(out[name], expected, f"{name} with a NaN close")

    range_ok = p[["high", "low", "close"]].notna().all(axis=1).to_numpy()
    ref_range = talib_reference(p[range_ok])
    for name in ("atr_14", "stoch_k", "stoch_d"):
        expected = np.full(len(p), np.nan)
        expected[range_ok] = ref_range[name]
        assert_same(out[name], expected, f"{name} with NaN high/close")
    assert pd.isna(out.loc[bad_high, "hh_ll_20"]) and np.isnan(out.loc[bad_high, "high_52w_pct"])

    obv_ok = p[["close", "volume"]].notna().all(axis=1).to_numpy()
    expected = np.full(len(p), np.nan)
    expected[obv_ok] = talib.OBV(
        p.loc[obv_ok, "close"].to_numpy(), p.loc[obv_ok, "volume"].to_numpy()
    )
    assert_same(out["obv"], expected, "obv with NaN close/volume")
    assert np.isnan(out.loc[bad_volume, "vol_avg_50"]) and not np.isnan(
        out.loc[bad_volume + 1, "vol_avg_50"]
    )


def test_talib_itself_has_no_usable_rule_for_a_nan_inside_the_series(prices):
    """Why compute_indicators leaves NaN sessions out instead of calling TA-Lib on them (module
    docstring): one NaN close poisons TA-Lib's SMA/EMA/BBANDS/MACD for good and pins RSI at 0."""
    c = rows_of(prices, "AAPL")["close"].to_numpy()[:400].copy()
    c[300] = np.nan
    assert np.isnan(talib.SMA(c, 20)[300:]).all() and np.isnan(talib.EMA(c, 12)[300:]).all()
    assert np.isnan(talib.MACD(c, 12, 26, 9)[0][300:]).all()
    assert (talib.RSI(c, 14)[301:] == 0).all()
    ours = compute_indicators(rows_of(prices, "AAPL").iloc[:400].assign(close=c))
    assert np.isnan(ours["sma_20"].iloc[300])
    assert ours["sma_20"].iloc[301:].notna().all()  # the window just spans the gap
    assert (
        ours["rsi_14"].iloc[301:].between(0, 100).all() and ours["rsi_14"].iloc[301:].nunique() > 50
    )


def test_symbols_are_independent(prices, indicators):
    """One symbol's NaNs or short history never leak into another symbol's values."""
    spoiled = prices.copy()
    gev = spoiled.index[spoiled["symbol"] == "GEV"]
    spoiled = spoiled.drop(gev[:200])  # GEV loses most of its history
    aapl = spoiled.index[spoiled["symbol"] == "AAPL"]
    spoiled.loc[aapl[1000], "close"] = np.nan
    spoiled.loc[aapl[2000], ["high", "volume"]] = np.nan
    out = compute_indicators(spoiled)
    per_symbol = [c for c in OUTPUT_COLUMNS if c != "rs_rating"]  # rs_rating ranks across stocks
    for symbol in ("NVR", "SPY", "^VIX", "ODFL"):
        pd.testing.assert_frame_equal(
            rows_of(out, symbol)[per_symbol], rows_of(indicators, symbol)[per_symbol]
        )
    for symbol in ("NVR", "ODFL"):
        alone = compute_indicators(rows_of(prices, symbol))
        pd.testing.assert_frame_equal(alone[per_symbol], rows_of(indicators, symbol)[per_symbol])


# --- Input handling -----------------------------------------------------------------------------------


def test_any_row_order_and_extra_columns(prices, indicators):
    shuffled = prices.sample(frac=1.0, random_state=7).assign(source="files", open=-1.0)
    out = compute_indicators(shuffled)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    pd.testing.assert_frame_equal(out, indicators)


def test_date_types_give_the_same_result(prices, indicators):
    as_datetime64 = prices.assign(date=pd.to_datetime(prices["date"]).astype("datetime64[us]"))
    out = compute_indicators(as_datetime64)
    assert out["date"].dtype == "datetime64[us]"  # the input's type is kept
    pd.testing.assert_frame_equal(out.drop(columns="date"), indicators.drop(columns="date"))
    assert isinstance(indicators["date"].iloc[0], dt.date)


def test_empty_input_returns_empty_frame_with_all_columns():
    empty = pd.DataFrame({"symbol": pd.Series(dtype=object), "date": pd.Series(dtype=object),
                          "open": [], "high": [], "low": [], "close": [], "volume": []})  # fmt: skip
    out = compute_indicators(empty)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == 0
    assert out["rs_rating"].dtype == "Int64" and out["sma_20"].dtype == "float64"


def test_missing_column_is_a_clear_value_error(prices):
    with pytest.raises(IndicatorInputError, match=r"missing column\(s\) \['volume'\]") as info:
        compute_indicators(prices.drop(columns="volume"))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("where", ["appended", "adjacent"])
def test_duplicated_session_is_rejected(prices, where):
    extra = prices[prices["symbol"] == "NVR"].iloc[[100]]
    doubled = (
        pd.concat([prices, extra])
        if where == "appended"
        else pd.concat([prices, extra]).sort_index()
    )
    with pytest.raises(DuplicateSessionError, match="1 duplicated .* NVR"):
        compute_indicators(doubled)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("symbol", None, "symbol.*null"),
        ("date", None, "date.*null"),
        ("close", "n/a", "close.*non-numeric"),
    ],
)
def test_malformed_values_are_rejected(prices, column, value, message):
    bad = prices.head(50).copy()
    bad[column] = bad[column].astype(object)
    bad.loc[10, column] = value
    with pytest.raises(IndicatorInputError, match=message):
        compute_indicators(bad)


# --- Incremental recomputation ------------------------------------------------------------------------


def test_lookback_window_plus_continue_obv_equals_full_history(prices, indicators):
    """compute_indicators on the last LOOKBACK + k sessions, with OBV rebased on the stored rows
    before the new ones, equals the full-history computation on the k new sessions. GEV's whole
    history lies inside the window; ^VIX has no OBV at all."""
    sessions = np.sort(prices["date"].unique())
    new = sessions[-NEW_SESSIONS:]
    window_sessions = sessions[-(INDICATOR_LOOKBACK_SESSIONS + NEW_SESSIONS) :]
    assert rows_of(prices, "GEV")["date"].min() > window_sessions[0]

    window = compute_indicators(prices[prices["date"].isin(window_sessions)])
    stored = indicators[indicators["date"] < new[0]]
    rebased = continue_obv(window, stored)

    expected = indicators[indicators["date"].isin(new)].reset_index(drop=True)
    actual = rebased[rebased["date"].isin(new)].reset_index(drop=True)
    pd.testing.assert_frame_equal(actual[["symbol", "date", "hh_ll_20", "rs_rating"]],
                                  expected[["symbol", "date", "hh_ll_20", "rs_rating"]])  # fmt: skip
    for name in INDICATOR_COLUMNS:
        if name not in ("hh_ll_20", "rs_rating"):
            assert_same(
                actual[name], expected[name], f"incremental {name}", rtol=0, atol=INCREMENTAL_ATOL
            )
    # Without the rebase OBV is off by a constant per symbol.
    raw = window[window["date"].isin(new)].reset_index(drop=True)
    assert not np.allclose(
        raw.loc[raw["symbol"] == "AAPL", "obv"], actual.loc[actual["symbol"] == "AAPL", "obv"]
    )


def test_lookback_is_three_trading_years():
    assert INDICATOR_LOOKBACK_SESSIONS == 3 * 252
    # Slowest recursion (Wilder 14) over the 504 sessions after the 252-session windows: below 1e-16.
    assert (13 / 14) ** (INDICATOR_LOOKBACK_SESSIONS - 252) < 1e-16


def test_continue_obv_needs_the_stored_session_in_the_window(indicators):
    window = indicators[indicators["date"] >= indicators["date"].iloc[-10]]
    stored = indicators[indicators["date"] < indicators["date"].iloc[-300]]
    with pytest.raises(IndicatorInputError, match="no window OBV on their last stored session"):
        continue_obv(window, stored)
    with pytest.raises(IndicatorInputError, match="missing column"):
        continue_obv(window.drop(columns="obv"), stored)
    # Nothing stored yet (first run): the window's OBV is kept.
    pd.testing.assert_frame_equal(continue_obv(window, stored.iloc[:0]), window)
