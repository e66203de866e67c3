"""symbols: the universe every downstream asset works over."""

import dagster as dg
import pandas as pd

from trading_assets.assets.metadata import frame_metadata
from trading_assets.core.universe import build_universe, universe_changes
from trading_assets.resources import UniverseResource

UNIVERSE_METADATA_KEY = "symbols"


@dg.asset(
    group_name="market",
    kinds={"pandas", "duckdb"},
    metadata={"unique_key": ["symbol"]},
    # Lets `dagster asset materialize --select '*' --partition-range A...B` run the graph in one run.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def symbols(
    context: dg.AssetExecutionContext, universe: UniverseResource
) -> dg.Output[pd.DataFrame]:
    """The tradable universe: the stocks we track with their sector, plus SPY, QQQ and ^VIX, which
    the market environment needs. Every symbol passes a strict ticker pattern before it can reach SQL
    or a URL. Metadata lists the symbols added and removed since the previous materialisation."""
    frame = build_universe(universe.members())
    current = frame["symbol"].tolist()
    previous = _previous_symbols(context)
    added, removed = universe_changes(previous, current)
    counts = frame.assign(sector=frame["sector"].fillna("unknown")).groupby("sector").size()
    return dg.Output(
        frame,
        metadata={
            **frame_metadata(frame),
            "stocks": int((~frame["is_benchmark"]).sum()),
            "added": dg.MetadataValue.json(added),
            "removed": dg.MetadataValue.json(removed),
            "added_count": len(added),
            "removed_count": len(removed),
            "by_sector": dg.MetadataValue.md(counts.rename("symbols").to_frame().to_markdown()),
            UNIVERSE_METADATA_KEY: dg.MetadataValue.json(current),
        },
    )


def _previous_symbols(context: dg.AssetExecutionContext) -> list[str] | None:
    """The symbol list recorded by the last materialisation, read from the Dagster instance."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(UNIVERSE_METADATA_KEY)
    return list(value.value) if value is not None else None
