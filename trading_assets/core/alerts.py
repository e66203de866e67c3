"""Price alerts: which price levels are watched, and which the latest prices have reached.

The price_alerts sensor (trading_assets.sensors) reads the stored tables, calls these functions and
sends what they return; the rules live here, on plain frames.

**Watched levels** (:func:`position_levels`, :func:`watchlist_levels`), one row per level:

- open positions of the trade journal (rows with a null ``exit_date``), at the levels the strategy
  that opened them set, as the backtest engine sets them:

  - ``stdev``: the stop ``atr_multiplier_sl`` x ``atr_14`` of the signal session from the entry
    fill, against the trade; the target ``min_rr_ratio`` x that risk from the fill, with it
    (core/backtest/stdev.py);
  - ``watchlist_momentum``: the plan's stop (the watchlist row of the signal session) and
    ``target_1``/``target_2`` at +10 %/+20 % over the fill (core/backtest/momentum.py). A target
    whose third is already sold (a closed row of the same position with that exit_reason) is not
    watched again;
  - ``ma_crossover``, ``rsi_mean_reversion`` and the trader's own trades (``user``) have no stop or
    target (they exit on a signal; the trades file names none): no level, no price alert.

  The signal session is the symbol's last session before ``entry_date`` on which the input (ATR,
  plan) is known: the engine fills a signal at the next tradable open.
- today's watchlist (the latest closed session's sized rows): its ``entry``.

**Alerts** (:func:`reached_levels`), each comparison inclusive:

- ``stop``: a long at or below its stop, a short at or above;
- ``target``, ``target_1``, ``target_2``: a long at or above, a short at or below;
- ``entry``: a watchlist candidate at or above its entry.

Each level has a stable id, ``strategy|symbol|entry_date|kind|level`` (the watchlist's strategy is
``watchlist``, its entry_date the plan's session; the level with LEVEL_DECIMALS decimals), the same
on every evaluation, so the sensor sends each alert once and forgets the ids no longer watched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from trading_assets.core.backtest.params import MomentumParams, StdevParams
from trading_assets.core.frames import require_columns

LONG, SHORT = "long", "short"
STOP, TARGET, TARGET_1, TARGET_2, ENTRY = "stop", "target", "target_1", "target_2", "entry"
WATCHLIST = "watchlist"  # the strategy name of a watchlist candidate's levels
STDEV, MOMENTUM = "stdev", "watchlist_momentum"
LEVEL_DECIMALS = 4  # in an alert id: stable across evaluations, finer than any tick
DEFAULT_STDEV, DEFAULT_MOMENTUM = StdevParams(), MomentumParams()

JOURNAL_COLUMNS = (
    "strategy",
    "symbol",
    "side",
    "entry_date",
    "entry_price",
    "exit_date",
    "exit_reason",
)
WATCHLIST_COLUMNS = ("symbol", "date", "entry", "stop", "shares")
LEVEL_COLUMNS = (
    "alert_id",
    "strategy",
    "symbol",
    "side",
    "entry_date",
    "entry_price",
    "kind",
    "level",
)
ALERT_COLUMNS = (*LEVEL_COLUMNS, "price")


class AlertInputError(ValueError):
    """A frame lacks the columns the alert rules read."""


def alert_id(strategy: str, symbol: str, entry_date: object, kind: str, level: float) -> str:
    """``strategy|symbol|entry_date|kind|level``: one watched level, the same on every evaluation."""
    return f"{strategy}|{symbol}|{_iso(entry_date)}|{kind}|{level:.{LEVEL_DECIMALS}f}"


def open_positions(journal: pd.DataFrame) -> pd.DataFrame:
    """The journal's open rows (null exit_date)."""
    require_columns(journal, JOURNAL_COLUMNS, "trade journal", AlertInputError)
    return journal[journal["exit_date"].isna()].reset_index(drop=True)


