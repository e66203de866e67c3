"""market_environment: A/B/C/D per session from SPY/QQQ vs their SMAs, breadth and the VIX.

Thin: the rules live in trading_assets.core.regime; the plot in core.plots.
"""

import dagster as dg
import pandas as pd

from trading_assets import checks
from trading_assets.assets.common import (
    DAILY,
    ParamOverrides,
    day_after,
    from_date,
    params,
    previous_sessions,
    recompute_start,
    window_sessions,
)
from trading_assets.assets.metadata import frame_metadata, split_metadata
from trading_assets.core.plots import environment_plot_png, png_data_uri_markdown
from trading_assets.core.regime import (
    DEFAULT_ENVIRONMENT_PARAMS,
    QQQ,
    SPY,
    compute_market_environment,
    environment_report_markdown,
    missing_benchmark_sessions,
)
from trading_assets.core.symbols import BENCHMARK_SYMBOLS
from trading_assets.storage.contract import Restatement, TableStore

# History the environment plot shows besides the sessions just materialised (one trading year).
PLOT_HISTORY_SESSIONS = 252
INDICATOR_INPUTS = ["symbol", "date", "close", "sma_50", "sma_200"]


@dg.asset(
    **DAILY,
    metadata={"partition_expr": "date", "unique_key": ["date"]},
    ins={
        "indicators": dg.AssetIn(metadata={"columns": INDICATOR_INPUTS}),
        "history": dg.AssetIn(
            key="market_environment",
            partition_mapping=previous_sessions(PLOT_HISTORY_SESSIONS),
            metadata={"allow_missing": True},
        ),
        "price_revisions": dg.AssetIn(metadata={"allow_missing": True}),
    },
    check_specs=[
        dg.AssetCheckSpec(
            checks.ENVIRONMENT_INPUTS_PRESENT,
            asset="market_environment",
            blocking=True,
            description="SPY, QQQ and ^VIX have a close, and SPY/QQQ their SMAs once warmed up "
            "(counting the stored closes before the run), on every session.",
        )
    ],
)
def market_environment(
    context: dg.AssetExecutionContext,
    config: ParamOverrides,
    indicators: pd.DataFrame,
    history: pd.DataFrame,
    price_revisions: pd.DataFrame,
    io_manager: dg.ResourceParam[TableStore],
):
    """The market environment per session: A (aggressive), B (normal), C (defensive) or D (avoid),
    from SPY and QQQ against their 50/200-day SMAs, the % of stocks above their 50-day SMA and the
    VIX, with the sizing it allows (base size, risk per trade, portfolio heat limit). A session with
    a missing SPY, QQQ or VIX input is left unclassified and fails the blocking check. When a
    benchmark's history was re-adjusted or a bar re-judged, the sessions it touches are recomputed."""
    sessions = window_sessions(context)
    # A benchmark re-adjusted changes its closes and SMAs stored here: the whole history. A stock's
    # re-adjustment scales its close and SMAs alike, so breadth does not change.
    start = recompute_start(price_revisions, sessions[0], whole_history_for=BENCHMARK_SYMBOLS)
    if start < sessions[0]:
        indicators = io_manager.read_rows(
            "indicators", columns=INDICATOR_INPUTS, start=start, end=day_after(sessions[-1])
        )
    # SMA warm-up is judged with the closes stored before the first session computed.
    before = io_manager.read_rows(
        "indicators", columns=["symbol", "date", "close"], symbols=[SPY, QQQ], end=start
    )
    prior = before[before["close"].notna()].groupby("symbol").size().to_dict()
    env = compute_market_environment(
        indicators, params(DEFAULT_ENVIRONMENT_PARAMS, config.overrides), prior
    )
    env = from_date(env, start, sessions[-1])
    window = env[env["date"] >= sessions[0]]
    missing = missing_benchmark_sessions(env)
    light, heavy = _metadata(window, history)
    light["recomputed_from"] = str(start) if start < sessions[0] else ""
    metadata, events = split_metadata(context, light, heavy)
    restatement = Restatement(all_from=start if start < sessions[0] else None)
    # Stored as typed text even when every session is unclassified (an all-null object column has
    # no type, and the table would be created without it).
    typed = env.astype({c: "string" for c in ("environment", "missing_inputs", "warmup_inputs")})
    yield dg.Output(typed, metadata={**metadata, **restatement.to_metadata()})
    yield from events
    yield dg.AssetCheckResult(
        check_name=checks.ENVIRONMENT_INPUTS_PRESENT,
        passed=missing.empty,
        metadata={
            "sessions_missing_inputs": len(missing),
            "prior_closes": dg.MetadataValue.json(prior),
            "listed": dg.MetadataValue.md(missing.head(50).to_markdown(index=False)),
        },
    )


def _metadata(env: pd.DataFrame, history: pd.DataFrame | None):
    shown = (
        pd.concat([history, env], ignore_index=True)
        if history is not None and len(history)
        else env
    )
    shown = shown.drop_duplicates("date", keep="last").sort_values("date")
    light: dict[str, object] = {
        "rows": len(env),
        "environments": dg.MetadataValue.json(
            env["environment"].fillna("unclassified").value_counts().to_dict()
        ),
    }
    heavy: dict[str, object] = frame_metadata(env)
    classified = env[env["environment"].notna()]
    if len(classified):
        latest = classified.iloc[-1]
        light["latest_session"] = str(latest["date"])
        light["latest_environment"] = str(latest["environment"])
        heavy["report"] = dg.MetadataValue.md(environment_report_markdown(latest))
    if len(shown) and shown["spy_close"].notna().any():
        png = environment_plot_png(shown)
        heavy["plot"] = dg.MetadataValue.md(png_data_uri_markdown(png, "market environment vs SPY"))
    return light, heavy
