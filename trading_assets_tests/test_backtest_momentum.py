"""watchlist_momentum against a plain per-session reference, on real data and on hand-built bars.

The reference below is written from the rules in momentum.py's docstring, independently of its
kernel (no shared code): dicts of positions and orders, one session at a time.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trading_assets.core.backtest.engine import run_backtest
from trading_assets.core.backtest.momentum import run_watchlist_momentum
from trading_assets.core.backtest.result import TRADE_COLUMNS, BacktestInputError
from trading_assets.core.fundamentals import read_fundamentals_snapshots
from trading_assets.core.indicators import compute_indicators
from trading_assets.core.regime import compute_market_environment
from trading_assets.core.screen import screen_watchlist
from trading_assets_tests.conftest import SHARED_MARKET, SHARED_PRICES, shared_prices

STRATEGY = "watchlist_momentum"


# ----------------------------------------------------------------------------------------------
# The reference: slow and obvious.
# ----------------------------------------------------------------------------------------------
def reference(bars, watchlist, environment, equity, commission_bps, slippage_bps):
    """(trades rows as dicts, {date: equity}) by the rules, one session at a time."""
    fee_rate, slip = commission_bps / 10_000, slippage_bps / 10_000
    day = lambda v: pd.Timestamp(v).date()  # noqa: E731
    by_day: dict = {}
    last_day: dict = {}
    for r in bars.itertuples(index=False):
        by_day.setdefault(day(r.date), {})[r.symbol] = r
        last_day[r.symbol] = max(last_day.get(r.symbol, day(r.date)), day(r.date))
    env = {day(r.date): (r.environment, r.heat_limit) for r in environment.itertuples()}
    plans: dict = {}
    for r in watchlist.itertuples(index=False):
        plans.setdefault(day(r.date), []).append(r)

    def tradable(b):
        return b is not None and all(
            math.isfinite(x) and x > 0 for x in (b.open, b.high, b.low, b.close)
        )

    cash, trades, curve = float(equity), [], {}
    positions: dict = {}  # symbol -> position; insertion order = fill order
    orders: dict = {}  # symbol -> waiting entry; insertion order = acceptance order

    def sell(sym, shares, price, when, reason):
        nonlocal cash
        pos = positions[sym]
        fees = shares * pos["price"] * fee_rate + shares * price * fee_rate
        cash += shares * price - shares * price * fee_rate
        trades.append(dict(symbol=sym, entry_date=pos["date"], entry_price=pos["price"],
                           exit_date=when, exit_price=price, shares=shares, fees=fees,
                           pnl=shares * (price - pos["price"]) - fees,
                           r_multiple=(shares * (price - pos["price"]) - fees)
                           / (shares * (pos["price"] - pos["stop"])),
                           exit_reason=reason))  # fmt: skip
        pos["left"] -= shares
        if pos["left"] == 0 or reason in ("stop", "trail_sma_50"):
            del positions[sym]

    for today in sorted(by_day):
        bars_today = by_day[today]
        for sym in list(positions):  # the open: trail sells
            b = bars_today.get(sym)
            if tradable(b) and positions[sym]["trail"]:
                sell(sym, positions[sym]["left"], b.open * (1 - slip), today, "trail_sma_50")
        for sym in list(orders):  # then the waiting entries, in the order they were accepted
            b = bars_today.get(sym)
            if not tradable(b):
                continue
            order = orders.pop(sym)
            if b.open <= order["stop"]:
                continue
            price = b.open * (1 + slip)
            n = min(order["shares"], math.floor(cash / (price * (1 + fee_rate))))
            if n > 0:
                cash -= n * price + n * price * fee_rate
                positions[sym] = dict(date=today, price=price, stop=order["stop"], left=n,
                                      third=n // 3, hits=0, trail=False, mark=None)  # fmt: skip
        for sym in list(positions):  # inside the bar
            b = bars_today.get(sym)
            while tradable(b) and sym in positions:
                pos = positions[sym]
                target = pos["price"] * (1.10 if pos["hits"] == 0 else 1.20)
                target = target if pos["hits"] < 2 else math.inf
                if b.open <= pos["stop"]:
                    sell(sym, pos["left"], b.open, today, "stop")
                elif b.open >= target:
                    pos["hits"] += 1
                    if pos["third"]:
                        sell(sym, pos["third"], b.open, today, f"target_{pos['hits']}")
                elif b.low <= pos["stop"]:
                    sell(sym, pos["left"], pos["stop"], today, "stop")
                elif b.high >= target:
                    pos["hits"] += 1
                    if pos["third"]:
                        sell(sym, pos["third"], target, today, f"target_{pos['hits']}")
                else:
                    break
        for sym, pos in positions.items():  # the close
            b = bars_today.get(sym)
            if tradable(b):
                pos["mark"] = b.close
                pos["trail"] = pos["trail"] or b.close < b.sma_50
        for sym in [s for s in orders if last_day[s] <= today]:
            del orders[sym]  # no bar left to fill at
        value = cash + sum(p["left"] * p["mark"] for p in positions.values())
        curve[today] = value

        name, heat_limit = env.get(today, (None, math.nan))
        if name not in ("A", "B", "C") or not heat_limit > 0:
            continue
        heat = sum(p["left"] * max(0.0, p["price"] - p["stop"])
                   for p in positions.values() if not p["trail"])  # fmt: skip
        heat += sum(o["risk"] for o in orders.values())
        ranked = sorted(
            plans.get(today, []),
            key=lambda r: (pd.isna(r.rs_rating), -(0 if pd.isna(r.rs_rating) else r.rs_rating),
                           r.symbol),
        )  # fmt: skip
        for r in ranked:
            if (
                r.sizing_status != "sized"
                or (pd.notna(r.heat_exceeded) and bool(r.heat_exceeded))
                or not r.shares >= 1
            ):
                continue
            if not 0 < r.stop < r.entry or r.symbol in positions or r.symbol in orders:
                continue
            if last_day.get(r.symbol, today) <= today:
                continue
            risk = int(r.shares) * (r.entry - r.stop)
            if heat + risk <= heat_limit * value + 1e-6:
                heat += risk
                orders[r.symbol] = dict(shares=int(r.shares), stop=r.stop, risk=risk)
    for sym, pos in positions.items():  # still open at the end
        fees = pos["left"] * pos["price"] * fee_rate
        pnl = pos["left"] * (pos["mark"] - pos["price"]) - fees
        trades.append(dict(symbol=sym, entry_date=pos["date"], entry_price=pos["price"],
                           exit_date=None, exit_price=math.nan, shares=pos["left"], fees=fees,
                           pnl=pnl, r_multiple=pnl / (pos["left"] * (pos["price"] - pos["stop"])),
                           exit_reason=None))  # fmt: skip
    return trades, curve


def assert_matches_reference(result, bars, watchlist, environment, equity, commission, slippage):
    trades, curve = reference(bars, watchlist, environment, equity, commission, slippage)
    expected = pd.DataFrame(trades, columns=[c for c in TRADE_COLUMNS if c in trades[0]])
    # Same order as the result: entry_date, symbol, then the order the rows were closed in.
    expected = expected.sort_values(["entry_date", "symbol"], kind="stable").reset_index(drop=True)
    got = result.trades
    assert list(got.columns) == list(TRADE_COLUMNS)
    assert (got["strategy"] == STRATEGY).all() and (got["side"] == "long").all()
    for c in ("symbol", "entry_date", "exit_date", "shares", "exit_reason"):
        assert got[c].tolist() == expected[c].tolist(), c
    for c in ("entry_price", "exit_price", "fees", "pnl", "r_multiple"):
        np.testing.assert_allclose(got[c], expected[c], rtol=1e-9, atol=1e-9, err_msg=c)
    assert list(result.equity.index) == list(curve)
    np.testing.assert_allclose(result.equity.to_numpy(), list(curve.values()), rtol=1e-11)
    return expected


def cash_by_day(result, equity, commission_bps):
    """Cash after each session, rebuilt from the trades: buys paid in full at entry, sells in."""
    rate, flows = commission_bps / 10_000, {}
    t = result.trades
    bought = t.groupby(["symbol", "entry_date"]).agg(
        shares=("shares", "sum"), px=("entry_price", "first")
    )
    for (_, when), row in bought.iterrows():
        flows[when] = flows.get(when, 0.0) - row.shares * row.px * (1 + rate)
    for row in t[t["exit_date"].notna()].itertuples():
        flows[row.exit_date] = flows.get(row.exit_date, 0.0) + row.shares * row.exit_price * (
            1 - rate
        )
    return np.cumsum([flows.get(d, 0.0) for d in result.equity.index]) + equity


# ----------------------------------------------------------------------------------------------
# Real shared data: a 63-stock slice of the universe, 2016-2021 (the 2020 crash gives D sessions).
# ----------------------------------------------------------------------------------------------
def build_inputs(prices):
    indicators = prices.merge(compute_indicators(prices), on=["symbol", "date"])
    environment = compute_market_environment(indicators)
    fundamentals = read_fundamentals_snapshots(SHARED_MARKET / "fundamentals_2025-02-01.csv")
    return indicators, environment, screen_watchlist(indicators, environment, fundamentals)


@pytest.fixture(scope="module")
def real():
    names = pq.read_table(SHARED_PRICES, columns=["symbol"]).column("symbol").unique()
    stocks = sorted(s for s in names.to_pylist() if s not in ("SPY", "QQQ", "^VIX"))[::8]
    prices = shared_prices([*stocks, "SPY", "QQQ", "^VIX"], "2016-01-01", "2021-12-31")
    return prices, *build_inputs(prices)


# The second run: a small account with heat limits x4, so that cash, not heat, binds at times.
@pytest.mark.parametrize(
    "equity, commission, slippage, heat_scale",
    [(100_000.0, 1.0, 5.0, 1.0), (30_000.0, 2.0, 10.0, 4.0)],
)
def test_real_data_equals_reference(real, equity, commission, slippage, heat_scale):
    _, bars, environment, watchlist = real
    assert len(watchlist) > 5_000 and (environment["environment"] == "D").sum() > 50
    environment = environment.assign(heat_limit=environment["heat_limit"] * heat_scale)
    result = run_backtest(bars, STRATEGY, equity=equity, commission_bps=commission,
                          slippage_bps=slippage, market_environment=environment,
                          watchlist=watchlist)  # fmt: skip
    trades = assert_matches_reference(
        result, bars, watchlist, environment, equity, commission, slippage
    )
    # Non-trivial: every kind of exit, thirds, an open remainder, heat skips of sized plans.
    assert len(trades) > 100
    assert {"stop", "target_1", "target_2", "trail_sma_50", None} <= set(trades["exit_reason"])
    entered = trades.groupby(["symbol", "entry_date"])["shares"].sum()
    sized = watchlist[(watchlist["sizing_status"] == "sized") & (watchlist["environment"] != "D")]
    assert len(entered) < 0.5 * len(sized)
    # The books balance: the equity's change is the sum of the trades' pnl; cash never < 0.
    assert result.equity.iloc[-1] - equity == pytest.approx(trades["pnl"].sum(), abs=1e-6)
    assert cash_by_day(result, equity, commission).min() > -1e-6
    if heat_scale > 1:  # cash binds: some entries were cut to what the cash afforded
        plan = watchlist.set_index(["symbol", "date"])["shares"]
        signal_day = {
            d: p for p, d in zip(result.equity.index[:-1], result.equity.index[1:], strict=True)
        }
        planned = [plan.get((s, signal_day[d])) for s, d in entered.index]
        assert any(n < p for n, p in zip(entered, planned, strict=True))


def test_no_look_ahead_on_real_data(real):
    """Changing every price after T leaves every trade entered by T and the equity to T as is."""
    prices, bars, environment, watchlist = real
    cut = dt.date(2019, 6, 28)
    later = pd.to_datetime(prices["date"]).dt.date > cut
    rng = np.random.default_rng(7)
    changed = prices.copy()
    factor = rng.uniform(0.7, 1.3, size=int(later.sum()))
    for c in ("open", "high", "low", "close"):
        changed.loc[later, c] = changed.loc[later, c] * factor
    changed.loc[later, "volume"] = changed.loc[later, "volume"] * rng.uniform(
        0.5, 2.0, int(later.sum())
    )
    runs = [
        run_watchlist_momentum(b, None, equity=100_000.0, commission_bps=1.0, slippage_bps=5.0,
                               market_environment=e, watchlist=w)
        for b, e, w in ((bars, environment, watchlist), build_inputs(changed))
    ]  # fmt: skip
    before, after = (r.equity[[d <= cut for d in r.equity.index]] for r in runs)
    pd.testing.assert_series_equal(before, after)
    key = ["symbol", "entry_date", "entry_price"]
    entered = [r.trades[r.trades["entry_date"] <= cut].groupby(key)["shares"].sum() for r in runs]
    pd.testing.assert_series_equal(*entered)
    closed = [
        r.trades[r.trades["exit_date"].map(lambda d: d is not None and d <= cut)] for r in runs
    ]
    pd.testing.assert_frame_equal(*(c.reset_index(drop=True) for c in closed))
    assert len(closed[0]) > 20
    # ... and the change does reach the later results, so the comparison could fail.
    assert not np.allclose(runs[0].equity.iloc[-1], runs[1].equity.iloc[-1])


# ----------------------------------------------------------------------------------------------
# Hand-built cases. Prices flat unless said; sma_50 far below (no trail) unless given.
# ----------------------------------------------------------------------------------------------
DAYS = [d.date() for d in pd.bdate_range("2024-01-02", periods=12)]
PLAN_COLUMNS = ["symbol", "date", "rs_rating", "entry", "stop", "shares", "heat_exceeded",
                "sizing_status"]  # fmt: skip


def bars_of(symbol, rows, sma=1.0, start=0):
    """One symbol's bars from DAYS[start]: rows of (open, high, low, close), or a flat price."""
    rows = [(r, r, r, r) if np.isscalar(r) else r for r in rows]
    sma = sma if isinstance(sma, list) else [sma] * len(rows)
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    return frame.assign(symbol=symbol, date=DAYS[start : start + len(rows)], volume=1e6, sma_50=sma)


