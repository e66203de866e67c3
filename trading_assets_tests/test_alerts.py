"""The alert rules (core/alerts.py): which levels are watched, which a price reaches, the ids.

The levels of open positions are checked against the backtest engine itself on real data: every
trade's risk per share, recovered from its r_multiple (pnl / (shares x risk)), equals entry - stop
as the alerts derive it, and stop and target exits fill at (or, on a gap, beyond) those levels.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trading_assets.core.alerts import (
    ALERT_COLUMNS,
    LEVEL_COLUMNS,
    AlertInputError,
    alert_id,
    alert_text,
    position_levels,
    reached_levels,
    still_watched,
    watchlist_levels,
)
from trading_assets.core.backtest import run_backtest
from trading_assets.core.backtest.params import StdevParams
from trading_assets.core.fundamentals import read_fundamentals_snapshots
from trading_assets.core.indicators import compute_indicators
from trading_assets.core.regime import compute_market_environment
from trading_assets.core.screen import screen_watchlist
from trading_assets_tests.conftest import SHARED_MARKET, SHARED_PRICES, shared_prices
from trading_assets_tests.test_backtest import real_bars

D = dt.date


def trade(strategy, symbol, side, entry_date, entry_price, exit_date=None, exit_reason=None):
    return {
        "strategy": strategy,
        "symbol": symbol,
        "side": side,
        "entry_date": entry_date,
        "entry_price": entry_price,
        "exit_date": exit_date,
        "exit_reason": exit_reason,
    }


def journal(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def by_kind(levels: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.symbol, r.kind): r.level for r in levels.itertuples()}


# --- levels by hand ---------------------------------------------------------------------------


def test_stdev_levels_use_the_atr_of_the_signal_session_not_the_entry_day():
    atr = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "AAPL", "XOM", "XOM"],
            "date": [D(2024, 3, 1), D(2024, 3, 4), D(2024, 3, 5), D(2024, 3, 1), D(2024, 3, 4)],
            "atr_14": [9.0, 2.0, 50.0, 1.0, np.nan],  # XOM's last known ATR is on 03-01
        }
    )
    levels = position_levels(
        journal(
            trade("stdev", "AAPL", "long", D(2024, 3, 5), 100.0),
            trade("stdev", "XOM", "short", D(2024, 3, 5), 50.0),
        ),
        atr=atr,
    )
    risk_aapl, risk_xom = 1.4 * 2.0, 1.4 * 1.0
    assert by_kind(levels) == pytest.approx(
        {
            ("AAPL", "stop"): 100.0 - risk_aapl,
            ("AAPL", "target"): 100.0 + 1.5 * risk_aapl,
            ("XOM", "stop"): 50.0 + risk_xom,
            ("XOM", "target"): 50.0 - 1.5 * risk_xom,
        }
    )
    assert list(levels.columns) == list(LEVEL_COLUMNS)
    assert set(levels["alert_id"]) == {
        "stdev|AAPL|2024-03-05|stop|97.2000",
        "stdev|AAPL|2024-03-05|target|104.2000",
        "stdev|XOM|2024-03-05|stop|51.4000",
        "stdev|XOM|2024-03-05|target|47.9000",
    }
    # Custom parameters move the levels (a run's overrides, if the sensor is given them).
    wide = position_levels(
        journal(trade("stdev", "AAPL", "long", D(2024, 3, 5), 100.0)),
        atr=atr,
        stdev=StdevParams(atr_multiplier_sl=2.0, min_rr_ratio=2.0),
    )
    assert by_kind(wide) == pytest.approx({("AAPL", "stop"): 96.0, ("AAPL", "target"): 108.0})


def test_momentum_levels_plan_stop_and_thirds_not_yet_sold():
    plans = pd.DataFrame(
        {
            "symbol": ["NVDA", "NVDA", "AMD"],
            "date": [D(2024, 5, 1), D(2024, 5, 2), D(2024, 5, 2)],
            "stop": [80.0, 90.0, 140.0],
        }
    )
    rows = journal(
        # NVDA: the first third sold at target_1; the rest still open.
        trade(
            "watchlist_momentum", "NVDA", "long", D(2024, 5, 3), 100.0, D(2024, 5, 9), "target_1"
        ),
        trade("watchlist_momentum", "NVDA", "long", D(2024, 5, 3), 100.0),
        trade("watchlist_momentum", "AMD", "long", D(2024, 5, 3), 150.0),
    )
    levels = position_levels(rows, plans=plans)
    assert by_kind(levels) == pytest.approx(
        {
            ("NVDA", "stop"): 90.0,  # the plan of 05-02, the session before the fill
            ("NVDA", "target_2"): 120.0,
            ("AMD", "stop"): 140.0,
            ("AMD", "target_1"): 165.0,
            ("AMD", "target_2"): 180.0,
        }
    )


def test_strategies_without_levels_and_missing_inputs_watch_nothing():
    rows = journal(
        trade("ma_crossover", "AAPL", "long", D(2024, 3, 5), 100.0),
        trade("rsi_mean_reversion", "MSFT", "long", D(2024, 3, 5), 300.0),
        trade("user", "JPM", "long", D(2024, 3, 5), 180.0),
        trade("stdev", "XOM", "long", D(2024, 3, 5), 100.0),  # no ATR given: no level
        trade("stdev", "GEV", "long", D(2024, 1, 5), 100.0, D(2024, 2, 1), "stop"),  # closed
    )
    assert position_levels(rows).empty
    assert list(position_levels(rows).columns) == list(LEVEL_COLUMNS)
    with pytest.raises(AlertInputError, match="exit_date"):
        position_levels(pd.DataFrame({"strategy": ["stdev"]}))


def test_watchlist_levels_are_the_sized_rows_entries():
    today = pd.DataFrame(
        {
            "symbol": ["NVDA", "AMD", "META"],
            "date": [D(2024, 5, 2)] * 3,
            "entry": [100.0, 150.0, 500.0],
            "shares": [10.0, 0.0, np.nan],  # AMD over the heat limit, META unsized
        }
    )
    levels = watchlist_levels(today)
    assert levels.to_dict("records") == [
        {
            "alert_id": "watchlist|NVDA|2024-05-02|entry|100.0000",
            "strategy": "watchlist",
            "symbol": "NVDA",
            "side": "long",
            "entry_date": "2024-05-02",
            "entry_price": 100.0,
            "kind": "entry",
            "level": 100.0,
        }
    ]


# --- which levels a price reaches -------------------------------------------------------------


def levels_frame() -> pd.DataFrame:
    atr = pd.DataFrame(
        {"symbol": ["AAPL", "XOM"], "date": [D(2024, 3, 4)] * 2, "atr_14": [2.0, 1.0]}
    )
    positions = position_levels(
        journal(
            trade("stdev", "AAPL", "long", D(2024, 3, 5), 100.0),  # stop 97.2, target 104.2
            trade("stdev", "XOM", "short", D(2024, 3, 5), 50.0),  # stop 51.4, target 47.9
        ),
        atr=atr,
    )
    watch = watchlist_levels(
        pd.DataFrame({"symbol": ["NVDA"], "date": [D(2024, 3, 5)], "entry": [100.0], "shares": [5]})
    )
    return pd.concat([positions, watch], ignore_index=True)


@pytest.mark.parametrize(
    "prices, reached",
    [
        ({"AAPL": 100.0, "XOM": 50.0, "NVDA": 99.99}, set()),
        ({"AAPL": 97.2, "XOM": 51.4, "NVDA": 100.0}, {"AAPL stop", "XOM stop", "NVDA entry"}),
        ({"AAPL": 97.19, "XOM": 51.41}, {"AAPL stop", "XOM stop"}),
        ({"AAPL": 104.2, "XOM": 47.9, "NVDA": 130.0}, {"AAPL target", "XOM target", "NVDA entry"}),
        ({"AAPL": 104.19, "XOM": 47.91}, set()),
        # No price, or one that is no price: no alert.
        ({"AAPL": float("nan"), "XOM": 0.0, "NVDA": None}, set()),
        ({"AAPL": -5.0, "XOM": "n/a"}, set()),
    ],
)
def test_reached_levels_inclusive_by_side(prices, reached):
    alerts = reached_levels(levels_frame(), prices)
    assert {f"{r.symbol} {r.kind}" for r in alerts.itertuples()} == reached
    assert list(alerts.columns) == list(ALERT_COLUMNS)
    for row in alerts.itertuples():
        assert row.price == prices[row.symbol]


def test_alert_ids_are_stable_and_forgotten_when_no_longer_watched():
    first, again = levels_frame(), levels_frame()
    assert list(first["alert_id"]) == list(again["alert_id"])
    assert alert_id("stdev", "AAPL", pd.Timestamp("2024-03-05"), "stop", 97.2) == (
        "stdev|AAPL|2024-03-05|stop|97.2000"
    )
    sent = {"stdev|AAPL|2024-03-05|stop|97.2000", "stdev|GEV|2024-01-05|stop|90.0000"}
    assert still_watched(sent, first) == ["stdev|AAPL|2024-03-05|stop|97.2000"]


def test_alert_text_names_symbol_level_price_and_id():
    alerts = reached_levels(levels_frame(), {"AAPL": 97.0, "NVDA": 101.5})
    texts = {r["kind"]: alert_text(r) for r in alerts.to_dict("records")}
    subject, message = texts["stop"]
    assert subject == "AAPL long stop hit at 97.00 (stop 97.20, stdev)"
    assert "opened 2024-03-05 at 100.00" in message
    assert "alert id: stdev|AAPL|2024-03-05|stop|97.2000" in message
    subject, message = texts["entry"]
    assert subject == "NVDA at 101.50: at or above its watchlist entry 100.00"


# --- against the engine, on real data -------------------------------------------------------------


def as_open(trades: pd.DataFrame) -> pd.DataFrame:
    """Every trade as if still open (its levels are then derived), keeping its row order."""
    return trades.assign(exit_date=None, exit_reason=None)


def engine_risk(trades: pd.DataFrame) -> pd.Series:
    """Risk per share as the engine measured it: r_multiple = pnl / (shares x risk)."""
    return trades["pnl"] / (trades["shares"] * trades["r_multiple"])


def test_stdev_levels_equal_the_engines_on_real_data():
    bars = real_bars()
    trades = run_backtest(bars, "stdev").trades
    usable = trades[trades["r_multiple"].abs() > 1e-6].reset_index(drop=True)
    assert len(usable) > 100 and set(usable["side"]) == {"long", "short"}
    levels = position_levels(as_open(usable), atr=bars[["symbol", "date", "atr_14"]])
    stops = levels[levels["kind"] == "stop"].reset_index(drop=True)
    targets = levels[levels["kind"] == "target"].reset_index(drop=True)
    assert len(stops) == len(targets) == len(usable)
    np.testing.assert_allclose(
        (usable["entry_price"] - stops["level"]).abs(), engine_risk(usable), rtol=1e-9
    )
    sign = np.where(usable["side"] == "long", 1.0, -1.0)
    bar = usable.merge(
        bars, left_on=["symbol", "exit_date"], right_on=["symbol", "date"], how="left"
    )
    for reason, level in (("stop", stops["level"]), ("target", targets["level"])):
        hit = (usable["exit_reason"] == reason).to_numpy()
        assert hit.sum() > 10
        price, level, s = usable["exit_price"][hit], level[hit], sign[hit]
        gapped = (bar["open"][hit] - level) * s * (-1 if reason == "stop" else 1) > 0
        # At the level, or at the open when the bar opened beyond it.
        np.testing.assert_allclose(price[~gapped], level[~gapped], rtol=1e-12)
        np.testing.assert_allclose(price[gapped], bar["open"][hit][gapped], rtol=1e-12)


def test_momentum_levels_equal_the_engines_on_real_data():
    names = pq.read_table(SHARED_PRICES, columns=["symbol"]).column("symbol").unique()
    stocks = sorted(s for s in names.to_pylist() if s not in ("SPY", "QQQ", "^VIX"))[::12]
    prices = shared_prices([*stocks, "SPY", "QQQ", "^VIX"], "2018-01-01", "2021-12-31")
    bars = prices.merge(compute_indicators(prices), on=["symbol", "date"])
    environment = compute_market_environment(bars)
    fundamentals = read_fundamentals_snapshots(SHARED_MARKET / "fundamentals_2025-02-01.csv")
    watchlist = screen_watchlist(bars, environment, fundamentals)
    trades = run_backtest(
        bars, "watchlist_momentum", market_environment=environment, watchlist=watchlist
    ).trades
    assert {"stop", "target_1", "target_2"} <= set(trades["exit_reason"])
    # Each position once, as if wholly open: its stop and both targets.
    positions = as_open(trades.drop_duplicates(["symbol", "entry_date"])).reset_index(drop=True)
    levels = position_levels(positions, plans=watchlist[["symbol", "date", "stop"]])
    kinds = {k: g.set_index(["symbol", "entry_date"])["level"] for k, g in levels.groupby("kind")}
    assert len(kinds["stop"]) == len(positions)
    risk = engine_risk(positions).to_numpy()
    key = list(zip(positions["symbol"], positions["entry_date"].map(str), strict=True))
    np.testing.assert_allclose(
        positions["entry_price"].to_numpy() - kinds["stop"].loc[key].to_numpy(), risk, rtol=1e-9
    )
    for reason in ("target_1", "target_2", "stop"):
        exits = trades[trades["exit_reason"] == reason]
        level = kinds[reason].loc[
            list(zip(exits["symbol"], exits["entry_date"].map(str), strict=True))
        ]
        bar = exits.merge(bars, left_on=["symbol", "exit_date"], right_on=["symbol", "date"])
        at_level = np.isclose(exits["exit_price"].to_numpy(), level.to_numpy(), rtol=1e-12)
        at_open = np.isclose(exits["exit_price"].to_numpy(), bar["open"].to_numpy(), rtol=1e-12)
        assert (at_level | at_open).all() and at_level.sum() > 0