def position_levels(
    journal: pd.DataFrame,
    atr: pd.DataFrame | None = None,
    plans: pd.DataFrame | None = None,
    stdev: StdevParams = DEFAULT_STDEV,
    momentum: MomentumParams = DEFAULT_MOMENTUM,
) -> pd.DataFrame:
    """The stop and target levels of the journal's open positions (LEVEL_COLUMNS).

    ``journal``: trade_journal rows, open and closed (closed rows tell which thirds are sold).
    ``atr``: ``symbol, date, atr_14`` rows for the open stdev positions' signal sessions.
    ``plans``: watchlist rows (``symbol, date, stop``) for the open watchlist_momentum positions.
    """
    opened = open_positions(journal)
    frames = []
    stdev_rows = opened[opened["strategy"] == STDEV]
    if len(stdev_rows):
        frames.append(_stdev_levels(stdev_rows, atr, stdev))
    momentum_rows = opened[opened["strategy"] == MOMENTUM]
    if len(momentum_rows):
        frames.append(_momentum_levels(momentum_rows, journal, plans, momentum))
    return _levels_frame(frames)


def watchlist_levels(watchlist: pd.DataFrame) -> pd.DataFrame:
    """The entry level of each sized watchlist row (shares > 0) (LEVEL_COLUMNS)."""
    require_columns(watchlist, ("symbol", "date", "entry", "shares"), "watchlist", AlertInputError)
    sized = watchlist[(watchlist["shares"].fillna(0) > 0) & (watchlist["entry"] > 0)]
    frame = pd.DataFrame(
        {
            "strategy": WATCHLIST,
            "symbol": sized["symbol"].astype(str),
            "side": LONG,
            "entry_date": sized["date"].map(_iso),
            "entry_price": sized["entry"].astype(float),
            "kind": ENTRY,
            "level": sized["entry"].astype(float),
        }
    )
    return _levels_frame([frame])


def reached_levels(levels: pd.DataFrame, prices: Mapping[str, float]) -> pd.DataFrame:
    """The levels the latest ``prices`` (symbol -> price) have reached, with the price (ALERT_COLUMNS).

    A symbol without a finite positive price raises nothing. One row per alert id.
    """
    require_columns(levels, LEVEL_COLUMNS, "levels", AlertInputError)
    price = pd.to_numeric(levels["symbol"].map(lambda s: _price(prices.get(s))), errors="coerce")
    known = price.notna()
    long = levels["side"] == LONG
    upward = levels["kind"].isin([TARGET, TARGET_1, TARGET_2, ENTRY])
    stop = levels["kind"] == STOP
    # A long's stop and a short's targets are reached from above; everything else from below.
    from_above = (stop & long) | (upward & ~long)
    from_below = (stop & ~long) | (upward & long)
    hit = known & (
        (from_above & (price <= levels["level"])) | (from_below & (price >= levels["level"]))
    )
    out = levels[hit].assign(price=price[hit].astype(float))
    return out.drop_duplicates("alert_id").reset_index(drop=True)[list(ALERT_COLUMNS)]


def alert_text(alert: Mapping[str, object]) -> tuple[str, str]:
    """(subject, message) of one alert row, for a trader reading it on a phone."""
    symbol, side, kind = alert["symbol"], alert["side"], alert["kind"]
    level, price = float(alert["level"]), float(alert["price"])
    if kind == ENTRY:
        subject = f"{symbol} at {price:.2f}: at or above its watchlist entry {level:.2f}"
        what = f"watchlist plan of {alert['entry_date']}: entry {level:.2f}"
    else:
        verb = "stop hit" if kind == STOP else f"{kind} reached"
        subject = f"{symbol} {side} {verb} at {price:.2f} ({kind} {level:.2f}, {alert['strategy']})"
        what = (
            f"{alert['strategy']} {side} position opened {alert['entry_date']} at "
            f"{float(alert['entry_price']):.2f}; {kind} {level:.2f}"
        )
    return subject, f"{what}\nlatest price: {price:.2f}\nalert id: {alert['alert_id']}"


def still_watched(sent: set[str] | list[str], watched: pd.DataFrame) -> list[str]:
    """The sent ids whose level is still watched (sorted): the rest belong to a closed position
    or a past watchlist session and are forgotten, which keeps the sensor's cursor bounded."""
    return sorted(set(sent) & set(watched["alert_id"]))


# --- per strategy ---------------------------------------------------------------------------------