def plan(symbol, i, shares, entry, stop, rs=90.0, status="sized"):
    return (symbol, DAYS[i], rs, entry, stop, shares, status == "heat_exceeded", status)


def env(names=None, heat_limit=0.025):
    names = "A" * len(DAYS) if names is None else names
    return pd.DataFrame({"date": DAYS[: len(names)], "environment": list(names),
                         "heat_limit": heat_limit})  # fmt: skip


def run(bars, plans, environment=None, equity=100_000.0, commission=0.0, slippage=0.0):
    """The strategy on hand-built inputs, checked against the reference as well."""
    bars = pd.concat(bars, ignore_index=True) if isinstance(bars, list) else bars
    watchlist = pd.DataFrame(plans, columns=PLAN_COLUMNS)
    environment = env() if environment is None else environment
    result = run_watchlist_momentum(bars, None, equity=equity, commission_bps=commission,
                                    slippage_bps=slippage, market_environment=environment,
                                    watchlist=watchlist)  # fmt: skip
    if len(result.trades):
        assert_matches_reference(result, bars, watchlist, environment, equity, commission, slippage)
    assert cash_by_day(result, equity, commission).min() >= -1e-9
    return result


def rows(result):
    t = result.trades
    return list(
        zip(
            t["symbol"], t["entry_date"], t["shares"], t["exit_date"], t["exit_reason"], strict=True
        )
    )


def test_no_new_entries_in_environment_d_and_unusable_plans_skipped():
    plans = [
        plan("AAA", 0, 100, 50.0, 45.0),  # signal session D: no entry on DAYS[1]
        plan("AAA", 2, 100, 50.0, 45.0),  # A: entered on DAYS[3], a D session (the signal's counts)
        plan("BBB", 2, 0, 50.0, 45.0),  # no shares
        plan("CCC", 2, 100, 50.0, 45.0, status="heat_exceeded"),
        plan("DDD", 2, 100, 50.0, 45.0, status="unsized: atr_14 missing or not positive"),
        plan("EEE", 4, 100, 50.0, 45.0),  # session absent from the environment frame
    ]
    bars = [bars_of(s, [50.0] * 6) for s in ("AAA", "BBB", "CCC", "DDD", "EEE")]
    result = run(bars, plans, env("DBAD"))
    assert rows(result) == [("AAA", DAYS[3], 100, None, None)]
    assert result.equity.tolist() == [100_000.0] * 6


def test_heat_limit_counts_the_open_positions_risk():
    # Limit 2.5 % of 100k = 2,500. AAA's open risk 100 x (50 - 30) = 2,000 from DAYS[1] on.
    aaa = plan("AAA", 0, 100, 50.0, 30.0)
    bbb = plan("BBB", 1, 50, 40.0, 20.0, rs=95.0)  # risk 1,000: fits the day's plan alone
    ccc = plan("CCC", 1, 20, 40.0, 20.0, rs=85.0)  # risk 400: still fits with AAA
    bars = [bars_of("AAA", [50.0] * 4), bars_of("BBB", [40.0] * 4), bars_of("CCC", [40.0] * 4)]
    with_open = run(bars, [aaa, bbb, ccc])
    assert [r[:3] for r in rows(with_open)] == [("AAA", DAYS[1], 100), ("CCC", DAYS[2], 20)]
    alone = run(bars, [bbb, ccc])  # without the open position BBB is taken, and CCC on top
    assert [r[:3] for r in rows(alone)] == [("BBB", DAYS[2], 50), ("CCC", DAYS[2], 20)]