def _stdev_levels(rows: pd.DataFrame, atr: pd.DataFrame | None, p: StdevParams) -> pd.DataFrame:
    signal = _at_signal(rows, atr, "atr_14", "stdev ATR")
    risk = p.atr_multiplier_sl * signal
    direction = np.where(rows["side"] == LONG, 1.0, -1.0)
    entry = rows["entry_price"].astype(float).to_numpy()
    stop = entry - direction * risk
    target = entry + direction * p.min_rr_ratio * risk
    return pd.concat([_rows(rows, STOP, stop), _rows(rows, TARGET, target)], ignore_index=True)


def _momentum_levels(
    rows: pd.DataFrame, journal: pd.DataFrame, plans: pd.DataFrame | None, p: MomentumParams
) -> pd.DataFrame:
    stop = _at_signal(rows, plans, "stop", "watchlist plan")
    entry = rows["entry_price"].astype(float).to_numpy()
    sold = _sold_thirds(journal)
    keys = list(zip(rows["symbol"], rows["entry_date"].map(_iso), strict=True))
    frames = [_rows(rows, STOP, stop)]
    for kind, pct in ((TARGET_1, p.target_1_pct), (TARGET_2, p.target_2_pct)):
        open_target = np.array([(s, d, kind) not in sold for s, d in keys], dtype=bool)
        frames.append(_rows(rows[open_target], kind, entry[open_target] * (1 + pct)))
    return pd.concat(frames, ignore_index=True)


def _sold_thirds(journal: pd.DataFrame) -> set[tuple[str, str, str]]:
    closed = journal[(journal["strategy"] == MOMENTUM) & journal["exit_date"].notna()]
    return {
        (str(r.symbol), _iso(r.entry_date), str(r.exit_reason))
        for r in closed.itertuples(index=False)
    }


def _at_signal(
    rows: pd.DataFrame, values: pd.DataFrame | None, column: str, what: str
) -> np.ndarray:
    """Per open row, ``column`` on the symbol's last session before entry_date where it is known
    (NaN when there is none)."""
    if values is None or values.empty:
        return np.full(len(rows), np.nan)
    require_columns(values, ("symbol", "date", column), what, AlertInputError)
    known = values[values[column].notna()]
    right = pd.DataFrame(
        {
            "symbol": known["symbol"].astype(str),
            "_date": pd.to_datetime(known["date"]),
            "_value": known[column].astype(float),
        }
    ).sort_values("_date")
    left = pd.DataFrame(
        {
            "symbol": rows["symbol"].astype(str).to_numpy(),
            "_date": pd.to_datetime(rows["entry_date"]).to_numpy(),
            "_order": np.arange(len(rows)),
        }
    ).sort_values("_date")
    merged = pd.merge_asof(
        left, right, on="_date", by="symbol", allow_exact_matches=False, direction="backward"
    )
    return merged.sort_values("_order")["_value"].to_numpy(dtype=float)


def _rows(rows: pd.DataFrame, kind: str, level: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "strategy": rows["strategy"].astype(str).to_numpy(),
            "symbol": rows["symbol"].astype(str).to_numpy(),
            "side": rows["side"].astype(str).to_numpy(),
            "entry_date": rows["entry_date"].map(_iso).to_numpy(),
            "entry_price": rows["entry_price"].astype(float).to_numpy(),
            "kind": kind,
            "level": np.asarray(level, dtype=float),
        }
    )


def _levels_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LEVEL_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[np.isfinite(frame["level"]) & (frame["level"] > 0)]
    ids = [
        alert_id(r.strategy, r.symbol, r.entry_date, r.kind, r.level)
        for r in frame.itertuples(index=False)
    ]
    frame = frame.assign(alert_id=ids)[list(LEVEL_COLUMNS)]
    return frame.drop_duplicates("alert_id").reset_index(drop=True)


def _iso(day: object) -> str:
    if isinstance(day, str):
        return day[:10]
    if isinstance(day, pd.Timestamp | dt.datetime):
        return day.date().isoformat()
    if isinstance(day, dt.date):
        return day.isoformat()
    return pd.Timestamp(day).date().isoformat()


def _price(value: object) -> float | None:
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return price if np.isfinite(price) and price > 0 else None