def test_the_days_candidates_in_rs_rating_order_ties_by_symbol():
    # Room for one risk of 2,000 under the 2,500 limit: the plan's order decides which.
    bars = [bars_of(s, [50.0] * 3) for s in ("AAA", "BBB", "ZZZ")]
    by_rs = [plan("AAA", 0, 100, 50.0, 30.0, rs=80.0), plan("ZZZ", 0, 100, 50.0, 30.0, rs=90.0)]
    assert [r[0] for r in rows(run(bars, by_rs))] == ["ZZZ"]
    tied = [plan("ZZZ", 0, 100, 50.0, 30.0), plan("BBB", 0, 100, 50.0, 30.0)]
    assert [r[0] for r in rows(run(bars, tied))] == ["BBB"]
    unrated = [plan("AAA", 0, 100, 50.0, 30.0, rs=np.nan), plan("ZZZ", 0, 100, 50.0, 30.0)]
    assert [r[0] for r in rows(run(bars, unrated))] == ["ZZZ"]


def test_thirds_at_10_and_20_pct_then_the_trail_under_sma_50():
    # Entry fill 100 x 1.001 = 100.1: targets 110.11 and 120.12 above the fill, stop 80.
    prices = [100.0, (100, 105, 99, 104), (104, 111, 103, 108), (122, 123, 118, 119),
              (118, 119, 114, 115), (113, 114, 110, 112), 112.0]  # fmt: skip
    sma = [1.0, 1.0, 1.0, 1.0, 116.0, 116.0, 116.0]  # close 115 < 116 on DAYS[4]
    result = run([bars_of("AAA", prices, sma)], [plan("AAA", 0, 100, 100.0, 80.0)],
                 commission=1.0, slippage=10.0)  # fmt: skip
    t = result.trades
    assert rows(result) == [
        ("AAA", DAYS[1], 33, DAYS[2], "target_1"),
        ("AAA", DAYS[1], 33, DAYS[3], "target_2"),  # gapped over +20 %: at the open
        ("AAA", DAYS[1], 34, DAYS[5], "trail_sma_50"),  # the rest at the next open, with slippage
    ]
    assert t["entry_price"].tolist() == pytest.approx([100.1] * 3)
    assert t["exit_price"].tolist() == pytest.approx([110.11, 122.0, 113 * 0.999])
    fees = [
        n * (100.1 + x) * 1e-4
        for n, x in zip((33, 33, 34), (110.11, 122.0, 113 * 0.999), strict=True)
    ]
    assert t["fees"].tolist() == pytest.approx(fees)
    assert t["r_multiple"].tolist() == pytest.approx(
        [(p - f) / (n * 20.1) for p, f, n in zip(
            [33 * 10.01, 33 * 21.9, 34 * (113 * 0.999 - 100.1)], fees, (33, 33, 34), strict=True)]
    )  # fmt: skip


def test_stop_fills_at_the_stop_or_at_a_gapped_open():
    stop_hit = [bars_of("AAA", [100.0, 100.0, (99, 100, 89, 95)])]
    gapped = [bars_of("AAA", [100.0, 100.0, (85, 88, 84, 86)])]
    for bars, fill in ((stop_hit, 90.0), (gapped, 85.0)):
        result = run(bars, [plan("AAA", 0, 99, 100.0, 90.0)], slippage=5.0)
        assert rows(result) == [("AAA", DAYS[1], 99, DAYS[2], "stop")]
        assert result.trades["exit_price"].tolist() == [fill]  # no slippage on a stop


def test_stop_and_target_in_one_bar_assume_the_stop():
    bars = [bars_of("AAA", [100.0, 100.0, (100, 112, 89, 105), 105.0])]
    result = run(bars, [plan("AAA", 0, 99, 100.0, 90.0)])
    assert rows(result) == [("AAA", DAYS[1], 99, DAYS[2], "stop")]
    assert result.trades["exit_price"].tolist() == [90.0]


def test_cash_never_negative_an_entry_is_cut_to_what_cash_affords():
    # 10k account, heat limit 50 %: AAA's plan of 300 x $50 is cut to floor(10k / 50.005) = 199.
    bars = [bars_of("AAA", [50.0] * 5), bars_of("BBB", [60.0] * 5)]
    plans = [plan("AAA", 0, 300, 50.0, 45.0), plan("BBB", 1, 10, 60.0, 59.0)]
    result = run(bars, plans, env(heat_limit=0.5), equity=10_000.0, commission=1.0)
    assert rows(result) == [("AAA", DAYS[1], 199, None, None)]  # BBB: $49 left buys no $60 share
    cash = cash_by_day(result, 10_000.0, 1.0)
    assert cash[-1] == pytest.approx(10_000 - 199 * 50 * 1.0001)


def test_held_symbol_not_bought_again_waiting_entries_and_ended_bars():
    nan = (np.nan,) * 4
    bars = [
        bars_of("AAA", [50.0] * 5),
        bars_of("BBB", [40.0, nan, 41.0, 41.0, 41.0]),  # no tradable bar on DAYS[1]
        bars_of("CCC", [40.0, (30, 31, 29, 30), 30.0, 30.0, 30.0]),  # opens at its stop
        bars_of("DDD", [20.0, 20.0, 21.0]),  # bars end on DAYS[2]
    ]
    plans = [plan("AAA", 0, 10, 50.0, 45.0), plan("AAA", 1, 10, 50.0, 45.0),
             plan("BBB", 0, 10, 40.0, 35.0), plan("CCC", 0, 10, 40.0, 30.0),
             plan("DDD", 0, 10, 20.0, 15.0)]  # fmt: skip
    result = run(bars, plans)
    assert rows(result) == [
        ("AAA", DAYS[1], 10, None, None),
        ("DDD", DAYS[1], 10, None, None),
        ("BBB", DAYS[2], 10, None, None),  # waited for the next tradable open
    ]
    assert result.trades["pnl"].tolist() == [0.0, 10.0, 0.0]  # DDD marked at its last close
    assert result.equity.tolist() == [100_000.0, 100_000.0, 100_010.0, 100_010.0, 100_010.0]


def test_input_errors_and_empty_inputs():
    bars = bars_of("AAA", [50.0] * 3)
    watchlist = pd.DataFrame([plan("AAA", 0, 10, 50.0, 45.0)], columns=PLAN_COLUMNS)
    good = dict(bars=bars, params=None, equity=1e5, commission_bps=1.0, slippage_bps=5.0,
                market_environment=env(), watchlist=watchlist)  # fmt: skip
    bad = [
        dict(watchlist=None),
        dict(market_environment=None),
        dict(watchlist=watchlist.drop(columns="stop")),
        dict(market_environment=env().drop(columns="heat_limit")),
        dict(bars=bars.drop(columns="sma_50")),
        dict(watchlist=pd.concat([watchlist, watchlist])),
        dict(market_environment=pd.concat([env(), env()])),
        dict(bars=pd.concat([bars, bars])),
        dict(params={"target_3_pct": 0.75}),
        dict(params={"target_1_pct": 0.3}),  # above target_2_pct
        dict(equity=0.0),
        dict(slippage_bps=-1.0),
        dict(watchlist=watchlist.assign(shares="many")),
    ]
    for override in bad:
        with pytest.raises(BacktestInputError):
            run_watchlist_momentum(**{**good, **override})
    with pytest.raises(BacktestInputError, match="watchlist"):
        run_backtest(bars, STRATEGY, market_environment=env())

    empty = run_watchlist_momentum(**{**good, "bars": bars.iloc[:0]})
    assert empty.trades.empty and empty.equity.empty
    assert list(empty.trades.columns) == list(TRADE_COLUMNS)
    quiet = run_watchlist_momentum(**{**good, "watchlist": watchlist.iloc[:0]})
    assert quiet.trades.empty and quiet.equity.tolist() == [1e5] * 3
    assert run_watchlist_momentum(**{**good, "params": {"target_1_pct": 0.05}}).trades.shape[0] == 1
